"""bc_mlp: config validation, training reduces the loss, save/load, select_action shapes."""
import json

import numpy as np
import pytest
from safetensors.torch import save_file
import torch

from embodied_vision.checkpoints import CheckpointError
from embodied_vision.encoders import create_encoder
from embodied_vision.policies import (
    ACTION,
    OBS_EMBEDDING,
    OBS_EXPERT_ACTION,
    OBS_STATE,
    BCMLPConfig,
    BCMLPPolicy,
    ScriptedExpertPolicy,
    list_policies,
    load_policy,
    make_policy,
)
from embodied_vision.policies.bc.training_bc_mlp import BCMLPTask, bc_dataset, train_bc
from embodied_vision.policies.lang4sim2real import L4SBCPolicy


def _linear_dataset(n=512, embed_dim=16, state_dim=8, action_dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, embed_dim, generator=g)
    state = torch.randn(n, state_dim, generator=g) * 0.1 + 0.3
    w = torch.randn(embed_dim + state_dim, action_dim, generator=g) * 0.3
    action = torch.tanh(torch.cat([emb, state], 1) @ w)
    return {OBS_EMBEDDING: emb, OBS_STATE: state, ACTION: action}


def test_defaults_construct_and_bad_fields_are_named():
    assert isinstance(make_policy('bc_mlp'), BCMLPPolicy)
    assert set(list_policies()) == {'bc_mlp', 'l4s_bc', 'mbs', 'scripted_expert'}
    with pytest.raises(ValueError, match='embed_dim'):
        BCMLPConfig(embed_dim=0)
    with pytest.raises(ValueError, match='dropout'):
        BCMLPConfig(dropout=1.5)
    with pytest.raises(ValueError, match='known'):
        make_policy('bc_transformer')
    with pytest.raises(ValueError, match='unknown BCMLPConfig fields'):
        BCMLPConfig.from_dict({'embed_dim': 4, 'colour': 'red'})


def test_training_reduces_the_loss():
    data = _linear_dataset()
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=8, action_dim=4, lr=3e-3)
    history = train_bc(policy, data, steps=300, batch_size=128, log_every=50)
    twin = BCMLPPolicy(policy.config)  # untrained, with the same normalisation
    for name in ('state_mean', 'state_std', 'action_mean', 'action_std'):
        getattr(twin, name).copy_(getattr(policy, name))
    with torch.no_grad():
        initial, _ = twin.eval()(data)
        trained, _ = policy.eval()(data)
    assert [row['step'] for row in history] == [50, 100, 150, 200, 250, 300]
    assert history[-1]['loss'] < history[0]['loss']
    assert float(trained) < 0.25 * float(initial)  # on the whole dataset, not one batch
    loss, logs = policy(data)
    assert loss.ndim == 0 and set(logs) == {'loss'}


def test_the_optimiser_gets_the_former_parameters_and_learning_rate():
    """Figures in results/ were trained with these: one group of `model.parameters()` (the
    former `trainable_parameters`); Adam at the experiment's 1e-3, at the policy's own lr and
    weight decay in `train_bc`; no scheduler."""
    from hydra.utils import instantiate

    from embodied_vision.configs import compose_config
    from embodied_vision.training import parameter_groups
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=8, action_dim=4)
    task = BCMLPTask(dataset=_linear_dataset(), model=policy)
    cfg = compose_config('train', ['experiment=bc_mlp'])
    assert cfg.task.name == 'bc_mlp' and cfg.get('scheduler') is None
    optimizer = instantiate(cfg.optimizer)(parameter_groups(task, task.model))
    (group,) = optimizer.param_groups
    assert [id(p) for p in group['params']] == [id(p) for p in policy.parameters()]
    assert type(optimizer) is torch.optim.Adam and group['lr'] == 1e-3
    assert group['weight_decay'] == 0 and group['betas'] == (0.9, 0.999)


def test_save_load_round_trip(tmp_path):
    data = _linear_dataset()
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=8, action_dim=4, hidden_dims=(32,))
    train_bc(policy, data, steps=20, batch_size=64)
    policy.save_pretrained(tmp_path / 'bc')
    loaded = load_policy(tmp_path / 'bc')
    assert loaded.config == policy.config
    obs = {OBS_EMBEDDING: data[OBS_EMBEDDING][:5], OBS_STATE: data[OBS_STATE][:5]}
    torch.testing.assert_close(loaded.select_action(obs), policy.select_action(obs))
    with pytest.raises(FileNotFoundError, match='config.json'):
        load_policy(tmp_path / 'missing')


def test_a_policy_is_a_policy_artefact_and_keeps_its_encoder_licence(tmp_path):
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=8, action_dim=4, hidden_dims=(32,))
    policy.save_pretrained(tmp_path / 'bc')
    stored = json.loads((tmp_path / 'bc' / 'config.json').read_text())
    assert (stored['kind'], stored['name'], stored['non_commercial']) == ('policy', 'bc_mlp',
                                                                        False)
    with pytest.raises(CheckpointError, match="holds policy 'bc_mlp', not 'l4s_bc'"):
        L4SBCPolicy.from_pretrained(tmp_path / 'bc')
    # trained on features of non-commercial weights: the mark survives save and load
    policy.weights_license, policy.non_commercial = 'CC-BY-NC-SA-4.0', True
    policy.save_pretrained(tmp_path / 'nc')
    with pytest.warns(UserWarning, match='non-commercial'):
        loaded = load_policy(tmp_path / 'nc')
    assert json.loads((loaded.save_pretrained(tmp_path / 'again') / 'config.json').read_text()
                      )['non_commercial']


def test_a_policy_saved_before_the_artefact_format_still_loads(tmp_path):
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=8, action_dim=4, hidden_dims=(32,))
    old = tmp_path / 'old'
    old.mkdir()
    config = policy.config.to_dict()       # format_version 1: the config with its `type`
    state = {k: v.contiguous() for k, v in policy.state_dict().items()}
    save_file(state, str(old / 'model.safetensors'), metadata={'config': json.dumps(config)})
    (old / 'config.json').write_text(json.dumps(config))
    loaded = load_policy(old)
    assert loaded.config == policy.config
    for key, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_select_action_shapes_and_clip():
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=8, action_dim=4)
    policy.reset()
    single = policy.select_action({OBS_EMBEDDING: np.zeros(16, np.float32),
                                   OBS_STATE: np.zeros(8, np.float32)})
    assert single.shape == (4,)
    batch = policy.select_action({OBS_EMBEDDING: torch.randn(3, 16) * 100,
                                  OBS_STATE: torch.randn(3, 8)})
    assert batch.shape == (3, 4) and batch.abs().max() <= 1.0
    with pytest.raises(ValueError, match=r'\(16,\)'):
        policy.select_action({OBS_EMBEDDING: torch.zeros(15), OBS_STATE: torch.zeros(8)})
    with pytest.raises(KeyError, match='observation.state'):
        policy.select_action({OBS_EMBEDDING: torch.zeros(16)})
    images_only = make_policy('bc_mlp', embed_dim=16, state_dim=0, action_dim=2)
    assert images_only.select_action({OBS_EMBEDDING: torch.zeros(16)}).shape == (2,)


def test_bc_dataset_from_episodes_embeds_every_step():
    encoder = create_encoder('r3m_resnet18')
    rng = np.random.default_rng(0)
    episodes = [{'front/rgb': rng.integers(0, 256, (t, 40, 48, 3), dtype=np.uint8),
                 'proprio': rng.normal(size=(t, 8)).astype(np.float32),
                 'action': rng.uniform(-1, 1, (t, 4)).astype(np.float32)} for t in (3, 2)]
    data = bc_dataset(episodes, encoder, size=(64, 64), batch_size=2)
    assert data[OBS_EMBEDDING].shape == (5, 512) and data[ACTION].shape == (5, 4)
    reader_layout = [{'obs': {k: v for k, v in e.items() if k != 'action'},
                      'actions': e['action']} for e in episodes]
    again = bc_dataset(reader_layout, encoder, size=(64, 64), batch_size=2)
    torch.testing.assert_close(again[OBS_EMBEDDING], data[OBS_EMBEDDING])
    with pytest.raises(KeyError, match='front/rgb'):
        bc_dataset([{'proprio': np.zeros((1, 8)), 'action': np.zeros((1, 4))}], encoder)


def test_scripted_expert_reads_the_privileged_action():
    policy = make_policy('scripted_expert')
    assert isinstance(policy, ScriptedExpertPolicy)
    action = policy.select_action({OBS_EXPERT_ACTION: np.array([0.1, 0.2, -0.3, 1.0])})
    torch.testing.assert_close(action, torch.tensor([0.1, 0.2, -0.3, 1.0]))
    with pytest.raises(KeyError, match='expert'):
        policy.select_action({})
    with pytest.raises(TypeError, match='not trainable'):
        policy.forward({})


def test_bc_experiment_trains_from_recorded_episodes(tmp_path):
    pytest.importorskip('mujoco')
    from embodied_vision.cli import main
    from embodied_vision.policies import load_policy
    from embodied_vision.sim.collect import main as collect
    demos = tmp_path / 'demos.hdf5'
    assert collect(['task=Reach', 'n=2', 'size=32', 'cameras=[front]', 'depth=false',
                    'progress=false', f'out={demos}']) == 0
    from embodied_vision.checkpoints import save_encoder
    from embodied_vision.policies.bc.processor_bc_mlp import BCMLPProcessor
    torch.manual_seed(5)
    weights = save_encoder(create_encoder('r3m_resnet18'), tmp_path / 'encoder')
    run = tmp_path / 'run'
    assert main(['train', 'experiment=bc_mlp', f'task.episodes=[{demos}]',
                 f'task.encoder_checkpoint={weights}', 'task.image_size=32',
                 'trainer.max_steps=20', 'trainer.batch_size=8', 'trainer.device=cpu',
                 'trainer.progress=false', f'hydra.run.dir={run}']) == 0
    policy = load_policy(run / 'policy')
    assert policy.config.embed_dim == 512 and policy.config.image_size == 32
    action = policy.select_action({OBS_EMBEDDING: torch.zeros(512), OBS_STATE: torch.zeros(8)})
    assert action.shape == (4,)
    # The saved policy carries its encoder: rebuilt from the recorded path, checked by digest.
    assert policy.config.encoder_checkpoint == str(weights.resolve())
    assert BCMLPProcessor.frozen_encoder(policy).backend in ('onnxruntime', 'eager')
    other = save_encoder(create_encoder('r3m_resnet18'), tmp_path / 'other')
    with pytest.raises(ValueError, match='trained on embeddings of weights'):
        BCMLPProcessor.frozen_encoder(policy, checkpoint=str(other))
    weights.rename(tmp_path / 'moved')
    with pytest.raises(FileNotFoundError, match='recorded by the policy'):
        BCMLPProcessor.frozen_encoder(policy)


def test_the_evaluation_processor_feeds_croco_imagenet_normalised_frames(tmp_path):
    import copy

    from embodied_vision.checkpoints import save_encoder
    from embodied_vision.data.images import to_batch
    from embodied_vision.deploy.cache import weights_digest
    from embodied_vision.policies import OBS_IMAGE
    from embodied_vision.policies.processor import make_processor
    from tests.numerics import assert_fp32_close
    torch.manual_seed(0)
    vit = create_encoder('croco_vit_base', img_size=32, enc_embed_dim=16, enc_depth=2,
                         enc_num_heads=2)
    export = save_encoder(vit, tmp_path / 'croco')
    policy = make_policy('bc_mlp', embed_dim=16, state_dim=0, action_dim=4,
                         encoder_name='croco_vit_base', encoder_checkpoint=str(export),
                         encoder_weights_sha256=weights_digest(vit), image_size=32)
    encoder = policy.processor_class.frozen_encoder(policy)
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    got = make_processor(policy, encoder=encoder)({OBS_IMAGE: frame})[OBS_EMBEDDING]
    pixels = to_batch([frame], (32, 32)).double() / 255
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    with torch.inference_mode():
        exact = copy.deepcopy(vit).double()((pixels - mean) / std)[0]
    assert_fp32_close(got, exact, vit, what='processor vs normalised float64')


def test_end_to_end_bc_exports_an_encoder_and_a_policy_that_finds_it(tmp_path):
    pytest.importorskip('mujoco')
    from embodied_vision.data.images import to_batch
    from embodied_vision.encoders import load_encoder
    from embodied_vision.policies import OBS_IMAGE
    from embodied_vision.policies.processor import make_processor
    from tests.policies.e2e_run import train_tiny_e2e
    run = train_tiny_e2e(tmp_path, size=32, steps=3)
    moved = tmp_path / 'moved'
    run.rename(moved)  # the policy finds its encoder relative to itself
    policy = load_policy(moved / 'policy')
    assert policy.config.encoder_checkpoint == '../encoder'
    assert policy.config.encoder_name == 'lang4sim2real_resnet18'
    encoder = policy.processor_class.frozen_encoder(policy)
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    got = make_processor(policy, encoder=encoder)(
        {OBS_IMAGE: frame, OBS_STATE: np.zeros(8, np.float32)})[OBS_EMBEDDING]
    trained = load_encoder(moved / 'encoder')
    with torch.inference_mode():
        expected = trained(to_batch([frame], (32, 32)))[0]
    from tests.numerics import assert_fp32_close
    assert got.shape == (128,)
    assert_fp32_close(got, expected, trained, what='processor (compiled) vs trained encoder')
