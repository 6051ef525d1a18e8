"""Lang4Sim2Real encoder pretraining as a training task for `embodied_vision.training`.

Data: recorded episodes (HDF5, `embodied_vision.data.episodes`) of two visual domains, each
step labelled with its stage sentence (`stage_text`). A training item pairs one step of the
first domain (sim) with one of the second (real); a batch therefore holds B frames per
domain, as in the paper. Targets are the MiniLM embeddings of the stage sentences
(regression) or the [0, 1] similarity of the two domains' sentences (distance).

Validation (episodes held out by `val_fraction`, never seen in training) reports:
- `stage_retrieval`: cross-domain alignment, comparable across objectives. Over the stage
  sentences both held-out domains show, each real frame's nearest sim frame (cosine of the
  pooled features, among sim frames of those sentences) must carry the same sentence;
  accuracy per sentence, averaged (chance = 1 / number of shared sentences);
- `language_accuracy` (regression): nearest stage sentence = true stage sentence;
- `f1@0.5`, `f1@0.8` (distance): the paper's thresholded-similarity F1;
- `loss`: the training objective over the held-out frames (every sim x real pair for
  distance), which picks the exported checkpoint by default (`trainer.best_metric`), as the
  official code keeps its best-validation checkpoint.

    embodied-vision train experiment=lang4sim2real_pretrain \
        task.sim_episodes=[sim.hdf5] task.real_episodes=[real.hdf5] task.objective=distance
"""
from collections import Counter
from collections.abc import Sequence
import logging
import math
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import Dataset, Subset

from embodied_vision.checkpoints import save_encoder
from embodied_vision.data.episodes import EpisodeDataset
from embodied_vision.data.images import resize_center_crop
from embodied_vision.encoders import create_encoder
from embodied_vision.language import SentenceEmbedder, create_similarity
from embodied_vision.pretrain.augment import pad_random_crop
from embodied_vision.pretrain.language_alignment import (
    LanguageRegressionHead,
    language_accuracy,
    language_distance_loss,
    language_regression_loss,
    similarity_f1,
)
from embodied_vision.training.registry import register_task

__all__ = ['Lang4Sim2RealPretrainTask', 'OBJECTIVES', 'stage_retrieval']

_logger = logging.getLogger(__name__)
OBJECTIVES = ('regression', 'distance')


class _PairedDomains(Dataset):
    """Item i: step i of domain A and a step of domain B (a fixed stride walk over B)."""

    def __init__(self, a: Dataset, b: Dataset, key: str, sentence_ids: dict[str, int]):
        self.a, self.b, self.key, self.sentence_ids = a, b, key, sentence_ids
        # A stride coprime with len(B) visits all of B before repeating.
        self.stride = next(k for k in range(7919, 7919 + len(b) + 1) if math.gcd(k, len(b)) == 1)

    def __len__(self) -> int:
        return len(self.a)

    def _item(self, sample: dict) -> tuple[torch.Tensor, int]:
        return sample['obs'][self.key], self.sentence_ids[sample['stage_text']]

    def __getitem__(self, i: int):
        image_a, text_a = self._item(self.a[i])
        image_b, text_b = self._item(self.b[(i * self.stride) % len(self.b)])
        return {'sim': image_a, 'real': image_b, 'sim_text': text_a, 'real_text': text_b}


class _EncoderWithHead(nn.Module):
    """The encoder plus the temporary regression head; forward gives both outputs."""

    def __init__(self, encoder: nn.Module, head: nn.Module | None):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.encoder(images)
        return features, (self.head(features) if self.head is not None else None)


def _split_by_episode(dataset: EpisodeDataset, val_fraction: float, seed: int
                      ) -> tuple[Subset, Subset]:
    episodes = sorted({(f, demo) for f, demo, _ in dataset.index})
    order = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(episodes))) if len(episodes) > 1 else 0
    val = {episodes[i] for i in order[:n_val].tolist()}
    train_ids = [i for i, (f, d, _) in enumerate(dataset.index) if (f, d) not in val]
    val_ids = [i for i, (f, d, _) in enumerate(dataset.index) if (f, d) in val]
    return Subset(dataset, train_ids), Subset(dataset, val_ids)


def _text_counts(dataset: EpisodeDataset) -> Counter:
    """How many frames of the dataset carry each stage sentence."""
    from embodied_vision.data.episodes import EpisodeReader
    found = Counter()
    for path in dataset.paths:
        with EpisodeReader(path) as reader:
            for i in range(len(reader)):
                found.update(str(t) for t in reader.episode(i, obs_keys=[])['stage_text'])
    return found


def stage_retrieval(cosine: torch.Tensor, real_ids: torch.Tensor, sim_ids: torch.Tensor,
                    shared: list[int]) -> float:
    """Per-sentence accuracy of nearest-sim-frame retrieval, averaged over `shared` sentences.

    `cosine` is `(real, sim)`; only frames whose sentence is in `shared` take part, so every
    query has a right answer and a sentence with many frames does not dominate.
    """
    shared_ids = torch.tensor(shared)
    keep_real, keep_sim = torch.isin(real_ids, shared_ids), torch.isin(sim_ids, shared_ids)
    nearest = sim_ids[keep_sim][cosine[keep_real][:, keep_sim].argmax(dim=1)]
    truth = real_ids[keep_real]
    return sum((nearest[truth == k] == k).float().mean().item() for k in shared) / len(shared)


@register_task('lang4sim2real_pretrain')
class Lang4Sim2RealPretrainTask:
    """Pretrain an image encoder with language regression or language distance.

    Args:
        sim_episodes: HDF5 files of the first domain (many demos).
        real_episodes: HDF5 files of the second domain.
        objective: 'regression' or 'distance'.
        encoder: registered encoder name (default: the paper's narrow FiLM-ResNet-18).
        camera: which camera's RGB to read.
        image_size: frames are resized (shorter side) and centre-cropped to this.
        pad: pad-and-random-crop shift augmentation (paper: 12 at 128 px).
        val_fraction: episodes per domain held out for validation.
        loss_scale: the x40 multiplier of the distance loss.
        similarity: sentence similarity backend ('minilm_cosine'; BLEURT is not offline).
        seed: seeds the validation split.
        embedding_cache: a .safetensors file that keeps sentence embeddings between runs.
        in_memory: hold the episodes' frames in RAM (`EpisodeDataset(in_memory=True)`).
    """

    def __init__(self, sim_episodes: Sequence[str], real_episodes: Sequence[str],
                 objective: str = 'distance', encoder: str = 'lang4sim2real_resnet18',
                 camera: str = 'front', image_size: int = 128, pad: int = 12,
                 val_fraction: float = 0.1, loss_scale: float = 40.0,
                 similarity: str = 'minilm_cosine', seed: int = 0,
                 embedding_cache: str | None = None, in_memory: bool = True):
        if objective not in OBJECTIVES:
            raise ValueError(f'objective={objective!r} is not one of {OBJECTIVES}')
        if not 0 <= val_fraction < 1:
            raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
        self.objective, self.pad, self.loss_scale = objective, pad, loss_scale
        self.image_size = (image_size, image_size)
        self.key = f'{camera}/rgb'
        sim = EpisodeDataset(list(sim_episodes), obs_keys=[self.key], in_memory=in_memory)
        real = EpisodeDataset(list(real_episodes), obs_keys=[self.key], in_memory=in_memory)
        for name, data in (('sim', sim), ('real', real)):
            if len(data) == 0:
                raise ValueError(f'{name}_episodes hold no steps: {data.paths}')
        sim_counts, real_counts = _text_counts(sim), _text_counts(real)
        sim_texts, real_texts = sorted(sim_counts), sorted(real_counts)
        self.texts = sorted(set(sim_texts) | set(real_texts))
        self.sentence_ids = {t: i for i, t in enumerate(self.texts)}
        embedder = SentenceEmbedder(cache_file=embedding_cache)
        self.sentences = embedder.embed(self.texts)
        # As the official matrices: (sim sentence, real sentence) pairs only, so min-max and
        # row-softmax normalise over the sentences the other domain actually shows.
        self.similarity = create_similarity(similarity, embedder=embedder).pairwise(
            sim_texts, real_texts)
        self._sim_row = self._positions(sim_texts)
        self._real_column = self._positions(real_texts)
        if objective == 'distance':
            self._check_target_density(sim_counts, real_counts)
        sim_train, self.sim_val = _split_by_episode(sim, val_fraction, seed)
        real_train, self.real_val = _split_by_episode(real, val_fraction, seed + 1)
        self._train = _PairedDomains(sim_train, real_train, self.key, self.sentence_ids)
        backbone = create_encoder(encoder)
        head = LanguageRegressionHead(backbone.embed_dim, self.sentences.shape[1]) \
            if objective == 'regression' else None
        self.model = _EncoderWithHead(backbone, head)  # the head is dropped on export
        _logger.info('%d stage sentences; %d sim / %d real training steps', len(self.texts),
                     len(sim_train), len(real_train))

    def _positions(self, domain_texts: list[str]) -> torch.Tensor:
        """Sentence id -> its index among one domain's sentences (-1: not in that domain)."""
        positions = torch.full((len(self.texts),), -1, dtype=torch.long)
        for k, text in enumerate(domain_texts):
            positions[self.sentence_ids[text]] = k
        return positions

    def _check_target_density(self, sim_counts: Counter, real_counts: Counter) -> None:
        """Log (and warn when sparse) how much of the distance target is high.

        `constant_cosine_loss` is the loss of features whose sim x real cosines all take the
        one best value (the mean target), expected over every sim x real frame pair: what a
        run that aligned nothing scores. Sparse targets, e.g. the row softmax over many real
        sentences, leave little room under it, and training stalls there: stage_retrieval at
        chance, f1 at 0.
        """
        weights = [torch.tensor([counts[t] for t in sorted(counts)], dtype=torch.float64)
                   for counts in (sim_counts, real_counts)]
        w_sim, w_real = (w / w.sum() for w in weights)
        target = self.similarity.double()
        mean, mean_square = (float(w_sim @ target ** k @ w_real) for k in (1, 2))
        self.constant_cosine_loss = self.loss_scale ** 2 * (mean_square - mean ** 2)
        above = float(w_sim @ (target > 0.5).double() @ w_real)
        _logger.info('distance targets: %.1f%% of sim x real frame pairs above 0.5; one '
                     'cosine for every pair scores loss %.1f at best', 100 * above,
                     self.constant_cosine_loss)
        if above < 0.1:
            _logger.warning('only %.1f%% of sim x real frame pairs have target similarity above '
                            '0.5, so features with one cosine (%.2f) for every pair already '
                            'score loss %.1f and training can stall there (stage_retrieval at '
                            'chance, f1 0); fewer real sentences or a denser similarity '
                            '(minilm_cosine) keep more targets high', 100 * above, mean,
                            self.constant_cosine_loss)

    def target_similarity(self, sim_ids: torch.Tensor, real_ids: torch.Tensor) -> torch.Tensor:
        """`(len(sim_ids), len(real_ids))` sentence similarity of sim and real frames."""
        rows, columns = self._sim_row[sim_ids.cpu()], self._real_column[real_ids.cpu()]
        if (rows < 0).any() or (columns < 0).any():
            raise ValueError('a sim frame carries a sentence only the real domain has, or the '
                             'reverse; the similarity matrix covers sim x real sentences')
        return self.similarity[rows][:, columns]

    def train_dataset(self) -> Dataset:
        return self._train

    def _frames(self, images: torch.Tensor, augment: bool) -> torch.Tensor:
        if tuple(images.shape[-2:]) != self.image_size:
            images = resize_center_crop(images, self.image_size, resize_ratio=1.0)
        return pad_random_crop(images, self.pad) if augment and self.pad else images

    def features(self, model, batch, augment: bool = True):
        """`(f_sim, h_sim, f_real, h_real)` from ONE forward over both domains' frames.

        One batch, as the official trainer does: BatchNorm then normalises both domains with
        shared statistics, the same ones its running averages (used in eval mode and by the
        frozen encoder during BC) hold. Two forwards would normalise each domain by its own
        batch statistics, and the alignment learned that way is lost in eval mode.
        """
        n_sim = batch['sim'].shape[0]
        frames = torch.cat([self._frames(batch['sim'], augment),
                            self._frames(batch['real'], augment)])
        f, h = model(frames)
        return (f[:n_sim], h[:n_sim] if h is not None else None,
                f[n_sim:], h[n_sim:] if h is not None else None)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        f_sim, h_sim, f_real, h_real = self.features(model, batch)
        device = f_sim.device
        sim_text, real_text = batch['sim_text'].to(device), batch['real_text'].to(device)
        if self.objective == 'regression':
            sentences = self.sentences.to(device)
            loss = language_regression_loss([h_sim, h_real],
                                            [sentences[sim_text], sentences[real_text]])
        else:
            target = self.target_similarity(sim_text, real_text).to(device)
            loss = language_distance_loss(f_sim, f_real, target, self.loss_scale)
        return loss, {}

    def _embed(self, model, subset: Subset, batch: int = 64):
        """`(features, head outputs or None, sentence ids)` of a validation subset."""
        device = next(model.parameters()).device
        features, heads, ids = [], [], []
        for start in range(0, len(subset), batch):
            items = [subset[i] for i in range(start, min(len(subset), start + batch))]
            images = torch.stack([item['obs'][self.key] for item in items]).to(device)
            f, h = model(self._frames(images, False))
            features.append(f.cpu())
            heads += [h.cpu()] if h is not None else []
            ids += [self.sentence_ids[item['stage_text']] for item in items]
        return torch.cat(features), torch.cat(heads) if heads else None, torch.tensor(ids)

    def evaluate(self, model, step: int) -> dict:
        if len(self.sim_val) == 0 or len(self.real_val) == 0:
            return {}
        f_sim, h_sim, t_sim = self._embed(model, self.sim_val)
        f_real, h_real, t_real = self._embed(model, self.real_val)
        cosine = F.normalize(f_real, dim=-1) @ F.normalize(f_sim, dim=-1).T
        results = {}
        shared = sorted(set(t_sim.tolist()) & set(t_real.tolist()))
        if shared:
            results['stage_retrieval'] = stage_retrieval(cosine, t_real, t_sim, shared)
        if self.objective == 'regression':
            results['language_accuracy'] = language_accuracy(
                torch.cat([h_sim, h_real]), self.sentences, torch.cat([t_sim, t_real]))
            results['loss'] = language_regression_loss(
                [h_sim, h_real], [self.sentences[t_sim], self.sentences[t_real]]).item()
        else:
            target = self.target_similarity(t_sim, t_real)
            results['f1@0.5'] = similarity_f1(cosine, target.T, 0.5)
            results['f1@0.8'] = similarity_f1(cosine, target.T, 0.8)
            results['loss'] = language_distance_loss(f_sim, f_real, target,
                                                     self.loss_scale).item()
        return results

    def export(self, model, out_dir: Path) -> Path:
        """Save the encoder (without the temporary language head) in our format."""
        return save_encoder(model.encoder, Path(out_dir) / 'encoder')
