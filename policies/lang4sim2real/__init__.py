"""Lang4Sim2Real multi-domain behaviour cloning (`l4s_bc`)."""
from embodied_vision.policies.lang4sim2real.configuration_l4s_bc import (
    DOMAIN_PREFIXES,
    L4SBCConfig,
)
from embodied_vision.policies.lang4sim2real.modeling_l4s_bc import (
    OBS_IMAGE,
    OBS_LANGUAGE,
    L4SBCPolicy,
    domain_instruction,
)
from embodied_vision.policies.lang4sim2real.processor_l4s_bc import L4SBCProcessor

__all__ = ['DOMAIN_PREFIXES', 'L4SBCConfig', 'L4SBCPolicy', 'L4SBCProcessor', 'OBS_IMAGE',
           'OBS_LANGUAGE', 'domain_instruction']
