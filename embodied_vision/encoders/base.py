"""The encoder contract every registered model follows (see DESIGN.md, "Core contracts").

An encoder is an `nn.Module` that declares its `input_contract` and `embed_dim`, returns its
feature map or tokens from `forward_features` and its embedding from `forward`. Preprocessing
that the original method does inside its model stays inside, so raw camera frames are valid.
"""
from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from embodied_vision.encoders._contract import InputContract

__all__ = ['Encoder']

_DTYPES = {'uint8': torch.uint8, 'float32': torch.float32, 'float16': torch.float16,
           'bfloat16': torch.bfloat16, 'float64': torch.float64}


class Encoder(nn.Module, metaclass=ABCMeta):
    """Base class: subclasses set `input_contract`, `embed_dim` and implement the forwards.

    `name` and `init_kwargs` are filled in by `create_encoder` so that the encoder can be
    saved in our own checkpoint format and rebuilt from it.
    """

    input_contract: InputContract
    embed_dim: int

    def __init__(self):
        super().__init__()
        self.name: str = type(self).__name__
        self.init_kwargs: dict = {}

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map or tokens before pooling."""

    @abstractmethod
    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pool features into the `(B, embed_dim)` embedding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The `(B, embed_dim)` embedding of raw input `x`."""
        return self.forward_head(self.forward_features(x))

    # ----------------------------------------------------------------------------- inputs
    @property
    def input_dtypes(self) -> tuple[torch.dtype, ...]:
        return tuple(_DTYPES[name] for name in self.input_contract.dtypes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError/TypeError naming what is wrong with `x` and what is expected."""
        contract = self.input_contract
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{self.name} expects a torch.Tensor, got {type(x).__name__}')
        if x.dtype not in self.input_dtypes:
            hint = f' ({contract.notes})' if contract.notes else ''
            raise TypeError(f'{self.name} expects dtype in {contract.dtypes}, got {x.dtype}'
                            f'{hint}')
        if contract.modality in ('image', 'image_pair', 'voxels'):
            spatial = 2 if contract.modality != 'voxels' else 3
            if x.ndim != 2 + spatial or x.shape[1] != contract.channels:
                layout = '(B,C,H,W)' if spatial == 2 else '(B,C,X,Y,Z)'
                raise ValueError(
                    f'{self.name} expects {contract.modality} input {layout} with '
                    f'C={contract.channels}, got shape {tuple(x.shape)}')
            contract.check_spatial(tuple(x.shape[2:]))
        elif contract.modality == 'points':
            if x.ndim != 3 or x.shape[2] != contract.channels:
                raise ValueError(f'{self.name} expects points (B,N,{contract.channels}), '
                                 f'got shape {tuple(x.shape)}')
        if x.shape[0] < 1:
            raise ValueError(f'{self.name} got an empty batch')

    def example_inputs(self, batch_size: int = 2, size: tuple[int, ...] | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """A random valid input batch, used for export, parity probes and benchmarks."""
        contract = self.input_contract
        size = tuple(size or contract.default_size)
        low, high = contract.value_range
        shape = (batch_size, contract.channels, *size)
        if contract.modality == 'points':
            shape = (batch_size, *size, contract.channels)
        x = torch.rand(shape, generator=generator) * (high - low) + low
        if contract.modality == 'image_pair':
            y = torch.rand(shape, generator=generator) * (high - low) + low
            return (x, y)
        return (x,)

    def dynamic_shapes(self, n_inputs: int = 1, max_batch: int = 256) -> tuple[dict, ...]:
        """`torch.export` dynamic shapes: the batch axis of every input is dynamic.

        The upper bound is at least 2: a dynamic axis needs a range (max 1 would be static).
        """
        batch = torch.export.Dim('batch', min=1, max=max(2, max_batch))
        return tuple({0: batch} for _ in range(n_inputs))

    def export_names(self, n_inputs: int = 1) -> tuple[list[str], list[str]]:
        """Input and output names of an exported graph: `input` (or `input_0`, `input_1`,
        ...) and `embedding`."""
        inputs = ['input'] if n_inputs == 1 else [f'input_{i}' for i in range(n_inputs)]
        return inputs, ['embedding']
