"""The input contract an encoder declares: what a caller may feed it, and how it is read."""
from dataclasses import asdict, dataclass, field

import torch

__all__ = ['InputContract', 'MODALITIES']

MODALITIES = ('image', 'image_pair', 'points', 'voxels')


@dataclass(frozen=True)
class InputContract:
    """What an encoder accepts.

    Args:
        modality: one of `MODALITIES`. Image `(B,3,H,W)`, image pair (two such tensors),
            point cloud `(B,N,3)`, voxel grid `(B,4,X,Y,Z)`.
        channels: size of the channel axis.
        value_range: range of raw values the model expects, e.g. (0, 255) for uint8 frames.
        dtypes: tensor dtypes accepted as raw input (cast to float inside the model).
        mean: per-channel mean applied inside the model after scaling to [0, 1], or None.
        std: per-channel std applied inside the model, or None.
        default_size: the spatial size the weights were trained at.
        size_multiple: every spatial side must be a multiple of this.
        min_size: smallest spatial side accepted.
        max_size: largest spatial side accepted (None: no limit), e.g. a voxel model's
            resolution, to which smaller grids are padded.
        caller_mean: per-channel mean the **caller** subtracts from [0, 1] pixels before the
            model (CroCo, as upstream), or None when the model takes 0-255 pixels itself.
        caller_std: the matching per-channel std.

    `from_pixels` turns 0-255 camera frames into this model's input, so every path that
    feeds frames (CLI, nodes, bag replay, policies) honours the contract the same way.
    """

    modality: str
    channels: int
    value_range: tuple[float, float]
    dtypes: tuple[str, ...] = ('uint8', 'float32')
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    default_size: tuple[int, ...] = ()
    size_multiple: int = 1
    min_size: int = 1
    max_size: int | None = None
    caller_mean: tuple[float, ...] | None = None
    caller_std: tuple[float, ...] | None = None
    notes: str = field(default='', compare=False)

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f'modality={self.modality!r} is not one of {MODALITIES}')
        if self.size_multiple < 1 or self.min_size < 1:
            raise ValueError('size_multiple and min_size must be >= 1, got '
                             f'{self.size_multiple} and {self.min_size}')
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f'max_size={self.max_size} is below min_size={self.min_size}')
        if (self.caller_mean is None) != (self.caller_std is None):
            raise ValueError('caller_mean and caller_std go together')

    @property
    def takes_pixels(self) -> bool:
        """Whether 0-255 frames are valid input as they are."""
        return self.modality in ('image', 'image_pair') and \
            tuple(self.value_range) == (0.0, 255.0)

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """0-255 RGB frames `(B, C, H, W)` (uint8 or float; a pair stacks its views on C)
        as this model's input: unchanged where the model normalises inside, else float32
        `(x / 255 - caller_mean) / caller_std`, the statistics repeated for each view."""
        if self.takes_pixels:
            return pixels
        if self.caller_mean is None:
            raise ValueError(f'a {self.modality} model with input range {self.value_range} '
                             'does not take camera frames (no pixel normalisation declared)')
        if pixels.ndim != 4 or pixels.shape[1] != self.channels:
            raise ValueError(f'expects 0-255 frames (B, {self.channels}, H, W), got '
                             f'{tuple(pixels.shape)}')
        if pixels.is_floating_point() and pixels.numel() and float(pixels.amin()) < 0.0:
            raise ValueError('these frames hold values below 0, so they are not 0-255 pixels '
                             '(normalised already?)')
        repeat = self.channels // len(self.caller_mean)
        mean = torch.tensor(self.caller_mean * repeat, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.caller_std * repeat, device=pixels.device).view(1, -1, 1, 1)
        return (pixels.float() / 255.0 - mean) / std

    def to_dict(self) -> dict:
        """A JSON-serialisable description, stored with our checkpoints."""
        return asdict(self)

    def check_spatial(self, sizes: tuple[int, ...]) -> None:
        """Raise ValueError when spatial sides break the size rules."""
        too_big = self.max_size is not None and max(sizes, default=0) > self.max_size
        for side in sizes:
            if side < self.min_size or side % self.size_multiple or too_big:
                limit = f' and <= {self.max_size}' if self.max_size is not None else ''
                raise ValueError(
                    f'spatial size {tuple(sizes)} is not accepted: every side must be >= '
                    f'{self.min_size}{limit} and a multiple of {self.size_multiple} '
                    f'(trained at {self.default_size})')
