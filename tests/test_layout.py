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
# The commands: they compose every layer (a closed-loop evaluation needs the sim and the
# policies), so like ros_nodes they sit above core and may import anything; no core module
# imports them.
ENTRY_POINTS = ('embodied_vision/scripts', 'embodied_vision/demo.py', 'embodied_vision/cli.py')
# Import root of each source folder, as setup.py's package_dir installs it.
SOURCES = {'embodied_vision': 'embodied_vision',
           **{folder: f'embodied_vision.{folder}' for folder in MAPPED}}


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


def _module_files(root: Path = ROOT, sources: dict | None = None) -> dict[str, Path]:
    """Dotted name -> file of every module under `sources` (folder -> import root)."""
    modules = {}
    for folder, package in (SOURCES if sources is None else sources).items():
        for path in sorted((root / folder).rglob('*.py')):
            parts = list(path.relative_to(root / folder).with_suffix('').parts)
            if parts[-1] == '__init__':
                parts.pop()
            modules['.'.join([package, *parts])] = path
    return modules


def _import_targets(name: str, path: Path, modules: dict) -> list[tuple[str, int]]:
    """Modules of `modules` that `name` (at `path`) imports, module level or in functions.

    `from pkg import x` targets `pkg.x` when that is a module, else `pkg` itself (its
    `__init__`); relative imports are resolved against `name`'s package.
    """
    package = name.split('.') if path.name == '__init__.py' else name.split('.')[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                known = [m for m in ('.'.join(parts[:i]) for i in range(len(parts), 0, -1))
                         if m in modules]
                found += [(known[0], node.lineno)] if known else []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                if f'{base}.{alias.name}' in modules:
                    found.append((f'{base}.{alias.name}', node.lineno))
                elif base in modules:
                    found.append((base, node.lineno))
    return [(target, line) for target, line in found if target != name]


def _import_graph(modules: dict) -> dict[str, dict[str, int]]:
    """Module -> {imported module: first line}, over `modules` only."""
    graph = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in _import_targets(name, path, modules):
            edges.setdefault(target, line)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle `[a, b, ..., a]` per strongly connected group of modules."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while not group or node not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:  # breadth-first from the group's first module back to itself
        start = min(group)
        paths, seen = [[start]], {start}
        while paths:
            chain = paths.pop(0)
            if start in graph[chain[-1]]:
                cycles.append([*chain, start])
                break
            for target in sorted(graph[chain[-1]]):
                if target in group and target not in seen:
                    seen.add(target)
                    paths.append([*chain, target])
    return sorted(cycles)


def _describe(cycle: list[str], graph: dict, modules: dict, root: Path = ROOT) -> str:
    steps = [cycle[0]] + [f'{b} ({modules[a].relative_to(root)}:{graph[a][b]})'
                          for a, b in zip(cycle, cycle[1:])]
    return ' -> '.join(steps)


def _offenders(files, banned) -> list[str]:
    return [f'{path.relative_to(ROOT)}:{line} imports {name}'
            for path in files for name, line in _imports(path)
            if name.split('.')[0] in banned or name in banned]


def test_core_never_imports_mujoco_or_rclpy():
    assert _offenders(_python_files('embodied_vision'), {'mujoco', 'rclpy'}) == []


def test_nothing_imports_mapped_packages_by_top_level_name():
    assert _offenders(_python_files(*CODE_DIRS), set(MAPPED)) == []


def test_no_import_cycles():
    """No chain of imports leads from a module back to itself.

    Imports inside functions count: deferring one hides a cycle from the interpreter, not
    from the design. Two rules decide what a package's `__init__` means:
    - Python imports every ancestor package before a submodule; that implicit import is no
      edge, so a package whose `__init__` imports (re-exports) its children is no cycle.
    - `from pkg import x` goes to the module `pkg.x` when there is one, so a child that
      imports a sibling through its parent (`from pkg import sibling`) depends on the
      sibling only. A child that names the package itself (`import pkg`, or
      `from pkg import name` with `name` defined or re-exported by the `__init__`) needs the
      whole `__init__` to have run; that is a cycle exactly when the `__init__` reaches the
      child again (at module level the child sees a half-initialised package, inside a
      function it still depends on everything the package re-exports). Import the module
      that defines the name instead.
    """
    modules = _module_files()
    graph = _import_graph(modules)
    assert [_describe(c, graph, modules) for c in _cycles(graph)] == []


def test_cycle_check_follows_function_imports_and_submodules(tmp_path):
    files = {
        'pkg/__init__.py': 'from pkg import a\nfrom pkg.b import B\n',
        'pkg/a.py': 'def f():\n    from pkg import b\n',       # -> pkg.b, not pkg
        'pkg/b.py': 'from .a import f\nB = 1\n',                  # relative -> pkg.a
        'pkg/c.py': 'from pkg import a\n',                          # a sibling: no cycle
        'pkg/d.py': 'def g():\n    from pkg import B\n',           # the __init__: cycle?
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = _module_files(tmp_path, {'pkg': 'pkg'})
    graph = _import_graph(modules)
    assert graph['pkg.a'] == {'pkg.b': 2} and graph['pkg.c'] == {'pkg.a': 1}
    assert graph['pkg.d'] == {'pkg': 2}  # not imported by the __init__: no cycle
    assert [_describe(c, graph, modules, tmp_path) for c in _cycles(graph)] == [
        'pkg.a -> pkg.b (pkg/a.py:2) -> pkg.a (pkg/b.py:1)']
    (tmp_path / 'pkg/__init__.py').write_text('from pkg import a, d\nfrom pkg.b import B\n')
    graph = _import_graph(modules)
    assert _cycles(graph) == [['pkg', 'pkg.d', 'pkg'], ['pkg.a', 'pkg.b', 'pkg.a']]


def _is_entry_point(path: Path) -> bool:
    return any(path == ROOT / e or (ROOT / e) in path.parents for e in ENTRY_POINTS)


def test_core_never_imports_sim_policies_ros_nodes_or_the_commands():
    """Every core folder (all of `embodied_vision/` but the commands) stays below the mapped
    packages: readers of recorded data live in `embodied_vision.data`, not in `sim`."""
    modules = _module_files()
    upper = tuple(f'embodied_vision.{m}' for m in MAPPED) + tuple(
        '.'.join(Path(e).with_suffix('').parts) for e in ENTRY_POINTS)
    core = {name: path for name, path in modules.items()
            if path.is_relative_to(ROOT / 'embodied_vision') and not _is_entry_point(path)}
    assert all((ROOT / e).exists() for e in ENTRY_POINTS)  # the exemption stays current
    bad = [f'{path.relative_to(ROOT)}:{line} imports {target}'
           for name, path in core.items() for target, line in _import_targets(name, path, modules)
           if any(target == u or target.startswith(u + '.') for u in upper)]
    assert bad == []


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
