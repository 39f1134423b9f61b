/**
 * Training that goes wrong without a NaN, as runtime/training_watch.py has it (runtime/SPEC.md#training): the learning rate that is stable for given features,
 * and the watch `fit` keeps over its epoch losses.
 *
 * Stable rate: for one sample with x~ = [x, 1] the Hessian of the loss in a dense layer's
 * weights is A (x) x~x~^T, A's eigenvalues at most 1/2 (softmax cross-entropy) or 2/k (mean
 * squared error over k outputs), so gradient descent is stable below
 *   softmax cross-entropy + SGD: 4 / (1 + max |x|^2);  mse + SGD: k / (1 + max |x|^2);
 * heavy-ball momentum beta: (1 + beta) times that; adaptive optimizers (Adam): no such bound.
 * Watch: an epoch whose mean loss is above RISE x the best so far, above the first step's loss
 * and, for a classifier, above a uniform guess's loss (ln K) has diverged (float32 stays finite
 * long after the weights are useless; the ln K floor keeps one noisy epoch of a nearly perfect
 * imprinted start from stopping it).
 */

import {formatG} from './format.js';

export const RISE = 3;   // converging runs rose at most 1.24x over their best epoch (2.7x at 16x the bound)

/** The largest stable learning rate of a single dense layer on features whose largest |x|^2 is `maxNorm2`; null for adaptive optimizers. */
export function stableLearningRate(maxNorm2, loss, numOutputs, optimizer, momentum = 0) {
  const augmented = maxNorm2 + 1;
  if (!['sgd', 'momentum'].includes(optimizer) || !Number.isFinite(augmented)) return null;
  const bound = (loss === 'mse' ? numOutputs : 4) / augmented;
  return optimizer === 'momentum' ? bound * (1 + momentum) : bound;
}

/** max_i |x_i|^2 in float64 over Float32Array rows (float32 squares overflow near |x| ~ 1e19). */
export function largestNorm2(bottlenecks) {
  let largest = 0;
  for (const row of bottlenecks) {
    let norm2 = 0;
    for (let j = 0; j < row.length; j++) norm2 += row[j] * row[j];
    largest = Math.max(largest, norm2);
  }
  return largest;
}

/**
 * Per-epoch losses of one `fit` call and the state of the best epoch. Epoch 0 stands for the
 * weights training started from, its loss the first step's (taken before that step's update);
 * epochs whose mean is NaN (no batch ended in them) are skipped.
 */
export class LossWatch {
  constructor(startState, chanceLoss = 0) {
    this.chanceLoss = chanceLoss;   // a classifier's loss at a uniform guess, ln K (0: no floor)
    this.startLoss = null;
    this.bestLoss = Infinity;
    this.bestEpoch = 0;
    this.bestState = startState;
  }

  firstStep(loss) {
    if (this.startLoss === null) this.startLoss = this.bestLoss = loss;
  }

  /** Records epoch `epoch` (1-based) and says whether it diverged. */
  diverged(epoch, loss, state) {
    if (!Number.isFinite(loss) || this.startLoss === null) return false;
    if (loss > RISE * this.bestLoss && loss > this.startLoss && loss > this.chanceLoss) return true;
    if (loss < this.bestLoss) [this.bestLoss, this.bestEpoch, this.bestState] = [loss, epoch, state];
    return false;
  }
}

/** One line, Python's words and figures: what rose, where the weights went back to, the rate that would be stable. */
export function divergenceMessage(epoch, loss, watch, learningRate, bound, maxNorm2, samples) {
  const where = watch.bestEpoch === 0 ? 'the weights training started from' : `the end of epoch ${watch.bestEpoch}`;
  const rate = learningRate !== null ? `learning rate ${formatG(learningRate, 3)}` : 'the learning rate';
  const advice = bound !== null
    ? `${rate} is too large for these features: the largest stable rate for them is ${formatG(bound, 3)} (from max |x|^2 = ` +
      `${formatG(maxNorm2, 4)} over the ${samples} cached samples, runtime/SPEC.md#training): call setLearningRate(${formatG(bound, 2)}) and fit again`
    : `lower the learning rate${learningRate !== null ? ` (now ${formatG(learningRate, 3)})` : ''}, e.g. tenfold with setLearningRate, and fit again`;
  return `training diverged in epoch ${epoch}: the mean loss rose to ${formatG(loss, 4)}, over ${formatG(RISE)}x the ` +
         `best ${formatG(watch.bestLoss, 4)} and above the starting ${formatG(watch.startLoss, 4)}; the weights ` +
         `were rolled back to ${where}; ${advice}`;
}
