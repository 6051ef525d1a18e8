"""Hydra configs shipped as package data (reach them with `pkg://embodied_vision.configs`)."""
from collections.abc import Sequence

__all__ = ['compose_config']


def compose_config(config_name: str, overrides: Sequence[str] = ()):
    """Compose the packaged `<config_name>.yaml` with hydra-style `key=value` overrides.

    An override hydra cannot apply (an unknown key, a malformed value) raises `ValueError`
    with hydra's reason, e.g. that a key new to a dict needs a leading `+`.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module('embodied_vision.configs', version_base='1.3'):
        try:
            return compose(config_name=config_name, overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as err:
            reason = ' '.join(str(err).split())
            if err.__cause__ is not None:  # e.g. "Key 'nn' is not in struct"
                reason += f' ({str(err.__cause__).splitlines()[0]})'
            raise ValueError(f'{config_name} config: {reason}') from None
