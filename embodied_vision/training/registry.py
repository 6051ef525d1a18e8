"""Training tasks by name: `register_task`, `create_task`, `get_task`, `list_tasks`.

Naming rule (one guess for a new family): the task `<name>` is the class decorated with
`@register_task('<name>')` in the module `training_<name>.py`, placed next to what it trains,
and called `<Name>Task`:

    embodied_vision/pretrain/training_<family>_pretrain.py     a pretraining objective
    embodied_vision/downstream/training_<family>_<head>.py     a downstream head
    embodied_vision/policies/<family>/training_<policy>.py     a policy (its policy type)

e.g. `croco_pretrain` is `CroCoPretrainTask` in `pretrain/training_croco_pretrain.py`, and
NeRF-MAE's are `nerf_mae_pretrain` and `nerf_mae_<head>`. Hydra experiments name a task as
`task: {name: croco_pretrain, ...}`; `train.yaml` routes `task` through `create_task`.

Task modules are found by file name in `TASK_PACKAGES` and imported only when their task is
asked for, as hydra resolves a `_target_`: core never imports `embodied_vision.policies`
statically, and a task whose optional dependencies are missing leaves the others usable.
"""
from collections.abc import Callable
import difflib
import importlib
import importlib.util
import inspect
import pkgutil
import re

__all__ = ['TASK_PACKAGES', 'create_task', 'get_task', 'list_tasks', 'register_task',
           'task_module']

TASK_PACKAGES = ('embodied_vision.pretrain', 'embodied_vision.downstream',
                 'embodied_vision.policies')
_PREFIX = 'training_'
_NAME = re.compile(r'[a-z][a-z0-9_]*')
_TASKS: dict[str, type] = {}


def register_task(name: str) -> Callable[[type], type]:
    """Class decorator: make the task class creatable as `create_task(name, ...)`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f'task name {name!r} must be lower_snake_case (e.g. croco_pretrain)')

    def decorate(cls: type) -> type:
        known = _TASKS.get(name)
        if known is not None and _qualname(known) != _qualname(cls):
            raise ValueError(f'task {name!r} is already registered by {_qualname(known)}; '
                             f'{_qualname(cls)} needs another name')
        _TASKS[name] = cls
        return cls

    return decorate


def _qualname(cls: type) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'


def _task_modules() -> dict[str, str]:
    """`{task name: module path}` of every `training_<name>.py` under `TASK_PACKAGES`, found
    from file names alone (nothing is imported)."""
    found: dict[str, str] = {}

    def walk(package: str, locations) -> None:
        for info in pkgutil.iter_modules(locations):
            module = f'{package}.{info.name}'
            if info.ispkg:
                walk(module, [f'{location}/{info.name}' for location in locations])
            elif info.name.startswith(_PREFIX):
                name = info.name[len(_PREFIX):]
                if name in found:
                    raise ValueError(f'two modules define training task {name!r}: '
                                     f'{found[name]} and {module}; rename one')
                found[name] = module

    for package in TASK_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            walk(package, list(spec.submodule_search_locations))
    return found


def list_tasks(pattern: str = '') -> list[str]:
    """Names of the training tasks (found by module name, or registered) containing
    `pattern`."""
    return sorted(n for n in set(_task_modules()) | set(_TASKS) if pattern in n)


def task_module(name: str) -> str:
    """The dotted path of the module that defines task `name`."""
    if name in _TASKS:
        return _TASKS[name].__module__
    modules = _task_modules()
    if name not in modules:
        known = sorted(set(modules) | set(_TASKS))
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f' Did you mean {close}?' if close else ''
        raise ValueError(f'unknown training task {name!r}.{hint} Known: {known}. A task '
                         f'<name> is @register_task("<name>") in a module training_<name>.py '
                         f'under {", ".join(TASK_PACKAGES)}')
    return modules[name]


def get_task(name: str) -> type:
    """The class of task `name`, importing its module on first use."""
    if name not in _TASKS:
        module = task_module(name)
        importlib.import_module(module)
        if name not in _TASKS:
            raise ValueError(f'{module} registers no task {name!r}: decorate its task class '
                             f'with @register_task({name!r})')
    return _TASKS[name]


def create_task(name: str, **kwargs):
    """An instance of task `name` built with `kwargs` (an experiment's `task` fields).

    Arguments the task does not take, and required ones missing, raise `TypeError` naming
    the task, the arguments and the ones it takes.
    """
    cls = get_task(name)
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            hints = {k: difflib.get_close_matches(k, list(parameters), n=1) for k in unknown}
            hint = ''.join(f' {k!r}: did you mean {v[0]!r}?' for k, v in hints.items() if v)
            raise TypeError(f'training task {name!r} ({_qualname(cls)}) takes no argument '
                            f'{unknown}.{hint} It takes {list(parameters)}')
    missing = [k for k, p in parameters.items() if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in kwargs]
    if missing:
        raise TypeError(f'training task {name!r} ({_qualname(cls)}) needs {missing} (e.g. '
                        f'task.{missing[0]}=...)')
    return cls(**kwargs)
