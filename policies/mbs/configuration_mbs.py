"""Configuration of Manipulate-by-Seeing (`mbs`)."""
from dataclasses import dataclass, field
from typing import ClassVar

from embodied_vision.policies.configuration import PolicyConfig

__all__ = ['MbSConfig']


@dataclass
class MbSConfig(PolicyConfig):
    """Manipulate-by-Seeing: an embedding distance + latent dynamics, planned greedily.

    Wang, Dasari et al., ICCV 2023, arXiv:2303.08135. Defaults follow the released code
    (github.com/AGI-Labs/manipulate-by-seeing): R3M ResNet-18 fine-tuned, ReLU + linear to 128
    and L2 normalisation; dynamics MLP 128+|A| -> 128 -> 128 -> 128, normalised; loss =
    cross-entropy over the whole action pool with raw cosines as logits (no temperature) +
    MSE on the dynamics, weighted 1:1; greedy one-step planner moving 4 cm.

    Args:
        encoder: registered image encoder (0-255 input).
        encoder_checkpoint: optional weights for it (e.g. an official R3M model.pt).
        freeze_encoder: keep the encoder fixed (the paper fine-tunes it).
        proj_dim: size of the normalised representation.
        image_size: crop side fed to the encoder.
        resize_to: frames are resized to this side before the (random or centre) crop.
        action_dim: 3 for unit translation directions in the tool (wrist camera) frame.
        dynamics_hidden: hidden widths of the dynamics MLP.
        w_dist, w_dyn: loss weights of the action-pool cross-entropy and the dynamics MSE.
        temperature: divide the pool logits by this; None = raw cosines (official).
        frame_stride: frames between o_t and o_{t+1} (the paper subsamples every 5th frame).
        min_translation: tool motions shorter than this (metres) are not actions.
        max_pool_size: keep at most this many pool directions, spread by farthest-point
            sampling (training and planning cost grow with the pool); None = every observed
            direction (official).
        color_jitter: brightness/contrast/saturation/hue jitter strength (paper 0.2).
        shared_crop: one random crop for o_t, o_{t+1} and the goal of a sample. The official
            loader crops each frame independently, which shifts the goal against the current
            view by up to resize_to - image_size pixels: with a camera on the tool, that is
            the relative position the planner has to resolve near the goal.
        step_size: metres moved per planning step (paper 0.04).
        gripper_threshold: close the gripper when the classifier's probability exceeds it.
        gripper_release: once closed, open again only when the probability falls below this
            (hysteresis: one frame the classifier doubts no longer drops the object); None =
            open whenever it is not above `gripper_threshold` (official).
        grip_hold_steps: when the gripper changes state, stand still for this many control
            steps (instead of the planned move) so the fingers close or open in place; the
            scripted expert closes over 8. 0 = move while they do (official). Measured on the
            carrot PickPlace planner (narrow encoder, 64 px, 50 held-out episodes): 22%
            official; release 0.5 with hold 2 / 8 steps 22% / 16%, and 18% with 2 cm steps,
            all within the noise of 50 episodes; the misses inspected closed 1-3 cm off the
            grasp point.
        stop_threshold: stop (zero motion) once the predicted cosine to the goal exceeds
            this; None = never (official).
    """

    type: ClassVar[str] = 'mbs'

    # representation
    encoder: str = 'r3m_resnet18'
    encoder_checkpoint: str | None = None
    freeze_encoder: bool = False
    proj_dim: int = 128
    image_size: int = 224
    resize_to: int = 240
    # dynamics
    action_dim: int = 3
    dynamics_hidden: tuple[int, ...] = field(default=(128, 128))
    # loss
    w_dist: float = 1.0
    w_dyn: float = 1.0
    temperature: float | None = None
    # data
    frame_stride: int = 5
    min_translation: float = 0.005
    max_pool_size: int | None = None
    color_jitter: float = 0.2
    shared_crop: bool = False
    # planner
    step_size: float = 0.04
    gripper_threshold: float = 0.8
    gripper_release: float | None = None
    grip_hold_steps: int = 0
    stop_threshold: float | None = None

    def __post_init__(self):
        self.dynamics_hidden = tuple(self.dynamics_hidden)
        positive = ('proj_dim', 'image_size', 'resize_to', 'action_dim', 'frame_stride')
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.resize_to < self.image_size:
            raise ValueError(f'resize_to ({self.resize_to}) must be >= image_size '
                             f'({self.image_size})')
        if self.max_pool_size is not None and self.max_pool_size < 1:
            raise ValueError(f'max_pool_size must be >= 1 or None, got {self.max_pool_size}')
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f'temperature must be > 0 or None, got {self.temperature}')
        if not 0 < self.gripper_threshold < 1:
            raise ValueError(f'gripper_threshold must be in (0, 1), got '
                             f'{self.gripper_threshold}')
        if self.gripper_release is not None and not 0 < self.gripper_release <= \
                self.gripper_threshold:
            raise ValueError(f'gripper_release must be in (0, gripper_threshold='
                             f'{self.gripper_threshold}] or None, got {self.gripper_release}')
        if self.grip_hold_steps < 0:
            raise ValueError(f'grip_hold_steps must be >= 0, got {self.grip_hold_steps}')
        if self.step_size <= 0:
            raise ValueError(f'step_size must be > 0, got {self.step_size}')
