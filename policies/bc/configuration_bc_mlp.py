"""Configuration of the behaviour-cloning MLP over frozen embeddings (`bc_mlp`)."""
from dataclasses import dataclass, field
from typing import ClassVar

from embodied_vision.policies.configuration import PolicyConfig

__all__ = ['BCMLPConfig']


@dataclass
class BCMLPConfig(PolicyConfig):
    """`bc_mlp`: an MLP from a frozen encoder's embedding (+ proprioception) to an action.

    The R3M evaluation protocol (Nair et al. 2022, arXiv:2203.12601, Sec. 5 and App. A):
    the visual encoder is frozen, its embedding goes through BatchNorm and is concatenated
    with proprioception, a 2-layer MLP of width 256 with ReLU regresses the action, trained
    with mean squared error.

    Args:
        embed_dim: size of the embedding the policy reads (the encoder's `embed_dim`).
        state_dim: size of the proprioceptive state; 0 = images only.
        action_dim: size of the action.
        hidden_dims: widths of the hidden layers.
        dropout: dropout after each hidden layer.
        input_batchnorm: BatchNorm1d over the embedding (as in R3M).
        encoder_name: encoder that produced the embeddings (recorded, checked by the node).
        encoder_checkpoint: its weights file as trained ('' = the seeded random weights of
            `encoder_for_inference`; a relative path is relative to the saved policy folder);
            `frozen_encoder` rebuilds the encoder from it.
        encoder_weights_sha256: digest of those weights (`deploy.cache.weights_digest`): an
            encoder with other weights is refused ('' = unknown, warned).
        camera: camera whose frames were embedded.
        image_size: encoder input side the embeddings were computed at.
        action_clip: actions are clipped to [-action_clip, action_clip] at inference.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """

    type: ClassVar[str] = 'bc_mlp'

    # shapes
    embed_dim: int = 512
    state_dim: int = 8
    action_dim: int = 4
    # network
    hidden_dims: tuple[int, ...] = field(default=(256, 256))
    dropout: float = 0.0
    input_batchnorm: bool = True
    # provenance of the inputs
    encoder_name: str = 'r3m_resnet18'
    encoder_checkpoint: str = ''
    encoder_weights_sha256: str = ''
    camera: str = 'front'
    image_size: int = 224
    # inference and optimisation
    action_clip: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self):
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        for name in ('embed_dim', 'action_dim', 'image_size'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        if not isinstance(self.state_dim, int) or self.state_dim < 0:
            raise ValueError(f'state_dim must be an int >= 0, got {self.state_dim!r}')
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f'hidden_dims must be a non-empty tuple of positive ints, got '
                             f'{self.hidden_dims!r}')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'dropout must be in [0, 1), got {self.dropout!r}')
        if self.action_clip <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f'action_clip and lr must be > 0 and weight_decay >= 0, got '
                             f'{self.action_clip}, {self.lr}, {self.weight_decay}')
