"""Policy registry: `make_policy(name, **config)` and `load_policy(path)`."""
import json
import os
from pathlib import Path

from embodied_vision.policies.bc import BCMLPConfig, BCMLPPolicy
from embodied_vision.policies.scripted import ScriptedExpertPolicy

__all__ = ['POLICIES', 'list_policies', 'load_policy', 'make_policy']

#: Trainable policies: name -> (config class, policy class).
POLICIES = {'bc_mlp': (BCMLPConfig, BCMLPPolicy)}


def list_policies() -> list[str]:
    """Names accepted by `make_policy`."""
    return sorted(POLICIES) + [ScriptedExpertPolicy.name]


def make_policy(name: str, **kwargs):
    """A new policy: `bc_mlp` with `BCMLPConfig` fields, or `scripted_expert(env=None)`."""
    if name == ScriptedExpertPolicy.name:
        return ScriptedExpertPolicy(**kwargs)
    if name not in POLICIES:
        raise ValueError(f'unknown policy {name!r}; known: {list_policies()}')
    config_class, policy_class = POLICIES[name]
    return policy_class(config_class(**kwargs))


def load_policy(path: str | os.PathLike, device: str = 'cpu'):
    """Load a saved policy directory; its `config.json` names the type."""
    path = Path(path).expanduser()
    config_file = path / 'config.json'
    if not config_file.exists():
        raise FileNotFoundError(f'{path} holds no config.json: not a saved policy (expected '
                                f'model.safetensors + config.json written by save_pretrained)')
    kind = json.loads(config_file.read_text()).get('type')
    if kind not in POLICIES:
        raise ValueError(f'{config_file} names policy type {kind!r}; known: {sorted(POLICIES)}')
    return POLICIES[kind][1].from_pretrained(path, device=device)
