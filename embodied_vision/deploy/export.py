"""`torch.export` with a dynamic batch axis: the graph every ahead-of-time backend starts from.

Torch-TensorRT's dynamo path traces with `torch.export`, and the ONNX dynamo exporter does
too, so an encoder that fails here cannot be deployed. Spatial sizes stay static: dynamic
H/W is a known source of TensorRT failures for ViTs (see reference/deploy_tensorrt.md).
"""
import torch

__all__ = ['export_encoder']


def export_encoder(encoder, example_inputs: tuple[torch.Tensor, ...] | None = None,
                   max_batch: int = 256) -> torch.export.ExportedProgram:
    """Export `encoder` with its batch axis dynamic in [1, max_batch]."""
    if example_inputs is None:
        example_inputs = encoder.example_inputs(batch_size=2)
    dynamic = encoder.dynamic_shapes(n_inputs=len(example_inputs), max_batch=max_batch)
    with torch.no_grad():
        return torch.export.export(encoder.eval(), tuple(example_inputs),
                                   dynamic_shapes=dynamic, strict=False)
