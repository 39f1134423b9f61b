// The checkpoint file format in JS: round trip, and a clear CheckpointError for every kind of
// damage (the reader order of BUILD.md "Checkpoint file format"). Needs no model.
import {test} from 'node:test';
import {webcrypto} from 'node:crypto';
import assert from 'node:assert/strict';

import {readCheckpoint, writeCheckpoint, checkCompatible} from '../src/checkpoint.js';
import {CheckpointError, InvalidInputError} from '../src/errors.js';
import {parseStrictJson} from '../src/strict_json.js';

globalThis.crypto ??= webcrypto;  // Node 18 has no global WebCrypto; browsers and Node 20 do
const FINGERPRINT = 'ab'.repeat(32);
const state = () => ({
  dense_0_kernel: {dtype: 'float32', shape: [3, 2], data: new Float32Array([1.5, -0, NaN, 1e-45, -3, 7])},
  dense_0_bias: {dtype: 'float32', shape: [3], data: new Float32Array([0.1, 0.2, 0.3])},
  step: {dtype: 'int32', shape: [1], data: new Int32Array([42])},
  'ünïcode 0': {dtype: 'float32', shape: [], data: new Float32Array([2])},
});
const header = (file) => new TextDecoder().decode(file.subarray(8, 8 + Number(new DataView(file.buffer).getBigUint64(0, true))));

test('write then read returns the same bits, names and shapes', async () => {
  const file = await writeCheckpoint(state(), FINGERPRINT, {note: 'x'});
  const read = await readCheckpoint(file);
  assert.equal(read.formatVersion, 2);
  assert.equal(read.modelFingerprint, FINGERPRINT);
  assert.equal(read.metadata.note, 'x');
  for (const [name, tensor] of Object.entries(state())) {
    assert.deepEqual(read.tensors[name].shape, tensor.shape);
    assert.deepEqual(new Uint8Array(read.tensors[name].data.buffer), new Uint8Array(tensor.data.buffer), name);
  }
});

test('header layout: compact JSON, metadata key order, widest tensors first then by name, padded to 8', async () => {
  const file = await writeCheckpoint(state(), FINGERPRINT, {b: '2', a: '1'});
  const text = header(file);
  assert.equal(new TextEncoder().encode(text).length % 8, 0);
  assert.match(text, /^\{"__metadata__":\{"format":"tflite-transfer-checkpoint","format_version":"2","model_fingerprint":"(ab)+","checksum":"[0-9a-f]{64}","a":"1","b":"2"\},"dense_0_bias":\{"dtype":"F32","shape":\[3\],"data_offsets":\[0,12\]\},"dense_0_kernel":/);
  assert.ok(text.indexOf('"step"') < text.indexOf('"ünïcode 0"'));  // same size: by UTF-8 bytes
});

test('a flipped bit anywhere is caught by the checksum', async () => {
  const file = await writeCheckpoint(state(), FINGERPRINT);
  for (const position of [8 + 30, file.length - 1, file.length - 20]) {
    const damaged = file.slice();
    damaged[position] ^= 0x01;
    await assert.rejects(readCheckpoint(damaged), (error) => error instanceof CheckpointError && /corrupt|checksum|format_version/.test(error.message));
  }
});

test('truncated, too short and oversized headers are refused before parsing', async () => {
  const file = await writeCheckpoint(state(), FINGERPRINT);
  await assert.rejects(readCheckpoint(file.slice(0, 5)), /too short for the 8-byte header length/);
  await assert.rejects(readCheckpoint(file.slice(0, 40)), /only 32 bytes follow it/);
  const huge = file.slice();
  new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
  await assert.rejects(readCheckpoint(huge), /more than the 100000000-byte limit/);
  await assert.rejects(readCheckpoint(file.slice(0, file.length - 4)), CheckpointError);
});

// A file whose header is `text` (re-stamped so only the intended defect remains).
async function withHeader(text, data = new Uint8Array(0), checksum = true) {
  const json = new TextEncoder().encode(text);
  const length = json.length + ((8 - (json.length % 8)) % 8);
  const file = new Uint8Array(8 + length + data.length).fill(0x20);
  new DataView(file.buffer).setBigUint64(0, BigInt(length), true);
  file.set(json, 8);
  file.set(data, 8 + length);
  if (checksum) {
    const {sha256WithHexZeroed, findHexField} = await import('../src/contract.js');
    const at = 8 + findHexField(file.subarray(8, 8 + length), new TextEncoder().encode('"checksum":"'));
    file.set(new TextEncoder().encode(await sha256WithHexZeroed(file, at)), at);
  }
  return file;
}
const META = `"__metadata__":{"format":"tflite-transfer-checkpoint","format_version":"2","model_fingerprint":"${FINGERPRINT}","checksum":"${'0'.repeat(64)}"}`;

test('structural defects each get their own message', async () => {
  const cases = [
    [`{${META},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4, /duplicate key "a"/],
    [`{${META},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4, /= 8 bytes but its data_offsets \[0,4\] span 4/],
    [`{${META},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}`, 8, /overlap/],
    [`{${META},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8, /4 bytes of trailing data/],
    [`{${META},"a":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}}`, 4, /unsupported dtype "X9"/],
    [`{${META},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}`, 4, /exactly the keys/],
    [`{${META},"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4, /span 4 bytes/],
    [`{${META},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}}`, 4, /outside the 4-byte data section/],
    [`{"__metadata__":{"format":"other","checksum":"${'0'.repeat(64)}"}}`, 0, /is not a tflite-transfer-checkpoint file/],
    [`{"__metadata__":{"format":"tflite-transfer-checkpoint","format_version":"3","model_fingerprint":"ab","checksum":"${'0'.repeat(64)}"}}`, 0, /format_version "3" with a checksum/],
    [`[1,2]`, 0, /has no checksum/],
  ];
  for (const [text, size, message] of cases) {
    const file = await withHeader(text, new Uint8Array(size), text.includes('"checksum"'));
    await assert.rejects(readCheckpoint(file), (error) => {
      assert.ok(error instanceof CheckpointError, `${text}: ${error}`);
      assert.match(error.message, message);
      return true;
    });
  }
});

test('version 1 files are refused unless asked for, with one line saying how', async () => {
  const v1 = `{"__metadata__":{"format":"tflite-transfer-checkpoint","format_version":"1","model_fingerprint":"${FINGERPRINT}"},"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}`;
  const file = await withHeader(v1, new Uint8Array([7, 0, 0, 0]), false);
  await assert.rejects(readCheckpoint(file), /allowVersion1: true/);
  const read = await readCheckpoint(file, {allowVersion1: true});
  assert.equal(read.formatVersion, 1);
  assert.deepEqual(Array.from(read.tensors.a.data), [7]);
});

test('compatibility check names the tensor and both shapes, and the other model', async () => {
  const read = await readCheckpoint(await writeCheckpoint(state(), FINGERPRINT));
  const entries = Object.entries(state()).map(([name, t]) => ({name, dtype: t.dtype, shape: t.shape}));
  checkCompatible(read, entries, FINGERPRINT);
  assert.throws(() => checkCompatible(read, entries, 'cd'.repeat(32)), /written by another model/);
  const wrongShape = entries.map((e) => (e.name === 'step' ? {...e, shape: [2]} : e));
  assert.throws(() => checkCompatible(read, wrongShape, FINGERPRINT), /'step' is \[1\] int32 in the checkpoint but \[2\] int32/);
  assert.throws(() => checkCompatible(read, entries.slice(1), FINGERPRINT), /unexpected \[dense_0_kernel\]/);
});

test('the writer refuses what it cannot write', async () => {
  await assert.rejects(writeCheckpoint({a: {dtype: 'float32', shape: [2], data: new Float32Array(3)}}, FINGERPRINT), InvalidInputError);
  await assert.rejects(writeCheckpoint({a: {dtype: 'bigint', shape: [1], data: new Float32Array(1)}}, FINGERPRINT), InvalidInputError);
  await assert.rejects(writeCheckpoint({'\ud800': {dtype: 'float32', shape: [1], data: new Float32Array(1)}}, FINGERPRINT), /lone surrogate/);
  await assert.rejects(writeCheckpoint(state(), 'not hex'), InvalidInputError);
});

test('strict JSON: duplicates at any depth, strings containing quotes and colons', () => {
  assert.deepEqual(parseStrictJson('{"a":{"b":1,"c":"x\\":y"},"d":[{"b":2},{"b":3}]}'), {a: {b: 1, c: 'x":y'}, d: [{b: 2}, {b: 3}]});
  assert.throws(() => parseStrictJson('{"a":{"b":1,"b":2}}'), /duplicate key "b"/);
  assert.throws(() => parseStrictJson('{"\\u0061":1,"a":2}'), /duplicate key "a"/);
  assert.throws(() => parseStrictJson('{"a":1,'), SyntaxError);
});
