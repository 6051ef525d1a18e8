"""The input contract an encoder declares: what a caller may feed it, and how it is read."""
from dataclasses import asdict, dataclass, field

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
    notes: str = field(default='', compare=False)

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f'modality={self.modality!r} is not one of {MODALITIES}')
        if self.size_multiple < 1 or self.min_size < 1:
            raise ValueError('size_multiple and min_size must be >= 1, got '
                             f'{self.size_multiple} and {self.min_size}')
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f'max_size={self.max_size} is below min_size={self.min_size}')

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
