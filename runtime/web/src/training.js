/**
 * Training with the contract's guards, as the Python runtime's TransferModel does: the step
 * counter never passes MAX_STEP (the int32 step would wrap and Adam's update become NaN), and
 * training that goes wrong is undone, never left half done: `guardedStep` restores the state
 * from before a step whose loss or state is NaN/Inf (VerificationError); `fit` rolls back to
 * the end of the last good epoch on a NaN/Inf, or to the best epoch when the mean loss rises
 * past the watch's threshold (training_watch.js), and throws TrainingDivergedError.
 * Defaults (runtime/SPEC.md#training): 50 epochs of the model's train
 * batch, from an imprinted head when the head is a fresh single-layer softmax.
 */

import * as contract from './contract.js';
import {InvalidInputError, TrainingDivergedError, VerificationError} from './errors.js';
import {trainingBatches} from './batches.js';
import {formatG} from './format.js';
import {LossWatch, divergenceMessage, largestNorm2} from './training_watch.js';

export const DEFAULT_EPOCHS = 50;

/** Names of the float tensors of `state` holding NaN or Inf (a base's own state may: not counted). */
function nonFinite(state, metadata) {
  const baseState = new Set(metadata.state.filter((entry) => entry.role === contract.BASE_STATE).map((entry) => entry.name));
  return Object.entries(state).filter(([name, t]) => t.dtype === 'float32' && !baseState.has(name) && !t.data.every(Number.isFinite))
    .map(([name]) => name);
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
  const bad = Number.isFinite(loss) ? nonFinite(await model.getState(), model.metadata) : [];
  if (!Number.isFinite(loss) || bad.length) {
    await model._restore(before);
    throw new VerificationError(
      `training diverged: ${bad.length ? `${bad.join(', ')} became NaN/Inf` : `the loss is ${loss}`}; the step was undone ` +
      '(weights, optimizer slots and step are as before it); lower the learning rate (setLearningRate) or call reset()');
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
 * the mean loss of each epoch (NaN for an epoch in which no batch ended). `imprint`: undefined
 * imprints a single-layer softmax head first when it still holds the compiled initial weights
 * bit for bit, true always imprints such a head, false never does.
 */
export async function fit(model, {epochs = DEFAULT_EPOCHS, batchSize, seed = 0, shuffle = true, imprint,
                                  onEpoch = () => {}, onBatch = () => {}} = {}) {
  positiveInteger(epochs, 'epochs');
  if (batchSize !== undefined && positiveInteger(batchSize, 'batchSize') !== model.trainBatch) {
    throw new InvalidInputError(`fit: batchSize ${batchSize}, but this model trains on fixed batches of ${model.trainBatch}; ` +
                                `pass batchSize ${model.trainBatch} or leave it out`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidInputError(`fit: seed must be an integer >= 0, got ${seed}`);
  if (![undefined, true, false].includes(imprint)) throw new InvalidInputError(`fit: imprint must be true, false or left out, got ${JSON.stringify(imprint)}`);
  if (!model.numSamples) throw new InvalidInputError('fit: no samples cached; call addSample first');
  const batchCount = Math.ceil((epochs * model.numSamples) / model.trainBatch);
  checkStepsLeft(await model.getState(), batchCount);
  if (await model._imprintsFirst(imprint)) await model.imprint();
  let goodState = await model.getState();
  const watch = new LossWatch(goodState, model.classifies ? Math.log(model.numClasses) : 0);
  const features = model.metadata.bottleneckSize;
  const perLabel = model._labels[0].length;
  const classIds = model.metadata.label.kind === contract.CLASS_IDS;
  const losses = [];
  let sum = 0, count = 0, index = 0;
  for (const {indices, epoch, lastOfEpoch} of trainingBatches(model.numSamples, model.trainBatch, epochs, {seed, shuffle})) {
    const bottlenecks = new Float32Array(indices.length * features);
    const labels = classIds ? new Int32Array(indices.length) : new Float32Array(indices.length * perLabel);
    indices.forEach((sample, i) => {
      bottlenecks.set(model._bottlenecks[sample], i * features);
      labels.set(model._labels[sample], i * perLabel);
    });
    const loss = await model._runTrain(bottlenecks, labels, indices.length);
    if (!Number.isFinite(loss)) await rollBack(model, goodState, losses, `the loss became ${loss}`);
    watch.firstStep(loss);
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
    const bad = nonFinite(state, model.metadata);
    if (bad.length) await rollBack(model, goodState, losses.slice(0, -1), `${bad.join(', ')} became NaN/Inf`);
    goodState = state;
    if (watch.diverged(epoch + 1, losses[epoch], state)) await stopDiverged(model, watch, losses);
  }
  return losses;
}

/** The NaN/Inf case: back to the end of the last good epoch. */
async function rollBack(model, goodState, losses, what) {
  await model._restore(goodState);
  const bound = model.stableLearningRate();
  const advice = bound !== null ? `lower the learning rate (setLearningRate; stable for these samples: below ${formatG(bound, 3)})`
                                : 'lower the learning rate (setLearningRate)';
  throw new TrainingDivergedError(
    `training diverged in epoch ${losses.length + 1}: ${what}; the weights were rolled back to the end of the last good epoch; ` +
    `${advice} or call reset()`, losses, bound);
}

/** The rising-loss case: back to the best epoch, one line naming the stable rate (runtime/model.py _watch_epoch). */
async function stopDiverged(model, watch, losses) {
  await model._restore(watch.bestState);
  const rateEntry = model.metadata.state.find((entry) => entry.role === contract.LEARNING_RATE);
  const rate = rateEntry ? watch.bestState[rateEntry.name].data[0] : null;
  const bound = model.stableLearningRate();
  const message = divergenceMessage(losses.length, losses.at(-1), watch, rate, bound, largestNorm2(model._bottlenecks), model.numSamples);
  throw new TrainingDivergedError(message, losses, bound);
}
