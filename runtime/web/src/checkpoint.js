/**
 * Checkpoint files in the project's format (runtime/SPEC.md#checkpoint-file-format, version 2):
 * safetensors layout, compact JSON header with `__metadata__` {format, format_version "2",
 * model_fingerprint, checksum, extras sorted}, checksum = sha256 of the whole file with its
 * own 64 hex digits read as '0'. For the same state the bytes equal what the Python and C++
 * runtimes write. Works on Uint8Array (a download or an upload), no filesystem.
 */

import {CheckpointError, InvalidInputError} from './errors.js';
import {findHexField, hexAt, sha256WithHexZeroed} from './contract.js';
import {checkedState} from './inputs.js';
import {parseStrictJson} from './strict_json.js';

// The format's constants (test/golden_vectors.test.js checks them against tests/golden).
export const FORMAT_NAME = 'tflite-transfer-checkpoint';
export const FORMAT_VERSION = 2;
export const VERSION_1 = 1;
export const MAX_HEADER_BYTES = 100_000_000;
export const MAX_DIMENSIONS = 32;
export const LENGTH_FIELD_BYTES = 8;      // little-endian uint64: the header's length
export const HEADER_ALIGNMENT = 8;        // the header is padded with spaces to a multiple of this
export const METADATA_KEY = '__metadata__';
export const CHECKSUM_KEY = 'checksum';
export const METADATA_KEY_ORDER = ['format', 'format_version', 'model_fingerprint', CHECKSUM_KEY];
const CHECKSUM_MARKER = new TextEncoder().encode(`"${CHECKSUM_KEY}":"`);
const PLACEHOLDER = '0'.repeat(64);

/** safetensors dtype code -> element size and the typed array that holds it (little-endian). */
export const DTYPES = {
  F64: [8, Float64Array], F32: [4, Float32Array], F16: [2, Uint16Array],
  I64: [8, BigInt64Array], I32: [4, Int32Array], I16: [2, Int16Array], I8: [1, Int8Array],
  U64: [8, BigUint64Array], U32: [4, Uint32Array], U16: [2, Uint16Array], U8: [1, Uint8Array], BOOL: [1, Uint8Array],
};
const CODE_BY_DTYPE = {float32: 'F32', int32: 'I32', float64: 'F64', uint8: 'U8', int8: 'I8'};
const DTYPE_BY_CODE = Object.fromEntries(Object.entries(CODE_BY_DTYPE).map(([dtype, code]) => [code, dtype]));

/**
 * Serializes `tensors` ({name: {dtype: 'float32'|'int32'|..., shape, data: TypedArray}}).
 * @returns {Promise<Uint8Array>} the whole file
 */
export async function writeCheckpoint(tensors, modelFingerprint, extraMetadata = {}) {
  if (typeof modelFingerprint !== 'string' || !/^[0-9a-fA-F]+$/.test(modelFingerprint)) {
    throw new InvalidInputError(`model fingerprint must be a non-empty hex string, got ${JSON.stringify(modelFingerprint)}`);
  }
  // Key order is part of the format: format, format_version, model_fingerprint, checksum, extras sorted.
  const values = [FORMAT_NAME, String(FORMAT_VERSION), modelFingerprint, PLACEHOLDER];
  const metadata = METADATA_KEY_ORDER.map((key, i) => [key, values[i]]);
  for (const key of Object.keys(extraMetadata).sort(compareUtf8)) {
    if (typeof extraMetadata[key] !== 'string') throw new InvalidInputError(`extra metadata '${key}' must be a string`);
    if (metadata.some(([reserved]) => reserved === key)) throw new InvalidInputError(`extra metadata key '${key}' is reserved`);
    metadata.push([key, extraMetadata[key]]);
  }
  const entries = Object.entries(tensors).map(([name, tensor]) => checkedTensor(name, tensor));
  // Widest items first, then by name as UTF-8 bytes: every tensor is aligned to its item size.
  entries.sort((a, b) => (b.itemSize - a.itemSize) || compareUtf8(a.name, b.name));
  const parts = [`${quote(METADATA_KEY)}:{${metadata.map(([k, v]) => `${quote(k)}:${quote(v)}`).join(',')}}`];
  let offset = 0;
  for (const entry of entries) {
    parts.push(`${quote(entry.name)}:{"dtype":${quote(entry.code)},"shape":[${entry.shape.join(',')}],` +
               `"data_offsets":[${offset},${offset + entry.bytes.length}]}`);
    offset += entry.bytes.length;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = json.length + ((HEADER_ALIGNMENT - (json.length % HEADER_ALIGNMENT)) % HEADER_ALIGNMENT);
  const headerStart = LENGTH_FIELD_BYTES;
  const file = new Uint8Array(headerStart + headerLength + offset);
  new DataView(file.buffer).setBigUint64(0, BigInt(headerLength), true);
  file.set(json, headerStart);
  file.fill(0x20, headerStart + json.length, headerStart + headerLength);
  let position = headerStart + headerLength;
  for (const entry of entries) {
    file.set(entry.bytes, position);
    position += entry.bytes.length;
  }
  const checksumAt = headerStart + findHexField(file.subarray(headerStart, headerStart + headerLength), CHECKSUM_MARKER);
  const checksum = await sha256WithHexZeroed(file, checksumAt);
  file.set(new TextEncoder().encode(checksum), checksumAt);
  return file;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** JSON string exactly as Python's json.dumps(ensure_ascii=False) writes it. */
function quote(text) {
  if (LONE_SURROGATE.test(text)) throw new InvalidInputError(`name ${JSON.stringify(text)} is not valid Unicode (lone surrogate)`);
  return JSON.stringify(text);
}

function compareUtf8(a, b) {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function checkedTensor(name, tensor) {
  if (typeof name !== 'string' || !name || name === METADATA_KEY) {
    throw new InvalidInputError(`tensor names must be non-empty strings other than ${METADATA_KEY}, got ${JSON.stringify(name)}`);
  }
  const code = CODE_BY_DTYPE[tensor?.dtype];
  if (!code) throw new InvalidInputError(`tensor '${name}' has dtype ${tensor?.dtype}; a checkpoint here holds ${Object.keys(CODE_BY_DTYPE).join(', ')}`);
  const [itemSize, ArrayType] = DTYPES[code];
  const shape = Array.from(tensor.shape ?? []);
  const count = shape.reduce((a, b) => a * b, 1);
  if (!(tensor.data instanceof ArrayType) || tensor.data.length !== count || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new InvalidInputError(`tensor '${name}': ${tensor.data?.constructor?.name} of ${tensor.data?.length} elements ` +
                                `does not hold ${tensor.dtype} [${shape}]`);
  }
  // Typed arrays are in the platform's byte order; every browser and Node platform is little-endian.
  const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength).slice();
  return {name, code, shape, itemSize, bytes};
}

/**
 * Reads and fully validates a checkpoint file, in the reader order of
 * runtime/SPEC.md#checkpoint-file-format: sizes, header, checksum, strict JSON, entries against the file size, then the
 * tensors. With `expect` ({fingerprint, state: the model's state entries}) the file is also
 * checked against that model before any tensor is copied: its data size before the checksum
 * is computed (a file of the wrong size is refused without hashing it), the fingerprint right
 * after the header's metadata, names, dtypes and shapes right after the entries.
 * @returns {{tensors: Object, modelFingerprint: string, formatVersion: number, metadata: Object}}
 */
export async function readCheckpoint(fileBytes, {source = 'checkpoint', allowVersion1 = false, expect = null} = {}) {
  const corrupt = (problem) => new CheckpointError(
    `${source} is corrupt or incomplete: ${problem}; use an older checkpoint or start training from the model's initial weights`);
  if (!(fileBytes instanceof Uint8Array)) throw new CheckpointError(`${source}: expected the file's bytes as a Uint8Array`);
  const size = fileBytes.length;
  const headerStart = LENGTH_FIELD_BYTES;
  if (size < headerStart) throw corrupt(`the file is ${size} bytes, too short for the ${headerStart}-byte header length`);
  const headerLength = new DataView(fileBytes.buffer, fileBytes.byteOffset, headerStart).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw corrupt(`the header length field says ${headerLength} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`);
  if (headerLength > BigInt(size - headerStart)) {
    throw corrupt(`the header length field says ${headerLength} bytes but only ${size - headerStart} bytes follow it`);
  }
  const headerEnd = headerStart + Number(headerLength);
  if (expect) {
    const stateBytes = expect.state.reduce((total, entry) => total + elementCount(entry.shape) * itemSize(entry.dtype), 0);
    if (size - headerEnd !== stateBytes) {
      throw corrupt(`it holds ${size - headerEnd} bytes of tensor data but this model's state is ${stateBytes} bytes ` +
                    '(a truncated file, or a checkpoint of another model)');
    }
  }
  const headerBytes = fileBytes.subarray(headerStart, headerEnd);
  const checksumAt = findHexField(headerBytes, CHECKSUM_MARKER);
  if (checksumAt !== null) {
    const stored = hexAt(headerBytes, checksumAt);
    const computed = await sha256WithHexZeroed(fileBytes, headerStart + checksumAt);
    if (stored !== computed) {
      throw corrupt(`its checksum does not match its content (stored ${stored.slice(0, 12)}…, computed ${computed.slice(0, 12)}…): the file was damaged`);
    }
  } else if (!allowVersion1) {
    throw new CheckpointError(
      `${source} has no checksum: it is format version 1 (or damaged), which cannot be checked for corruption; ` +
      'to read it anyway pass {allowVersion1: true} and save it again to convert it to version 2');
  }
  let header;
  try {
    header = parseStrictJson(new TextDecoder('utf-8', {fatal: true}).decode(headerBytes));
  } catch (error) {
    throw corrupt(`the header is not valid UTF-8 JSON (${String(error.message).slice(0, 200)})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw corrupt('the header is not a JSON object');
  const metadata = checkedMetadata(source, header[METADATA_KEY], checksumAt !== null, corrupt);
  if (expect) checkFingerprint(metadata.model_fingerprint, expect.fingerprint, source);
  const dataSize = size - headerEnd;
  const entries = Object.entries(header).filter(([name]) => name !== METADATA_KEY)
    .map(([name, entry]) => checkedEntry(name, entry, dataSize, corrupt));
  checkTiling(entries, dataSize, corrupt);
  if (expect) {
    checkEntriesFit(entries.map((entry) => ({name: entry.name, dtype: DTYPE_BY_CODE[entry.code] ?? entry.code, shape: entry.shape})),
                    expect.state, source);
  }
  const tensors = {};
  for (const entry of entries) {
    const bytes = fileBytes.slice(headerEnd + entry.begin, headerEnd + entry.end);  // aligned copy
    const [, ArrayType] = DTYPES[entry.code];
    tensors[entry.name] = {dtype: DTYPE_BY_CODE[entry.code] ?? entry.code, shape: entry.shape,
                           data: new ArrayType(bytes.buffer, 0, bytes.length / DTYPES[entry.code][0])};
  }
  return {tensors, modelFingerprint: metadata.model_fingerprint, formatVersion: Number(metadata.format_version), metadata};
}

function checkedMetadata(source, metadata, hasChecksum, corrupt) {
  if (metadata === undefined) {
    throw new CheckpointError(`${source} has no __metadata__, so it is not a ${FORMAT_NAME} file (a plain safetensors file?)`);
  }
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata) ||
      !Object.values(metadata).every((value) => typeof value === 'string')) {
    throw corrupt('__metadata__ must be an object of string values');
  }
  if (metadata.format !== FORMAT_NAME) {
    throw new CheckpointError(`${source} is not a ${FORMAT_NAME} file (__metadata__.format is ${JSON.stringify(metadata.format)})`);
  }
  const expected = String(hasChecksum ? FORMAT_VERSION : VERSION_1);
  if (metadata.format_version !== expected) {
    const version = metadata.format_version;
    const newer = /^\d+$/.test(version ?? '') && Number(version) > FORMAT_VERSION ? ' (written by a newer tflite-transfer? upgrade it)' : '';
    throw new CheckpointError(
      `${source} has format_version ${version === undefined ? 'missing' : JSON.stringify(version)} ${hasChecksum ? 'with' : 'without'} a checksum; ` +
      `this reader supports version ${FORMAT_VERSION} (checksummed) and, on request, version ${VERSION_1}${newer}`);
  }
  if (!metadata.model_fingerprint) throw corrupt('__metadata__ has no model_fingerprint');
  return metadata;
}

function checkedEntry(name, entry, dataSize, corrupt) {
  if (!name) throw corrupt('a tensor has an empty name');
  const keys = entry && typeof entry === 'object' && !Array.isArray(entry) ? Object.keys(entry).sort() : null;
  if (!keys || keys.join() !== 'data_offsets,dtype,shape') {
    throw corrupt(`tensor '${name}' must be an object with exactly the keys data_offsets, dtype, shape`);
  }
  if (!Object.hasOwn(DTYPES, entry.dtype)) throw corrupt(`tensor '${name}' has unsupported dtype ${JSON.stringify(entry.dtype)}`);
  const isCount = (value) => Number.isSafeInteger(value) && value >= 0;
  if (!Array.isArray(entry.shape) || entry.shape.length > MAX_DIMENSIONS || !entry.shape.every(isCount)) {
    throw corrupt(`tensor '${name}' has shape ${JSON.stringify(entry.shape)}; expected at most ${MAX_DIMENSIONS} non-negative integers`);
  }
  const offsets = entry.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw corrupt(`tensor '${name}' has data_offsets ${JSON.stringify(offsets)}; expected [begin, end]`);
  }
  const [begin, end] = offsets;
  if (!(begin <= end && end <= dataSize)) {
    throw corrupt(`tensor '${name}' has data_offsets [${offsets}] outside the ${dataSize}-byte data section (truncated file?)`);
  }
  // BigInt: a product of declared dimensions must not round before it is compared.
  const expectedBytes = entry.shape.reduce((a, b) => a * BigInt(b), 1n) * BigInt(DTYPES[entry.dtype][0]);
  if (BigInt(end - begin) !== expectedBytes) {
    throw corrupt(`tensor '${name}' is [${entry.shape}] ${entry.dtype} = ${expectedBytes} bytes but its data_offsets [${offsets}] span ${end - begin} bytes`);
  }
  return {name, code: entry.dtype, shape: entry.shape, begin, end};
}

function checkTiling(entries, dataSize, corrupt) {
  const sorted = [...entries].sort((a, b) => (a.begin - b.begin) || (a.end - b.end));
  let position = 0;
  let previous = null;
  for (const entry of sorted) {
    if (entry.begin < position) throw corrupt(`tensors '${previous.name}' and '${entry.name}' overlap`);
    if (entry.begin > position) throw corrupt(`bytes ${position}..${entry.begin} of the data section belong to no tensor (gap before '${entry.name}')`);
    position = entry.end;
    previous = entry;
  }
  if (position !== dataSize) throw corrupt(`${dataSize - position} bytes of trailing data after the last tensor`);
}

/**
 * The training state a checkpoint holds for the model with `metadata` (contract.js), checked
 * in form and meaning exactly as setState checks a state (inputs.js checkedState): what
 * `restore` may be given. Any problem is one CheckpointError naming `source`.
 */
export async function readCheckpointState(fileBytes, metadata, {source = 'checkpoint', allowVersion1 = false} = {}) {
  const expect = {fingerprint: metadata.fingerprint, state: metadata.state};
  const saved = await readCheckpoint(fileBytes, {source, allowVersion1, expect});
  try {
    return checkedState(saved.tensors, metadata.state);
  } catch (error) {
    if (error instanceof InvalidInputError) throw new CheckpointError(`${source}: ${error.message}`);
    throw error;
  }
}

const elementCount = (shape) => shape.reduce((a, b) => a * b, 1);
const itemSize = (dtype) => DTYPES[CODE_BY_DTYPE[dtype]]?.[0] ?? NaN;

function checkFingerprint(stored, modelFingerprint, source) {
  if (stored !== modelFingerprint) {
    throw new CheckpointError(
      `${source} was written by another model (fingerprint ${stored.slice(0, 12)}… vs ` +
      `${modelFingerprint.slice(0, 12)}…); restore it into the model that saved it, or start from this model's initial weights`);
  }
}

/** `stored` [{name, dtype, shape}] against the model's state entries: names, dtypes, shapes. */
function checkEntriesFit(stored, stateEntries, source) {
  const expected = new Set(stateEntries.map((entry) => entry.name));
  const byName = new Map(stored.map((entry) => [entry.name, entry]));
  const missing = [...expected].filter((name) => !byName.has(name)).sort();
  const unexpected = [...byName.keys()].filter((name) => !expected.has(name)).sort();
  if (missing.length || unexpected.length) {
    throw new CheckpointError(`${source} does not hold this model's variables: missing [${missing}], unexpected [${unexpected}]`);
  }
  for (const entry of stateEntries) {
    const tensor = byName.get(entry.name);
    if (tensor.dtype !== entry.dtype || tensor.shape.join() !== entry.shape.join() || tensor.shape.length !== entry.shape.length) {
      throw new CheckpointError(`${source} does not fit the model: '${entry.name}' is [${tensor.shape}] ${tensor.dtype} in the checkpoint ` +
                                `but [${entry.shape}] ${entry.dtype} in the model`);
    }
  }
}

/**
 * Refuses a checkpoint that does not fit the model: fingerprint, names, shapes, dtypes
 * (`stateEntries` = the metadata's state entries). readCheckpoint's `expect` runs the same
 * checks before copying any tensor.
 */
export function checkCompatible(checkpoint, stateEntries, modelFingerprint, source = 'checkpoint') {
  checkFingerprint(checkpoint.modelFingerprint, modelFingerprint, source);
  checkEntriesFit(Object.entries(checkpoint.tensors).map(([name, tensor]) => ({name, dtype: tensor.dtype, shape: tensor.shape})),
                  stateEntries, source);
}
