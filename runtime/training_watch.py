"""Training that goes wrong without a NaN: the learning rate that is stable for given
features, and the watch `TransferModel.fit` keeps over its epoch losses.

The stable learning rate (runtime/SPEC.md#training). For one sample
with augmented features x~ = [x, 1] (the bias sees a constant 1) the Hessian of the loss with
respect to a dense layer's weights is A (x) x~ x~^T, with
  softmax cross-entropy: A = diag(p) - p p^T, whose eigenvalues are at most 1/2;
  mean squared error over k outputs: A = (2/k) I.
x~ x~^T has one non-zero eigenvalue, |x~|^2 = |x|^2 + 1. A batch's Hessian is the mean of such
terms, so its largest eigenvalue is at most L = a * max_i |x~_i|^2 (a = 1/2, resp. 2/k), and
gradient descent on a function whose curvature is at most L is stable for a step below 2 / L:
  softmax cross-entropy + SGD: eta < 4 / max_i |x~_i|^2
  mean squared error + SGD:    eta < k / max_i |x~_i|^2
Heavy-ball momentum beta is stable up to (1 + beta) times that. Adam divides each step by the
gradient's own scale, so no bound of this form exists for it. The bound holds for any batch (a
single sample can have the largest norm), so it is conservative: runs here stayed stable up
to 8x it (benchmarks/accuracy/defaults.py measures it).

The watch: an epoch whose mean loss is above RISE times the best loss seen so far (an earlier
epoch's mean, or the loss of the first step, taken at the weights training started from) AND
above that starting loss AND, for a classifier, above the loss of a uniform guess (ln K for K
classes) has diverged. The last condition keeps a run that starts nearly perfect (an imprinted
head: loss ~0.01) from being stopped by one noisy epoch (0.01 -> 0.7 with one odd sample among
12); a diverging classifier passes ln K within steps. float32 stays finite long after the weights are
useless (loss 134 -> 6,415 in 25 steps on landmark features with |x|^2 ~ 1e7), so NaN/Inf
alone catches divergence late or never.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

RISE = 3.0   # converging runs measured here rose at most 1.24x over their best epoch (2.7x at 16x the bound)


def stable_learning_rate(max_norm2: float, loss: str, num_outputs: int, optimizer: str,
                         momentum: float = 0.0) -> float | None:
    """The largest stable learning rate of a single dense layer trained on features whose
    largest squared norm is `max_norm2` (module docstring); None for adaptive optimizers."""
    augmented = float(max_norm2) + 1.0
    # Only plain gradient steps scale with the features; adaptive optimizers (adam, adamw,
    # rmsprop, and any this runtime does not know) have no such bound.
    if optimizer not in ("sgd", "momentum") or not math.isfinite(augmented):
        return None
    bound = (num_outputs if loss == "mse" else 4.0) / augmented
    return bound * (1.0 + momentum) if optimizer == "momentum" else bound


def largest_norm2(bottlenecks: np.ndarray) -> float:
    """max_i |x_i|^2 in float64 (float32 squares overflow near |x| ~ 1e19)."""
    if not len(bottlenecks):
        return 0.0
    return float((np.asarray(bottlenecks, np.float64) ** 2).sum(axis=1).max())


@dataclasses.dataclass
class LossWatch:
    """Per-epoch losses of one `fit` call and the state of the best epoch.

    Epoch 0 stands for the weights training started from; its loss is the first step's (taken
    before that step's update). Epochs whose loss is NaN (no batch ended in them, with a fixed
    train batch) are skipped."""
    start_state: dict
    start_loss: float | None = None
    best_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    chance_loss: float = 0.0        # a classifier's loss at a uniform guess, ln K (0: no floor)

    def __post_init__(self):
        self.best_state = self.start_state

    def first_step(self, loss: float) -> None:
        if self.start_loss is None:
            self.start_loss = self.best_loss = loss

    def diverged(self, epoch: int, loss: float, state: dict) -> bool:
        """Records epoch `epoch` (1-based) and says whether it diverged."""
        if not math.isfinite(loss) or self.start_loss is None:
            return False
        if loss > RISE * self.best_loss and loss > self.start_loss and loss > self.chance_loss:
            return True
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.best_state = loss, epoch, state
        return False


def divergence_message(epoch: int, loss: float, watch: LossWatch, learning_rate: float | None,
                       bound: float | None, max_norm2: float, samples: int) -> str:
    """One line: what rose, where the weights went back to, and the rate that would be stable."""
    where = "the weights training started from" if watch.best_epoch == 0 else f"the end of epoch {watch.best_epoch}"
    rate = f"learning rate {learning_rate:.3g}" if learning_rate is not None else "the learning rate"
    if bound is not None:
        advice = (f"{rate} is too large for these features: the largest stable rate for them is "
                  f"{bound:.3g} (from max |x|^2 = {max_norm2:.4g} over the {samples} cached samples, "
                  f"runtime/SPEC.md#training): call set_learning_rate({bound:.2g}) and fit again")
    else:
        now = f" (now {learning_rate:.3g})" if learning_rate is not None else ""
        advice = f"lower the learning rate{now}, e.g. tenfold with set_learning_rate, and fit again"
    return (f"training diverged in epoch {epoch}: the mean loss rose to {loss:.4g}, over {RISE:g}x the "
            f"best {watch.best_loss:.4g} and above the starting {watch.start_loss:.4g}; the weights "
            f"were rolled back to {where}; {advice}")
