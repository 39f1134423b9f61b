// fit's defaults and its divergence watch, as BUILD.md "Default learning rate and divergence"
// asks of every runtime: 50 epochs, a fresh single-layer softmax head imprinted first, a rising
// loss rolled back to the best epoch with one line naming the stable rate the Python runtime
// names for the same samples (tests/web/web_references.py ran the Python case), half that rate
// training on; and the number formatting those lines share with Python.
import {test, before} from 'node:test';
import assert from 'node:assert/strict';

import {formatG} from '../src/format.js';
import {loadFixtures, refuses, skip, stateBytes} from './support/fixtures.js';

let api, reference, bytes;
before(async () => {
  ({api, reference, bytes} = (await loadFixtures()) ?? {});
});
const open = (name = 'tiny_static.tflite') => api.TransferModel.open(bytes(name), {source: name});

test('numbers are written as Python formats them', {skip}, () => {
  const wrong = reference.formats.filter(([value, precision, text]) => formatG(value, precision) !== text);
  assert.deepEqual(wrong.map(([value, precision, text]) => [value, precision, text, formatG(value, precision)]), []);
});

/** The message with its numbers taken out, and the numbers. */
const skeleton = (message) => [message.replace(/-?\d+(\.\d+)?(e[+-]\d+)?/g, '#'), message.match(/-?\d+(\.\d+)?(e[+-]\d+)?/g).map(Number)];

test('a rising loss (|x|^2 ~ 1e7 at rate 0.001) is rolled back and names the stable rate Python names', {skip}, async () => {
  const model = await open();
  try {
    const python = reference.divergence;
    model.addBottlenecks(python.bottlenecks, python.labels);
    await model.setLearningRate(python.learning_rate);
    const atEpochEnd = [model.getState()];                            // queued: each sees the state of that moment
    let error = null;
    try {
      await model.fit({epochs: python.epochs, shuffle: false, imprint: false, onEpoch: () => atEpochEnd.push(model.getState())});
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof api.TrainingDivergedError && error instanceof api.VerificationError, String(error));
    assert.ok(!error.message.includes('\n'));
    assert.ok(error.losses.every(Number.isFinite), 'the watch, not a NaN, stops this run');
    assert.equal(error.losses.length, python.losses.length);
    error.losses.forEach((loss, i) => assert.ok(Math.abs(loss - python.losses[i]) <= 1e-4 * python.losses[i], `${loss} vs ${python.losses[i]}`));
    assert.ok(Math.abs(error.stableLearningRate - python.stable_learning_rate) <= 1e-12 * python.stable_learning_rate);
    // The same line as Python's (JavaScript's method name), the same numbers up to float32 noise
    // in the losses; the bound and the feature norm digit for digit.
    const expected = python.message.replace('set_learning_rate(', 'setLearningRate(');
    const [shape, numbers] = skeleton(error.message), [expectedShape, expectedNumbers] = skeleton(expected);
    assert.equal(shape, expectedShape);
    numbers.forEach((value, i) => assert.ok(Math.abs(value - expectedNumbers[i]) <= 1e-3 * Math.abs(expectedNumbers[i]), `${value} vs ${expectedNumbers[i]}`));
    const bound = (message) => message.slice(message.indexOf('the largest stable rate'));
    assert.equal(bound(error.message), bound(expected));
    // Rolled back to the best epoch (0: the weights training started from).
    const best = /rolled back to (?:the end of epoch (\d+)|the weights training started from)/.exec(error.message);
    assert.ok(best, error.message);
    assert.deepEqual(stateBytes(await model.getState()), stateBytes(await atEpochEnd[Number(best[1] ?? 0)]));
  } finally {
    model.delete();
  }
});

test('at half the stable rate the same kind of features train without a stop', {skip}, async () => {
  const model = await open();
  try {
    const python = reference.divergence.calm;
    model.addBottlenecks(python.bottlenecks, python.labels);
    const rate = 0.5 * model.stableLearningRate();
    assert.ok(Math.abs(rate - python.learning_rate) <= 1e-12 * python.learning_rate);
    await model.setLearningRate(rate);
    const losses = await model.fit({epochs: python.epochs, shuffle: false, imprint: false});
    assert.equal(losses.length, python.epochs);
    losses.forEach((loss, i) => assert.ok(Math.abs(loss - python.losses[i]) <= 1e-3 * python.losses[i], `epoch ${i}: ${loss} vs ${python.losses[i]}`));
    assert.ok(losses.at(-1) < 0.9 * losses[0], `losses ${losses}`);
  } finally {
    model.delete();
  }
});

/** Separable samples of 3 classes. */
function samples(features, count) {
  const bottlenecks = [], labels = [];
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < features; j++) bottlenecks.push(j % 3 === i % 3 ? 2 : 0.1 * ((i + j) % 4));
    labels.push(i % 3);
  }
  return [bottlenecks, labels];
}

test('fit imprints a fresh head first, 50 epochs by default; trained weights are not imprinted again', {skip}, async () => {
  const [fresh, manual] = [await open(), await open()];
  try {
    const data = samples(fresh.metadata.bottleneckSize, 9);
    fresh.addBottlenecks(...data);
    manual.addBottlenecks(...data);
    await manual.imprint();
    const expected = await manual.fit({epochs: 3, seed: 4, imprint: false});
    assert.deepEqual(await fresh.fit({epochs: 3, seed: 4}), expected);
    assert.deepEqual(stateBytes(await fresh.getState()), stateBytes(await manual.getState()));
    assert.deepEqual(await fresh.fit({epochs: 1, seed: 5}), await manual.fit({epochs: 1, seed: 5, imprint: false}));
    assert.deepEqual(stateBytes(await fresh.getState()), stateBytes(await manual.getState()));
    await fresh.reset();                                            // the compiled weights again: imprinted again
    const losses = await fresh.fit();
    assert.equal(losses.length, 50);
    await manual.reset();
    await manual.imprint();
    assert.deepEqual(losses, await manual.fit({imprint: false}));
  } finally {
    fresh.delete();
    manual.delete();
  }
});

test('fit({imprint: true}) needs a single-layer softmax head; other imprint values are refused; nothing changes', {skip}, async () => {
  const model = await open('tiny_mse.tflite');
  try {
    model.addBottlenecks(new Float32Array(4 * model.metadata.bottleneckSize).fill(0.5), [[1, 0], [0, 1], [1, 0], [0, 1]]);
    const before = await model.saveCheckpoint();
    await refuses(() => model.fit({imprint: true}), api.UnsupportedModelError, /^fit\(\{imprint: true\}\) needs a single-layer softmax head/);
    await refuses(() => model.fit({imprint: 'yes'}), api.InvalidInputError, /^fit: imprint must be true, false or left out, got "yes"/);
    assert.deepEqual(await model.saveCheckpoint(), before);
    assert.equal((await model.fit({epochs: 2})).length, 2);         // an MSE head is never imprinted
    assert.equal(model.stableLearningRate() > 0, true);
  } finally {
    model.delete();
  }
});

test('a nearly perfect start is not stopped by one noisy epoch below a uniform guess (ln K), as in Python', async () => {
  const {LossWatch} = await import('../src/training_watch.js');
  const watch = new LossWatch({w: 0}, Math.log(3));
  watch.firstStep(0.012);
  assert.equal(watch.diverged(1, 0.01, {w: 1}), false);
  assert.equal(watch.diverged(2, 0.7, {w: 2}), false);   // > 3 x 0.01 and above the start, below ln 3
  assert.equal(watch.diverged(3, 1.2, {w: 3}), true);
  assert.deepEqual(watch.bestState, {w: 1});
  const withoutFloor = new LossWatch({w: 0});
  withoutFloor.firstStep(0.012);
  assert.equal(withoutFloor.diverged(1, 0.01, {w: 1}), false);
  assert.equal(withoutFloor.diverged(2, 0.7, {w: 2}), true);
});
