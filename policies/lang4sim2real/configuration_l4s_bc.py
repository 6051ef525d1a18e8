"""Configuration of the Lang4Sim2Real multi-domain BC policy (`l4s_bc`)."""
from dataclasses import dataclass, field
from typing import ClassVar

from embodied_vision.policies.configuration import PolicyConfig

__all__ = ['L4SBCConfig', 'DOMAIN_PREFIXES']

#: Instruction prefixes naming the domain, as in the paper's multi-domain BC.
DOMAIN_PREFIXES = {'sim': 'Simulation:', 'real': 'Real:'}


@dataclass
class L4SBCConfig(PolicyConfig):
    """FiLM-ResNet -> spatial softmax -> [keypoints, proprio] -> MLP -> Gaussian actions.

    Yu et al., RSS 2024 (arXiv:2405.10020), Sec. IV and the released code: FiLM in every
    residual block conditioned on the MiniLM embedding of the domain-prefixed instruction
    ("Simulation: ..." / "Real: ..."); the pretrained encoder is frozen except the FiLM layers
    and the last stage; spatial softmax; MLP 1024/512/256; Gaussian head with a
    state-independent log-std clamped to [-6, 0]; negative log-likelihood; Adam 3e-4.

    Args:
        encoder: registered FiLM encoder name.
        encoder_checkpoint: pretrained weights (e.g. runs/lang4sim2real_pretrain_*/encoder).
        freeze_pretrained: freeze the encoder (with or without a checkpoint) except FiLM
            and the last `trainable_stages` stages.
        trainable_stages: how many of the last encoder stages train under
            `freeze_pretrained` (paper: 1; the stem always stays frozen).
        text_dim: instruction embedding size (MiniLM: 384).
        state_dim: proprioception size (the tabletop suite: 8).
        action_dim: action size (the tabletop suite: 4).
        hidden_dims: MLP widths.
        log_std_range: clamp of the learned log standard deviation.
        image_size: encoder input side (paper: 128).
        camera: camera the policy reads.
        pad: pad-and-random-crop shift augmentation at training (paper: 4).
        lr: Adam learning rate.
    """

    type: ClassVar[str] = 'l4s_bc'

    # encoder
    encoder: str = 'lang4sim2real_resnet18'
    encoder_checkpoint: str | None = None
    freeze_pretrained: bool = True
    trainable_stages: int = 1
    text_dim: int = 384
    # shapes
    state_dim: int = 8
    action_dim: int = 4
    # head
    hidden_dims: tuple[int, ...] = field(default=(1024, 512, 256))
    log_std_range: tuple[float, float] = (-6.0, 0.0)
    # inputs
    image_size: int = 128
    camera: str = 'front'
    pad: int = 4
    # training
    lr: float = 3e-4

    def __post_init__(self):
        self.hidden_dims = tuple(self.hidden_dims)
        self.log_std_range = tuple(self.log_std_range)
        for name in ('text_dim', 'action_dim', 'image_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        if self.trainable_stages < 0:
            raise ValueError(f'trainable_stages must be >= 0, got {self.trainable_stages}')
        if self.state_dim < 0 or self.pad < 0:
            raise ValueError(f'state_dim and pad must be >= 0, got {self.state_dim}, '
                             f'{self.pad}')
        low, high = self.log_std_range
        if not low < high:
            raise ValueError(f'log_std_range must be (low, high) with low < high, got '
                             f'{self.log_std_range}')
