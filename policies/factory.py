"""Policy registry: `make_policy(name, **config)` and `load_policy(path)`."""
import json
import os
from pathlib import Path

from embodied_vision.policies.bc import BCMLPPolicy
from embodied_vision.policies.lang4sim2real import L4SBCPolicy
from embodied_vision.policies.mbs import MbSPolicy
from embodied_vision.policies.scripted import ScriptedExpertPolicy

__all__ = ['LOADABLE', 'POLICIES', 'list_policies', 'load_policy', 'make_policy']

#: Policies built from a config alone: name -> policy class (its `config_class` takes the
#: fields).
POLICIES = {policy.name: policy for policy in (BCMLPPolicy, L4SBCPolicy)}
#: Policies that `load_policy` reads back: `type` in config.json -> policy class. (`mbs` is
#: only made by training, which builds its action pool from the videos.)
LOADABLE = {policy.name: policy for policy in (BCMLPPolicy, L4SBCPolicy, MbSPolicy)}


def list_policies() -> list[str]:
    """Names accepted by `make_policy`."""
    return sorted(set(POLICIES) | set(LOADABLE)) + [ScriptedExpertPolicy.name]


def make_policy(name: str, **kwargs):
    """A new policy from its config fields (`bc_mlp`: `BCMLPConfig`, `l4s_bc`:
    `L4SBCConfig`), or `scripted_expert(env=None, action_dim=4)`."""
    if name == ScriptedExpertPolicy.name:
        return ScriptedExpertPolicy(**kwargs)
    if name not in POLICIES:
        hint = ' (train it: embodied-vision train experiment=mbs_pickplace)' \
            if name in LOADABLE else ''
        raise ValueError(f'cannot make policy {name!r} from a config{hint}; known: '
                         f'{sorted(POLICIES) + [ScriptedExpertPolicy.name]}')
    policy_class = POLICIES[name]
    return policy_class(policy_class.config_class(**kwargs))


def load_policy(path: str | os.PathLike, device: str = 'cpu'):
    """Load a saved policy directory; its `config.json` names the type."""
    path = Path(path).expanduser()
    config_file = path / 'config.json'
    if not config_file.exists():
        raise FileNotFoundError(f'{path} holds no config.json: not a saved policy (expected '
                                f'model.safetensors + config.json written by save_pretrained)')
    kind = json.loads(config_file.read_text()).get('type')
    if kind not in LOADABLE:
        raise ValueError(f'{config_file} names policy type {kind!r}; known: {sorted(LOADABLE)}')
    return LOADABLE[kind].from_pretrained(path, device=device)
