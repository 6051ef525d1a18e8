"""Self-supervised and language-grounded pretraining objectives."""
from embodied_vision.pretrain.augment import colour_jitter, pad_random_crop
from embodied_vision.pretrain.language_alignment import (
    LanguageRegressionHead,
    language_accuracy,
    language_distance_loss,
    language_regression_loss,
    similarity_f1,
)

__all__ = ['LanguageRegressionHead', 'colour_jitter', 'language_accuracy',
           'language_distance_loss', 'language_regression_loss', 'pad_random_crop',
           'similarity_f1']
