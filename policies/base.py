"""Batch keys and small helpers shared by the policies (LeRobot naming)."""
import numpy as np
import torch

__all__ = ['ACTION', 'OBS_EMBEDDING', 'OBS_EXPERT_ACTION', 'OBS_IMAGE', 'OBS_INSTRUCTION',
           'OBS_STATE', 'as_batch']

#: Frozen-encoder embedding of the camera frame, `(B, embed_dim)`.
OBS_EMBEDDING = 'observation.embedding'
#: Proprioception, `(B, state_dim)`: end-effector xyz, quaternion (w, x, y, z), gripper width.
OBS_STATE = 'observation.state'
#: Camera frame, uint8 `(H, W, 3)` or `(B, 3, H, W)` (policies that embed images themselves).
OBS_IMAGE = 'observation.image'
#: The episode's instruction text (with the visual domain under `'domain'`: 'sim' / 'real').
OBS_INSTRUCTION = 'observation.instruction'
#: The scripted expert's action for the same instant (privileged; sim only).
OBS_EXPERT_ACTION = 'observation.expert_action'
#: Action, `(B, action_dim)`: `[dx, dy, dz, grip]` in [-1, 1] for the tabletop suite.
ACTION = 'action'


def as_batch(value, name: str, width: int, device=None) -> tuple[torch.Tensor, bool]:
    """`value` as a float32 `(B, width)` tensor; also whether it came without a batch axis."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f'{name} must be an array or tensor, got {type(value).__name__}'
                            ) from err
    single = value.ndim == 1
    value = value[None] if single else value
    if value.ndim != 2 or value.shape[1] != width:
        raise ValueError(f'{name} must have shape ({width},) or (B, {width}), got '
                         f'{tuple(value.shape if not single else value.shape[1:])}')
    return value.to(device=device, dtype=torch.float32), single
