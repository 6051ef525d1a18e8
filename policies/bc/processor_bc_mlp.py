"""`bc_mlp` processor: the camera frame -> its frozen-encoder embedding (+ proprioception).

The policy reads `OBS_EMBEDDING`; in the ROS graph `encoder_node` computes it, in process this
processor does, with the (compiled) encoder that embedded the training frames, resizing and
centre-cropping the frame to `config.image_size` as `encoder_node` does.
"""
from pathlib import Path
import warnings

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
        """The encoder that embedded the training frames, compiled for frames at
        `config.image_size`: `name` / `checkpoint` or those the policy recorded, refused when
        its weights differ from the ones the policy was trained on."""
        from embodied_vision import deploy
        from embodied_vision.deploy.cache import weights_digest
        from embodied_vision.encoders import encoder_for_inference
        config = policy.config
        recorded = not checkpoint and bool(config.encoder_checkpoint)
        checkpoint = checkpoint or config.encoder_checkpoint or None
        source = getattr(policy, 'source_path', None)
        if recorded and source is not None and not Path(checkpoint).is_absolute():
            checkpoint = str(Path(source) / checkpoint)  # recorded relative to the policy
        if checkpoint and not Path(checkpoint).exists():
            raise FileNotFoundError(f'the encoder checkpoint {checkpoint} (recorded by the '
                                    'policy) is gone: pass the same weights as --checkpoint')
        encoder = encoder_for_inference(name or config.encoder_name, checkpoint=checkpoint)
        digest = weights_digest(encoder)
        if not config.encoder_weights_sha256:
            warnings.warn('this bc_mlp policy records no digest of its encoder weights: '
                          f'{encoder.name} from {checkpoint or "random init"} is not checked',
                          UserWarning, stacklevel=2)
        elif digest != config.encoder_weights_sha256:
            raise ValueError(
                f'{encoder.name} from {checkpoint or "seeded random init"} has weights '
                f'{digest[:12]}, but the policy was trained on embeddings of weights '
                f'{config.encoder_weights_sha256[:12]} '
                f'({config.encoder_checkpoint or "seeded random init"}): pass those weights')
        contract = encoder.input_contract
        return deploy.compile(encoder, 'auto', input_size=(config.image_size,) * 2,
                              input_dtype=torch.uint8 if contract.takes_pixels
                              else torch.float32)

    def __call__(self, obs) -> dict:
        self.check(obs, self.features)
        size = (self.policy.config.image_size,) * 2
        with torch.inference_mode():
            pixels = to_batch([obs[OBS_IMAGE]], size)
            embedding = self.encoder(self.encoder.input_contract.from_pixels(pixels))[0]
            embedding = embedding.float().cpu()
        batch = {OBS_EMBEDDING: embedding}
        if OBS_STATE in self.features:
            batch[OBS_STATE] = torch.as_tensor(obs[OBS_STATE])
        return batch
