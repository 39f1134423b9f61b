// The contract's golden files (tests/golden, generated from runtime/contract.py and
// runtime/checkpoint.py): this runtime derives from each metadata record exactly what
// contract.json (versions 1, 2) and contract_v3.json (version 3) say a reader must, follows
// version 3's rules as data (one-hot label rows), and reads/rewrites the golden checkpoint.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {webcrypto} from 'node:crypto';

import {metadataFromRecord, signatureSpecs, IMAGE_SIGNATURES, ONE_HOT_SUM_TOLERANCE, TRAIN} from '../src/contract.js';
import {readCheckpoint, writeCheckpoint} from '../src/checkpoint.js';
import {InvalidInputError, UnsupportedModelError} from '../src/errors.js';
import {checkedLabels, checkedState} from '../src/inputs.js';
import {checkStateTypes} from '../src/signatures.js';

globalThis.crypto ??= webcrypto;
const GOLDEN = new URL('../../../tests/golden/', import.meta.url);
const golden = (name) => readFileSync(new URL(name, GOLDEN));
const expected = JSON.parse(golden('contract.json'));
const expectedV3 = JSON.parse(golden('contract_v3.json'));

/** What contract.json lists for every metadata file, as this runtime derives it. */
function checkDerived(file, derived) {
  const metadata = metadataFromRecord(JSON.parse(golden(file)), file);
  assert.equal(metadata.contractVersion, derived.contract_version);
  const state = metadata.state.map((entry) => Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== null)));
  assert.deepEqual(state, derived.state);
  assert.deepEqual(metadata.label, derived.label);
  const specs = signatureSpecs(metadata.names, metadata.state.map((entry) => entry.name));
  assert.deepEqual(Object.keys(specs), derived.signature_order);
  assert.deepEqual(specs, derived.signatures);
  for (const [signature, batch] of Object.entries(derived.fixed_batch)) {
    const fixed = IMAGE_SIGNATURES.includes(signature) ? metadata.imageBatch : signature === TRAIN ? metadata.trainBatch : null;
    assert.equal(fixed, batch, signature);
  }
  return metadata;
}

for (const [file, derived] of Object.entries(expected)) {
  test(`${file}: state roles, signatures, label, fixed batches as contract.py derives them`, () => {
    const metadata = checkDerived(file, derived);
    assert.deepEqual(signatureSpecs(metadata.output, metadata.state.map((entry) => entry.name)), derived.signatures,
                     'versions 1 and 2: the fixed names with the output of the metadata');
  });
}

for (const [file, derived] of Object.entries(expectedV3.files)) {
  test(`${file} (version 3): names, input, adapter and signatures by the model's names`, () => {
    const metadata = checkDerived(file, derived);
    assert.deepEqual({...metadata.names}, derived.names);
    const {kind, dtype, shape, range, baseRange} = metadata.input;
    assert.deepEqual({kind, dtype, shape: [...shape], range: range && [...range], base_range: baseRange && [...baseRange]}, derived.input);
    assert.deepEqual(metadata.inputRange, derived.input.range);
    const adapter = metadata.bottleneckAdapter;
    assert.deepEqual(adapter && {kind: adapter.kind, cut_shape: [...adapter.cutShape]}, derived.bottleneck_adapter);
    const record = JSON.parse(golden(file));
    assert.equal(metadata.bottleneckMaxNorm2, record.bottleneck_max_norm2 ?? null);
    // A base's own state may hold -inf or NaN: setState and checkpoints accept it, the head's not.
    const baseState = derived.state.filter((entry) => entry.role === 'base_state');
    checkStateTypes(metadata, file);
    if (baseState.length) {
      const arrays = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array};
      const state = Object.fromEntries(metadata.state.map((entry) => [entry.name, {
        dtype: entry.dtype, shape: [...entry.shape],
        data: new arrays[entry.dtype](entry.shape.reduce((a, b) => a * b, 1)).fill(entry.role === 'learning_rate' ? 0.01 : 0)}]));
      const floatBase = baseState.find((entry) => entry.dtype === 'float32');
      state[floatBase.name].data.fill(-Infinity);
      state[floatBase.name].data[0] = NaN;
      assert.equal(checkedState(state, metadata.state), state);
      state.dense_0_bias.data[0] = -Infinity;
      assert.throws(() => checkedState(state, metadata.state), /^InvalidInputError: state 'dense_0_bias': contains NaN or Inf$/);
    }
  });
}

test('a version 3 record whose names, input or adapter break the rules is one UnsupportedModelError line', () => {
  const record = JSON.parse(golden('metadata_v3.json'));
  const cases = [
    [{names: {...record.names, output: 'feature'}}, /input and output are both named 'feature' in 'infer'/],
    [{names: {...record.names, loss: '1loss'}}, /loss name "1loss" is not a name/],
    [{names: {...record.names, label: 'step'}}, /'step' is also a state variable's name/],
    [{output: 'probabilities'}, /output 'probabilities' is not names.output 'output'/],
    [{input: {...record.input, kind: 'audio'}}, /input kind 'audio'/],
    [{input: {...record.input, range: [1, 0]}}, /input range \[1,0\]/],
    [{bottleneck_adapter: {kind: 'flatten', cut_shape: [1, 8, 1]}}, /bottleneck_adapter flatten \[1,8,1\] for bottleneck_size 7/],
    [{bottleneck_adapter: {kind: 'mean', cut_shape: [1, 7, 1]}}, /bottleneck_adapter mean/],
    [{contract_version: 2, model_digest: record.model_digest}, /one_hot labels before contract version 3/],
  ];
  for (const [change, message] of cases) {
    assert.throws(() => metadataFromRecord({...record, ...change}, 'v3.json'), (error) => {
      assert.ok(error instanceof UnsupportedModelError, String(error));
      assert.match(error.message, message);
      assert.ok(!error.message.includes('\n'));
      return true;
    });
  }
  const {names, ...withoutNames} = record;
  assert.throws(() => metadataFromRecord(withoutNames, 'v3.json'), /incomplete or malformed/);
  assert.throws(() => metadataFromRecord({...record, contract_version: 4}, 'v3.json'), /this runtime reads 'tflite-transfer' versions 1, 2, 3/);
});

test('a base state LiteRT.js cannot feed is refused in one line naming the variable', () => {
  const record = JSON.parse(golden('metadata_v3_stateful.json'));
  record.state = record.state.map((entry) => (entry.name === 'base_state_frame_count' ? {...entry, dtype: 'int64'} : entry));
  const metadata = metadataFromRecord(record, 'stateful.json');   // valid for the contract...
  assert.throws(() => checkStateTypes(metadata, 'stateful.json'), (error) => {   // ...not for LiteRT.js
    assert.ok(error instanceof UnsupportedModelError);
    assert.match(error.message, /^stateful.json: the base's state variable 'base_state_frame_count' is int64 \[1\]; LiteRT.js feeds float32, int32, uint8 tensors only/);
    return true;
  });
});

test('one-hot label rows: accepted and refused exactly as contract_v3.json rules say, each refusal its own line', () => {
  const {rules} = expectedV3;
  assert.equal(ONE_HOT_SUM_TOLERANCE, rules.one_hot_sum_tolerance);
  const metadata = metadataFromRecord(JSON.parse(golden('metadata_v3.json')), 'metadata_v3.json');
  assert.equal(metadata.label.kind, 'one_hot');
  for (const rows of rules.one_hot_rows.accepted) {
    assert.deepEqual(checkedLabels(rows, rows.length, metadata), Float32Array.from(rows.flat()));
  }
  const messages = new Set();
  for (const [reason, rows] of Object.entries(rules.one_hot_rows.refused)) {
    assert.throws(() => checkedLabels(rows, rows.length, metadata), (error) => {
      assert.ok(error instanceof InvalidInputError, `${reason}: ${error}`);
      assert.match(error.message, /^label: /, reason);
      assert.ok(!error.message.includes('\n'));
      messages.add(error.message);
      return true;
    });
  }
  assert.equal(messages.size, Object.keys(rules.one_hot_rows.refused).length);
  // Class ids and label names are encoded as rows; fractional ids are not ids.
  assert.deepEqual(checkedLabels([2, 'cat'], 2, metadata), Float32Array.from([0, 0, 1, 1, 0, 0]));
  assert.throws(() => checkedLabels([3], 1, metadata), /label: 3 is not a class id in \[0, 3\)/);
  assert.throws(() => checkedLabels(Float32Array.from([0.5, 0.5]), 2, metadata), /expected one-hot \(or soft\) float targets \[2, 3\]/);
});

test('checkpoint.ckpt: read, and rewritten byte-identically when it is the current version', async () => {
  const file = new Uint8Array(golden('checkpoint.ckpt'));
  const read = await readCheckpoint(file, {source: 'checkpoint.ckpt', allowVersion1: true});
  const metadata = metadataFromRecord(JSON.parse(golden('metadata.json')));
  assert.equal(read.modelFingerprint, metadata.fingerprint);
  assert.deepEqual(Object.keys(read.tensors).sort(), metadata.state.map((entry) => entry.name).sort());
  const extras = Object.fromEntries(Object.entries(read.metadata).filter(([key]) =>
    !['format', 'format_version', 'model_fingerprint', 'checksum'].includes(key)));
  const rewritten = await writeCheckpoint(read.tensors, read.modelFingerprint, extras);
  const again = await readCheckpoint(rewritten);
  for (const [name, tensor] of Object.entries(read.tensors)) {
    assert.deepEqual(new Uint8Array(again.tensors[name].data.buffer), new Uint8Array(tensor.data.buffer), name);
  }
  if (read.formatVersion === 2) assert.deepEqual(rewritten, file);
});
