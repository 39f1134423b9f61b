/**
 * How samples are cut into the model's fixed batches (runtime/SPEC.md#fixed-batches).
 *
 * `train` with a fixed batch B: batches come from a stream of concatenated per-epoch
 * permutations of the cached samples cut into B-sized pieces, so every sample is seen equally
 * often: no padding, nothing dropped for good. `fit(epochs)` runs ceil(epochs * N / B)
 * batches; the last one may reach into the next epoch's permutation (random samples, so it
 * biases nothing). An epoch's reported loss is the mean over the batches that ended in it.
 * Image signatures with a fixed batch run in chunks, the last padded with copies of a real
 * sample whose outputs are dropped.
 */

/** A small seeded generator (mulberry32): the same seed gives the same batches everywhere. */
export function seededRandom(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  /** Uniform integer in [0, n) without modulo bias (rejection sampling). */
  next.below = (n) => {
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const value = next();
      if (value < limit) return value % n;
    }
  };
  return next;
}

/** Fisher-Yates permutation of 0..n-1. */
export function permutation(n, random) {
  const order = Array.from({length: n}, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * The training batches, one at a time (memory stays O(samples) however many epochs):
 * {indices, epoch, lastOfEpoch} where `indices` are `batchSize` sample indices and `epoch` the
 * (0-based) epoch its last sample belongs to. ceil(epochs * N / B) batches in all.
 */
export function* trainingBatches(numSamples, batchSize, epochs, {seed = 0, shuffle = true} = {}) {
  const random = seededRandom(seed);
  const steps = Math.ceil((epochs * numSamples) / batchSize);
  const epochOf = (step) => Math.min(epochs - 1, Math.floor(((step + 1) * batchSize - 1) / numSamples));
  let pending = [];
  for (let step = 0; step < steps; step++) {
    while (pending.length < batchSize) {
      const order = shuffle ? permutation(numSamples, random) : Array.from({length: numSamples}, (_, i) => i);
      pending = pending.concat(order);
    }
    const indices = pending.slice(0, batchSize);
    pending = pending.slice(batchSize);
    const epoch = epochOf(step);
    yield {indices, epoch, lastOfEpoch: step === steps - 1 || epochOf(step + 1) !== epoch};
  }
}

/**
 * The whole plan at once (for tests and small runs): `batches` (arrays of sample indices) and,
 * for each batch, the epoch its last sample belongs to.
 */
export function trainingPlan(numSamples, batchSize, epochs, options = {}) {
  const batches = [];
  const epochOfBatch = [];
  for (const {indices, epoch} of trainingBatches(numSamples, batchSize, epochs, options)) {
    batches.push(indices);
    epochOfBatch.push(epoch);
  }
  return {batches, epochOfBatch};
}

/**
 * Chunks of `batchSize` sample indices covering 0..count-1; the last chunk is padded with
 * copies of its first sample. `real` says how many leading entries are real.
 */
export function paddedChunks(count, batchSize) {
  const chunks = [];
  for (let start = 0; start < count; start += batchSize) {
    const real = Math.min(batchSize, count - start);
    const indices = Array.from({length: batchSize}, (_, i) => start + (i < real ? i : 0));
    chunks.push({indices, real});
  }
  return chunks;
}
