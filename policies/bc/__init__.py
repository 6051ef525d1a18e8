"""Behaviour cloning from frozen-encoder embeddings (the R3M evaluation protocol)."""
from embodied_vision.policies.bc.configuration_bc_mlp import BCMLPConfig
from embodied_vision.policies.bc.modeling_bc_mlp import BCMLPPolicy
from embodied_vision.policies.bc.processor_bc_mlp import BCMLPProcessor

__all__ = ['BCMLPConfig', 'BCMLPPolicy', 'BCMLPProcessor']
