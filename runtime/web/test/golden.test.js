// The contract's golden files (tests/golden, generated from runtime/contract.py and
// runtime/checkpoint.py): this runtime derives from each metadata record exactly what
// contract.json says a reader must, and reads/rewrites the golden checkpoint.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {webcrypto} from 'node:crypto';

import {metadataFromRecord, signatureSpecs, IMAGE_SIGNATURES, TRAIN} from '../src/contract.js';
import {readCheckpoint, writeCheckpoint} from '../src/checkpoint.js';

globalThis.crypto ??= webcrypto;
const GOLDEN = new URL('../../../tests/golden/', import.meta.url);
const golden = (name) => readFileSync(new URL(name, GOLDEN));
const expected = JSON.parse(golden('contract.json'));

for (const [file, derived] of Object.entries(expected)) {
  test(`${file}: state roles, signatures, label, fixed batches as contract.py derives them`, () => {
    const metadata = metadataFromRecord(JSON.parse(golden(file)), file);
    assert.equal(metadata.contractVersion, derived.contract_version);
    const state = metadata.state.map((entry) => Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== null)));
    assert.deepEqual(state, derived.state);
    assert.deepEqual(metadata.label, derived.label);
    const specs = signatureSpecs(metadata.output, metadata.state.map((entry) => entry.name));
    assert.deepEqual(Object.keys(specs), derived.signature_order);
    assert.deepEqual(specs, derived.signatures);
    for (const [signature, batch] of Object.entries(derived.fixed_batch)) {
      const fixed = IMAGE_SIGNATURES.includes(signature) ? metadata.imageBatch : signature === TRAIN ? metadata.trainBatch : null;
      assert.equal(fixed, batch, signature);
    }
  });
}

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
