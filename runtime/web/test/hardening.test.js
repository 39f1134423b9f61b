// Attacks on the web runtime that the Python and C++ runtimes also face (absurd counts and
// rates, diverging steps, checkpoints that pass the checksum but not the model, metadata with
// absurd numbers read with the digest check off): each is one TransferError line and changes
// nothing. Runs on tests/web/test_node_module.py's fixtures, like model.test.js.
import {test, before} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {join} from 'node:path';

import {loadLiteRtInNode} from '../src/node.js';

const FIXTURES = process.env.TFLITE_TRANSFER_WEB_FIXTURES;
const skip = FIXTURES ? false : 'set TFLITE_TRANSFER_WEB_FIXTURES (pytest tests/web/test_node_module.py does)';
let api, contract, modelBytes;

before(async () => {
  if (!FIXTURES) return;
  await loadLiteRtInNode();
  api = await import('../src/index.js');
  contract = await import('../src/contract.js');
  modelBytes = new Uint8Array(readFileSync(join(FIXTURES, 'tiny_static.tflite')));
});

const open = (bytes = modelBytes, options = {}) => api.TransferModel.open(bytes, {source: 'tiny_static.tflite', ...options});

/** Asserts `call()` rejects with one line of `errorClass` matching `message`. */
async function refuses(call, errorClass, message) {
  await assert.rejects(call, (error) => {
    assert.ok(error instanceof errorClass, `${error?.name}: ${error?.message}`);
    assert.match(error.message, message);
    assert.ok(!error.message.includes('\n'), error.message);
    return true;
  });
}

/** `count` separable samples of 3 classes. */
function samples(features, count, scale = 1) {
  const bottlenecks = [], labels = [];
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < features; j++) bottlenecks.push(scale * (j % 3 === i % 3 ? 3 : 0.1 * ((i + j) % 4)));
    labels.push(i % 3);
  }
  return [bottlenecks, labels];
}

test('fit with absurd epochs, batch sizes or seeds is one InvalidInputError line and trains nothing', {skip}, async () => {
  const model = await open();
  try {
    model.addBottlenecks(...samples(model.metadata.bottleneckSize, 6));
    const before = await model.saveCheckpoint();
    const cases = [
      [{epochs: 1e12}, /step counter is 0; 1500000000000 more step\(s\) would pass 2147483646/],
      [{epochs: 2 ** 40}, /would pass 2147483646/],
      [{epochs: 2.5}, /epochs must be an integer >= 1, got 2.5/],
      [{epochs: '3'}, /epochs must be an integer >= 1, got string "3"/],
      [{epochs: 0}, /epochs must be an integer >= 1, got 0/],
      [{epochs: 1e400}, /epochs must be an integer >= 1, got Infinity/],
      [{batchSize: 1e12}, /batchSize 1000000000000, but this model trains on fixed batches of 4/],
      [{batchSize: -1}, /batchSize must be an integer >= 1, got -1/],
      [{seed: -1}, /seed must be an integer >= 0, got -1/],
    ];
    for (const [options, message] of cases) await refuses(() => model.fit(options), api.InvalidInputError, message);
    assert.deepEqual(await model.saveCheckpoint(), before);
    assert.deepEqual(await model.fit({epochs: 1, batchSize: 4}).then((losses) => losses.length), 1);
  } finally {
    model.delete();
  }
});

test('fit and trainStep refuse steps that would pass MAX_STEP', {skip}, async () => {
  const model = await open();
  try {
    const features = model.metadata.bottleneckSize;
    model.addBottlenecks(...samples(features, 6));
    const state = await model.getState();
    state.step.data[0] = contract.MAX_STEP - 2;                    // 6 samples, batch 4: 2 steps per epoch
    await model.setState(state);
    const before = await model.saveCheckpoint();
    await refuses(() => model.fit({epochs: 2}), api.InvalidInputError, /step counter is 2147483644; 3 more step\(s\) would pass 2147483646/);
    assert.deepEqual(await model.saveCheckpoint(), before);
    await model.fit({epochs: 1});
    assert.equal(await model.steps(), contract.MAX_STEP);
    await refuses(() => model.trainStep(...samples(features, 4)), api.InvalidInputError, /1 more step/);
  } finally {
    model.delete();
  }
});

test('setLearningRate with huge, zero or non-numeric rates is one line and keeps the rate', {skip}, async () => {
  const model = await open();
  try {
    const rate = () => model.getState().then((state) => state.learning_rate.data[0]);
    const before = await rate();
    for (const value of [1e400, -1e400, 1e300, 1e6 * (1 + 2 ** -40), 0, -0, NaN, '1', null, 10n]) {
      await refuses(() => model.setLearningRate(value), api.InvalidInputError, /^learning rate must be finite, > 0 and <= 1000000, got /);
    }
    assert.equal(await rate(), before);
    await model.setLearningRate(contract.MAX_LEARNING_RATE);
    assert.equal(await rate(), contract.MAX_LEARNING_RATE);
  } finally {
    model.delete();
  }
});

test('a trainStep whose loss is not finite is undone: weights, slots and step as before', {skip}, async () => {
  const model = await open();
  try {
    const features = model.metadata.bottleneckSize;
    const before = await model.saveCheckpoint();
    const huge = new Float32Array(4 * features).fill(3e38);
    await refuses(() => model.trainStep(huge, [0, 1, 2, 0]), api.VerificationError, /training diverged: .*the step was undone/);
    assert.deepEqual(await model.saveCheckpoint(), before);
    assert.ok(Number.isFinite(await model.trainStep(...samples(features, 4))));
    assert.equal(await model.steps(), 1);
  } finally {
    model.delete();
  }
});

test('fit that diverges rolls back to the end of the last good epoch', {skip}, async () => {
  const model = await open();
  try {
    const features = model.metadata.bottleneckSize;
    // One batch per epoch; at the largest rate the first step's loss is finite, the second's
    // not (the logits overflow float32).
    model.addBottlenecks(...samples(features, 4, 1e20));
    await model.setLearningRate(contract.MAX_LEARNING_RATE);
    const atEpochEnd = [model.saveCheckpoint()];                    // queued: each sees the state of that moment
    let error = null;
    try {
      await model.fit({epochs: 5, imprint: false, onEpoch: () => atEpochEnd.push(model.saveCheckpoint())});
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof api.TrainingDivergedError && error instanceof api.VerificationError, String(error));
    assert.match(error.message, /^training diverged in epoch \d+: the loss became NaN; .* rolled back to the end of the last good epoch; lower the learning rate \(setLearningRate; stable for these samples: below [0-9.e+-]+\) or call reset\(\)$/);
    assert.ok(error.stableLearningRate > 0 && error.losses.every(Number.isFinite), String(error.losses));
    const epoch = Number(/epoch (\d+)/.exec(error.message)[1]);
    assert.ok(epoch >= 2, `diverged in epoch ${epoch}: this test wants at least one good epoch first`);
    const restored = await model.saveCheckpoint();
    assert.deepEqual(restored, await atEpochEnd[epoch - 1]);        // the state at the end of epoch - 1
    const state = await model.getState();
    assert.equal(state.step.data[0], epoch - 1);
    assert.ok(Object.values(state).every((t) => t.data.every(Number.isFinite)));
  } finally {
    model.delete();
  }
});

test('checkpoints with a valid checksum but a state Python and C++ refuse are refused', {skip}, async () => {
  const model = await open();
  try {
    const before = await model.saveCheckpoint();
    const fingerprint = model.metadata.fingerprint;
    const variants = [
      ['learning_rate', 0, /must be finite, > 0 and <= 1000000, got 0/],
      ['learning_rate', -0.5, /got -0.5/],
      ['learning_rate', 2e6, /got 2000000/],
      ['step', -1, /step -1 is outside \[0, 2147483646\]/],
      ['step', 2 ** 31 - 1, /step 2147483647 is outside/],
      ['dense_0_bias', NaN, /contains NaN or Inf/],
    ];
    for (const [name, value, message] of variants) {
      const state = await model.getState();
      state[name].data[0] = value;
      const file = await api.writeCheckpoint(state, fingerprint, {num_samples_cached: '0'});
      await refuses(() => model.restoreCheckpoint(file, {source: 'bad.ckpt'}), api.CheckpointError, new RegExp(`^bad.ckpt: state '${name}'.*${message.source}`));
      await refuses(() => model.setState(state), api.InvalidInputError, message);
    }
    assert.deepEqual(await model.saveCheckpoint(), before);
  } finally {
    model.delete();
  }
});

test('a checkpoint is checked against the model before its checksum is computed or a tensor copied', {skip}, async () => {
  const model = await open();
  try {
    const state = await model.getState();
    const fingerprint = model.metadata.fingerprint;
    const stateBytes = Object.values(state).reduce((total, tensor) => total + tensor.data.byteLength, 0);
    const holds = new RegExp(`holds ${stateBytes + (64 << 20)} bytes of tensor data but this model's state is ${stateBytes} bytes`);
    // Valid checksum, every tensor of the model, plus 64 MiB of an extra one.
    const oversized = await api.writeCheckpoint({...state, extra: {dtype: 'float32', shape: [16 << 20], data: new Float32Array(16 << 20)}},
                                                fingerprint);
    await refuses(() => model.restoreCheckpoint(oversized, {source: 'big.ckpt'}), api.CheckpointError,
                  new RegExp(`^big.ckpt is corrupt or incomplete: it ${holds.source}`));
    // The size check runs before the checksum: a damaged oversized file gets the same answer.
    oversized[oversized.length - 1] ^= 1;
    await refuses(() => model.restoreCheckpoint(oversized, {source: 'big.ckpt'}), api.CheckpointError, holds);
    // The right size but other names, or another model: refused from the header alone.
    const {dense_0_bias: bias, ...rest} = state;
    const other = await api.writeCheckpoint({...rest, other_bias: bias}, fingerprint);
    await refuses(() => model.restoreCheckpoint(other, {source: 'o.ckpt'}), api.CheckpointError, /missing \[dense_0_bias\], unexpected \[other_bias\]/);
    const reshaped = await api.writeCheckpoint({...rest, dense_0_bias: {...bias, shape: [1, 3]}}, fingerprint);
    await refuses(() => model.restoreCheckpoint(reshaped, {source: 'r.ckpt'}), api.CheckpointError, /'dense_0_bias' is \[1,3\] float32 in the checkpoint but \[3\] float32/);
  } finally {
    model.delete();
  }
});

/** The model with `from` replaced by `to` in its metadata; the base description absorbs the length change. */
function patchedModel(from, to) {
  const text = new TextDecoder('latin1').decode(modelBytes);
  const description = /"description":"([^"]*)"/.exec(text);
  const delta = to.length - from.length;
  assert.ok(text.includes(from) && description && description[1].length > delta, `cannot patch ${from}`);
  const value = delta > 0 ? description[1].slice(0, description[1].length - delta) : description[1] + ' '.repeat(-delta);
  const patched = text.replace(description[0], `"description":"${value}"`).replace(from, to);
  assert.equal(patched.length, text.length);
  return Uint8Array.from(patched, (char) => char.charCodeAt(0));
}

test('metadata with absurd numbers, read with the digest check off, is one UnsupportedModelError line', {skip}, async () => {
  const bottleneck = `"bottleneck_size":7,`, outputs = `"num_outputs":3,`, batch = `"image_batch":1,`;
  const cases = [
    [bottleneck, `"bottleneck_size":1e30,`, /bottleneck_size: expected an integer in \[1, 2147483647\], got 1e\+30/],
    [bottleneck, `"bottleneck_size":1099511627776,`, /bottleneck_size: expected an integer .* got 1099511627776/],
    [bottleneck, `"bottleneck_size":-7,`, /bottleneck_size: expected an integer .* got -7/],
    [bottleneck, `"bottleneck_size":8,`, /metadata bottleneck_size 8 does not match the model's tensor 'bottleneck' float32 \[4,7\]/],
    [outputs, `"num_outputs":1e30,`, /num_outputs: expected an integer .* got 1e\+30/],
    [outputs, `"num_outputs":2,`, /3 labels for 2 outputs/],
    [batch, `"image_batch":1e30,`, /image_batch: expected an integer .* got 1e\+30/],
    [batch, `"image_batch":2,`, /metadata image_batch 2 but the signatures fix batch 1/],
    [`"shape":[3,7]`, `"shape":[3,1e30]`, /state 'dense_0_kernel' shape: expected an integer .* got 1e\+30/],
    [`"shape":[3,7]`, `"shape":[65536,65536]`, /state 'dense_0_kernel' element count: expected an integer .* got 4294967296/],
    [`"shape":[3,7]`, `"shape":[7,3]`, /metadata state 'dense_0_kernel' float32 \[7,3\] does not match the model's tensor 'dense_0_kernel' float32 \[3,7\]/],
  ];
  for (const [from, to, message] of cases) {
    const bytes = patchedModel(from, to);
    await refuses(() => open(bytes, {skipDigestCheck: true, source: 'edited.tflite'}), api.UnsupportedModelError, message);
    await refuses(() => open(bytes, {source: 'edited.tflite'}), api.VerificationError, /do not match its model_digest/);
  }
});
