// Shared by the model tests: the fixture directory tests/web/test_node_module.py writes (models
// compiled by the real compiler, references computed by the Python runtime), LiteRT.js loaded
// in Node, and the assertions those tests repeat. Without the directory the tests report as skipped.
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {join} from 'node:path';

import {loadLiteRtInNode} from '../../src/node.js';

export const FIXTURES = process.env.TFLITE_TRANSFER_WEB_FIXTURES;
export const skip = FIXTURES ? false : 'set TFLITE_TRANSFER_WEB_FIXTURES (pytest tests/web/test_node_module.py does)';

/** {api (src/index.js), reference (reference.json), bytes(name)} once LiteRT.js is loaded. */
export async function loadFixtures() {
  if (!FIXTURES) return null;
  await loadLiteRtInNode();
  return {api: await import('../../src/index.js'),
          reference: JSON.parse(readFileSync(join(FIXTURES, 'reference.json'), 'utf8')),
          bytes: (name) => new Uint8Array(readFileSync(join(FIXTURES, name)))};
}

/** Every value within `tolerance`, relative to max(1, |expected|). */
export function closeTo(actual, expected, tolerance, what) {
  assert.equal(actual.length, expected.length, what);
  Array.from(actual).forEach((value, i) => assert.ok(Math.abs(value - expected[i]) <= tolerance * Math.max(1, Math.abs(expected[i])),
                                                     `${what}[${i}]: ${value} vs ${expected[i]}`));
}

/** Asserts `call()` rejects with one line of `errorClass` matching `message`. */
export async function refuses(call, errorClass, message) {
  await assert.rejects(call, (error) => {
    assert.ok(error instanceof errorClass, `${error?.name}: ${error?.message}`);
    assert.match(error.message, message);
    assert.ok(!error.message.includes('\n'), error.message);
    return true;
  });
}

/** The state's bytes per tensor, for bit-for-bit comparisons. */
export function stateBytes(state) {
  return Object.fromEntries(Object.entries(state).map(([name, tensor]) =>
    [name, Array.from(new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength))]));
}
