"""Inductor backend: `torch.compile` of the eager encoder (CPU C++ or GPU Triton kernels).

The batch axis is marked dynamic so a new batch size does not recompile. On Jetson prefer
TensorRT: without Triton, inductor gives little there (reference/deploy_tensorrt.md §3).
"""
import torch

__all__ = ['compile_inductor']


def compile_inductor(encoder, mode: str = 'default', fullgraph: bool = True):
    """A compiled callable with the encoder's inputs and outputs."""
    compiled = torch.compile(encoder.eval(), mode=mode, fullgraph=fullgraph)

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        for x in inputs:
            if x.shape[0] > 1:
                torch._dynamo.maybe_mark_dynamic(x, 0)
        with torch.inference_mode():
            return compiled(*inputs)

    return run
