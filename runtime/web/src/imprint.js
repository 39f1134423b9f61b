/**
 * Weight imprinting, as the Python runtime's TransferModel.imprint: a single-layer softmax head
 * set to the nearest-class-mean classifier written as a linear layer, kernel[c] = s * mean_c,
 * bias[c] = -s * |mean_c|^2 / 2 (Euclidean: pooled features are not normalised), with s so a
 * sample sits ~4 logits closer to its own class than to the average other one. Class means are
 * weighted by the label rows (a class id is a one-hot row; soft targets weigh a sample into
 * several classes). Classes without weight get a bias far below the others. float64 throughout.
 */

/**
 * The imprinted head for `bottlenecks` (Float32Array per sample) with `rows` (Float64Array of
 * `classes` weights per sample): {kernel: Float32Array [classes, features], bias: Float32Array}.
 */
export function imprintedHead(bottlenecks, rows, classes, features) {
  const sums = Array.from({length: classes}, () => new Float64Array(features));
  const weights = new Float64Array(classes);
  bottlenecks.forEach((bottleneck, i) => {
    for (let c = 0; c < classes; c++) {
      const weight = rows[i][c];
      if (weight === 0) continue;
      weights[c] += weight;
      for (let j = 0; j < features; j++) sums[c][j] += weight * bottleneck[j];
    }
  });
  const present = [...weights.keys()].filter((c) => weights[c] > 0);
  const means = new Map(present.map((c) => [c, sums[c].map((value) => value / weights[c])]));
  let total = 0, largest = 0;
  for (const bottleneck of bottlenecks) {
    for (const mean of means.values()) {
      let distance = 0;
      for (let j = 0; j < features; j++) distance += (bottleneck[j] - mean[j]) ** 2;
      total += distance;
      largest = Math.max(largest, distance);
    }
  }
  const scale = 8 / Math.max(total / (bottlenecks.length * means.size), 1e-12);
  const kernel = new Float32Array(classes * features);
  const bias = new Float64Array(classes);
  for (const [c, mean] of means) {
    mean.forEach((value, j) => { kernel[c * features + j] = scale * value; });
    bias[c] = -scale * mean.reduce((sum, value) => sum + value * value, 0) / 2;
  }
  const lowest = Math.min(...present.map((c) => bias[c]));
  for (let c = 0; c < classes; c++) if (!means.has(c)) bias[c] = lowest - 10 - scale * largest;
  return {kernel, bias: Float32Array.from(bias)};
}

/** A sample's weight per class: its one-hot (or soft) label row, or a class id as a row. */
export function classRow(label, classes, classIds) {
  if (!classIds) return Float64Array.from(label);
  const row = new Float64Array(classes);
  row[label[0]] = 1;
  return row;
}
