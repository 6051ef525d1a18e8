"""`BCMLPPolicy`: behaviour cloning over frozen-encoder embeddings (R3M evaluation protocol).

Paper: R3M, Nair et al. 2022, arXiv:2203.12601 (github.com/facebookresearch/r3m, MIT); the
BC head follows its evaluation code (BatchNorm on the embedding, 2 x 256 ReLU MLP, MSE).
Weights are the user's own (trained with `embodied_vision.policies.bc.training_bc_mlp`);
nothing is downloaded. Saved as a `policy` artefact (`embodied_vision.checkpoints.artifact`).

Inputs are normalised inside the model with statistics stored as buffers (set from the
training set by `set_normalization`), so `select_action` takes raw embeddings, states and
returns raw actions, like LeRobot policies with their normalisers.
"""
import torch
from torch import nn

from embodied_vision.policies.base import (
    ACTION,
    OBS_EMBEDDING,
    OBS_STATE,
    PreTrainedPolicy,
    as_batch,
)
from embodied_vision.policies.bc.configuration_bc_mlp import BCMLPConfig
from embodied_vision.policies.bc.processor_bc_mlp import BCMLPProcessor

__all__ = ['BCMLPPolicy']


class BCMLPPolicy(PreTrainedPolicy):
    """An MLP policy over `OBS_EMBEDDING` (+ `OBS_STATE`) regressing `ACTION`."""

    name = 'bc_mlp'
    config_class = BCMLPConfig
    processor_class = BCMLPProcessor

    def __init__(self, config: BCMLPConfig | None = None):
        super().__init__(config)
        config = self.config
        self.embedding_norm = nn.BatchNorm1d(config.embed_dim) if config.input_batchnorm \
            else nn.Identity()
        layers, width = [], config.embed_dim + config.state_dim
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        layers.append(nn.Linear(width, config.action_dim))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer('state_mean', torch.zeros(config.state_dim))
        self.register_buffer('state_std', torch.ones(config.state_dim))
        self.register_buffer('action_mean', torch.zeros(config.action_dim))
        self.register_buffer('action_std', torch.ones(config.action_dim))

    @property
    def input_features(self) -> tuple[str, ...]:
        return (OBS_EMBEDDING, OBS_STATE) if self.config.state_dim else (OBS_EMBEDDING,)

    # ------------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def set_normalization(self, states: torch.Tensor | None, actions: torch.Tensor) -> None:
        """Set state/action mean and std from training data (std floored at 1e-3)."""
        if self.config.state_dim and states is not None:
            self.state_mean.copy_(states.float().mean(0))
            self.state_std.copy_(states.float().std(0).clamp_min(1e-3))
        self.action_mean.copy_(actions.float().mean(0))
        self.action_std.copy_(actions.float().std(0).clamp_min(1e-3))

    def _predict(self, embedding: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """Normalised action prediction, `(B, action_dim)`."""
        x = self.embedding_norm(embedding)
        if self.config.state_dim:
            x = torch.cat([x, (state - self.state_mean) / self.state_std], dim=1)
        return self.mlp(x)

    def _inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        device = self.action_mean.device
        if OBS_EMBEDDING not in batch:
            raise KeyError(f'{OBS_EMBEDDING!r} is missing; got keys {sorted(batch)}')
        embedding, single = as_batch(batch[OBS_EMBEDDING], OBS_EMBEDDING,
                                     self.config.embed_dim, device)
        state = None
        if self.config.state_dim:
            if OBS_STATE not in batch:
                raise KeyError(f'{OBS_STATE!r} is missing (state_dim='
                               f'{self.config.state_dim}); got keys {sorted(batch)}')
            state, _ = as_batch(batch[OBS_STATE], OBS_STATE, self.config.state_dim, device)
        return embedding, state, single

    # ------------------------------------------------------------------------ policy API
    def reset(self) -> None:
        """No temporal state: nothing to clear between episodes."""

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """MSE between predicted and demonstrated actions (normalised)."""
        embedding, state, _ = self._inputs(batch)
        target, _ = as_batch(batch[ACTION], ACTION, self.config.action_dim, embedding.device)
        target = (target - self.action_mean) / self.action_std
        loss = nn.functional.mse_loss(self._predict(embedding, state), target)
        return loss, {'loss': float(loss.detach())}

    @torch.no_grad()
    def select_action(self, obs: dict) -> torch.Tensor:
        """Raw action `(action_dim,)` for one observation, `(B, action_dim)` for a batch."""
        was_training = self.training
        self.eval()
        embedding, state, single = self._inputs(obs)
        action = self._predict(embedding, state) * self.action_std + self.action_mean
        action = action.clamp(-self.config.action_clip, self.config.action_clip)
        self.train(was_training)
        return action[0] if single else action
