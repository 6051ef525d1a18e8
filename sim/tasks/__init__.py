"""Tabletop tasks: a registration table from task name to `Task` class."""
from embodied_vision.sim.tasks.base import Task
from embodied_vision.sim.tasks.pick_place import PickPlace
from embodied_vision.sim.tasks.push import Push
from embodied_vision.sim.tasks.reach import Reach
from embodied_vision.sim.tasks.stack import Stack
from embodied_vision.sim.tasks.two_step import TwoStepPickPlace

__all__ = ['TASKS', 'Task', 'make_task']

#: Task name -> class; gymnasium ids are `embodied_vision/<name>-v0`.
TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Reach, Push, PickPlace, Stack, TwoStepPickPlace)
}


def make_task(name: str, **options) -> Task:
    """Instantiate task `name` with its options; unknown names list the valid ones."""
    if name not in TASKS:
        raise ValueError(f'unknown task {name!r}; valid tasks: {sorted(TASKS)}')
    return TASKS[name](**options)
