"""Multi-domain BC training for Lang4Sim2Real as a task of the shared `Trainer`.

Source-domain ("sim") demos of several tasks are mixed with a few target-domain ("real")
demos of the target task; every sample carries the MiniLM embedding of its domain-prefixed
instruction ("Simulation: ..." / "Real: ..."), which conditions FiLM. A sample is from the
target-domain demos with probability `target_probability` (the paper's focus task, 0.2 for
pick-and-place), otherwise uniformly from the source demos.

    embodied-vision train experiment=lang4sim2real_bc task.sim_episodes=[a.hdf5,b.hdf5] \
        task.real_episodes=[target_real.hdf5] task.policy.encoder_checkpoint=runs/.../encoder
"""
from collections.abc import Mapping, Sequence
import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from embodied_vision.data.episodes import EpisodeDataset, EpisodeReader
from embodied_vision.language import SentenceEmbedder
from embodied_vision.policies.base import ACTION, OBS_STATE
from embodied_vision.policies.lang4sim2real.configuration_l4s_bc import L4SBCConfig
from embodied_vision.policies.lang4sim2real.modeling_l4s_bc import (
    OBS_IMAGE,
    OBS_LANGUAGE,
    L4SBCPolicy,
    domain_instruction,
)
from embodied_vision.training.registry import register_task

__all__ = ['L4SBCTask', 'MixedDomainDataset']


class MixedDomainDataset(Dataset):
    """Source steps, plus enough virtual indices mapped onto target steps that a uniform
    draw lands on the target domain with probability `target_probability`. Without source
    steps it is the target demos alone (the "target demos only" baseline)."""

    def __init__(self, source: Dataset, target: Dataset, target_probability: float,
                 source_language: torch.Tensor, target_language: torch.Tensor, key: str):
        if not 0 < target_probability < 1:
            raise ValueError(f'target_probability must be in (0, 1), got {target_probability}')
        if len(target) == 0:
            raise ValueError('need target-domain steps, got none')
        self.source, self.target, self.key = source, target, key
        self.source_language, self.target_language = source_language, target_language
        total = math.ceil(len(source) / (1 - target_probability))
        self.n_target_slots = max(1, total - len(source)) if len(source) else len(target)

    def __len__(self) -> int:
        return len(self.source) + self.n_target_slots

    def __getitem__(self, index: int) -> dict:
        if index < len(self.source):
            sample, language = self.source[index], self.source_language[index]
        else:
            slot = index - len(self.source)
            target_index = slot % len(self.target)
            sample, language = self.target[target_index], self.target_language[target_index]
        return {OBS_IMAGE: sample['obs'][self.key], OBS_STATE: sample['obs']['proprio'],
                OBS_LANGUAGE: language, ACTION: sample['action']}


def _instruction_embeddings(dataset: EpisodeDataset, domain: str, embedder) -> torch.Tensor:
    """One embedding per step: the step's episode instruction, prefixed with its domain."""
    per_episode = {}
    for f, path in enumerate(dataset.paths):
        with EpisodeReader(path) as reader:
            for i, demo in enumerate(reader.demos):
                per_episode[(f, demo)] = domain_instruction(reader.attrs(i)['instruction'],
                                                            domain)
    texts = [per_episode[(f, demo)] for f, demo, _ in dataset.index]
    return embedder.embed(texts)


@register_task('l4s_bc')
class L4SBCTask:
    """Train `l4s_bc` on mixed source/target demos (see the module docstring).

    Args:
        sim_episodes: source-domain HDF5 episodes (several tasks); empty = target only.
        real_episodes: target-domain HDF5 episodes of the target task (few demos).
        target_probability: probability that a sample comes from `real_episodes`.
        policy: `L4SBCConfig` fields (e.g. `encoder_checkpoint` of a pretrained encoder).
        embedding_cache: optional `.safetensors` cache of instruction embeddings.
        target_domain: domain name prefixed to the instructions of `real_episodes`; 'sim'
            with no `sim_episodes` is single-domain BC on sim demos (e.g. the behaviour
            cloning baseline of Manipulate-by-Seeing on its tool-camera videos), evaluated
            in the sim domain with the same prefix.
        in_memory: hold the demos' frames and proprio in RAM (`EpisodeDataset(in_memory=True)`).
    """

    def __init__(self, sim_episodes: Sequence[str], real_episodes: Sequence[str],
                 target_probability: float = 0.2, policy: Mapping | None = None,
                 embedding_cache: str | None = None, target_domain: str = 'real',
                 in_memory: bool = True):
        if sim_episodes and target_domain != 'real':
            raise ValueError(f'target_domain={target_domain!r} needs sim_episodes=[]: mixed '
                             'batches pair sim source demos with real target demos')
        self.config = L4SBCConfig(**(policy or {}))
        key = f'{self.config.camera}/rgb'
        target = EpisodeDataset(list(real_episodes), obs_keys=[key, 'proprio'],
                                in_memory=in_memory)
        embedder = SentenceEmbedder(cache_file=embedding_cache)
        if sim_episodes:
            source = EpisodeDataset(list(sim_episodes), obs_keys=[key, 'proprio'],
                                    in_memory=in_memory)
            source_language = _instruction_embeddings(source, 'sim', embedder)
        else:  # target demos only
            source, source_language = [], torch.zeros(0, self.config.text_dim)
        self._dataset = MixedDomainDataset(
            source, target, target_probability, source_language,
            _instruction_embeddings(target, target_domain, embedder), key)
        self.model = L4SBCPolicy(self.config, embedder=embedder)

    def train_dataset(self) -> Dataset:
        return self._dataset

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        return model(batch)

    def export(self, model, out_dir: Path) -> Path:
        return model.save_pretrained(Path(out_dir) / 'policy')
