/**
 * Training with the contract's guards, as the Python runtime's TransferModel does: the step
 * counter never passes MAX_STEP (the int32 step would wrap and Adam's update become NaN), and
 * training that produces a NaN/Inf loss or state is undone, never left half done:
 * `guardedStep` restores the state from before the step, `fit` the state at the end of the
 * last good epoch; either way a VerificationError says so.
 */

import * as contract from './contract.js';
import {InvalidInputError, VerificationError} from './errors.js';
import {trainingBatches} from './batches.js';

const ADVICE = 'lower the learning rate (setLearningRate) or call reset()';

/** Names of the float tensors of `state` holding NaN or Inf. */
function nonFinite(state) {
  return Object.entries(state).filter(([, t]) => t.dtype === 'float32' && !t.data.every(Number.isFinite)).map(([name]) => name);
}

/** Refuses `needed` more steps when they would pass MAX_STEP (`state` from getState). */
export function checkStepsLeft(state, needed) {
  const taken = state[contract.STEP]?.data[0];
  if (taken !== undefined && taken + needed > contract.MAX_STEP) {
    throw new InvalidInputError(
      `the optimizer step counter is ${taken}; ${needed} more step(s) would pass ${contract.MAX_STEP} ` +
      '(the int32 step wraps and Adam\'s update becomes NaN): save a checkpoint and call reset(), or setState() with a smaller step');
  }
}

/** One optimizer step (`run` returns its loss), undone when it diverges. */
export async function guardedStep(model, run) {
  const before = await model.getState();
  checkStepsLeft(before, 1);
  const loss = await run();
  const bad = Number.isFinite(loss) ? nonFinite(await model.getState()) : [];
  if (!Number.isFinite(loss) || bad.length) {
    await model._restore(before);
    throw new VerificationError(
      `training diverged: ${bad.length ? `${bad.join(', ')} became NaN/Inf` : `the loss is ${loss}`}; the step was undone ` +
      `(weights, optimizer slots and step are as before it); ${ADVICE}`);
  }
  return loss;
}

function positiveInteger(value, what) {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidInputError(`fit: ${what} must be an integer >= 1, got ${typeof value === 'number' ? value : `${typeof value} ${JSON.stringify(value)}`}`);
  }
  return value;
}

/**
 * Trains over the model's sample cache in batches of its train batch (batches.js); returns
 * the mean loss of each epoch (NaN for an epoch in which no batch ended).
 */
export async function fit(model, {epochs = 10, batchSize, seed = 0, shuffle = true, onEpoch = () => {}, onBatch = () => {}} = {}) {
  positiveInteger(epochs, 'epochs');
  if (batchSize !== undefined && positiveInteger(batchSize, 'batchSize') !== model.trainBatch) {
    throw new InvalidInputError(`fit: batchSize ${batchSize}, but this model trains on fixed batches of ${model.trainBatch}; ` +
                                `pass batchSize ${model.trainBatch} or leave it out`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidInputError(`fit: seed must be an integer >= 0, got ${seed}`);
  if (!model.numSamples) throw new InvalidInputError('fit: no samples cached; call addSample first');
  const batchCount = Math.ceil((epochs * model.numSamples) / model.trainBatch);
  let goodState = await model.getState();
  checkStepsLeft(goodState, batchCount);
  const features = model.metadata.bottleneckSize;
  const perLabel = model._labels[0].length;
  const losses = [];
  let sum = 0, count = 0, index = 0;
  for (const {indices, epoch, lastOfEpoch} of trainingBatches(model.numSamples, model.trainBatch, epochs, {seed, shuffle})) {
    const bottlenecks = new Float32Array(indices.length * features);
    const labels = model.classifies ? new Int32Array(indices.length) : new Float32Array(indices.length * perLabel);
    indices.forEach((sample, i) => {
      bottlenecks.set(model._bottlenecks[sample], i * features);
      labels.set(model._labels[sample], i * perLabel);
    });
    const loss = await model._runTrain(bottlenecks, labels, indices.length);
    if (!Number.isFinite(loss)) await rollBack(model, goodState, losses.length, `the loss became ${loss}`);
    onBatch(index++, loss);
    sum += loss;
    count += 1;
    if (!lastOfEpoch) continue;
    while (losses.length < epoch) {   // epochs in which no batch ended (fewer samples than a batch)
      losses.push(NaN);
      onEpoch(losses.length - 1, NaN);
    }
    losses.push(sum / count);
    sum = 0;
    count = 0;
    onEpoch(epoch, losses[epoch]);
    const state = await model.getState();
    const bad = nonFinite(state);
    if (bad.length) await rollBack(model, goodState, epoch, `${bad.join(', ')} became NaN/Inf`);
    goodState = state;
  }
  return losses;
}

async function rollBack(model, goodState, epoch, what) {
  await model._restore(goodState);
  throw new VerificationError(
    `fit: training diverged in epoch ${epoch + 1}: ${what}; the weights were rolled back to the end of the last good epoch; ${ADVICE}`);
}
