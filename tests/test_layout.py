"""House rules on imports and packaging, checked by walking each module's AST."""
import ast
import configparser
from pathlib import Path
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ('embodied_vision', 'sim', 'policies', 'ros_nodes', 'launch', 'tests', 'benchmarks')
MAPPED = ('sim', 'policies', 'ros_nodes')
CORE_LEAVES = ('layers', 'encoders', 'checkpoints', 'data', 'utils', 'geometry', 'language')


def _python_files(*dirs):
    for folder in dirs:
        yield from sorted((ROOT / folder).rglob('*.py'))


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every imported module name (absolute), including imports inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
    return found


def _offenders(files, banned) -> list[str]:
    return [f'{path.relative_to(ROOT)}:{line} imports {name}'
            for path in files for name, line in _imports(path)
            if name.split('.')[0] in banned or name in banned]


def test_core_never_imports_mujoco_or_rclpy():
    assert _offenders(_python_files('embodied_vision'), {'mujoco', 'rclpy'}) == []


def test_nothing_imports_mapped_packages_by_top_level_name():
    assert _offenders(_python_files(*CODE_DIRS), set(MAPPED)) == []


def test_core_leaves_do_not_import_upper_layers():
    files = [p for leaf in CORE_LEAVES for p in _python_files(f'embodied_vision/{leaf}')]
    upper = {f'embodied_vision.{m}' for m in MAPPED} | {'embodied_vision.deploy',
                                                        'torch_tensorrt'}
    bad = [f'{p.relative_to(ROOT)}:{line} imports {name}' for p in files
           for name, line in _imports(p) if any(name.startswith(u) for u in upper)]
    assert bad == []


def test_only_ros_nodes_import_rclpy():
    outside = [p for p in _python_files(*CODE_DIRS)
               if 'ros_nodes' not in p.parts and 'launch' not in p.parts
               and 'tests' not in p.parts and 'benchmarks' not in p.parts]
    assert _offenders(outside, {'rclpy'}) == []


def test_torch_tensorrt_is_never_imported_statically():
    # It is reached only through require_package('torch_tensorrt', ...) inside deploy/.
    assert _offenders(_python_files(*CODE_DIRS), {'torch_tensorrt'}) == []


def test_ament_python_package_files():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'embodied_vision'
    assert root.find('export/build_type').text == 'ament_python'
    depends = {e.text for e in root.findall('exec_depend')}
    assert {'rclpy', 'sensor_msgs', 'geometry_msgs', 'std_msgs', 'std_srvs', 'diagnostic_msgs',
            'lifecycle_msgs'} <= depends
    assert (ROOT / 'resource' / 'embodied_vision').exists()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    assert cfg['install']['install_scripts'] == '$base/lib/embodied_vision'
    assert cfg['develop']['script_dir'] == '$base/lib/embodied_vision'


def test_console_scripts_import():
    from importlib.metadata import entry_points
    scripts = [e for e in entry_points(group='console_scripts')
               if e.value.startswith('embodied_vision')]
    assert scripts, 'embodied_vision is not installed (pip install -e .)'
    for script in scripts:
        assert callable(script.load()), script


@pytest.mark.parametrize('folder', MAPPED)
def test_mapped_packages_import_under_embodied_vision(folder):
    import importlib
    module = importlib.import_module(f'embodied_vision.{folder}')
    assert Path(module.__file__).resolve().parent == ROOT / folder
