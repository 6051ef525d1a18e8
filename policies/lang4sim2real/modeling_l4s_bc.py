"""Lang4Sim2Real multi-domain behaviour cloning policy (`l4s_bc`).

Natural Language Can Help Bridge the Sim2Real Gap (Yu et al., RSS 2024).
Paper: https://arxiv.org/abs/2405.10020  Code (MIT): https://github.com/UT-Austin-RobIn/lang4sim2real

frame --FiLM-ResNet(instruction)--> 128 x h x w --spatial softmax--> 256 keypoint coords
[keypoints, proprio] --MLP 1024/512/256--> Gaussian(mean, exp(log_std)) over actions,
log_std state-independent in [-6, 0] (a smooth squash rather than the code's hard clamp,
which stops learning once the value sits on a bound; starts at -1).
The instruction is prefixed with its domain ("Simulation: ..." / "Real: ...") and embedded
with MiniLM; the pretrained encoder is frozen except its FiLM layers and last stage, and its
frozen BatchNorms stay in eval mode while the policy trains.
"""
import numpy as np
import torch
from torch import nn

from embodied_vision.data.images import as_chw, resize_center_crop
from embodied_vision.encoders import create_encoder
from embodied_vision.layers import SpatialSoftmax
from embodied_vision.policies.base import (
    ACTION,
    DOMAIN,
    OBS_IMAGE,
    OBS_INSTRUCTION,
    OBS_STATE,
    PreTrainedPolicy,
    as_batch,
)
from embodied_vision.policies.lang4sim2real.configuration_l4s_bc import (
    DOMAIN_PREFIXES,
    L4SBCConfig,
)
from embodied_vision.policies.lang4sim2real.processor_l4s_bc import L4SBCProcessor
from embodied_vision.pretrain.augment import pad_random_crop

__all__ = ['L4SBCPolicy', 'OBS_IMAGE', 'OBS_LANGUAGE', 'domain_instruction']

#: Embedding of the domain-prefixed instruction, `(B, text_dim)`.
OBS_LANGUAGE = 'observation.language'


def domain_instruction(instruction: str, domain: str) -> str:
    """`'Simulation: put the carrot in the bowl'` for domain 'sim'."""
    if domain not in DOMAIN_PREFIXES:
        raise ValueError(f'domain={domain!r} is not one of {sorted(DOMAIN_PREFIXES)}')
    return f'{DOMAIN_PREFIXES[domain]} {instruction}'


class L4SBCPolicy(PreTrainedPolicy):
    """FiLM-conditioned, multi-domain BC policy with a Gaussian action head."""

    name = 'l4s_bc'
    config_class = L4SBCConfig
    processor_class = L4SBCProcessor
    #: a saved policy holds its encoder's weights: the pretrained checkpoint is not re-read
    load_overrides = {'encoder_checkpoint': None}

    def __init__(self, config: L4SBCConfig | None = None, embedder=None):
        super().__init__(config)
        config = self.config
        overrides = {} if config.text_dim == 384 else {'cond_dim': config.text_dim}
        self.encoder = create_encoder(config.encoder, checkpoint=config.encoder_checkpoint,
                                      **overrides)
        if getattr(self.encoder, 'cond_dim', 0) != config.text_dim:
            raise ValueError(f'{config.encoder} is not a FiLM encoder conditioned on '
                             f'{config.text_dim}-d text')
        self.keypoints = SpatialSoftmax()
        layers, width = [], 2 * self.encoder.embed_dim + config.state_dim
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, config.action_dim))
        self.mlp = nn.Sequential(*layers)
        # log_std = low + (high - low) * sigmoid(raw): the paper's range [-6, 0], but smooth.
        # A hard clamp with its initial value on the bound (0) never receives a gradient.
        low, high = config.log_std_range
        start = torch.tensor((-1.0 - low) / (high - low)).clamp(0.01, 0.99)
        self.log_std = nn.Parameter(torch.logit(start).repeat(config.action_dim))
        self._frozen: list[nn.Module] = []
        if config.freeze_pretrained:
            self._freeze_pretrained()
        self._embedder = embedder

    def _freeze_pretrained(self) -> None:
        """Train only FiLM layers and the last `trainable_stages` stages (paper: 1)."""
        stages = self.encoder.layers
        if self.config.trainable_stages > len(stages):
            raise ValueError(f'trainable_stages={self.config.trainable_stages}, but '
                             f'{self.config.encoder} has {len(stages)} stages')
        trainable = set(self.encoder.film_parameters())
        for stage in list(stages)[len(stages) - self.config.trainable_stages:]:
            trainable |= set(stage.parameters())
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(parameter in trainable)
        self._frozen = [m for m in self.encoder.modules()
                        if isinstance(m, nn.BatchNorm2d)
                        and not any(p.requires_grad for p in m.parameters())]

    def train(self, mode: bool = True) -> 'L4SBCPolicy':
        super().train(mode)
        for module in self._frozen:  # frozen statistics stay frozen
            module.eval()
        return self

    # --------------------------------------------------------------------------- model
    def _distribution(self, images: torch.Tensor, language: torch.Tensor,
                      state: torch.Tensor | None) -> torch.distributions.Normal:
        features = self.encoder.forward_features(images, language)
        inputs = [self.keypoints(features)]
        if self.config.state_dim:
            inputs.append(state)
        mean = self.mlp(torch.cat(inputs, dim=-1))
        low, high = self.config.log_std_range
        log_std = (low + (high - low) * torch.sigmoid(self.log_std)).expand_as(mean)
        return torch.distributions.Normal(mean, log_std.exp())

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.config.image_size, self.config.image_size)
        if tuple(images.shape[-2:]) != size:
            images = resize_center_crop(images, size, resize_ratio=1.0)
        if self.training and self.config.pad:
            images = pad_random_crop(images, self.config.pad)
        return images

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Negative log-likelihood of the demo actions; logs the NLL and the mean's MSE."""
        state = batch.get(OBS_STATE) if self.config.state_dim else None
        distribution = self._distribution(self._images(batch[OBS_IMAGE]),
                                          batch[OBS_LANGUAGE], state)
        action = batch[ACTION]
        nll = -distribution.log_prob(action).sum(dim=-1).mean()
        mse = (distribution.mean - action).pow(2).mean()
        return nll, {'nll': nll.item(), 'mse': mse.item()}

    # ------------------------------------------------------------------------ acting
    @property
    def embedder(self):
        if self._embedder is None:
            from embodied_vision.language import SentenceEmbedder
            self._embedder = SentenceEmbedder()
        return self._embedder

    def reset(self) -> None:
        """No state is carried between steps."""

    @property
    def input_features(self) -> tuple[str, ...]:
        """Observation keys `select_action` reads (the ROS policy_node subscribes to these)."""
        return (OBS_IMAGE, OBS_INSTRUCTION) + ((OBS_STATE,) if self.config.state_dim else ())

    @torch.no_grad()
    def select_action(self, obs: dict) -> np.ndarray:
        """Mean action for one observation.

        `obs` holds the frame under `OBS_IMAGE` (or `image`; uint8 `(H, W, 3)` or
        `(3, H, W)`), the proprioception under `OBS_STATE` (or `proprio`) when
        `state_dim > 0`, and either `language` (a precomputed embedding) or the instruction
        text under `OBS_INSTRUCTION` (or `instruction`) plus `DOMAIN` ('sim' / 'real').
        """
        self.eval()
        device = self.log_std.device
        image = as_chw(_first(obs, OBS_IMAGE, 'image'))
        if 'language' in obs:
            language, _ = as_batch(obs['language'], 'language', self.config.text_dim, device)
        else:
            text = domain_instruction(_first(obs, OBS_INSTRUCTION, 'instruction'),
                                      obs.get(DOMAIN, 'real'))
            language = self.embedder.embed([text]).to(device)
        state = None
        if self.config.state_dim:
            state, _ = as_batch(_first(obs, OBS_STATE, 'proprio'), 'proprio',
                                self.config.state_dim, device)
        distribution = self._distribution(self._images(image[None].to(device)), language,
                                          state)
        return distribution.mean[0].clamp(-1.0, 1.0).cpu().numpy()


def _first(obs: dict, *keys: str):
    """The value of the first of `keys` present in `obs` (KeyError naming them all)."""
    for key in keys:
        if key in obs:
            return obs[key]
    raise KeyError(f'observation needs one of {keys}, got {sorted(obs)}')
