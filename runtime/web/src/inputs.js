/**
 * Validation of what a user passes in (images, labels, bottlenecks, state) before anything
 * reaches LiteRT: one InvalidInputError line naming the tensor, shape, dtype or value.
 */

import {InvalidInputError} from './errors.js';
import {BASE_STATE, CLASS_IDS, IMAGE_KIND, LEARNING_RATE, MAX_LEARNING_RATE, MAX_STEP, ONE_HOT, ONE_HOT_SUM_TOLERANCE, STEP} from './contract.js';
import {formatG} from './format.js';

const product = (shape) => shape.reduce((a, b) => a * b, 1);

/**
 * Inputs as the model takes them, flattened: `values` holds one sample or several back to back
 * (any array-like of numbers), `spec` is the model's input {name, kind, dtype, shape, range}
 * (TransferModel.inputSpec). Shape and dtype always; the value range where one is known (float
 * inputs; an integer dtype bounds itself). Messages name the input by its name and speak of
 * pixels only for images. Returns {data, count}.
 */
export function checkedInput(values, {name, kind, dtype, shape, range}) {
  const perSample = product(shape);
  const shapeText = `[${shape.join(', ')}]`;
  const [sample, samples, unit] = kind === IMAGE_KIND ? ['pixel values per image', 'images', 'pixel'] : ['values per sample', 'samples', 'value'];
  if (values === null || typeof values !== 'object' || typeof values.length !== 'number') {
    throw new InvalidInputError(`${name}: expected a typed array of ${perSample} ${sample} ${shapeText}, got ${typeof values}`);
  }
  if (values.length === 0 || values.length % perSample !== 0) {
    throw new InvalidInputError(`${name}: ${values.length} values is not a whole number of ${samples} of ${shapeText} (${perSample} values each)`);
  }
  const count = values.length / perSample;
  if (dtype === 'uint8' || dtype === 'int32') {
    const [ArrayType, low, high] = dtype === 'uint8' ? [Uint8Array, 0, 255] : [Int32Array, -(2 ** 31), 2 ** 31 - 1];
    if (values instanceof ArrayType || (dtype === 'uint8' && values instanceof Uint8ClampedArray)) {
      return {data: new ArrayType(values.buffer, values.byteOffset, values.length).slice(), count};
    }
    const data = new ArrayType(values.length);
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (!Number.isInteger(value) || value < low || value > high) {
        throw new InvalidInputError(`${name}: value ${value} at index ${i} is not a ${dtype} ${unit} (integer ${low}-${high}); ` +
                                    `the model takes raw ${dtype} ${unit}s`);
      }
      data[i] = value;
    }
    return {data, count};
  }
  if (dtype !== 'float32') throw new InvalidInputError(`${name}: the model takes ${dtype} values, which LiteRT.js cannot feed`);
  const data = Float32Array.from(values);
  const [low, high] = range ?? [-Infinity, Infinity];
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (!Number.isFinite(value)) throw new InvalidInputError(`${name}: value ${values[i]} at index ${i} is NaN or Inf`);
    if (value < low || value > high) {
      throw new InvalidInputError(`${name}: value ${value} at index ${i} is outside [${low}, ${high}], ` +
                                  `the ${kind === IMAGE_KIND ? 'pixels' : 'values'} the model takes`);
    }
  }
  return {data, count};
}

/**
 * Labels for `count` samples, by the model's label kind: class ids (integers, or names from the
 * model's label list) as Int32Array; float targets [count, k] as Float32Array (MSE); one-hot or
 * soft rows [count, k] as Float32Array, each >= 0 and summing to 1 (class ids and names given
 * to such a model are encoded as one-hot rows).
 */
export function checkedLabels(labels, count, metadata) {
  const list = count === 1 && !isArrayLike(labels) ? [labels] : labels;
  const kind = metadata.label.kind;
  if (kind === CLASS_IDS) return classIds(list, labels, count, metadata);
  const k = metadata.numOutputs;
  if (kind === ONE_HOT && isArrayLike(list) && list.length === count && !(list instanceof Float32Array || list instanceof Float64Array) &&
      Array.from(list).every((value) => typeof value === 'string' || Number.isInteger(value))) {
    const rows = new Float32Array(count * k);
    classIds(list, labels, count, metadata).forEach((id, i) => { rows[i * k + id] = 1; });
    return rows;
  }
  const flat = isArrayLike(list) && list.length === count && isArrayLike(list[0]) ? list.flatMap((row) => Array.from(row)) : list;
  if (!isArrayLike(flat) || flat.length !== count * k) {
    const expected = kind === ONE_HOT ? 'one-hot (or soft) float targets' : 'float targets';
    throw new InvalidInputError(`label: expected ${expected} [${count}, ${k}], got ${describe(labels)}`);
  }
  const targets = Float32Array.from(flat);
  const bad = targets.findIndex((value) => !Number.isFinite(value));
  if (bad >= 0) throw new InvalidInputError(`label: value ${flat[bad]} at index ${bad} is NaN or Inf as float32`);
  if (kind === ONE_HOT) checkOneHotRows(targets, count, k);
  return targets;
}

function classIds(list, labels, count, metadata) {
  if (!isArrayLike(list) || list.length !== count) {
    throw new InvalidInputError(`label: expected ${count} class id(s), got ${describe(labels)}`);
  }
  if (list instanceof Float32Array || list instanceof Float64Array) {   // as Python: float arrays are not class ids
    throw new InvalidInputError(`label: class ids must be integers, got a ${list.constructor.name}; pass an Int32Array or plain numbers`);
  }
  const ids = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    let value = list[i];
    if (typeof value === 'string') {
      const index = metadata.labels.indexOf(value);
      if (index < 0) {
        throw new InvalidInputError(`label: '${value}' is not one of the model's labels [${metadata.labels.join(', ')}]`);
      }
      value = index;
    }
    if (!Number.isInteger(value) || value < 0 || value >= metadata.numOutputs) {
      throw new InvalidInputError(`label: ${JSON.stringify(value)} is not a class id in [0, ${metadata.numOutputs})`);
    }
    ids[i] = value;
  }
  return ids;
}

/** Rows >= 0 summing to 1 (float64 sums of the float32 values), as runtime/inputs.py checks them. */
function checkOneHotRows(targets, count, k) {
  const negative = targets.findIndex((value) => value < 0);
  if (negative >= 0) {
    throw new InvalidInputError(`label: row ${Math.floor(negative / k)} has ${formatG(targets[negative])} at class ${negative % k}; ` +
                                'one-hot and soft targets are >= 0');
  }
  for (let row = 0; row < count; row++) {
    let sum = 0;
    for (let c = 0; c < k; c++) sum += targets[row * k + c];
    if (Math.abs(sum - 1) > ONE_HOT_SUM_TOLERANCE) {
      throw new InvalidInputError(`label: row ${row} sums to ${formatG(sum)}; one-hot and soft targets sum to 1 ` +
                                  `(within ${formatG(ONE_HOT_SUM_TOLERANCE)})`);
    }
  }
}

/** Bottlenecks [count, features] as Float32Array, finite. */
export function checkedBottlenecks(bottlenecks, features) {
  if (!isArrayLike(bottlenecks) || bottlenecks.length === 0 || bottlenecks.length % features !== 0) {
    throw new InvalidInputError(`bottleneck: ${describe(bottlenecks)} is not [batch, ${features}] values`);
  }
  const data = Float32Array.from(bottlenecks);
  const bad = data.findIndex((value) => !Number.isFinite(value));
  if (bad >= 0) throw new InvalidInputError(`bottleneck: value ${bottlenecks[bad]} at index ${bad} is NaN or Inf`);
  return {data, count: data.length / features};
}

/**
 * A learning rate in (0, MAX_LEARNING_RATE] (runtime/contract.py): 0 would not train, larger
 * rates overflow float32 weights. `what` names the value in the message.
 */
export function checkedLearningRate(learningRate, what = 'learning rate') {
  if (typeof learningRate !== 'number' || !Number.isFinite(learningRate) || !(learningRate > 0 && learningRate <= MAX_LEARNING_RATE)) {
    const shown = typeof learningRate === 'number' ? String(learningRate) : `${typeof learningRate} ${describe(learningRate).slice(0, 60)}`;
    throw new InvalidInputError(`${what} must be finite, > 0 and <= ${MAX_LEARNING_RATE}, got ${shown} ` +
                                '(0 would not train; larger rates overflow float32 weights)');
  }
  return learningRate;
}

/** The typed array that holds each state dtype LiteRT.js can feed (a base's state may be uint8). */
export const STATE_ARRAYS = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array};

/**
 * A full training state {name: {dtype, shape, data}} that fits the model's state entries in
 * form (names, shapes, dtypes) and meaning (finite floats except in a base's own state,
 * learning rate in (0, MAX_LEARNING_RATE], step in [0, MAX_STEP]).
 */
export function checkedState(state, stateEntries) {
  if (state === null || typeof state !== 'object') throw new InvalidInputError('state: expected {name: {dtype, shape, data}}');
  const names = new Set(stateEntries.map((entry) => entry.name));
  const missing = [...names].filter((name) => !(name in state)).sort();
  const extra = Object.keys(state).filter((name) => !names.has(name)).sort();
  if (missing.length || extra.length) throw new InvalidInputError(`state: missing [${missing}], unexpected [${extra}]`);
  for (const entry of stateEntries) {
    const tensor = state[entry.name];
    const ArrayType = STATE_ARRAYS[entry.dtype];
    if (tensor?.dtype !== entry.dtype || !ArrayType || !(tensor.data instanceof ArrayType) ||
        Array.from(tensor.shape ?? []).join() !== entry.shape.join() || tensor.data.length !== product(entry.shape)) {
      throw new InvalidInputError(`state '${entry.name}': ${tensor?.dtype} [${tensor?.shape}] ` +
                                  `(${tensor?.data?.length} values), expected ${entry.dtype} [${entry.shape}]`);
    }
    // A base's own state may legitimately hold -inf (a running maximum's start) or NaN.
    if (entry.dtype === 'float32' && entry.role !== BASE_STATE && !tensor.data.every(Number.isFinite)) {
      throw new InvalidInputError(`state '${entry.name}': contains NaN or Inf`);
    }
    // The scalars mean something: Python's runtime/inputs.py state() refuses the same values.
    if (entry.role === LEARNING_RATE) tensor.data.forEach((rate) => checkedLearningRate(rate, `state '${entry.name}'`));
    if (entry.role === STEP) {
      const bad = tensor.data.find((step) => step < 0 || step > MAX_STEP);
      if (bad !== undefined) throw new InvalidInputError(`state '${entry.name}': step ${bad} is outside [0, ${MAX_STEP}]`);
    }
  }
  return state;
}

function isArrayLike(value) {
  return value !== null && typeof value === 'object' && typeof value.length === 'number';
}

function describe(value) {
  if (isArrayLike(value)) return `${value.constructor?.name ?? 'array'} of ${value.length}`;
  return typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value);
}
