"""Manipulate-by-Seeing: geometry of actions, the loss, the planner and training on sim videos."""
import copy
import math

import numpy as np
import pytest
import torch

from embodied_vision.policies.mbs import (
    ActionPool,
    GripperClassifier,
    MbSConfig,
    MbSModel,
    MbSPolicy,
    mbs_loss,
    tool_frame_directions,
)
from tests.learning import assert_learned
from tests.numerics import fp32_tolerance

TINY = dict(image_size=32, resize_to=36, proj_dim=16, dynamics_hidden=(), color_jitter=0.0)


def _yaw_quat(angle):
    return np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])


def test_tool_frame_directions_rotate_into_the_tool_frame():
    positions = np.array([[0, 0, 0], [0.01, 0, 0], [0.02, 0, 0], [0.02, 0, 0.0001]], float)
    quats = np.stack([_yaw_quat(math.pi / 2)] * 4)  # tool x axis = world y axis
    directions, length = tool_frame_directions(positions, quats, stride=1)
    np.testing.assert_allclose(directions[0], [0, -1, 0], atol=1e-6)  # world +x = tool -y
    np.testing.assert_allclose(length, [0.01, 0.01, 0.0001], atol=1e-9)
    assert tool_frame_directions(positions, quats, stride=4)[0].shape == (0, 3)


def test_action_pool_drops_short_motions_and_finds_nearest():
    positions = np.array([[0, 0, 0], [0.01, 0, 0], [0.01, 0.001, 0], [0.01, 0.02, 0]], float)
    quats = np.stack([_yaw_quat(0.0)] * 4)
    pool = ActionPool.from_trajectories([(positions, quats)], stride=1, min_translation=0.005)
    assert len(pool) == 2  # the 1 mm step is not an action
    nearest = pool.nearest(torch.tensor([[0.9, 0.1, 0.0], [0.0, 1.0, 0.1]]))
    assert nearest.tolist() == [0, 1]
    with pytest.raises(ValueError, match='M >= 1'):
        ActionPool(torch.zeros(0, 3))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match='resize_to'):
        MbSConfig(image_size=224, resize_to=200)
    with pytest.raises(ValueError, match='temperature'):
        MbSConfig(temperature=0.0)
    with pytest.raises(ValueError, match='gripper_release'):
        MbSConfig(gripper_threshold=0.8, gripper_release=0.9)


def _constructed_policy():
    """Dynamics F(z, a) = normalise(z + B a) with a known B: the best action is computable."""
    torch.manual_seed(0)
    directions = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]])
    config = MbSConfig(**TINY, encoder='r3m_resnet18')
    policy = MbSPolicy(config, ActionPool(directions), max_delta=0.02)
    linear = policy.model.dynamics[0]
    mixing = torch.randn(16, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.cat([torch.eye(16), mixing], dim=1))
        linear.bias.zero_()
    return policy, directions, mixing


@pytest.mark.parametrize('best', [0, 2, 4])
def test_planner_picks_the_known_best_action(best):
    policy, directions, mixing = _constructed_policy()
    frame = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        z = policy.model.represent(policy._frame(frame))
        policy._goal = torch.nn.functional.normalize(z + directions[best] @ mixing.T, dim=-1)
    index, scores, current = policy.plan(frame)
    assert index == best and scores.shape == (5,) and current < 1.0
    # The chosen tool-frame direction is rotated to the world and split into env steps.
    action = policy.select_action({'image': frame, 'tool_quat': _yaw_quat(math.pi / 2)})
    world = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]) @ directions[best].numpy()
    assert policy.steps_per_move == 2
    np.testing.assert_allclose(action[:3], world, atol=1e-6)  # 4 cm = two 2 cm steps
    assert action[3] == -1.0
    second = policy.select_action({'image': frame, 'tool_quat': _yaw_quat(0.0)})
    np.testing.assert_allclose(second, action)  # served from the queue
    policy.reset()
    with pytest.raises(RuntimeError, match='set_goal'):
        MbSPolicy(policy.config, ActionPool(directions)).plan(frame)


@pytest.mark.parametrize('release, hold, closed, moved', [
    (None, 0, [0, 1, 0, 0, 1], [2, 2, 2, 2, 2]),  # official: closed iff p > 0.8
    (0.5, 0, [0, 1, 1, 0, 1], [2, 2, 2, 2, 2]),   # stays closed until p < 0.5
    (0.5, 3, [0, 1, 1, 0, 1], [2, 0, 2, 0, 0]),   # and stands still 3 steps while it changes
])
def test_gripper_hysteresis_and_holding_still(release, hold, closed, moved):
    policy, _, _ = _constructed_policy()
    policy.config.gripper_release, policy.config.grip_hold_steps = release, hold
    policy.gripper = GripperClassifier('lang4sim2real_resnet18')
    torch.nn.init.zeros_(policy.gripper.head.weight)  # the probability is the bias's sigmoid
    frame = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    policy.set_goal(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    observation = {'image': frame, 'tool_quat': _yaw_quat(0.0)}
    grips, moves = [], []
    for probability in (0.1, 0.9, 0.6, 0.3, 0.9):
        with torch.no_grad():
            policy.gripper.head.bias.fill_(math.log(probability / (1 - probability)))
        actions = [policy.select_action(observation)]  # one plan: served until the queue empties
        while policy._queue:
            actions.append(policy.select_action(observation))
        assert all(np.array_equal(a, actions[0]) for a in actions)
        grips.append(int(actions[0][3] > 0))
        moves.append(len(actions) if np.abs(actions[0][:3]).sum() > 0 else 0)
        assert moves[-1] or len(actions) == hold
    assert grips == closed and moves == moved
    policy.reset()  # a new episode starts open
    with torch.no_grad():
        policy.gripper.head.bias.fill_(math.log(0.6 / 0.4))
    assert policy.select_action(observation)[3] == -1.0


def test_loss_matches_its_definition():
    policy, directions, _ = _constructed_policy()
    model: MbSModel = policy.model
    frames = torch.randint(0, 256, (3, 2, 3, 32, 32), dtype=torch.uint8).float()
    actions = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.1, 0.95]])
    loss, logs = mbs_loss(model, frames[0], frames[1], frames[2], actions, ActionPool(directions))
    with torch.no_grad():
        z = model.represent(torch.cat(list(frames)))
        z_t, z_next, z_goal = z.chunk(3)
        logits = model.pool_scores(z_t, directions, z_goal)
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 4])) + \
            torch.nn.functional.mse_loss(model.predict(z_t, actions), z_next)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(logs) == {'loss_dist', 'loss_dyn', 'direction_cos', 'top1'}


def test_farthest_point_subset_covers_the_pool():
    g = torch.Generator().manual_seed(0)
    cluster = torch.nn.functional.normalize(
        torch.tensor([1.0, 0.0, 0.0]) + 0.01 * torch.randn(200, 3, generator=g), dim=-1)
    outliers = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    pool = ActionPool(torch.cat([cluster, outliers]))
    subset = pool.farthest_point_subset(4)
    assert len(subset) == 4
    for direction in outliers:  # every isolated direction survives, the cluster keeps one
        assert torch.isclose(subset.actions, direction).all(dim=1).any()
    assert pool.farthest_point_subset(500) is pool
    with pytest.raises(ValueError, match='max_pool_size'):
        MbSConfig(max_pool_size=0)


def test_pool_scores_equal_the_dynamics_on_every_pair():
    policy, directions, _ = _constructed_policy()
    model: MbSModel = policy.model
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(3, model.config.proj_dim), dim=-1)
    z_goal = torch.nn.functional.normalize(torch.randn(3, model.config.proj_dim), dim=-1)
    with torch.no_grad():
        scores = model.pool_scores(z, directions, z_goal)
        dynamics = copy.deepcopy(model.dynamics).double()
        # The split first layer + broadcast and the layer on each [z; a] sum in other orders.
        # Size: the dynamics layer (fan-in D + A), then the dot product with the goal; scores
        # are cosines of unit vectors, so the rounding is relative to 1, not to the score.
        bound = fp32_tolerance(1.0, layers=2, fan_in=model.dynamics[0].in_features, runs=1)
        for b in range(3):
            states = z[b].expand(len(directions), -1)
            per_pair = model.predict(states, directions) @ z_goal[b]
            pairs = torch.cat([states, directions], dim=-1).double()
            exact = torch.nn.functional.normalize(dynamics(pairs), dim=-1) @ z_goal[b].double()
            assert (scores[b] - exact).abs().max() <= bound, 'pool scores vs float64'
            assert (per_pair - exact).abs().max() <= bound, 'per-pair dynamics vs float64'
            assert (scores[b] - per_pair).abs().max() <= 2 * bound, 'pool vs per-pair scores'


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    pytest.importorskip('mujoco')
    from embodied_vision.sim.collect import main as collect
    path = tmp_path_factory.mktemp('mbs') / 'videos.hdf5'
    assert collect(['task=PickPlace', 'n=4', 'size=32', 'cameras=[wrist]', 'depth=false',
                    'expert_noise=0.3', 'progress=false', f'out={path}']) == 0
    return path


def test_training_on_sim_videos_lowers_the_loss_and_exports_a_planner(videos, tmp_path):
    from embodied_vision.policies.mbs.training_mbs import MbSTask
    from embodied_vision.training import Trainer, TrainerConfig
    torch.manual_seed(0)  # the same initialisation, whatever ran before
    task = MbSTask([videos], val_fraction=0.25, frame_stride=2, train_gripper=False, **TINY)
    assert len(task.pool) > 20 and len(task.train_dataset()) > 20

    def held_out():  # the same goal draws (step 0) before and after training
        with torch.no_grad():
            return task.evaluate(task.model.eval(), step=0)

    untrained = held_out()
    config = TrainerConfig(out_dir=str(tmp_path), max_steps=32, batch_size=8, device='cpu',
                           progress=False, log_every=2, checkpoint_every=0)
    summary = Trainer(config, task, lambda p: torch.optim.Adam(p, lr=1e-3)).fit()
    trained = held_out()
    assert_learned(trained['loss_dyn'] / untrained['loss_dyn'], 0.5, 'held-out dynamics loss')
    assert 'eval/direction_cos' in summary['final']
    policy = MbSPolicy.from_pretrained(tmp_path / 'policy')
    sample = task.val[0]
    policy.set_goal(sample['goal'])
    action = policy.select_action({'image': sample['obs'], 'tool_quat': _yaw_quat(0.0)})
    assert action.shape == (4,) and np.all(np.abs(action) <= 1.0)
    # Identical planner scores after the save/load round trip.
    task.model.eval()
    exported = MbSPolicy(task.config, task.pool)
    exported.model.load_state_dict(task.model.mbs.state_dict())
    exported.set_goal(sample['goal'])
    torch.testing.assert_close(exported.plan(sample['obs'])[1], policy.plan(sample['obs'])[1])


def test_the_optimiser_gets_the_former_parameters_and_learning_rate(videos):
    """Figures in results/ were trained with these: one group of every trainable parameter
    (the trainer's default, as before), Adam at 1e-3, no scheduler."""
    from hydra.utils import instantiate

    from embodied_vision.configs import compose_config
    from embodied_vision.policies.mbs.training_mbs import MbSTask
    from embodied_vision.training import parameter_groups
    cfg = compose_config('train', ['experiment=mbs_pickplace'])
    assert cfg.task.name == 'mbs' and cfg.get('scheduler') is None
    task = MbSTask([videos], val_fraction=0.25, frame_stride=2, train_gripper=True, **TINY)
    optimizer = instantiate(cfg.optimizer)(parameter_groups(task, task.model))
    (group,) = optimizer.param_groups
    assert [id(p) for p in group['params']] == [
        id(p) for p in task.model.parameters() if p.requires_grad]
    assert any(p is next(task.model.gripper.parameters()) for p in group['params'])
    assert type(optimizer) is torch.optim.Adam and group['lr'] == 1e-3
    assert group['weight_decay'] == 0 and group['betas'] == (0.9, 0.999)


@pytest.mark.parametrize('shared', [False, True])
def test_shared_crop_keeps_the_frames_of_a_sample_aligned(videos, shared):
    from embodied_vision.policies.mbs.data_mbs import MbSVideoDataset, load_videos
    config = MbSConfig(image_size=24, resize_to=32, color_jitter=0.0, shared_crop=shared)
    dataset = MbSVideoDataset(load_videos([videos], 'wrist'), config)
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    crops = [dataset.views([frame] * 3) for _ in range(4)]
    aligned = [all(torch.equal(views[0], view) for view in views[1:]) for views in crops]
    assert all(aligned) if shared else not any(aligned)
    assert not all(torch.equal(crops[0][0], views[0]) for views in crops[1:])  # still random


def test_factory_loads_a_saved_planner_and_refuses_to_make_one(tmp_path):
    from embodied_vision.policies import load_policy, make_policy
    policy, _, _ = _constructed_policy()
    policy.save_pretrained(tmp_path / 'mbs')
    loaded = load_policy(tmp_path / 'mbs')
    assert isinstance(loaded, MbSPolicy) and len(loaded.pool) == 5
    torch.testing.assert_close(loaded.model.dynamics[0].weight, policy.model.dynamics[0].weight)
    with pytest.raises(ValueError, match='experiment=mbs_pickplace'):
        make_policy('mbs')
