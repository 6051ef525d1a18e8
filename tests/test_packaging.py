"""The wheel installs only `embodied_vision/...` plus the ament/ROS data files."""
from pathlib import Path
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(out), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    (path,) = out.glob('embodied_vision-*.whl')
    return zipfile.ZipFile(path)


def test_only_embodied_vision_is_a_top_level_package(wheel):
    tops = {name.split('/')[0] for name in wheel.namelist()}
    code = {t for t in tops if not t.endswith(('.dist-info', '.data'))}
    assert code == {'embodied_vision'}


def test_mapped_folders_are_inside_the_package(wheel):
    names = set(wheel.namelist())
    for folder in ('sim', 'policies', 'ros_nodes'):
        assert f'embodied_vision/{folder}/__init__.py' in names


def test_ament_index_marker_and_package_xml_are_data_files(wheel):
    names = wheel.namelist()
    assert any(n.endswith('share/ament_index/resource_index/packages/embodied_vision')
               for n in names)
    assert any(n.endswith('share/embodied_vision/package.xml') for n in names)


def test_package_data_is_shipped(wheel):
    names = set(wheel.namelist())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / 'embodied_vision' / 'configs').rglob(
        '*.yaml')}
    assert shipped <= names
    assets = {f'embodied_vision/sim/{p.relative_to(ROOT / "sim")}'
              for p in (ROOT / 'sim' / 'assets').rglob('*') if p.is_file()} \
        if (ROOT / 'sim' / 'assets').exists() else set()
    assert assets <= names


def test_plain_colcon_build_installs_ros_layout(tmp_path):
    colcon = Path(sys.executable).parent / 'colcon'
    if not colcon.exists():
        pytest.skip('colcon is not installed (dev extra)')
    source = tmp_path / 'src' / 'embodied_vision'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'build', 'install', 'log', '*.egg-info', '__pycache__', 'demo_output',
        'runs', 'outputs', 'multirun'))  # a dev checkout's run folders can hold gigabytes
    result = subprocess.run([str(colcon), 'build', '--base-paths', 'src'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / 'install' / 'embodied_vision'
    assert (prefix / 'lib' / 'embodied_vision' / 'embodied-vision').exists()
    assert (prefix / 'share' / 'embodied_vision' / 'package.xml').exists()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'embodied_vision').exists()
    site = next((prefix / 'lib').glob('python3*/site-packages'))
    assert (site / 'embodied_vision' / 'sim' / '__init__.py').exists()
    assert not (site / 'sim').exists() and not (site / 'ros_nodes').exists()
