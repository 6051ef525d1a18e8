"""Hydra configs shipped as package data (reach them with `pkg://embodied_vision.configs`)."""
from collections.abc import Sequence

__all__ = ['compose_config']


def compose_config(config_name: str, overrides: Sequence[str] = ()):
    """Compose the packaged `<config_name>.yaml` with hydra-style `key=value` overrides."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module('embodied_vision.configs', version_base='1.3'):
        return compose(config_name=config_name, overrides=list(overrides))
