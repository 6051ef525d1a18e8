"""Static checks of `launch/*.launch.py` and `launch/config/*.yaml` (ros2.md section 4).

`launch` and `launch_ros` are not installable from PyPI, so the launch files are read with
`ast` instead of executed: one `generate_launch_description`, a described
`DeclareLaunchArgument` for every `LaunchConfiguration`, package `embodied_vision`,
executables that are console scripts with a `main`, and parameter files whose keys are
parameters the nodes declare, with the declared types.
"""
import ast
import importlib
from pathlib import Path
import re

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch'
CONFIG = LAUNCH / 'config'
LAUNCH_FILES = sorted(LAUNCH.glob('*.launch.py'))
NODE_EXECUTABLES = ('encoder_node', 'sim_node', 'policy_node', 'planner_node', 'pair_node',
                    'voxel_node', 'point_cloud_node')


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n.func) == name]


def _const(node):
    return node.value if isinstance(node, ast.Constant) else None


def _keyword(call, key):
    return next((k.value for k in call.keywords if k.arg == key), None)


def _module_constants(tree) -> dict:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def _launched(tree) -> dict[str, list[ast.Dict]]:
    """executable -> parameter dict literals passed to it (direct or through a helper)."""
    constants = _module_constants(tree)
    launched: dict[str, list] = {}
    helpers = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    for call in _calls(tree, 'LifecycleNode') + _calls(tree, 'Node'):
        package = _keyword(call, 'package')
        package = _const(package) if _const(package) is not None else \
            constants.get(getattr(package, 'id', None))
        assert package == 'embodied_vision', f'package={package!r}'
        executable = _keyword(call, 'executable')
        dicts = [d for d in ast.walk(_keyword(call, 'parameters') or ast.List(elts=[]))
                 if isinstance(d, ast.Dict)]
        if _const(executable) is not None:
            launched.setdefault(executable.value, []).extend(dicts)
            continue
        helper = next(f for f in helpers.values() if call in list(ast.walk(f)))
        position = [a.arg for a in helper.args.args].index(executable.id)
        for use in _calls(tree, helper.name):
            name = _const(use.args[position])
            launched.setdefault(name, []).extend(dicts)
            launched[name].extend(a for a in use.args if isinstance(a, ast.Dict))
    return launched


def _parameter_tables():
    pytest.importorskip('rclpy')
    tables = {}
    for executable in NODE_EXECUTABLES:
        module = importlib.import_module(f'embodied_vision.ros_nodes.{executable}')
        cls = next(v for v in vars(module).values()
                   if isinstance(v, type) and hasattr(v, 'parameter_table')
                   and v.__module__ == module.__name__)
        tables[executable] = cls.parameter_table()
    return tables


def test_launch_files_exist_with_the_launch_py_suffix():
    names = {p.name for p in LAUNCH_FILES}
    assert {'encoder.launch.py', 'sim_policy.launch.py', 'planner.launch.py',
            'pair.launch.py', 'voxel.launch.py', 'point_cloud.launch.py'} <= names
    assert not list(LAUNCH.glob('*_launch.py'))


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_structure(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name == 'generate_launch_description']
    assert len(defs) == 1
    declared = {}
    for call in _calls(tree, 'DeclareLaunchArgument'):
        name = _const(call.args[0])
        description = _const(_keyword(call, 'description'))
        assert name and description and len(description) > 10, f'{name}: no description'
        assert _keyword(call, 'default_value') is not None, f'{name}: no default_value'
        declared[name] = description
    used = {_const(c.args[0]) for c in _calls(tree, 'LaunchConfiguration')}
    assert used <= set(declared), f'undeclared: {used - set(declared)}'
    assert set(declared) <= used, f'declared but unused: {set(declared) - used}'
    assert set(_launched(tree)) <= set(NODE_EXECUTABLES)


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_parameters_given_by_launch_files_are_declared(path):
    tables = _parameter_tables()
    tree = ast.parse(path.read_text())
    launched = _launched(tree)
    for executable, dicts in launched.items():
        for d in dicts:
            keys = {_const(k) for k in d.keys if k is not None}
            assert keys <= set(tables[executable]), f'{executable}: {keys}'
    yamls = {n.value for n in ast.walk(tree)
             if isinstance(n, ast.Constant) and str(n.value).endswith('.yaml')}
    assert yamls, 'the launch file names no parameter file'
    for name in yamls:
        data = yaml.safe_load((CONFIG / name).read_text())
        assert set(data) <= set(launched), f'{name} configures nodes {set(data)} not launched'


@pytest.mark.parametrize('path', sorted(CONFIG.glob('*.yaml')), ids=lambda p: p.name)
def test_parameter_files_match_declared_names_and_types(path):
    tables = _parameter_tables()
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data
    for node, body in data.items():
        assert set(body) == {'ros__parameters'}, f'{node}: expected ros__parameters'
        executable = next((e for e in NODE_EXECUTABLES
                           if node == e or node.endswith('_' + e)), None)
        assert executable, f'{node} is not a node of this package'
        for key, value in body['ros__parameters'].items():
            assert key in tables[executable], f'{node}: {key} is not declared'
            spec = tables[executable][key]
            assert type(value) is type(spec.default), \
                f'{node}.{key}: {type(value).__name__}, declared {type(spec.default).__name__}'
            assert not spec.check(value), spec.check(value)


def test_executables_are_console_scripts_with_main():
    for executable in NODE_EXECUTABLES:
        module = importlib.import_module(f'embodied_vision.ros_nodes.{executable}') \
            if importlib.util.find_spec('rclpy') else None
        if module is not None:
            assert callable(module.main)
    text = (ROOT / 'setup.py').read_text()
    found = {e for e in NODE_EXECUTABLES
             if re.search(rf"'{e} *= *embodied_vision\.ros_nodes\.{e}:main'", text)}
    if not found:
        pytest.skip('the node console_scripts are not wired into setup.py yet')
    assert found == set(NODE_EXECUTABLES), f'missing: {set(NODE_EXECUTABLES) - found}'


def _declared_arguments(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {_const(call.args[0]) for call in _calls(tree, 'DeclareLaunchArgument')}


def test_readme_launch_commands_pass_only_declared_arguments():
    # `ros2 launch` ignores an undeclared `name:=value` silently (the README once passed
    # encoder.launch.py an `input_topic` it does not declare: nothing was embedded).
    text = (ROOT / 'README.md').read_text().replace('\\\n', ' ')
    commands = re.findall(r'ros2 launch embodied_vision (\S+\.launch\.py)([^\n`]*)', text)
    assert len(commands) >= 4
    for launch_file, rest in commands:
        given = set(re.findall(r'(\w+):=', rest))
        declared = _declared_arguments(LAUNCH / launch_file)
        assert given <= declared, f'{launch_file}: {sorted(given - declared)} not declared ' \
                                  f'(declared: {sorted(declared)})'
