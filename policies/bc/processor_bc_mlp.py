"""`bc_mlp` processor: the camera frame -> its frozen-encoder embedding (+ proprioception).

The policy reads `OBS_EMBEDDING`; in the ROS graph `encoder_node` computes it, in process this
processor does, with the (compiled) encoder that embedded the training frames, resizing and
centre-cropping the frame to `config.image_size` as `encoder_node` does.
"""
import torch

from embodied_vision.data.images import to_batch
from embodied_vision.policies.base import OBS_EMBEDDING, OBS_IMAGE, OBS_STATE
from embodied_vision.policies.processor import PolicyProcessor

__all__ = ['BCMLPProcessor']


class BCMLPProcessor(PolicyProcessor):
    """Embeds `OBS_IMAGE` with `encoder`; passes `OBS_STATE` when the policy reads it."""

    def __init__(self, policy, encoder=None):
        super().__init__(policy)
        if encoder is None:
            raise ValueError('a bc_mlp policy needs the frozen encoder that embedded its '
                             'training frames (encoder=...; frozen_encoder(policy) builds it)')
        self.encoder = encoder
        self.features = (OBS_IMAGE, OBS_STATE) if policy.config.state_dim else (OBS_IMAGE,)

    @classmethod
    def frozen_encoder(cls, policy, name: str | None = None, checkpoint: str | None = None):
        """`config.encoder_name` (or `name`) compiled for uint8 frames at `config.image_size`."""
        from embodied_vision import deploy
        from embodied_vision.encoders import create_encoder
        config = policy.config
        return deploy.compile(create_encoder(name or config.encoder_name, checkpoint=checkpoint),
                              'auto', input_size=(config.image_size,) * 2,
                              input_dtype=torch.uint8)

    def __call__(self, obs) -> dict:
        self.check(obs, self.features)
        size = (self.policy.config.image_size,) * 2
        with torch.inference_mode():
            embedding = self.encoder(to_batch([obs[OBS_IMAGE]], size))[0].float().cpu()
        batch = {OBS_EMBEDDING: embedding}
        if OBS_STATE in self.features:
            batch[OBS_STATE] = torch.as_tensor(obs[OBS_STATE])
        return batch
