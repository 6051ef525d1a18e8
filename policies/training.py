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
import logging

import numpy as np
import torch

from embodied_vision.data.images import to_batch
from embodied_vision.policies.base import ACTION, OBS_EMBEDDING, OBS_STATE

__all__ = ['bc_dataset', 'embed_frames', 'train_bc']

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
        chunks.append(encoder(batch).float().cpu())
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
    embeddings, states, actions = [], [], []
    for episode in episodes:
        frames, state, action = _episode_arrays(episode, camera)
        embeddings.append(embed_frames(encoder, frames, size, batch_size))
        states.append(torch.as_tensor(state, dtype=torch.float32))
        actions.append(torch.as_tensor(action, dtype=torch.float32))
    if not embeddings:
        raise ValueError('no episodes given')
    return {OBS_EMBEDDING: torch.cat(embeddings), OBS_STATE: torch.cat(states),
            ACTION: torch.cat(actions)}


def train_bc(policy, dataset: Mapping[str, torch.Tensor], steps: int = 2000,
             batch_size: int = 256, seed: int = 0, device: str = 'cpu',
             log_every: int = 100, progress: bool = False) -> list[dict]:
    """Minibatch Adam on `policy.forward`; sets the normalisation stats first.

    Returns the logged history (`step`, `loss`) every `log_every` steps and at the end.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f'steps and batch_size must be >= 1, got {steps}, {batch_size}')
    n = len(dataset[ACTION])
    if n == 0:
        raise ValueError('the dataset is empty')
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy.set_normalization(dataset.get(OBS_STATE), dataset[ACTION])
    policy.to(device).train()
    optimizer = torch.optim.Adam(policy.parameters(), lr=policy.config.lr,
                                 weight_decay=policy.config.weight_decay)
    history, iterator = [], range(1, steps + 1)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc='train bc_mlp')
    for step in iterator:
        index = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        batch = {k: v[index].to(device) for k, v in dataset.items()}
        loss, logs = policy(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            history.append({'step': step, **logs})
            _logger.info('step %d loss %.5f', step, logs['loss'])
    policy.eval()
    return history
