"""Behaviour cloning from frozen-encoder embeddings (the R3M evaluation protocol)."""
from embodied_vision.policies.bc.configuration_bc_mlp import BCMLPConfig
from embodied_vision.policies.bc.modeling_bc_mlp import BCMLPPolicy

__all__ = ['BCMLPConfig', 'BCMLPPolicy']
