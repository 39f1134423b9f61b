/**
 * Reads one named metadata entry of a .tflite FlatBuffer, without a FlatBuffers library:
 * Model.metadata[i] = {name, buffer}, Model.buffers[buffer].data (schema.fbs of TFLite).
 * Every offset is bounds-checked, so a corrupt file gives a clear error, never a wrong read.
 */

import {InvalidInputError} from './errors.js';

// Field indices in TFLite's schema.fbs.
const MODEL_BUFFERS = 4;
const MODEL_METADATA = 6;
const METADATA_NAME = 0;
const METADATA_BUFFER = 1;
const BUFFER_DATA = 0;
const BUFFER_OFFSET = 1;
const BUFFER_SIZE = 2;

class Reader {
  constructor(bytes, source) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.source = source;
  }

  fail(what) {
    return new InvalidInputError(`${this.source}: corrupt TFLite file (${what}); use the file compile-transfer wrote`);
  }

  check(position, size, what) {
    if (!Number.isSafeInteger(position) || position < 0 || position + size > this.bytes.length) {
      throw this.fail(`${what} at byte ${position} lies outside the ${this.bytes.length}-byte file`);
    }
  }

  u32(position, what) {
    this.check(position, 4, what);
    return this.view.getUint32(position, true);
  }

  u64(position, what) {
    this.check(position, 8, what);
    return Number(this.view.getBigUint64(position, true));
  }

  /** The table at `position`: returns field index -> absolute position (null if absent). */
  table(position, what) {
    this.check(position, 4, what);
    const vtable = position - this.view.getInt32(position, true);  // soffset_t: table - vtable
    this.check(vtable, 4, `${what} vtable`);
    const vtableSize = this.view.getUint16(vtable, true);
    this.check(vtable, vtableSize, `${what} vtable`);
    return (field) => {
      const slot = 4 + 2 * field;
      if (slot + 2 > vtableSize) return null;
      const offset = this.view.getUint16(vtable + slot, true);
      return offset === 0 ? null : position + offset;
    };
  }

  /** The target of an offset stored at `position` (uoffset_t, relative to itself). */
  follow(position, what) {
    return position + this.u32(position, what);
  }

  vector(position, what) {
    const start = this.follow(position, what);
    const length = this.u32(start, `${what} length`);
    return {start: start + 4, length};
  }
}

/**
 * The bytes of the metadata entry named `name`, or null when the model has no such entry.
 * @param {Uint8Array} modelBytes
 */
export function readMetadataEntry(modelBytes, name, source = '<model>') {
  if (!(modelBytes instanceof Uint8Array) || modelBytes.length < 8 ||
      String.fromCharCode(...modelBytes.subarray(4, 8)) !== 'TFL3') {
    throw new InvalidInputError(`${source}: not a TFLite model (no 'TFL3' file identifier at byte 4)`);
  }
  const reader = new Reader(modelBytes, source);
  const model = reader.table(reader.u32(0, 'root offset'), 'Model');
  const metadataField = model(MODEL_METADATA);
  const buffersField = model(MODEL_BUFFERS);
  if (metadataField === null || buffersField === null) return null;
  const metadata = reader.vector(metadataField, 'Model.metadata');
  const buffers = reader.vector(buffersField, 'Model.buffers');
  const wanted = new TextEncoder().encode(name);
  for (let index = 0; index < metadata.length; index++) {
    const entry = reader.table(reader.follow(metadata.start + 4 * index, 'Metadata'), 'Metadata');
    const nameField = entry(METADATA_NAME);
    if (nameField === null) continue;
    const text = reader.vector(nameField, 'Metadata.name');
    reader.check(text.start, text.length, 'Metadata.name');
    const entryName = modelBytes.subarray(text.start, text.start + text.length);
    if (entryName.length !== wanted.length || !entryName.every((byte, i) => byte === wanted[i])) continue;
    const bufferField = entry(METADATA_BUFFER);
    const bufferIndex = bufferField === null ? 0 : reader.u32(bufferField, 'Metadata.buffer');
    if (bufferIndex >= buffers.length) throw reader.fail(`metadata '${name}' names buffer ${bufferIndex} of ${buffers.length}`);
    const buffer = reader.table(reader.follow(buffers.start + 4 * bufferIndex, 'Buffer'), 'Buffer');
    const dataField = buffer(BUFFER_DATA);
    if (dataField !== null) {
      const data = reader.vector(dataField, 'Buffer.data');
      reader.check(data.start, data.length, `metadata '${name}' data`);
      return modelBytes.subarray(data.start, data.start + data.length);
    }
    // Models over 2 GB keep buffers after the FlatBuffer: offset from the file start.
    const offsetField = buffer(BUFFER_OFFSET);
    const sizeField = buffer(BUFFER_SIZE);
    if (offsetField === null || sizeField === null) return new Uint8Array(0);
    const offset = reader.u64(offsetField, 'Buffer.offset');
    const size = reader.u64(sizeField, 'Buffer.size');
    reader.check(offset, size, `metadata '${name}' data`);
    return modelBytes.subarray(offset, offset + size);
  }
  return null;
}
