/**
 * The model contract as the web runtime reads it: signature and tensor names, the typed
 * `tflite_transfer` metadata record (contract versions 1, 2 and 3) and the model digest.
 * Mirrors tflite_transfer/runtime/contract.py; tests check it against files that module writes.
 */

import {UnsupportedModelError, VerificationError} from './errors.js';
import {readMetadataEntry} from './flatbuffer.js';
import {fixedNames, version3Fields, version3Problems} from './contract_tensors.js';

export {NAME_ROLES, IMAGE_KIND, TENSOR_KIND, ONE_HOT_SUM_TOLERANCE, fixedNames} from './contract_tensors.js';

export const METADATA_KEY = 'tflite_transfer';
export const FORMAT = 'tflite-transfer';
export const CONTRACT_VERSION = 3;    // 3: per-model tensor names, the input described, one-hot labels, adapters
export const SUPPORTED_CONTRACT_VERSIONS = [1, 2, 3];

export const INFER = 'infer', LOAD = 'load', TRAIN = 'train', TRAIN_IMAGES = 'train_images';
export const SAVE = 'save', RESTORE = 'restore', INITIALIZE = 'initialize', SET_LEARNING_RATE = 'set_learning_rate';
export const IMAGE_SIGNATURES = [INFER, LOAD, TRAIN_IMAGES];
// Tensor names of versions 1 and 2 and the defaults of version 3 (a model's own: metadata.names).
export const IMAGE = 'image', BOTTLENECK = 'bottleneck', LABEL = 'label', LOSS = 'loss';
export const STEP = 'step', LEARNING_RATE = 'learning_rate';
export const KERNEL = 'kernel', BIAS = 'bias', SLOT = 'slot';
// A resource variable of a stateful base (runtime/SPEC.md#stateful-bases): saved, restored and reset
// with the head's state, advanced by every call that runs the base; its values are the base's
// own and need not be finite (a running maximum starts at -inf).
export const BASE_STATE = 'base_state';
export const STATE_ROLES = [KERNEL, BIAS, SLOT, STEP, LEARNING_RATE, BASE_STATE];
// class_ids: int32 []; targets: float32 [k] (mse); one_hot: float32 [k] rows >= 0 summing to 1 (version 3).
export const CLASS_IDS = 'class_ids', TARGETS = 'targets', ONE_HOT = 'one_hot';
export const LABEL_KINDS = [CLASS_IDS, TARGETS, ONE_HOT];
// The model digest and checkpoint checksum: sha256 as 64 lowercase hex digits.
export const DIGEST_KEY = 'model_digest', DIGEST_HEX_DIGITS = 64;

// What the state's scalars may hold, as runtime/contract.py says (its comment gives the why:
// a float32 step overflows beyond 1e6; Adam's int32 step wraps at 2^31 - 1).
// test/golden_vectors.test.js checks these and the names above against tests/golden's limits.
export const MAX_LEARNING_RATE = 1e6;
export const MAX_STEP = 2 ** 31 - 2;

/**
 * Every signature's exact input and output names (contract.signature_specs). `names`: the
 * model's tensor names (metadata.names), or a string: the output name, with the fixed names of
 * versions 1 and 2.
 */
export function signatureSpecs(names, stateNames) {
  const {input, bottleneck, label, loss, output} = typeof names === 'string' ? fixedNames(names) : names;
  return {
    [INFER]: {inputs: [input], outputs: [output]},
    [LOAD]: {inputs: [input], outputs: [bottleneck]},
    [TRAIN]: {inputs: [bottleneck, label], outputs: [loss]},
    [TRAIN_IMAGES]: {inputs: [input, label], outputs: [loss]},
    [SAVE]: {inputs: [], outputs: [...stateNames]},
    [RESTORE]: {inputs: [...stateNames], outputs: [STEP]},
    [INITIALIZE]: {inputs: [], outputs: [STEP]},
    [SET_LEARNING_RATE]: {inputs: [LEARNING_RATE], outputs: [LEARNING_RATE]},
  };
}

/**
 * The model's metadata as a frozen record with the fields of contract.ModelMetadata
 * (camelCase): bottleneckSize, numOutputs, loss, output, label {kind, dtype, shape},
 * state [{name, shape, dtype, role, layer, slot, of}], fingerprint, optimizer, labels,
 * imageRange (versions 1, 2), imageBatch, trainBatch, modelDigest, bottleneckMaxNorm2
 * (optional), contractVersion; version 3's input {kind, dtype, shape, range, baseRange} and
 * bottleneckAdapter {kind, cutShape} (null before version 3); `names` (role -> tensor name,
 * the fixed names before version 3) and `inputRange` (the values the app feeds, when known).
 */
export function readModelMetadata(modelBytes, source = '<model>') {
  const entry = readMetadataEntry(modelBytes, METADATA_KEY, source);
  if (entry === null) {
    throw new UnsupportedModelError(
      `${source}: not a tflite-transfer model (no '${METADATA_KEY}' metadata); compile it with compile-transfer`);
  }
  let record;
  try {
    record = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(entry));
  } catch (error) {
    throw new UnsupportedModelError(`${source}: '${METADATA_KEY}' metadata is not valid JSON (${error.message})`);
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) {
    throw new UnsupportedModelError(`${source}: '${METADATA_KEY}' metadata is not a JSON object`);
  }
  return metadataFromRecord(record, source);
}

export function metadataFromRecord(record, source = '<model>') {
  const version = record.contract_version;
  if (record.format !== FORMAT || !SUPPORTED_CONTRACT_VERSIONS.includes(version)) {
    throw new UnsupportedModelError(
      `${source}: metadata format ${JSON.stringify(record.format)} contract version ${JSON.stringify(version)}; ` +
      `this runtime reads '${FORMAT}' versions ${SUPPORTED_CONTRACT_VERSIONS.join(', ')}: recompile the model or update tflite-transfer`);
  }
  let metadata;
  try {
    const upgraded = version === 1 ? upgradeVersion1(record) : record;
    const state = upgraded.state.map((entry) => {
      const name = requireString(entry.name, 'state name');
      const shape = entry.shape.map((d) => requireInt(d, `state '${name}' shape`, 0));
      requireInt(shape.reduce((a, b) => a * b, 1), `state '${name}' element count`, 0);
      return Object.freeze({name, shape, dtype: requireString(entry.dtype, `state '${name}' dtype`),
                            role: requireString(entry.role, `state '${name}' role`),
                            layer: entry.layer ?? null, slot: entry.slot ?? null, of: entry.of ?? null});
    });
    const output = requireString(upgraded.output, 'output');
    const imageRange = upgraded.image_range ? Object.freeze(upgraded.image_range.map(Number)) : null;
    const v3 = version >= 3 ? version3Fields(upgraded, {requireInt, requireString})
                            : {names: fixedNames(output), input: null, bottleneckAdapter: null};
    metadata = Object.freeze({
      bottleneckSize: requireInt(upgraded.bottleneck_size, 'bottleneck_size'),
      numOutputs: requireInt(upgraded.num_outputs, 'num_outputs'),
      loss: requireString(upgraded.loss, 'loss'),
      output,
      label: Object.freeze({kind: requireString(upgraded.label.kind, 'label kind'), dtype: requireString(upgraded.label.dtype, 'label dtype'),
                            shape: upgraded.label.shape.map((d) => requireInt(d, 'label shape', 0))}),
      state: Object.freeze(state),
      fingerprint: requireString(upgraded.fingerprint, 'fingerprint'),
      optimizer: Object.freeze({...upgraded.optimizer}),
      labels: Object.freeze((upgraded.labels ?? []).map(String)),
      imageRange: version >= 3 ? null : imageRange,
      imageBatch: optionalInt(upgraded.image_batch, 'image_batch'),
      trainBatch: optionalInt(upgraded.train_batch, 'train_batch'),
      modelDigest: upgraded.model_digest ?? null,
      bottleneckMaxNorm2: optionalNumber(upgraded.bottleneck_max_norm2, 'bottleneck_max_norm2'),
      contractVersion: version,
      ...v3,
      inputRange: v3.input ? v3.input.range : imageRange,
    });
  } catch (error) {
    throw new UnsupportedModelError(
      `${source}: '${METADATA_KEY}' metadata is incomplete or malformed (${error.message}); recompile the model`);
  }
  checkMetadata(metadata, source);
  return metadata;
}

// TFLite stores dimensions as int32: a size or count beyond that describes no real model (and
// would make this runtime allocate from a number nobody checked).
const MAX_INT32 = 2 ** 31 - 1;

function requireInt(value, what, least = 1) {
  if (!Number.isSafeInteger(value) || value < least || value > MAX_INT32) {
    throw new TypeError(`${what}: expected an integer in [${least}, ${MAX_INT32}], got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

function requireString(value, what) {
  if (typeof value !== 'string') throw new TypeError(`${what}: expected a string, got ${JSON.stringify(value)}`);
  return value;
}

function optionalInt(value, what) {
  return value === null || value === undefined ? null : requireInt(value, what);
}

function optionalNumber(value, what) {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'number') throw new TypeError(`${what}: expected a number, got ${JSON.stringify(value)}`);
  return value;
}

function checkMetadata(metadata, source) {
  const problems = [];
  if (metadata.bottleneckSize < 1 || metadata.numOutputs < 1) {
    problems.push(`bottleneck_size ${metadata.bottleneckSize}, num_outputs ${metadata.numOutputs}`);
  }
  if (!LABEL_KINDS.includes(metadata.label.kind)) problems.push(`label kind '${metadata.label.kind}'`);
  const names = metadata.state.map((entry) => entry.name);
  if (new Set(names).size !== names.length) problems.push('duplicate state names');
  for (const entry of metadata.state) {
    // The head's state is float32 (weights, slots, rate) and int32 (step); a base's own state
    // has the base's types, checked against what LiteRT.js can feed when the model is opened.
    if (!STATE_ROLES.includes(entry.role) || entry.shape.some((d) => d < 0) ||
        (entry.role !== BASE_STATE && !['float32', 'int32'].includes(entry.dtype))) {
      problems.push(`state '${entry.name}' role '${entry.role}' ${entry.dtype} [${entry.shape}]`);
    }
  }
  for (const batch of [metadata.imageBatch, metadata.trainBatch]) {
    if (batch !== null && batch < 1) problems.push(`fixed batch ${batch}`);
  }
  if (metadata.labels.length && metadata.labels.length !== metadata.numOutputs) {
    problems.push(`${metadata.labels.length} labels for ${metadata.numOutputs} outputs`);
  }
  if (metadata.contractVersion >= 2 && !new RegExp(`^[0-9a-f]{${DIGEST_HEX_DIGITS}}$`).test(metadata.modelDigest ?? '')) problems.push('no model_digest');
  if (metadata.contractVersion >= 3) problems.push(...version3Problems(metadata));
  else if (metadata.label.kind === ONE_HOT) problems.push('one_hot labels before contract version 3');
  if (problems.length) {
    throw new UnsupportedModelError(`${source}: inconsistent '${METADATA_KEY}' metadata: ${problems.join('; ')}`);
  }
}

/** Version 1 stored state as {name: {shape, dtype}} and implied roles and labels. */
function upgradeVersion1(record) {
  const names = Object.keys(record.state);
  const weights = names.filter((n) => (n.endsWith('_kernel') || n.endsWith('_bias')) &&
    !names.some((w) => n !== w && n.startsWith(w + '_')));
  const state = names.map((name) => {
    const spec = record.state[name];
    const entry = {name, shape: spec.shape, dtype: spec.dtype};
    const owner = weights.find((w) => name.startsWith(w + '_'));
    if (name === STEP || name === LEARNING_RATE) return {...entry, role: name};
    if (owner) {
      return {...entry, role: SLOT, of: owner, slot: name.slice(owner.length + 1), layer: owner.slice(0, owner.lastIndexOf('_'))};
    }
    const cut = name.lastIndexOf('_');
    return {...entry, role: name.slice(cut + 1), layer: name.slice(0, cut)};
  });
  const classes = record.loss !== 'mse';
  const label = classes ? {kind: CLASS_IDS, dtype: 'int32', shape: []}
                        : {kind: TARGETS, dtype: 'float32', shape: [record.num_outputs]};
  return {...record, state, label};
}

// The model digest (runtime/SPEC.md#model-digest): sha256 of the whole file with the
// 64 hex digits of `"model_digest":"<64 hex>"` (exactly one occurrence) read as ASCII '0'.
const DIGEST_MARKER = new TextEncoder().encode(`"${DIGEST_KEY}":"`);
const HEX_DIGITS = new Set(new TextEncoder().encode('0123456789abcdef'));

/**
 * Offset of the hex digits of the single `"<key>":"<64 lowercase hex>"` in `bytes` (marker
 * given as bytes), or null unless there is exactly one. Shared with checkpoint checksums.
 */
export function findHexField(bytes, marker, limit = bytes.length) {
  const found = [];
  const first = marker[0];
  for (let start = bytes.indexOf(first); start >= 0 && start < limit && found.length < 2;
       start = bytes.indexOf(first, start + 1)) {
    let matches = start + marker.length + DIGEST_HEX_DIGITS + 1 <= limit;
    for (let i = 1; matches && i < marker.length; i++) matches = bytes[start + i] === marker[i];
    if (!matches) continue;
    const digits = start + marker.length;
    let hex = bytes[digits + DIGEST_HEX_DIGITS] === 0x22;  // closing quote
    for (let i = 0; hex && i < DIGEST_HEX_DIGITS; i++) hex = HEX_DIGITS.has(bytes[digits + i]);
    if (hex) found.push(digits);
  }
  return found.length === 1 ? found[0] : null;
}

/** sha256 (hex) of `bytes` with the 64 bytes at `hexOffset` read as ASCII '0' (SubtleCrypto). */
export async function sha256WithHexZeroed(bytes, hexOffset) {
  const zeroed = bytes.slice();  // SubtleCrypto hashes one buffer, no streaming: hash a copy
  zeroed.fill(0x30, hexOffset, hexOffset + DIGEST_HEX_DIGITS);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', zeroed));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export function hexAt(bytes, offset) {
  return new TextDecoder().decode(bytes.subarray(offset, offset + DIGEST_HEX_DIGITS));
}

/** Offset of the digest's 64 hex digits, or null unless the bytes hold exactly one digest field. */
export function digestOffset(modelBytes) {
  return findHexField(modelBytes, DIGEST_MARKER);
}

/** true / false when the file has one digest field, null when it has none (contract version 1). */
export async function digestMatches(modelBytes) {
  const offset = digestOffset(modelBytes);
  if (offset === null) return null;
  return hexAt(modelBytes, offset) === await sha256WithHexZeroed(modelBytes, offset);
}

/**
 * Checks the digest before any parser or interpreter sees the bytes (runtime/SPEC.md#model-digest): contract version 2 models without a valid digest are refused; `skip` is for
 * apps that verified the file elsewhere.
 */
export async function verifyModelDigest(modelBytes, source, skip = false) {
  if (skip) return;
  const matches = await digestMatches(modelBytes);
  if (matches === false) {
    throw new VerificationError(
      `${source}: the model's bytes do not match its model_digest (corrupt or edited after compiling); ` +
      'download the model again or recompile it');
  }
  if (matches === null) {
    // Version 1 models carry no digest: read the metadata only to say which case this is.
    const metadata = readModelMetadata(modelBytes, source);
    if (metadata.contractVersion >= 2) {
      throw new VerificationError(`${source}: contract version 2 model without one valid model_digest field; recompile it`);
    }
  }
}
