/**
 * Reads one named metadata entry of a .tflite FlatBuffer with the official FlatBuffers
 * library (npm `flatbuffers`) and accessors generated from TFLite's schema.fbs
 * (generated/tflite_schema.js; tools/generate_tflite_schema.sh says how).
 *
 * The library trusts its input: a read past the end yields `undefined` bits, i.e. a silent
 * wrong value. The model's bytes are untrusted (the digest check can be skipped), so every
 * read goes through CheckedByteBuffer, which bounds-checks it and checks each table's vtable
 * the way FlatBuffers' C++ verifier does: a damaged file gives one InvalidInputError, nothing
 * is read from outside the file, and every loop is bounded by the file's size. (Damage inside
 * the metadata's own bytes is the digest's job, and then the JSON reader's.)
 */

import * as flatbuffers from 'flatbuffers';

import {InvalidInputError, TransferError} from './errors.js';
import {Model} from './generated/tflite_schema.js';

const FILE_IDENTIFIER = 'TFL3';

class CheckedByteBuffer extends flatbuffers.ByteBuffer {
  constructor(bytes, source) {
    super(bytes);
    this.source = source;
  }

  fail(what) {
    return new InvalidInputError(`${this.source}: corrupt TFLite file (${what}); use the file compile-transfer wrote`);
  }

  check(offset, size, what = 'a field') {
    if (!Number.isSafeInteger(offset) || offset < 0 || size < 0 || offset + size > this.bytes_.length) {
      throw this.fail(`${what} at byte ${offset} lies outside the ${this.bytes_.length}-byte file`);
    }
  }

  readInt8(offset) { this.check(offset, 1); return super.readInt8(offset); }
  readUint8(offset) { this.check(offset, 1); return super.readUint8(offset); }
  readInt16(offset) { this.check(offset, 2); return super.readInt16(offset); }
  readUint16(offset) { this.check(offset, 2); return super.readUint16(offset); }
  readInt32(offset) { this.check(offset, 4); return super.readInt32(offset); }
  readUint32(offset) { this.check(offset, 4); return super.readUint32(offset); }
  readInt64(offset) { this.check(offset, 8); return super.readInt64(offset); }
  readUint64(offset) { this.check(offset, 8); return super.readUint64(offset); }
  readFloat32(offset) { this.check(offset, 4); return super.readFloat32(offset); }
  readFloat64(offset) { this.check(offset, 8); return super.readFloat64(offset); }

  /** A field's offset in its table (0: absent), with the verifier's table checks. */
  __offset(tablePosition, vtableOffset) {
    const vtable = tablePosition - this.readInt32(tablePosition);
    const vtableSize = this.readUint16(vtable);
    const tableSize = this.readUint16(vtable + 2);
    if (vtableSize < 4 || vtableSize % 2) throw this.fail(`a vtable of ${vtableSize} bytes at byte ${vtable}`);
    this.check(vtable, vtableSize, 'a vtable');
    this.check(tablePosition, tableSize, 'a table');
    if (vtableOffset >= vtableSize) return 0;
    const field = this.readUint16(vtable + vtableOffset);
    if (field !== 0 && (field < 4 || field >= tableSize)) throw this.fail(`a field at offset ${field} of a ${tableSize}-byte table`);
    return field;
  }

  /** The bytes (or text) of a string, checked to lie in the file. */
  __string(offset, encoding) {
    const start = offset + this.readUint32(offset);
    const length = this.readUint32(start);
    this.check(start + 4, length, 'a string');
    return super.__string(offset, encoding);
  }
}

/**
 * The bytes of the metadata entry named `name`, or null when the model has no such entry.
 * @param {Uint8Array} modelBytes
 */
export function readMetadataEntry(modelBytes, name, source = '<model>') {
  if (!(modelBytes instanceof Uint8Array) || modelBytes.length < 8 ||
      String.fromCharCode(...modelBytes.subarray(4, 8)) !== FILE_IDENTIFIER) {
    throw new InvalidInputError(`${source}: not a TFLite model (no '${FILE_IDENTIFIER}' file identifier at byte 4)`);
  }
  const bytes = new CheckedByteBuffer(modelBytes, source);
  try {
    return findMetadataEntry(bytes, Model.getRootAsModel(bytes), new TextEncoder().encode(name), name);
  } catch (error) {
    if (error instanceof TransferError) throw error;
    throw bytes.fail(`${error.name}: ${error.message}`);   // e.g. a RangeError from a typed-array view
  }
}

function findMetadataEntry(bytes, model, wanted, name) {
  // Each iteration reads the next 4-byte element (checked), so the loop ends within the file.
  for (let index = 0; index < model.metadataLength(); index++) {
    const entry = model.metadata(index);
    const entryName = entry.name(flatbuffers.Encoding.UTF8_BYTES);
    if (entryName === null || entryName.length !== wanted.length || !entryName.every((byte, i) => byte === wanted[i])) continue;
    const bufferIndex = entry.buffer();
    if (bufferIndex >= model.buffersLength()) {
      throw bytes.fail(`metadata '${name}' names buffer ${bufferIndex} of ${model.buffersLength()}`);
    }
    const buffer = model.buffers(bufferIndex);
    const data = buffer.dataArray();   // a view of the file's ArrayBuffer: check it lies in the file
    if (data !== null) {
      const start = data.byteOffset - bytes.bytes().byteOffset;
      bytes.check(start, data.length, `metadata '${name}' data`);
      return bytes.bytes().subarray(start, start + data.length);
    }
    // Models over 2 GB keep buffers after the FlatBuffer: offset from the file start
    // (schema.fbs: "only valid if > 1").
    const offset = buffer.offset(), size = buffer.size();
    if (offset <= 1n) return new Uint8Array(0);
    if (offset + size > BigInt(bytes.capacity())) {
      throw bytes.fail(`metadata '${name}' data at byte ${offset} lies outside the ${bytes.capacity()}-byte file`);
    }
    return bytes.bytes().subarray(Number(offset), Number(offset + size));
  }
  return null;
}
