"""Lang4Sim2Real's two language-alignment pretraining objectives.

Natural Language Can Help Bridge the Sim2Real Gap (Yu et al., RSS 2024,
https://arxiv.org/abs/2405.10020). Images from two domains (sim and real) are labelled with
the sentence describing their task stage; the image encoder learns an embedding in which
images whose descriptions are alike lie close together, across domains.

- Language regression (`lang-reg`): a temporary linear head maps pooled features to the
  384-d sentence space; loss = || normalise(head(f)) - normalise(l) ||_2 (the L2 norm, not its
  square), averaged over the batch and summed over the domains.
- Language distance (`lang-dist-dotprod`): P_ij = cos(f_i^sim, f_j^real) on pooled features,
  regressed with MSE onto the sentence-similarity matrix T_ij in [0, 1], both scaled by 40.
"""
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

__all__ = ['LanguageRegressionHead', 'language_regression_loss', 'language_distance_loss',
           'language_accuracy', 'similarity_f1']


class LanguageRegressionHead(nn.Module):
    """The temporary linear head from pooled image features to the sentence space."""

    def __init__(self, embed_dim: int, text_dim: int = 384):
        super().__init__()
        self.proj = nn.Linear(embed_dim, text_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(features), dim=-1)


def language_regression_loss(predicted: list[torch.Tensor], sentences: list[torch.Tensor]
                             ) -> torch.Tensor:
    """Sum over domains of the mean L2 distance between unit prediction and unit sentence."""
    if len(predicted) != len(sentences) or not predicted:
        raise ValueError(f'need one sentence batch per domain, got {len(predicted)} '
                         f'predictions and {len(sentences)} sentence batches')
    total = predicted[0].new_zeros(())
    for pred, target in zip(predicted, sentences):
        if pred.shape != target.shape:
            raise ValueError(f'prediction {tuple(pred.shape)} and sentence embedding '
                             f'{tuple(target.shape)} differ in shape')
        total = total + (F.normalize(pred, dim=-1) - F.normalize(target, dim=-1)).norm(
            dim=-1).mean()
    return total


def language_distance_loss(features_a: torch.Tensor, features_b: torch.Tensor,
                           target_similarity: torch.Tensor, scale: float = 40.0
                           ) -> torch.Tensor:
    """MSE between scaled cross-domain cosine similarities and scaled sentence similarity.

    Args:
        features_a: `(A, D)` pooled features of domain-1 images (sim).
        features_b: `(B, D)` pooled features of domain-2 images (real).
        target_similarity: `(A, B)` similarity of their stage sentences, in [0, 1].
        scale: the paper's x40 multiplier on both sides.
    """
    expected = (features_a.shape[0], features_b.shape[0])
    if tuple(target_similarity.shape) != expected:
        raise ValueError(f'target similarity must be {expected}, got '
                         f'{tuple(target_similarity.shape)}')
    cosine = F.normalize(features_a, dim=-1) @ F.normalize(features_b, dim=-1).T
    return F.mse_loss(scale * cosine, scale * target_similarity.to(cosine.dtype))


@torch.no_grad()
def language_accuracy(predicted: torch.Tensor, templates: torch.Tensor,
                      stages: torch.Tensor) -> float:
    """Fraction of predictions whose nearest template sentence is their true stage's."""
    nearest = (F.normalize(predicted, dim=-1) @ F.normalize(templates, dim=-1).T).argmax(-1)
    return (nearest == stages).float().mean().item()


@torch.no_grad()
def similarity_f1(predicted: torch.Tensor, target: torch.Tensor, threshold: float) -> float:
    """F1 of (predicted > threshold) against (target > threshold), the paper's metric."""
    pred, true = predicted > threshold, target > threshold
    tp = (pred & true).sum().item()
    precision = tp / max(1, pred.sum().item())
    recall = tp / max(1, true.sum().item())
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
