"""Train a `bc_mlp` policy on recorded episodes through a frozen encoder (R3M protocol).

    >>> data = bc_dataset(episodes, encoder, camera='front', size=(64, 64))
    >>> policy = make_policy('bc_mlp', embed_dim=encoder.embed_dim, state_dim=8, action_dim=4)
    >>> history = train_bc(policy, data, steps=2000)
    >>> policy.save_pretrained('runs/bc_pickplace')

An episode is a mapping of per-step arrays: `'<camera>/rgb'` uint8 `(T, H, W, 3)`,
`'proprio'` (or `'observation.state'`) `(T, state_dim)` and `'action'` `(T, action_dim)`,
or an `EpisodeReader.episode(i)` dict (`{'obs': {...}, 'actions': ...}`) from the recorded
HDF5 files: `bc_dataset(EpisodeReader('demos.hdf5'), encoder)`.
"""
from collections.abc import Iterable, Mapping
import functools
import logging
import os
from pathlib import Path
import tempfile

import numpy as np
import torch
from torch.utils.data import Dataset

from embodied_vision.data.images import to_batch
from embodied_vision.policies.base import ACTION, OBS_EMBEDDING, OBS_STATE
from embodied_vision.training.registry import register_task

__all__ = ['BCMLPTask', 'bc_dataset', 'embed_frames', 'train_bc']

_logger = logging.getLogger(__name__)


@torch.no_grad()
def embed_frames(encoder, frames: np.ndarray, size: tuple[int, int] | None = None,
                 batch_size: int = 64) -> torch.Tensor:
    """Embeddings `(N, D)` of uint8 RGB frames `(N, H, W, 3)` with a frozen encoder.

    `encoder` is an `Encoder` or a `deploy.compile` result; frames are resized and centre
    cropped to `size` exactly as `encoder_node` does (`data.images.to_batch`).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f'frames must be uint8 (N, H, W, 3), got {frames.dtype} '
                         f'{frames.shape}')
    chunks = []
    for start in range(0, len(frames), batch_size):
        batch = to_batch(list(frames[start:start + batch_size]), size)
        chunks.append(encoder(encoder.input_contract.from_pixels(batch)).float().cpu())
    return torch.cat(chunks)


def _episode_arrays(episode: Mapping, camera: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if 'obs' in episode:  # `embodied_vision.data.episodes.EpisodeReader.episode()` layout
        episode = {**episode['obs'], ACTION: episode['actions']}
    key = f'{camera}/rgb'
    state_key = 'proprio' if 'proprio' in episode else OBS_STATE
    missing = [k for k in (key, state_key, ACTION) if k not in episode]
    if missing:
        raise KeyError(f'episode lacks {missing}; it has {sorted(episode)}')
    frames, states, actions = (np.asarray(episode[k]) for k in (key, state_key, ACTION))
    if not len(frames) == len(states) == len(actions):
        raise ValueError(f'episode arrays differ in length: {key} {len(frames)}, '
                         f'{state_key} {len(states)}, action {len(actions)}')
    return frames, states, actions


def bc_dataset(episodes: Iterable[Mapping], encoder, camera: str = 'front',
               size: tuple[int, int] | None = None, batch_size: int = 64
               ) -> dict[str, torch.Tensor]:
    """`{OBS_EMBEDDING, OBS_STATE, ACTION}` tensors over every step of every episode."""
    from tqdm import tqdm
    embeddings, states, actions = [], [], []
    for episode in tqdm(episodes, desc='embedding episodes', unit='episode', disable=None):
        frames, state, action = _episode_arrays(episode, camera)
        embeddings.append(embed_frames(encoder, frames, size, batch_size))
        states.append(torch.as_tensor(state, dtype=torch.float32))
        actions.append(torch.as_tensor(action, dtype=torch.float32))
    if not embeddings:
        raise ValueError('no episodes given')
    return {OBS_EMBEDDING: torch.cat(embeddings), OBS_STATE: torch.cat(states),
            ACTION: torch.cat(actions)}


class _TensorDictDataset(Dataset):
    """Rows of equally long tensors, one dict per index (default_collate batches them)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self.tensors = dict(tensors)
        self.length = len(next(iter(self.tensors.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {k: v[index] for k, v in self.tensors.items()}


@register_task('bc_mlp')
class BCMLPTask:
    """A `bc_mlp` policy on embedded episodes, as a task of the shared `Trainer`.

    Args:
        episodes: HDF5 episode files (`embodied_vision.data.episodes`) of expert demos.
        encoder: frozen encoder name; `encoder_checkpoint` its weights.
        camera: camera whose frames are embedded; `image_size` the encoder input side.
        policy: `BCMLPConfig` fields (embed_dim and encoder_name are filled in).
        dataset: already embedded tensors (`bc_dataset` output) instead of `episodes`.
    """

    def __init__(self, episodes: Iterable[str] = (), encoder: str = 'r3m_resnet18',
                 encoder_checkpoint: str | None = None, camera: str = 'front',
                 image_size: int = 224, policy: Mapping | None = None,
                 dataset: Mapping[str, torch.Tensor] | None = None, model=None):
        from embodied_vision.policies.factory import make_policy
        if dataset is None:
            missing = [str(p) for p in episodes if not Path(p).is_file()]
            if missing:  # before the encoder is built
                raise FileNotFoundError(f'episode files not found: {missing}')
            from embodied_vision.data.episodes import EpisodeReader
            from embodied_vision.deploy.cache import weights_digest
            from embodied_vision.encoders import encoder_for_inference
            frozen = encoder_for_inference(encoder, checkpoint=encoder_checkpoint)
            dataset = {}
            for path in episodes:
                with EpisodeReader(path) as reader:
                    part = bc_dataset(reader, frozen, camera, (image_size, image_size))
                dataset = {k: torch.cat([dataset[k], v]) if k in dataset else v
                           for k, v in part.items()}
            if not dataset:
                raise ValueError('BCMLPTask needs episode files or a dataset')
            policy = {'encoder_name': encoder, 'camera': camera, 'image_size': image_size,
                      'encoder_checkpoint': str(Path(encoder_checkpoint).resolve())
                      if encoder_checkpoint else '',
                      'encoder_weights_sha256': weights_digest(frozen), **(policy or {})}
        if model is None:
            fields = {'embed_dim': dataset[OBS_EMBEDDING].shape[1],
                      'state_dim': dataset[OBS_STATE].shape[1] if OBS_STATE in dataset else 0,
                      'action_dim': dataset[ACTION].shape[1], **(policy or {})}
            model = make_policy('bc_mlp', **fields)
        self.model = model
        self.model.set_normalization(dataset.get(OBS_STATE), dataset[ACTION])
        self._dataset = _TensorDictDataset(dataset)

    def train_dataset(self) -> Dataset:
        return self._dataset

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        loss, logs = model(batch)
        return loss, {k: v for k, v in logs.items() if k != 'loss'}

    def export(self, model, out_dir: Path) -> Path:
        return model.save_pretrained(Path(out_dir) / 'policy')


def train_bc(policy, dataset: Mapping[str, torch.Tensor], steps: int = 2000,
             batch_size: int = 256, seed: int = 0, device: str = 'cpu',
             log_every: int = 100, progress: bool = False,
             out_dir: str | os.PathLike | None = None) -> list[dict]:
    """Train `policy` on embedded tensors with the shared `Trainer` (Adam, the policy's lr).

    Runs in `out_dir` (default: a temporary folder, removed afterwards) and returns the
    logged history: one `{'step', 'loss', ...}` per `log_every` steps and at the end.
    """
    from embodied_vision.training import MetricsLogger, Trainer, TrainerConfig
    if steps < 1 or batch_size < 1:
        raise ValueError(f'steps and batch_size must be >= 1, got {steps}, {batch_size}')
    if len(dataset[ACTION]) == 0:
        raise ValueError('the dataset is empty')
    task = BCMLPTask(dataset=dataset, model=policy)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out_dir) if out_dir else Path(scratch)
        config = TrainerConfig(out_dir=str(folder), max_steps=steps,
                               batch_size=min(batch_size, len(task.train_dataset())),
                               seed=seed, device=device, log_every=log_every,
                               checkpoint_every=0, progress=progress, resume=False)
        optimizer = functools.partial(torch.optim.Adam, lr=policy.config.lr,
                                      weight_decay=policy.config.weight_decay)
        Trainer(config, task, optimizer).fit()
        rows = MetricsLogger(folder / 'metrics.csv', resume_step=steps).rows
    policy.eval()
    return [{k: v for k, v in row.items() if k not in ('lr', 'samples_per_s')} for row in rows]
