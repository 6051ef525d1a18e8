"""`l4s_bc` processor: the frame, proprioception, instruction text and the domain it is told.

The policy embeds the domain-prefixed instruction ("Simulation: ..." / "Real: ...") itself,
so the processor passes the text and `DOMAIN` through; telling the policy another domain
than the frames come from is the sim-behaviour-on-real-frames ablation.
"""
from embodied_vision.policies.base import DOMAIN
from embodied_vision.policies.processor import PolicyProcessor

__all__ = ['L4SBCProcessor']


class L4SBCProcessor(PolicyProcessor):
    """Passes the policy's `input_features` and `DOMAIN`."""

    domain_conditioned = True

    def __init__(self, policy, encoder=None):
        super().__init__(policy)
        self.features = (*policy.input_features, DOMAIN)
