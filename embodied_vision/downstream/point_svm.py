"""The linear-SVM protocol of point-cloud pretraining: frozen features, `SVC(kernel='linear')`.

I2P-MAE (https://arxiv.org/abs/2212.06785, upstream `tools/runner_test_svm.py`), Point-M2AE
and Point-MAE score a pretrained encoder by a linear SVM on its frozen features: the encoder
in eval mode (no masking), the last scale's tokens after `encoder_norms.2`, max-pooled
(`I2PMAEEncoder.forward`), on the **first** `n_points` points of each stored cloud (1024 of
ModelNet40's 2048; no normalisation, no augmentation), with C = 0.0093 (ModelNet40) or 0.018
(ScanObjectNN); 0.01 while monitoring pretraining.
"""
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ['SVM_C', 'extract_features', 'linear_svm_accuracy']

#: Upstream's C per dataset (`runner_test_svm.py`; `monitor` during pretraining).
SVM_C = {'modelnet40': 0.0093, 'scanobjectnn': 0.018, 'monitor': 0.01}


@torch.no_grad()
def extract_features(encoder, points: np.ndarray | torch.Tensor, n_points: int | None = None,
                     batch_size: int = 32) -> np.ndarray:
    """`(N, D)` float64 features of `(N, P, 3)` clouds: the first `n_points` of each."""
    points = torch.as_tensor(np.asarray(points, np.float32))
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f'expects (N, P, 3) clouds, got {tuple(points.shape)}')
    n_points = points.shape[1] if n_points is None else int(n_points)
    if n_points > points.shape[1]:
        raise ValueError(f'n_points={n_points} exceeds the {points.shape[1]} stored points')
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [encoder(points[i:i + batch_size, :n_points].to(device)).double().cpu()
           for i in range(0, len(points), batch_size)]
    encoder.train(was_training)
    return torch.cat(out).numpy()


def linear_svm_accuracy(train_features: np.ndarray, train_labels: Sequence[int],
                        test_features: np.ndarray, test_labels: Sequence[int],
                        c: float = SVM_C['monitor']) -> tuple[float, np.ndarray]:
    """`(accuracy, predictions)` of `sklearn.svm.SVC(kernel='linear', C=c)` fit on the
    training features and scored on the test ones."""
    from sklearn.svm import SVC
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError(f'features and labels differ in length: train {len(train_features)} '
                         f'vs {len(train_labels)}, test {len(test_features)} vs '
                         f'{len(test_labels)}')
    if len(np.unique(train_labels)) < 2:
        raise ValueError('the SVM needs at least 2 classes among the training labels')
    svm = SVC(kernel='linear', C=float(c)).fit(train_features, train_labels)
    predictions = svm.predict(test_features)
    return float(np.mean(predictions == test_labels)), predictions
