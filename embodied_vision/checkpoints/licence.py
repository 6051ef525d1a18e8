"""The one warning about restricted weights, raised wherever such weights are loaded."""
import warnings

__all__ = ['UNKNOWN_TERMS', 'warn_licence']

#: The `license` of weights published without any terms (e.g. I2P-MAE's).
UNKNOWN_TERMS = 'unknown (no licence published)'


def warn_licence(source: str, license: str, stacklevel: int = 2) -> None:
    """Warn that the weights read from `source` are licensed `license`, non-commercial only,
    or, for `UNKNOWN_TERMS`, that their terms are unknown and they must not be shared."""
    if license == UNKNOWN_TERMS:
        message = (f'{source}: weights published without a licence (terms unknown: research '
                   'use only, do not redistribute them or what is derived from them)')
    else:
        message = (f'{source}: weights licensed {license or "(licence not recorded)"} '
                   '(non-commercial use only)')
    warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)
