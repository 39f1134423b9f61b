"""Weight imprinting: a single-layer softmax head that predicts the nearest class mean of the
cached bottlenecks, before any SGD step (`TransferModel.imprint`; the C++ runtime's
`src/imprint.cc` and the web runtime's `src/imprint.js` compute the same).

For bottleneck x and class means mu_c, nearest-mean is argmax_c (x.mu_c - |mu_c|^2 / 2): a linear
layer, kernel[c, :] = s * mu_c (kernels are [units, inputs]), bias[c] = -s * |mu_c|^2 / 2.
(Unit-normalised means, as in Qi et al. 2018, assume normalised features; pooled MobileNet
features are not, so the Euclidean form is used.) s scales the logits so that a sample sits ~4
logits closer to its own class than to the average other one. Classes without a sample get a
bias far below the others until they are trained.
"""

from __future__ import annotations

import numpy as np


def class_weights(labels: np.ndarray, one_hot: bool, num_classes: int) -> np.ndarray:
    """Each sample's weight per class [samples, classes]: its one-hot (or soft) label row;
    class ids as rows."""
    if one_hot:
        return labels.astype(np.float64)
    return np.eye(num_classes)[labels]


def imprinted_head(bottlenecks: np.ndarray, weights: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel [classes, features] and bias [classes] (float32) of the nearest-class-mean
    head for these bottlenecks [samples, features] and class weights [samples, classes]."""
    bottlenecks = bottlenecks.astype(np.float64)
    present = np.flatnonzero(weights.sum(axis=0) > 0)
    means = (weights[:, present].T @ bottlenecks) / weights[:, present].sum(axis=0)[:, None]
    distances = ((bottlenecks[:, None, :] - means[None]) ** 2).sum(-1)
    scale = 8.0 / max(float(distances.mean()), 1e-12)
    kernel = np.zeros((num_classes, bottlenecks.shape[1]), np.float64)
    bias = np.zeros(num_classes, np.float64)
    kernel[present, :] = scale * means
    bias[present] = -scale * (means ** 2).sum(-1) / 2
    absent = np.setdiff1d(np.arange(num_classes), present)
    bias[absent] = bias[present].min() - 10.0 - scale * distances.max()
    return kernel.astype(np.float32), bias.astype(np.float32)
