// The contract's rules as data (tests/golden/vectors.json, written from the Python runtime's
// own rules; its README documents the schema): this runtime's constants equal the limits, and
// it accepts exactly the accept vectors and refuses each refuse vector with the named error
// class, so a rule changed in one language fails here. Needs no LiteRT: every vector goes
// through the same functions TransferModel calls before anything reaches the interpreter.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {createHash, webcrypto} from 'node:crypto';
import {readFileSync} from 'node:fs';

import * as contract from '../src/contract.js';
import * as checkpoint from '../src/checkpoint.js';
import * as errors from '../src/errors.js';
import {checkedBottlenecks, checkedInput, checkedLabels, checkedLearningRate, checkedState} from '../src/inputs.js';
import {checkStepsLeft} from '../src/training.js';

globalThis.crypto ??= webcrypto;
const GOLDEN = new URL('../../../tests/golden/', import.meta.url);
const golden = (name) => new Uint8Array(readFileSync(new URL(name, GOLDEN)));
const vectors = JSON.parse(new TextDecoder().decode(golden('vectors.json')));
const {limits} = vectors;

/** "nan", "inf", "-inf" -> numbers (JSON has no non-finite numbers). */
const number = (value) => ({nan: NaN, inf: Infinity, '-inf': -Infinity})[value] ?? value;
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const bytesOf = (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** 'accepted', or the name of the project error class thrown; anything else fails the test. */
async function outcome(call) {
  try {
    await call();
    return 'accepted';
  } catch (error) {
    assert.ok(error instanceof errors.TransferError, `not one of the project's errors: ${error?.stack ?? error}`);
    assert.ok(!error.message.includes('\n'), `not one line: ${error.message}`);
    return error.name;
  }
}
const expected = (vector) => (vector.accept ? 'accepted' : vector.error);

test('schema version 1 of vectors.json', () => assert.equal(vectors.schema_version, 1));

test('the contract limits are this runtime\'s constants', () => {
  const names = limits.contract;
  assert.equal(contract.FORMAT, names.format);
  assert.equal(contract.METADATA_KEY, names.metadata_key);
  assert.ok(contract.SUPPORTED_CONTRACT_VERSIONS.includes(names.contract_version));
  assert.deepEqual(contract.SUPPORTED_CONTRACT_VERSIONS, names.supported_contract_versions);
  assert.deepEqual(Object.keys(contract.signatureSpecs('output', [])), names.signatures);
  assert.deepEqual([contract.INFER, contract.LOAD, contract.TRAIN, contract.TRAIN_IMAGES, contract.SAVE, contract.RESTORE,
                    contract.INITIALIZE, contract.SET_LEARNING_RATE].sort(), [...names.signatures].sort());
  assert.deepEqual(contract.IMAGE_SIGNATURES, names.image_signatures);
  // The output's name (probabilities or predictions) is read from each model's metadata.
  for (const key of ['image', 'bottleneck', 'label', 'loss', 'step', 'learning_rate']) {
    assert.equal(contract[key.toUpperCase()], names.tensor_names[key], key);
  }
  assert.deepEqual(contract.STATE_ROLES, names.state_roles);
  assert.deepEqual(contract.LABEL_KINDS, names.label_kinds);
  assert.equal(`"${contract.DIGEST_KEY}":"`, names.digest_marker);
  assert.equal(contract.DIGEST_HEX_DIGITS, names.digest_hex_digits);
});

test('the training limits are this runtime\'s constants', () => {
  assert.equal(limits.training.learning_rate_exclusive_minimum, 0);
  assert.equal(contract.MAX_LEARNING_RATE, limits.training.max_learning_rate);
  assert.equal(limits.training.min_step, 0);
  assert.equal(contract.MAX_STEP, limits.training.max_step);
});

test('the checkpoint limits are this runtime\'s constants', () => {
  const format = limits.checkpoint;
  assert.equal(checkpoint.FORMAT_NAME, format.format);
  assert.equal(checkpoint.FORMAT_VERSION, format.format_version);
  assert.equal(checkpoint.VERSION_1, format.version_1);
  assert.equal(checkpoint.MAX_HEADER_BYTES, format.max_header_bytes);
  assert.equal(checkpoint.MAX_DIMENSIONS, format.max_dimensions);
  assert.equal(checkpoint.LENGTH_FIELD_BYTES, format.length_field_bytes);
  assert.equal(checkpoint.HEADER_ALIGNMENT, format.header_alignment);
  assert.equal(checkpoint.METADATA_KEY, format.metadata_key);
  assert.equal(checkpoint.CHECKSUM_KEY, format.checksum_key);
  assert.equal(`"${checkpoint.CHECKSUM_KEY}":"`, format.checksum_marker);
  assert.deepEqual(checkpoint.METADATA_KEY_ORDER, format.metadata_key_order);
  assert.deepEqual(Object.fromEntries(Object.entries(checkpoint.DTYPES).map(([code, [bytes]]) => [code, bytes])),
                   Object.fromEntries(Object.entries(format.dtype_codes).map(([code, {bytes}]) => [code, bytes])));
});

for (const vector of vectors.learning_rates) {
  test(`learning rate ${Object.is(vector.value, -0) ? "-0" : vector.value}: ${expected(vector)} (${vector.why})`, async () => {
    assert.equal(await outcome(() => checkedLearningRate(number(vector.value))), expected(vector));
  });
}

// The golden model: its metadata as this runtime reads it, and its state from good.ckpt.
const model = vectors.model;
const modelBytes = golden(model.file);
const metadata = contract.readModelMetadata(modelBytes, model.file);
const goodState = () => checkpoint.readCheckpointState(golden('vectors/checkpoints/good.ckpt'), metadata);

for (const vector of vectors.steps) {
  test(`a state with step ${vector.value}: ${expected(vector)}`, async () => {
    const state = await goodState();
    state.step.data[0] = vector.value;
    assert.equal(state.step.data[0], vector.value, 'the vector fits int32');
    assert.equal(await outcome(() => checkedState(state, metadata.state)), expected(vector));
  });
}

for (const vector of vectors.training_steps) {
  test(`a train step from step ${vector.step}: ${expected(vector)}`, async () => {
    const state = await goodState();
    state.step.data[0] = vector.step;
    assert.equal(await outcome(() => checkStepsLeft(state, 1)), expected(vector));
  });
}

const TYPED = {float32: Float32Array, float64: Float64Array, int32: Int32Array, uint8: Uint8Array};

for (const vector of vectors.inputs.vectors) {
  test(`${vector.tensor} (${vector.context}): ${vector.name}: ${expected(vector)}`, async () => {
    const context = vectors.inputs.contexts[vector.context];
    const values = TYPED[vector.dtype].from(vector.values.map(number));
    const checked = {
      image: () => checkedInput(values, {name: 'image', kind: 'image', shape: context.image_shape, dtype: context.image_dtype,
                                         range: context.image_range}),
      bottleneck: () => checkedBottlenecks(values, context.bottleneck_size),
      label: () => checkedLabels(values, vector.batch, {label: context.label, numOutputs: context.num_outputs, labels: []}),
    }[vector.tensor];
    assert.equal(await outcome(checked), expected(vector));
  });
}

test('the real model: digest, fingerprint and state as this runtime reads them', async () => {
  assert.equal(modelBytes.length, model.bytes);
  assert.equal(sha256(modelBytes), model.sha256);
  assert.equal(contract.digestOffset(modelBytes), model.digest_offset);
  assert.equal(await contract.digestMatches(modelBytes), true);
  await contract.verifyModelDigest(modelBytes, model.file);
  assert.equal(metadata.modelDigest, model.model_digest);
  assert.equal(metadata.fingerprint, model.fingerprint);
  assert.equal(metadata.contractVersion, model.contract_version);
  assert.deepEqual(metadata.state.map(({name, dtype, shape, role}) => ({name, dtype, shape, role})), model.state);
  // LiteRT.js needs static shapes: TransferModel.open refuses this dynamic-batch model (one
  // line, see model.test.js); its digest, metadata and checkpoints are what is shared.
});

for (const vector of vectors.model_files) {
  test(`damaged model ${vector.name}: ${expected(vector)} (${vector.why})`, async () => {
    const bytes = golden(vector.file);
    assert.equal(contract.digestOffset(bytes), vector.digest_offset);
    assert.equal(await contract.digestMatches(bytes), vector.stored_digest_matches);
    assert.equal(await outcome(() => contract.verifyModelDigest(bytes, vector.file)), expected(vector));
  });
}

for (const vector of vectors.digest_strings) {
  test(`digest string "${vector.name}"`, async () => {
    const bytes = Uint8Array.from(Buffer.from(vector.hex, 'hex'));
    const offset = contract.digestOffset(bytes);
    assert.equal(offset, vector.digest_offset);
    assert.equal(offset === null ? null : await contract.sha256WithHexZeroed(bytes, offset), vector.zeroed_sha256);
    assert.equal(await contract.digestMatches(bytes), vector.matches);
  });
}

for (const vector of vectors.checkpoints) {
  test(`checkpoint ${vector.name}: ${expected(vector)} (${vector.why})`, async () => {
    let state = null;
    const result = await outcome(async () => {
      state = await checkpoint.readCheckpointState(golden(vector.file), metadata, {source: vector.name, allowVersion1: vector.allow_version_1});
    });
    assert.equal(result, expected(vector));
    if (vector.accept) {
      assert.deepEqual(Object.fromEntries(Object.entries(state).map(([name, tensor]) => [name, sha256(bytesOf(tensor.data))])),
                       vector.state_sha256);
    }
  });
}
