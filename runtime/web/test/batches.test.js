// Fixed batches (runtime/SPEC.md#fixed-batches) in JS: the permutation stream, epoch losses, padded image chunks.
import {test} from 'node:test';
import assert from 'node:assert/strict';

import {paddedChunks, permutation, seededRandom, trainingBatches, trainingPlan} from '../src/batches.js';

test('permutations are permutations and depend on the seed only', () => {
  const a = permutation(50, seededRandom(1));
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({length: 50}, (_, i) => i));
  assert.deepEqual(a, permutation(50, seededRandom(1)));
  assert.notDeepEqual(a, permutation(50, seededRandom(2)));
});

test('every sample is seen equally often over whole epochs, no batch is padded', () => {
  for (const [samples, batch, epochs] of [[10, 4, 6], [3, 4, 4], [7, 1, 2], [16, 16, 3], [5, 16, 2]]) {
    const {batches, epochOfBatch} = trainingPlan(samples, batch, epochs, {seed: 5});
    assert.equal(batches.length, Math.ceil((samples * epochs) / batch));
    assert.ok(batches.every((b) => b.length === batch));
    const stream = batches.flat();
    for (let epoch = 0; epoch < Math.floor(stream.length / samples); epoch++) {
      const seen = stream.slice(epoch * samples, (epoch + 1) * samples).sort((x, y) => x - y);
      assert.deepEqual(seen, Array.from({length: samples}, (_, i) => i), `epoch ${epoch} of ${[samples, batch, epochs]}`);
    }
    assert.ok(epochOfBatch.every((e, i) => e >= 0 && e < epochs && (i === 0 || e >= epochOfBatch[i - 1])));
  }
});

test('each batch belongs to the epoch of its last sample; the last batch of each epoch is marked', () => {
  const {epochOfBatch} = trainingPlan(6, 4, 3, {seed: 0});  // 18 samples -> 5 batches ending at 4, 8, 12, 16, 20
  assert.deepEqual(epochOfBatch, [0, 1, 1, 2, 2]);
  assert.deepEqual([...trainingBatches(6, 4, 3)].map((b) => b.lastOfEpoch), [true, false, true, false, true]);
  assert.deepEqual([...trainingBatches(3, 4, 4)].map((b) => [b.epoch, b.lastOfEpoch]), [[1, true], [2, true], [3, true]]);
});

test('batches are drawn lazily: a plan of 1e12 epochs yields its first batches at once', () => {
  const batches = trainingBatches(5, 4, 1e12, {seed: 3});
  const first = [batches.next().value, batches.next().value];
  assert.deepEqual(first.map((b) => b.epoch), [0, 1]);
  assert.deepEqual([...first[0].indices, ...first[1].indices], trainingPlan(5, 4, 2, {seed: 3}).batches.flat().slice(0, 8));
});

test('image chunks pad the last one with copies of a real sample', () => {
  assert.deepEqual(paddedChunks(5, 2), [{indices: [0, 1], real: 2}, {indices: [2, 3], real: 2}, {indices: [4, 4], real: 1}]);
  assert.deepEqual(paddedChunks(2, 1), [{indices: [0], real: 1}, {indices: [1], real: 1}]);
});
