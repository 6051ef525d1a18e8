"""Manipulate-by-Seeing: representation, latent dynamics, action pool, loss, greedy planner.

Manipulate by Seeing: Creating Manipulation Controllers from Pre-Trained Representations
(Wang, Dasari, Srirama, Tulsiani, Gupta; ICCV 2023). Paper: https://arxiv.org/abs/2303.08135
Code (MIT): https://github.com/AGI-Labs/manipulate-by-seeing. No trained weights are released.

- Representation R: encoder -> ReLU -> Linear(embed_dim -> 128) -> L2 normalise.
- Dynamics F: MLP on [R(o_t), a] -> 128, L2 normalised: the predicted R(o_{t+1}).
- Distance to a goal image: cosine similarity in R-space.
- Loss: cross-entropy over the whole action pool, logit_m = cos(F(R(o_t), a_m), R(o_g)),
  target = the pool action nearest (L2) to the true a_t; plus MSE(F(R(o_t), a_t), R(o_{t+1})).
  Unlike the released code, one pool tensor is shared by the batch and scored as a matrix
  product, so memory does not grow with batch x pool.
- Planner: score every pool action against the goal and move `step_size` in the best one.
"""
from collections import deque
from collections.abc import Mapping
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.data.images import as_chw, resize_center_crop
from embodied_vision.encoders import create_encoder
from embodied_vision.geometry import quat_to_matrix
from embodied_vision.policies.base import PreTrainedPolicy
from embodied_vision.policies.mbs.configuration_mbs import MbSConfig
from embodied_vision.policies.mbs.processor_mbs import IMAGE, TOOL_QUAT, MbSProcessor

__all__ = ['ActionPool', 'GripperClassifier', 'MbSModel', 'MbSPolicy', 'mbs_loss',
           'tool_frame_directions']


def tool_frame_directions(positions: np.ndarray, quats: np.ndarray, stride: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Unit tool-frame translation from frame t to t+stride, and its length in metres.

    `positions` (T, 3) and `quats` (T, 4, w-x-y-z) are the tool pose in the world; the motion
    is expressed in the tool frame at t: R_t^T (p_{t+k} - p_t). Returns `(T-k, 3)`, `(T-k,)`.
    """
    if len(positions) <= stride:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
    delta = positions[stride:] - positions[:-stride]
    rotation = quat_to_matrix(quats[:-stride])
    local = np.einsum('tji,tj->ti', rotation, delta)  # R^T delta
    length = np.linalg.norm(local, axis=1)
    return (local / np.maximum(length, 1e-12)[:, None]).astype(np.float32), \
        length.astype(np.float32)


class ActionPool:
    """The candidate actions of a task: every observed (long enough) tool motion direction."""

    def __init__(self, actions: torch.Tensor):
        if actions.ndim != 2 or len(actions) == 0:
            raise ValueError(f'an action pool needs (M, A) actions with M >= 1, got '
                             f'{tuple(actions.shape)}')
        self.actions = actions.float()

    @classmethod
    def from_trajectories(cls, trajectories, stride: int, min_translation: float
                          ) -> 'ActionPool':
        """Pool from `(positions, quats)` per video; motions <= min_translation are dropped."""
        pooled = []
        for positions, quats in trajectories:
            directions, length = tool_frame_directions(positions, quats, stride)
            pooled.append(directions[length > min_translation])
        actions = np.concatenate(pooled) if pooled else np.zeros((0, 3), np.float32)
        return cls(torch.from_numpy(actions))

    def __len__(self) -> int:
        return len(self.actions)

    def farthest_point_subset(self, size: int) -> 'ActionPool':
        """At most `size` actions that cover the pool: greedy farthest-point sampling
        (deterministic, starting from the action nearest the pool mean)."""
        if size >= len(self.actions):
            return self
        actions = self.actions
        chosen = [int(torch.cdist(actions.mean(0, keepdim=True), actions).argmin())]
        nearest = torch.cdist(actions[chosen], actions)[0]
        for _ in range(size - 1):
            chosen.append(int(nearest.argmax()))
            nearest = torch.minimum(nearest, torch.cdist(actions[chosen[-1:]], actions)[0])
        return ActionPool(actions[chosen])

    def nearest(self, actions: torch.Tensor) -> torch.Tensor:
        """Index of the pool entry nearest in L2 to each action `(B, A)` -> `(B,)`."""
        return torch.cdist(actions.float(), self.actions.to(actions.device)).argmin(dim=1)


class MbSModel(nn.Module):
    """Representation R and dynamics F of Manipulate-by-Seeing."""

    def __init__(self, config: MbSConfig):
        super().__init__()
        self.config = config
        self.encoder = create_encoder(config.encoder, checkpoint=config.encoder_checkpoint)
        if config.freeze_encoder:
            self.encoder.requires_grad_(False)
        self.proj = nn.Linear(self.encoder.embed_dim, config.proj_dim)
        layers, width = [], config.proj_dim + config.action_dim
        for hidden in config.dynamics_hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, config.proj_dim))
        self.dynamics = nn.Sequential(*layers)

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """R(o): `(B, 3, H, W)` 0-255 frames -> `(B, proj_dim)` unit vectors."""
        images = self.encoder.input_contract.from_pixels(images)
        return F.normalize(self.proj(F.relu(self.encoder(images))), dim=-1)

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """F(z, a) for paired rows: `(B, D)`, `(B, A)` -> `(B, D)` unit vectors."""
        return F.normalize(self.dynamics(torch.cat([z, actions], dim=-1)), dim=-1)

    def pool_scores(self, z: torch.Tensor, pool: torch.Tensor, z_goal: torch.Tensor
                    ) -> torch.Tensor:
        """cos(F(z_b, a_m), z_goal_b) for every state b and pool action m -> `(B, M)`.

        The first dynamics layer is linear in the concatenation [z; a], so it is applied to
        the states and to the pool separately and broadcast-added: the same numbers as running
        F on every (state, action) pair without building the `(B, M, D + A)` input.
        """
        first, rest = self.dynamics[0], self.dynamics[1:]
        dim = z.shape[-1]
        hidden = (F.linear(z, first.weight[:, :dim], first.bias)[:, None]
                  + F.linear(pool.to(z), first.weight[:, dim:])[None])
        predicted = F.normalize(rest(hidden), dim=-1)
        return torch.einsum('bmd,bd->bm', predicted, z_goal)


def mbs_loss(model: MbSModel, obs: torch.Tensor, next_obs: torch.Tensor, goal: torch.Tensor,
             actions: torch.Tensor, pool: ActionPool) -> tuple[torch.Tensor, dict]:
    """The official objective: pool cross-entropy + dynamics MSE (weights from the config)."""
    config = model.config
    z = model.represent(torch.cat([obs, next_obs, goal]))
    z_t, z_next, z_goal = z.chunk(3)
    logits = model.pool_scores(z_t, pool.actions, z_goal)
    if config.temperature is not None:
        logits = logits / config.temperature
    target = pool.nearest(actions)
    dist = F.cross_entropy(logits, target)
    dyn = F.mse_loss(model.predict(z_t, actions), z_next)
    chosen = pool.actions.to(actions.device)[logits.argmax(dim=1)]
    logs = {'loss_dist': dist.item(), 'loss_dyn': dyn.item(),
            'direction_cos': F.cosine_similarity(chosen, actions, dim=-1).mean().item(),
            'top1': (logits.argmax(dim=1) == target).float().mean().item()}
    return config.w_dist * dist + config.w_dyn * dyn, logs


class GripperClassifier(nn.Module):
    """P(gripper closed | frame): encoder -> ReLU -> Linear -> sigmoid, trained with BCE."""

    def __init__(self, encoder: str = 'r3m_resnet18', checkpoint: str | None = None):
        super().__init__()
        self.encoder = create_encoder(encoder, checkpoint=checkpoint)
        self.head = nn.Linear(self.encoder.embed_dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits `(B,)`."""
        images = self.encoder.input_contract.from_pixels(images)
        return self.head(F.relu(self.encoder(images))).squeeze(-1)


class MbSPolicy(PreTrainedPolicy):
    """The greedy planner behind the policy contract (`reset`, `select_action`).

    `set_goal(image)` encodes the goal once. `select_action(obs)` reads `obs[IMAGE]`
    (the tool camera, `(3, H, W)` or `(H, W, 3)` uint8) and `obs[TOOL_QUAT]` (w, x, y, z),
    picks the pool direction whose predicted embedding is closest to the goal, rotates it to
    the world frame and returns env actions `[dx, dy, dz, grip]` in [-1, 1]: a move of
    `step_size` is split into `ceil(step_size / max_delta)` control steps served from a queue.
    """

    name = 'mbs'
    config_class = MbSConfig
    processor_class = MbSProcessor
    #: a saved planner holds its encoder's weights: the pretrained checkpoint is not re-read
    load_overrides = {'encoder_checkpoint': None}
    #: saved next to the config: what shapes the planner besides it
    _EXTRAS = ('max_delta', 'pool_size', 'has_gripper')

    def __init__(self, config: MbSConfig, pool: ActionPool, max_delta: float = 0.02,
                 gripper: GripperClassifier | None = None):
        super().__init__(config)
        self.model = MbSModel(config)
        self.gripper = gripper
        self.register_buffer('pool', pool.actions.clone())
        self.max_delta = max_delta
        self._queue: deque = deque()
        self._goal: torch.Tensor | None = None
        self._closed = False
        self.last_scores: torch.Tensor | None = None
        self.last_distance: float | None = None

    @property
    def steps_per_move(self) -> int:
        """Control steps one planned move of `config.step_size` is split into."""
        return max(1, math.ceil(self.config.step_size / self.max_delta - 1e-9))

    def _frame(self, image) -> torch.Tensor:
        image = as_chw(image)
        size = (self.config.image_size, self.config.image_size)
        ratio = self.config.resize_to / self.config.image_size
        return resize_center_crop(image[None], size, resize_ratio=ratio).to(self.pool.device)

    @torch.no_grad()
    def set_goal(self, image) -> None:
        self.eval()
        self._goal = self.model.represent(self._frame(image))
        self._queue.clear()

    def reset(self) -> None:
        self._queue.clear()
        self._closed = False

    def _grip(self, image) -> bool:
        """Whether the gripper should be closed now (classifier + optional hysteresis)."""
        if self.gripper is None:
            return False
        probability = torch.sigmoid(self.gripper(self._frame(image))).item()
        release = self.config.gripper_release
        if self._closed and release is not None:
            return probability >= release
        return probability > self.config.gripper_threshold

    @torch.no_grad()
    def plan(self, image) -> tuple[int, torch.Tensor, float]:
        """`(best pool index, all scores (M,), current cosine to the goal)`."""
        if self._goal is None:
            raise RuntimeError('no goal image: call set_goal(image) first')
        self.eval()
        z = self.model.represent(self._frame(image))
        scores = self.model.pool_scores(z, self.pool, self._goal)[0]
        return int(scores.argmax()), scores, float((z * self._goal).sum())

    @torch.no_grad()
    def select_action(self, obs: dict) -> np.ndarray:
        if not self._queue:
            best, scores, current = self.plan(obs[IMAGE])
            self.last_scores, self.last_distance = scores, current
            direction = self.pool[best].cpu().numpy().astype(np.float64)
            world = quat_to_matrix(obs[TOOL_QUAT]) @ direction
            stop = self.config.stop_threshold is not None and \
                current >= self.config.stop_threshold
            per_step = self.config.step_size / self.steps_per_move / self.max_delta
            move = np.zeros(3) if stop else np.clip(world * per_step, -1.0, 1.0)
            closed = self._grip(obs[IMAGE])
            grip = 1.0 if closed else -1.0
            changed, self._closed = closed != self._closed, closed
            if changed and self.config.grip_hold_steps:
                move, steps = np.zeros(3), self.config.grip_hold_steps
            else:
                steps = self.steps_per_move
            for _ in range(steps):
                self._queue.append(np.array([*move, grip], dtype=np.float32))
        return self._queue.popleft()

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The training loss on a batch of (obs, next_obs, goal, action) with this pool."""
        return mbs_loss(self.model, batch['obs'], batch['next_obs'], batch['goal'],
                        batch['action'], ActionPool(self.pool))

    def saved_config(self) -> dict:
        """The config plus `max_delta`, the pool size and whether a gripper classifier is in."""
        return {**self.config.to_dict(), 'max_delta': self.max_delta,
                'pool_size': len(self.pool), 'has_gripper': self.gripper is not None}

    @classmethod
    def from_saved_config(cls, saved: Mapping) -> 'MbSPolicy':
        """A planner shaped as the saved one: a zero pool and an untrained classifier."""
        missing = [key for key in cls._EXTRAS if key not in saved]
        if missing:
            raise ValueError(f'saved mbs config lacks {missing} (written by save_pretrained)')
        extra = {key: saved[key] for key in cls._EXTRAS}
        config = MbSConfig.from_dict({key: value for key, value in saved.items()
                                      if key not in cls._EXTRAS} | cls.load_overrides)
        gripper = GripperClassifier(config.encoder) if extra['has_gripper'] else None
        return cls(config, ActionPool(torch.zeros(extra['pool_size'], config.action_dim)),
                   max_delta=extra['max_delta'], gripper=gripper)
