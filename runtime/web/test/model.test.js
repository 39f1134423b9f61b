// TransferModel in Node (LiteRT.js wasm) against references the Python runtime computed on the
// same compiled model (tests/web/test_node_module.py writes them and runs this file).
import {test, before} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {join} from 'node:path';

import {loadLiteRtInNode} from '../src/node.js';
import {trainingPlan} from '../src/batches.js';

const FIXTURES = process.env.TFLITE_TRANSFER_WEB_FIXTURES;
const skip = FIXTURES ? false : 'set TFLITE_TRANSFER_WEB_FIXTURES (pytest tests/web/test_node_module.py does)';
let api, reference, modelBytes;
const PER_IMAGE = 16 * 12 * 3;

before(async () => {
  if (!FIXTURES) return;
  await loadLiteRtInNode();
  api = await import('../src/index.js');
  reference = JSON.parse(readFileSync(join(FIXTURES, 'reference.json'), 'utf8'));
  modelBytes = new Uint8Array(readFileSync(join(FIXTURES, 'tiny_static.tflite')));
});

const open = (bytes = modelBytes, options = {}) => api.TransferModel.open(bytes, {source: 'tiny_static.tflite', ...options});
const closeTo = (actual, expected, tolerance, what) => {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((value, i) => assert.ok(Math.abs(value - expected[i]) <= tolerance * Math.max(1, Math.abs(expected[i])),
                                          `${what}[${i}]: ${value} vs ${expected[i]}`));
};

test('metadata read from the FlatBuffer equals what contract.py reads', {skip}, async () => {
  const metadata = api.readModelMetadata(modelBytes);
  const python = reference.metadata;
  assert.equal(metadata.bottleneckSize, python.bottleneck_size);
  assert.equal(metadata.numOutputs, python.num_outputs);
  assert.equal(metadata.fingerprint, python.fingerprint);
  assert.equal(metadata.modelDigest, python.model_digest);
  assert.deepEqual(metadata.labels, python.labels);
  assert.deepEqual([metadata.imageBatch, metadata.trainBatch], [python.image_batch, python.train_batch]);
  assert.deepEqual(metadata.state.map((e) => [e.name, e.role, e.dtype, e.shape.join('x')]),
                   python.state.map((e) => [e.name, e.role, e.dtype, e.shape.join('x')]));
});

test('the model digest: Python stamps it, JS checks it; a flipped byte is refused before LiteRT', {skip}, async () => {
  const sample = new Uint8Array(readFileSync(join(FIXTURES, 'digest_sample.bin')));
  assert.equal(await api.digestMatches(sample), true);
  const flipped = sample.slice();
  flipped[flipped.length - 7] ^= 0x01;
  assert.equal(await api.digestMatches(flipped), false);
  const metadata = api.readModelMetadata(modelBytes);
  if (metadata.contractVersion >= 2) {      // models carry a digest from contract version 2 on
    const damaged = modelBytes.slice();
    damaged[Math.floor(damaged.length / 2)] ^= 0x10;
    await assert.rejects(open(damaged), (error) => error instanceof api.VerificationError && /do not match its model_digest/.test(error.message));
  } else {
    assert.equal(await api.digestMatches(modelBytes), null);
  }
  await assert.rejects(open(new Uint8Array(100)), (error) => error instanceof api.TransferError && /not a TFLite model/.test(error.message));
});

test('the FlatBuffer metadata reader never reads out of bounds: truncated or damaged files get a TransferError', {skip}, async () => {
  const {readMetadataEntry} = await import('../src/flatbuffer.js');
  const intact = readMetadataEntry(modelBytes, 'tflite_transfer');
  let seed = 7;
  const random = (n) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const outcomes = {refused: 0, same: 0, changed: 0};
  for (let trial = 0; trial < 600; trial++) {
    let bytes;
    if (trial < 10) {      // the metadata's length field says more bytes than the file holds
      const start = intact.byteOffset - modelBytes.byteOffset;
      const long = new Uint8Array(modelBytes.length + 64);
      long.set(modelBytes);
      const view = long.subarray(0, modelBytes.length);
      new DataView(long.buffer).setUint32(start - 4, modelBytes.length - start + 1 + trial * 6, true);
      assert.throws(() => readMetadataEntry(view, 'tflite_transfer', 'long.tflite'),
                    /^InvalidInputError: long.tflite: corrupt TFLite file \(metadata 'tflite_transfer' data at byte \d+ lies outside the \d+-byte file\)/);
      continue;
    } else if (trial < 100) {
      bytes = modelBytes.slice(0, random(modelBytes.length));
    } else {
      // Damage anywhere, or in the first/last 4 KiB, where the builder puts the root table,
      // the vtables and the vectors of tables.
      bytes = modelBytes.slice();
      const region = trial % 3 === 0 ? bytes.length : 4096, base = trial % 3 === 2 ? bytes.length - 4096 : 0;
      for (let k = 0; k < 1 + (trial % 8); k++) bytes[base + random(region)] = random(256);
    }
    // Inside a larger buffer: the reader must not see past the view it was given.
    const padded = new Uint8Array(bytes.length + 64).fill(0x7f);
    padded.set(bytes, 32);
    const view = padded.subarray(32, 32 + bytes.length);
    try {
      const entry = readMetadataEntry(view, 'tflite_transfer', 'damaged.tflite');
      assert.ok(entry === null || (entry.byteOffset >= view.byteOffset && entry.byteOffset + entry.length <= view.byteOffset + view.length),
                `trial ${trial}: an entry outside the file`);
      outcomes[entry !== null && entry.length === intact.length && entry.every((b, i) => b === intact[i]) ? 'same' : 'changed'] += 1;
      api.readModelMetadata(view, 'damaged.tflite');
    } catch (error) {
      assert.ok(error instanceof api.TransferError, `trial ${trial}: ${error}`);
      assert.match(error.message, /^damaged.tflite: /);
      assert.ok(!error.message.includes('\n'));
      outcomes.refused += 1;
    }
  }
  assert.ok(outcomes.refused > 100 && outcomes.same > 100, JSON.stringify(outcomes));
});

test('a dynamic-batch model gets one line saying to recompile with --batch', {skip}, async () => {
  const dynamic = new Uint8Array(readFileSync(join(FIXTURES, 'tiny_dynamic.tflite')));
  await assert.rejects(open(dynamic, {source: 'tiny_dynamic.tflite'}),
                       (error) => error instanceof api.UnsupportedModelError && /dynamic shape .* --batch=1,16/.test(error.message));
});

test('load equals the Python interpreter; train steps give the same losses and weights', {skip}, async () => {
  const model = await open();
  try {
    const bottlenecks = await model.load(Uint8Array.from(reference.images));
    closeTo(bottlenecks.flatMap((row) => Array.from(row)), reference.bottlenecks, 1e-6, 'bottleneck');
    const features = model.metadata.bottleneckSize, batch = model.trainBatch;
    for (let step = 0; step < reference.losses.length; step++) {
      const loss = await model.trainStep(reference.train_bottlenecks.slice(step * batch * features, (step + 1) * batch * features),
                                          reference.train_labels.slice(step * batch, (step + 1) * batch));
      closeTo([loss], [reference.losses[step]], 1e-6, `loss ${step}`);
    }
    const state = await model.getState();
    for (const [name, expected] of Object.entries(reference.trained_state)) {
      assert.deepEqual(state[name].shape, expected.shape, name);
      closeTo(Array.from(state[name].data), expected.data, 1e-6, name);
    }
  } finally {
    model.delete();
  }
});

test('a checkpoint written by Python restores bit-exactly and is rewritten byte-identically', {skip}, async () => {
  const model = await open();
  try {
    const python = new Uint8Array(readFileSync(join(FIXTURES, 'python.ckpt')));
    await model.restoreCheckpoint(python, {source: 'python.ckpt'});
    const state = await model.getState();
    const read = await api.readCheckpoint(python);
    for (const name of Object.keys(read.tensors)) {
      assert.deepEqual(new Uint8Array(state[name].data.buffer), new Uint8Array(read.tensors[name].data.buffer), name);
    }
    assert.deepEqual(await model.saveCheckpoint(), python);
  } finally {
    model.delete();
  }
});

test('bad images, labels, bottlenecks, rates and checkpoints are refused and change nothing', {skip}, async () => {
  const model = await open();
  try {
    const before = await model.saveCheckpoint();
    const image = new Uint8Array(PER_IMAGE).fill(9);
    const cases = [
      [() => model.addSample(new Uint8Array(PER_IMAGE - 1), 0), /not a whole number of images of \[16, 12, 3\]/],
      [() => model.addSample(new Float32Array(PER_IMAGE).fill(0.5), 0), /value 0.5 at index 0 is not a uint8 pixel/],
      [() => model.addSample(image, 3), /3 is not a class id in \[0, 3\)/],
      [() => model.addSample(image, 'purple'), /'purple' is not one of the model's labels \[red, green, blue\]/],
      [() => model.addSample(image, [0, 1]), /expected 1 class id/],
      [() => model.trainStep(new Float32Array(7 * 3), [0, 1, 2]), /exactly 4 per step/],
      [() => model.trainStep(new Float32Array(7 * 4).fill(NaN), [0, 1, 2, 0]), /NaN or Inf/],
      [() => model.setLearningRate(-1), /learning rate must be finite, > 0 and <= 1000000, got -1/],
      [() => model.setLearningRate(0), /learning rate must be finite, > 0 and <= 1000000, got 0 /],
      [() => model.setLearningRate(1e400), /got Infinity/],
      [() => model.setLearningRate(1e300), /got 1e\+300/],
      [() => model.setLearningRate('0.1'), /got string "0.1"/],
      [() => model.fit(), /no samples cached/],
      [() => model.restoreCheckpoint(before.slice(0, before.length - 1)), /corrupt or incomplete/],
    ];
    for (const [call, message] of cases) {
      await assert.rejects(call(), (error) => {
        assert.ok(error instanceof api.TransferError, String(error));
        assert.match(error.message, message);
        return true;
      });
    }
    const other = await api.writeCheckpoint(await model.getState(), 'cd'.repeat(32));
    await assert.rejects(model.restoreCheckpoint(other, {source: 'other.ckpt'}), /other.ckpt was written by another model/);
    assert.equal(model.numSamples, 0);
    assert.deepEqual(await model.saveCheckpoint(), before);
  } finally {
    model.delete();
  }
});

test('fit lowers the loss on separable samples; reset and setLearningRate act on the model', {skip}, async () => {
  const model = await open();
  try {
    const features = model.metadata.bottleneckSize;
    const bottlenecks = [], labels = [];
    for (let i = 0; i < 9; i++) {
      for (let j = 0; j < features; j++) bottlenecks.push(j % 3 === i % 3 ? 3 : 0.1 * ((i + j) % 4));
      labels.push(i % 3);
    }
    model.addBottlenecks(bottlenecks, labels);
    let reported = 0;
    const batchLosses = [];
    const losses = await model.fit({epochs: 8, seed: 1, imprint: false, onEpoch: () => reported++, onBatch: (i, loss) => batchLosses.push(loss)});
    assert.equal(reported, 8);
    // An epoch's loss is the mean of the batches that ended in it (the plan of batches.js).
    const {epochOfBatch} = trainingPlan(9, 4, 8, {seed: 1});
    const means = Array.from({length: 8}, (_, epoch) => {
      const mine = batchLosses.filter((_, i) => epochOfBatch[i] === epoch);
      return mine.length ? mine.reduce((a, b) => a + b, 0) / mine.length : NaN;
    });
    assert.deepEqual(losses, means);
    assert.ok(losses.at(-1) < 0.5 * losses[0], `losses ${losses}`);
    assert.equal(await model.steps(), Math.ceil((8 * 9) / 4));
    await model.setLearningRate(0.375);
    assert.deepEqual(Array.from((await model.getState()).learning_rate.data), [0.375]);
    const trained = await model.saveCheckpoint();
    await model.fit({epochs: 1});
    assert.notDeepEqual(await model.saveCheckpoint(), trained);
    await model.restoreCheckpoint(trained);
    assert.deepEqual(await model.saveCheckpoint(), trained);
    await model.reset();
    assert.equal(await model.steps(), 0);
  } finally {
    model.delete();
  }
});

test('imprint sets the head to the nearest class mean (numpy float64 reference)', {skip}, async () => {
  const model = await open();
  try {
    model.addBottlenecks(reference.imprint_bottlenecks, reference.imprint_labels);
    await model.imprint();
    const state = await model.getState();
    for (const [name, expected] of Object.entries(reference.imprint)) closeTo(Array.from(state[name].data), expected.data, 1e-5, name);
  } finally {
    model.delete();
  }
});

test('an MSE head takes float targets [batch, k], refuses other shapes, and fits them', {skip}, async () => {
  const model = await open(new Uint8Array(readFileSync(join(FIXTURES, 'tiny_mse.tflite'))), {source: 'tiny_mse.tflite'});
  try {
    assert.equal(model.classifies, false);
    const features = model.metadata.bottleneckSize;
    const bottlenecks = Array.from({length: 8 * features}, (_, i) => ((i * 7) % 11) / 11);
    const targets = Array.from({length: 8}, (_, i) => [i % 2, 1 - (i % 2)]);
    await assert.rejects(async () => model.addBottlenecks(bottlenecks, [0, 1, 0, 1, 0, 1, 0, 1]), /expected float targets \[8, 2\]/);
    await assert.rejects(async () => model.addBottlenecks(bottlenecks, targets.map(() => [NaN, 0])), /NaN or Inf/);
    model.addBottlenecks(bottlenecks, targets);
    const losses = await model.fit({epochs: 30});
    assert.ok(losses.at(-1) < 0.5 * losses[0], `losses ${losses}`);
    const [prediction] = await model.predict(new Uint8Array(PER_IMAGE).fill(50));
    assert.equal(prediction.length, 2);
    await assert.rejects(model.imprint(), /imprint needs a single-layer softmax head/);
  } finally {
    model.delete();
  }
});
