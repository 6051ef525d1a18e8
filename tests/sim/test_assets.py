"""Every scene compiles, steps 1 s under seeded control noise without MuJoCo warnings, and has
the named components the envs rely on (Menagerie model_test style)."""
from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip('mujoco')

from embodied_vision.sim.base import ASSETS_DIR  # noqa: E402
from embodied_vision.sim.cameras import CAMERA_NAMES  # noqa: E402
from embodied_vision.sim.tasks import TASKS  # noqa: E402

SCENES = sorted(Path(ASSETS_DIR).glob('scene*.xml'))


def test_every_task_has_a_scene():
    names = {p.name for p in SCENES}
    assert {cls.scene for cls in TASKS.values()} <= names


@pytest.mark.parametrize('scene', SCENES, ids=lambda p: p.stem)
def test_scene_steps_one_second_without_warnings(scene):
    model = mujoco.MjModel.from_xml_path(str(scene))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    lo, hi = model.actuator_ctrlrange.T
    for _ in range(round(1.0 / model.opt.timestep)):
        data.ctrl[:] = rng.uniform(lo, hi)
        data.mocap_pos[0] += rng.normal(0, 1e-4, 3)
        mujoco.mj_step(model, data)
    assert [w.number for w in data.warning] == [0] * len(data.warning)
    assert np.all(np.isfinite(data.qpos))


@pytest.mark.parametrize('scene', SCENES, ids=lambda p: p.stem)
def test_named_components(scene):
    model = mujoco.MjModel.from_xml_path(str(scene))
    for cam in CAMERA_NAMES:
        assert model.camera(cam).id >= 0
    for body in ('hand', 'ee_mocap', 'finger_left', 'finger_right', 'table'):
        assert model.body(body).id >= 0
    assert model.site('ee').id >= 0
    assert model.nu == 2
