"""`bc_mlp_e2e`: an image encoder and a `bc_mlp` head trained end to end by behaviour cloning.

The learned policy of `make demo` (`make train-demo-policy`). The encoder (any registered
image encoder; by default Lang4Sim2Real's narrow ResNet-18 without FiLM conditioning, 1.1 M
parameters) embeds the camera frame, the `bc_mlp` head (BatchNorm on the embedding, MLP with
proprioception, MSE on normalised actions; R3M's evaluation head) maps it to the action.
Frames are resized and centre-cropped once at load exactly as `encoder_node` does
(`data.images.to_batch`) and shifted by pad-and-random-crop while training (DrQ; pad 4 as
Lang4Sim2Real's BC).

Export writes the two halves the ROS graph runs apart: `encoder/` (our checkpoint format, for
`encoder_node`'s `checkpoint_path`) and `policy/`, a `bc_mlp` whose config names the encoder,
points to `../encoder` (relative to the policy folder) and records the encoder weights'
digest, so `evaluate` and `policy_node` rebuild and check the same encoder.

    embodied-vision train experiment=bc_mlp_e2e task.episodes=[reach.hdf5]
"""
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from embodied_vision.policies.base import ACTION, OBS_EMBEDDING, OBS_IMAGE, OBS_STATE
from embodied_vision.policies.bc.training_bc_mlp import _episode_arrays, _TensorDictDataset
from embodied_vision.training.registry import register_task

__all__ = ['EncoderPolicy', 'BCMLPE2ETask']

#: Where an exported policy finds its encoder, relative to the policy folder.
ENCODER_FROM_POLICY = '../encoder'


class EncoderPolicy(nn.Module):
    """`policy(encoder(frames))`: the encoder's embedding is the bc_mlp's `OBS_EMBEDDING`."""

    def __init__(self, encoder: nn.Module, policy: nn.Module):
        super().__init__()
        self.encoder, self.policy = encoder, policy

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)` 0-255 frames -> `(B, embed_dim)` (the encoder's input contract)."""
        return self.encoder(self.encoder.input_contract.from_pixels(frames))

    def forward(self, batch: Mapping) -> tuple[torch.Tensor, dict]:
        inputs = {OBS_EMBEDDING: self.embed(batch[OBS_IMAGE]), ACTION: batch[ACTION]}
        if OBS_STATE in batch:
            inputs[OBS_STATE] = batch[OBS_STATE]
        return self.policy(inputs)


def load_frames(episodes: Iterable[str], camera: str, size: int) -> dict[str, torch.Tensor]:
    """`{OBS_IMAGE: uint8 (N, 3, size, size), OBS_STATE, ACTION}` over every step of the
    episode files, frames resized and centre-cropped as `encoder_node` does."""
    from tqdm import tqdm

    from embodied_vision.data.episodes import EpisodeReader
    from embodied_vision.data.images import to_batch
    parts: dict[str, list[torch.Tensor]] = {OBS_IMAGE: [], OBS_STATE: [], ACTION: []}
    for path in episodes:
        with EpisodeReader(path) as reader:
            for episode in tqdm(reader, desc=f'loading {Path(path).name}', unit='episode',
                                disable=None, leave=False):
                frames, states, actions = _episode_arrays(episode, camera)
                parts[OBS_IMAGE].append(to_batch(list(frames), (size, size)))
                parts[OBS_STATE].append(torch.as_tensor(states, dtype=torch.float32))
                parts[ACTION].append(torch.as_tensor(actions, dtype=torch.float32))
    if not parts[ACTION]:
        raise ValueError('no episodes given')
    return {key: torch.cat(values) for key, values in parts.items()}


@register_task('bc_mlp_e2e')
class BCMLPE2ETask:
    """An encoder + `bc_mlp` head trained end to end on expert episodes.

    Args:
        episodes: HDF5 episode files (`embodied-vision collect`).
        encoder: registered image encoder, `encoder_kwargs` its overrides,
            `encoder_checkpoint` its starting weights (None: random init, trained here).
        camera: the camera whose frames the policy sees; `image_size` the encoder input side.
        shift_pad: pad of the pad-and-random-crop shift augmentation (0 = none).
        use_state: feed proprioception to the head.
        policy: `BCMLPConfig` fields (embed_dim, state/action dims and provenance are filled).
    """

    def __init__(self, episodes: Iterable[str], encoder: str = 'lang4sim2real_resnet18',
                 encoder_kwargs: Mapping | None = None, encoder_checkpoint: str | None = None,
                 camera: str = 'front', image_size: int = 64, shift_pad: int = 4,
                 use_state: bool = True, policy: Mapping | None = None):
        from embodied_vision.encoders import create_encoder
        from embodied_vision.policies.factory import make_policy
        episodes = list(episodes)
        missing = [str(p) for p in episodes if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f'episode files not found: {missing}')
        if shift_pad < 0:
            raise ValueError(f'shift_pad must be >= 0, got {shift_pad}')
        self.shift_pad = int(shift_pad)
        model_encoder = create_encoder(encoder, checkpoint=encoder_checkpoint,
                                       **dict(encoder_kwargs or {})).train()
        if model_encoder.input_contract.modality != 'image':
            raise ValueError(f'{encoder} takes {model_encoder.input_contract.modality} input; '
                             'bc_mlp_e2e embeds camera frames')
        data = load_frames(episodes, camera, image_size)
        if not use_state:
            del data[OBS_STATE]
        head = make_policy('bc_mlp', **{
            'embed_dim': model_encoder.embed_dim,
            'state_dim': data[OBS_STATE].shape[1] if use_state else 0,
            'action_dim': data[ACTION].shape[1], 'encoder_name': encoder, 'camera': camera,
            'image_size': image_size, **dict(policy or {})})
        head.set_normalization(data.get(OBS_STATE), data[ACTION])
        self.model = EncoderPolicy(model_encoder, head)
        self._dataset = _TensorDictDataset(data)

    def train_dataset(self) -> Dataset:
        return self._dataset

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        from embodied_vision.pretrain.augment import pad_random_crop
        if self.shift_pad:
            batch = {**batch, OBS_IMAGE: pad_random_crop(batch[OBS_IMAGE], self.shift_pad)}
        loss, logs = model(batch)
        return loss, {k: v for k, v in logs.items() if k != 'loss'}

    def export(self, model, out_dir: Path) -> Path:
        """`out_dir/encoder` and `out_dir/policy` (see the module docstring)."""
        from embodied_vision.checkpoints import save_encoder
        from embodied_vision.deploy.cache import weights_digest
        model = getattr(model, 'module', model)
        encoder, head = model.encoder.eval(), model.policy.eval()
        save_encoder(encoder, Path(out_dir) / 'encoder')
        head.config.encoder_name = encoder.name
        head.config.encoder_checkpoint = ENCODER_FROM_POLICY
        head.config.encoder_weights_sha256 = weights_digest(encoder)
        return head.save_pretrained(Path(out_dir) / 'policy')
