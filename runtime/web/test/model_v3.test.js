// Contract version 3 and stateful bases in LiteRT.js, against what the Python runtime computed
// on the same compiled models (tests/web/web_references.py): a model as TensorFlow's example app
// calls it (input `feature` in [0, 1], output `output`, one-hot labels), and a base that keeps
// state between calls (role base_state) in one stream per model.
import {test, before} from 'node:test';
import assert from 'node:assert/strict';

import {closeTo, loadFixtures, refuses, skip, stateBytes} from './support/fixtures.js';

let api, reference, bytes;
before(async () => {
  ({api, reference, bytes} = (await loadFixtures()) ?? {});
});
const open = (name) => api.TransferModel.open(bytes(name), {source: name});
const PER_IMAGE = 16 * 12 * 3;

test('a version 3 model speaks its own names and takes the input range it records', {skip}, async () => {
  const model = await open('tiny_app.tflite');
  try {
    const app = reference.app;
    assert.equal(model.metadata.contractVersion, 3);
    assert.deepEqual({...model.names}, {input: 'feature', bottleneck: 'bottleneck', label: 'label', loss: 'loss', output: 'output'});
    assert.deepEqual([model.inputSpec.kind, model.inputDtype, model.inputShape, model.inputRange], ['image', 'float32', [16, 12, 3], [0, 1]]);
    assert.equal(model.classifies, true);
    const inputs = Float32Array.from(app.inputs);
    closeTo((await model.load(inputs)).flatMap((row) => Array.from(row)), app.bottlenecks, 1e-6, 'bottleneck');
    const pixels = inputs.map((value) => value * 255);
    await refuses(() => model.predict(pixels), api.InvalidInputError, /^feature: value \d+ at index \d+ is outside \[0, 1\], the pixels the model takes$/);
    await refuses(() => model.load(new Float32Array(PER_IMAGE + 1)), api.InvalidInputError, /^feature: 577 values is not a whole number of images of \[16, 12, 3\]/);
  } finally {
    model.delete();
  }
});

test('one-hot labels: rows, soft rows, class ids and names accepted; bad rows refused and nothing cached', {skip}, async () => {
  const model = await open('tiny_app.tflite');
  try {
    const image = Float32Array.from(reference.app.inputs.slice(0, PER_IMAGE));
    const cases = [
      [[0, 1.5, -0.5], /^label: row 0 has -0.5 at class 2; one-hot and soft targets are >= 0$/],
      [[1, 1, 0], /^label: row 0 sums to 2; one-hot and soft targets sum to 1 \(within 0.001\)$/],
      [[0, NaN, 1], /^label: value NaN at index 1 is NaN or Inf as float32$/],
      [[0.5, 0.5], /^label: expected one-hot \(or soft\) float targets \[1, 3\]/],
      [3, /^label: 3 is not a class id in \[0, 3\)$/],
      ['purple', /'purple' is not one of the model's labels \[red, green, blue\]/],
    ];
    for (const [label, message] of cases) await refuses(() => model.addSample(image, label), api.InvalidInputError, message);
    assert.equal(model.numSamples, 0);
    await model.addSample(image, [0.1, 0.8, 0.1]);
    await model.addSample(image, 2);
    await model.addSample(image, 'green');
    assert.deepEqual(model._labels.map((row) => Array.from(row)), [[0.1, 0.8, 0.1].map(Math.fround), [0, 0, 1], [0, 1, 0]]);
  } finally {
    model.delete();
  }
});

test('imprint weighs class means by soft label rows; one-hot train steps match Python', {skip}, async () => {
  const model = await open('tiny_app.tflite');
  try {
    const app = reference.app;
    const features = model.metadata.bottleneckSize;
    await model.addSample(Float32Array.from(app.inputs), app.soft);
    await model.imprint();
    const imprinted = await model.getState();
    for (const name of ['dense_0_kernel', 'dense_0_bias']) closeTo(imprinted[name].data, app.imprinted[name].data, 1e-5, name);
    closeTo((await model.predict(Float32Array.from(app.inputs))).flatMap((row) => Array.from(row)), app.predictions, 1e-5, 'predictions');
    const bottlenecks = Float32Array.from(app.bottlenecks);
    for (const [step, start] of [0, 2].entries()) {
      const rows = app.labels.slice(start, start + 4).map((label) => [0, 1, 2].map((c) => Number(c === label)));
      const loss = await model.trainStep(bottlenecks.subarray(start * features, (start + 4) * features), rows);
      closeTo([loss], [app.losses[step]], 1e-5, `loss ${step}`);
    }
    const trained = await model.getState();
    for (const name of ['dense_0_kernel', 'dense_0_bias']) closeTo(trained[name].data, app.trained[name].data, 1e-5, name);
  } finally {
    model.delete();
  }
});

test('pixelsFromImage refuses an input that is not an image in one line naming it', {skip}, async () => {
  const model = await open('stream_peak.tflite');
  try {
    assert.throws(() => api.pixelsFromImage(null, model), (error) => error instanceof api.InvalidInputError &&
      /^input: the model's input is a float32 tensor \[6\], not an image; pixelsFromImage makes images only/.test(error.message));
  } finally {
    model.delete();
  }
});

test('a stateful base: one stream per model, as Python runs it; state and checkpoints carry it, -inf included', {skip}, async () => {
  const model = await open('stream_peak.tflite');
  try {
    const stream = reference.stream;
    const roles = Object.fromEntries(model.metadata.state.map((entry) => [entry.name, entry.role]));
    assert.deepEqual(Object.keys(roles).filter((name) => roles[name] === 'base_state').sort(),
                     ['base_state_feature_peak', 'base_state_frame_count', 'base_state_ring_buffer']);
    const fresh = await model.getState();
    assert.ok(fresh.base_state_feature_peak.data.every((value) => value === -Infinity));
    assert.deepEqual(await model.saveCheckpoint(), bytes('stream_start.ckpt'), 'the fresh stream, -inf and all, as Python writes it');
    await model.setState(fresh);                                   // -inf in the base's state is the base's own value
    await model.restoreCheckpoint(bytes('stream_start.ckpt'), {source: 'stream_start.ckpt'});
    const frames = Float32Array.from(stream.frames), features = model.metadata.bottleneckSize;
    const oneByOne = [];
    for (let i = 0; i < 6; i++) oneByOne.push(...(await model.load(frames.subarray(i * 6, (i + 1) * 6)))[0]);
    closeTo(oneByOne, stream.bottlenecks, 1e-5, 'stream');
    const after = await model.getState();
    for (const [name, tensor] of Object.entries(stream.state_after_all)) closeTo(after[name].data, tensor.data, 1e-5, name);
    await model.reset();                                            // rewinds the stream with the head
    const atOnce = (await model.load(frames)).flatMap((row) => Array.from(row));
    assert.deepEqual(atOnce, oneByOne);
    await model.restoreCheckpoint(bytes('stream_after3.ckpt'), {source: 'stream_after3.ckpt'});
    const continued = (await model.load(frames.subarray(18))).flatMap((row) => Array.from(row));
    closeTo(continued, stream.bottlenecks.slice(3 * features), 1e-5, 'continued from the Python checkpoint');
  } finally {
    model.delete();
  }
});

test('training and imprinting leave the stream alone; fit does not take -inf in it for divergence', {skip}, async () => {
  const model = await open('stream_peak.tflite');
  try {
    const features = model.metadata.bottleneckSize;
    model.addBottlenecks(Array.from({length: 6 * features}, (_, i) => ((i * 7) % 5) / 5 + (i % features === Math.floor(i / features) % 3 ? 1 : 0)),
                         [0, 1, 2, 0, 1, 2]);
    const before = await model.getState();
    const losses = await model.fit({epochs: 3});                    // imprints first, then trains
    assert.equal(losses.length, 3);
    assert.ok(losses.every(Number.isFinite));
    const after = await model.getState();
    const base = Object.keys(before).filter((name) => name.startsWith('base_state_'));
    assert.deepEqual(Object.fromEntries(base.map((name) => [name, stateBytes(after)[name]])),
                     Object.fromEntries(base.map((name) => [name, stateBytes(before)[name]])));
    assert.notDeepEqual(stateBytes(after).dense_0_kernel, stateBytes(before).dense_0_kernel);
  } finally {
    model.delete();
  }
});

test('a stream of two inputs per call is never padded: other counts are refused before anything runs', {skip}, async () => {
  const model = await open('stream_batch2.tflite');
  try {
    assert.equal(model.imageBatch, 2);
    const frames = Float32Array.from(reference.stream.frames);
    const before = await model.saveCheckpoint();
    const message = /^this model's base keeps state between calls, advanced once per call of 2 inputs: pass a multiple of 2 inputs, got 3 /;
    await refuses(() => model.load(frames.subarray(0, 18)), api.InvalidInputError, message);
    await refuses(() => model.predict(frames.subarray(0, 18)), api.InvalidInputError, message);
    await refuses(() => model.addSample(frames.subarray(0, 6), 1), api.InvalidInputError, /multiple of 2 inputs, got 1 /);
    assert.deepEqual(await model.saveCheckpoint(), before);         // nothing ran
    assert.equal((await model.load(frames.subarray(0, 24))).length, 4);
    assert.deepEqual(Array.from((await model.getState()).base_state_frame_count.data), [2]);
  } finally {
    model.delete();
  }
});
