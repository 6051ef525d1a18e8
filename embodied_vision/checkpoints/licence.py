"""The one warning about non-commercial weights, raised wherever such weights are loaded."""
import warnings

__all__ = ['warn_licence']


def warn_licence(source: str, license: str, stacklevel: int = 2) -> None:
    """Warn that the weights read from `source` are licensed `license`, non-commercial only."""
    warnings.warn(f'{source}: weights licensed {license or "(licence not recorded)"} '
                  '(non-commercial use only)', UserWarning, stacklevel=stacklevel + 1)
