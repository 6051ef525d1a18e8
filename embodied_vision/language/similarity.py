"""Sentence similarity in [0, 1], the target of Lang4Sim2Real's language-distance loss.

The paper scores every (sim description, real description) pair with BLEURT-20-D12 and
min-max normalises the matrix to [0, 1]. BLEURT is not available offline, so the documented
default here is MiniLM cosine similarity, min-max normalised the same way. `minilm_softmax`
is the official code's own fallback without BLEURT: a row-wise softmax of MiniLM dot products
at temperature 0.01, close to one-hot on the matching sentence, so it separates stages whose
sentences differ in a word or two (min-max cosine gives them 0.7-0.9). Other scorers plug in
through `register_similarity`.
"""
from collections.abc import Callable

import torch

from embodied_vision.language.embedder import SentenceEmbedder

__all__ = ['MiniLMCosineSimilarity', 'MiniLMSoftmaxSimilarity', 'create_similarity',
           'min_max_normalise', 'register_similarity', 'SIMILARITIES']


def min_max_normalise(matrix: torch.Tensor) -> torch.Tensor:
    """Scale a score matrix to [0, 1] over all its entries (a constant matrix -> ones)."""
    low, high = matrix.min(), matrix.max()
    if high - low < 1e-12:
        return torch.ones_like(matrix)
    return (matrix - low) / (high - low)


class MiniLMCosineSimilarity:
    """Cosine similarity of MiniLM sentence embeddings, min-max normalised to [0, 1]."""

    def __init__(self, embedder: SentenceEmbedder | None = None):
        self.embedder = embedder or SentenceEmbedder()

    def dot_products(self, a: list[str], b: list[str]) -> torch.Tensor:
        """`(len(a), len(b))` dot products of the unit MiniLM embeddings."""
        if not a or not b:
            raise ValueError(f'need non-empty sentence lists, got {len(a)} and {len(b)}')
        return self.embedder.embed(a) @ self.embedder.embed(b).T

    def pairwise(self, a: list[str], b: list[str]) -> torch.Tensor:
        """`(len(a), len(b))` similarities in [0, 1]."""
        return min_max_normalise(self.dot_products(a, b))


class MiniLMSoftmaxSimilarity(MiniLMCosineSimilarity):
    """Row-wise softmax of MiniLM dot products over `b` (official fallback, temperature 0.01)."""

    def __init__(self, embedder: SentenceEmbedder | None = None, temperature: float = 0.01):
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        super().__init__(embedder)
        self.temperature = temperature

    def pairwise(self, a: list[str], b: list[str]) -> torch.Tensor:
        """`(len(a), len(b))` similarities in [0, 1]; each row sums to 1."""
        return torch.softmax(self.dot_products(a, b) / self.temperature, dim=1)


SIMILARITIES: dict[str, Callable[..., object]] = {'minilm_cosine': MiniLMCosineSimilarity,
                                                  'minilm_softmax': MiniLMSoftmaxSimilarity}


def register_similarity(name: str, factory: Callable[..., object]) -> None:
    """Add a scorer whose instances implement `pairwise(a, b) -> (A, B) in [0, 1]`."""
    SIMILARITIES[name] = factory


def create_similarity(name: str = 'minilm_cosine', **kwargs):
    if name not in SIMILARITIES:
        raise ValueError(f'unknown sentence similarity {name!r}; known: {sorted(SIMILARITIES)}')
    return SIMILARITIES[name](**kwargs)
