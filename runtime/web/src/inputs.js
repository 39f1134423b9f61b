/**
 * Validation of what a user passes in (images, labels, bottlenecks, state) before anything
 * reaches LiteRT: one InvalidInputError line naming the tensor, shape, dtype or value.
 */

import {InvalidInputError} from './errors.js';
import {CLASS_IDS, LEARNING_RATE, MAX_LEARNING_RATE, MAX_STEP, STEP} from './contract.js';

const product = (shape) => shape.reduce((a, b) => a * b, 1);

/**
 * Images as the model's input dtype, flattened: `images` holds one image or several back to
 * back (any array-like of numbers). Returns {data, count}.
 */
export function checkedImages(images, imageShape, imageDtype, imageRange) {
  const perImage = product(imageShape);
  const shapeText = `[${imageShape.join(', ')}]`;
  if (images === null || typeof images !== 'object' || typeof images.length !== 'number') {
    throw new InvalidInputError(`image: expected a typed array of ${perImage} pixel values per image ${shapeText}, got ${typeof images}`);
  }
  if (images.length === 0 || images.length % perImage !== 0) {
    throw new InvalidInputError(`image: ${images.length} values is not a whole number of images of ${shapeText} (${perImage} values each)`);
  }
  const count = images.length / perImage;
  if (imageDtype === 'uint8') {
    if (images instanceof Uint8Array || images instanceof Uint8ClampedArray) {
      return {data: new Uint8Array(images.buffer, images.byteOffset, images.length).slice(), count};
    }
    const data = new Uint8Array(images.length);
    for (let i = 0; i < images.length; i++) {
      const value = images[i];
      if (!Number.isInteger(value) || value < 0 || value > 255) {
        throw new InvalidInputError(`image: value ${value} at index ${i} is not a uint8 pixel (integer 0-255); the model takes raw uint8 pixels`);
      }
      data[i] = value;
    }
    return {data, count};
  }
  if (imageDtype !== 'float32') {
    throw new InvalidInputError(`image: the model takes ${imageDtype} images, which LiteRT.js cannot feed`);
  }
  const data = Float32Array.from(images);
  const [low, high] = imageRange ?? [-Infinity, Infinity];
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    if (!Number.isFinite(value)) throw new InvalidInputError(`image: value ${images[i]} at index ${i} is NaN or Inf`);
    if (value < low || value > high) {
      throw new InvalidInputError(`image: value ${value} at index ${i} is outside the base's pixel range [${low}, ${high}]`);
    }
  }
  return {data, count};
}

/**
 * Labels for `count` samples: class ids (integers, or names from the model's label list) as
 * Int32Array, or float targets [count, k] as Float32Array for an MSE head.
 */
export function checkedLabels(labels, count, metadata) {
  const list = count === 1 && !isArrayLike(labels) ? [labels] : labels;
  if (metadata.label.kind === CLASS_IDS) {
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
  const k = metadata.numOutputs;
  const flat = isArrayLike(list) && list.length === count && isArrayLike(list[0]) ? list.flatMap((row) => Array.from(row)) : list;
  if (!isArrayLike(flat) || flat.length !== count * k) {
    throw new InvalidInputError(`label: expected float targets [${count}, ${k}], got ${describe(labels)}`);
  }
  const targets = Float32Array.from(flat);
  const bad = targets.findIndex((value) => !Number.isFinite(value));
  if (bad >= 0) throw new InvalidInputError(`label: target ${flat[bad]} at index ${bad} is NaN or Inf`);
  return targets;
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

/**
 * A full training state {name: {dtype, shape, data}} that fits the model's state entries in
 * form (names, shapes, dtypes) and meaning (finite floats, learning rate in
 * (0, MAX_LEARNING_RATE], step in [0, MAX_STEP]).
 */
export function checkedState(state, stateEntries) {
  if (state === null || typeof state !== 'object') throw new InvalidInputError('state: expected {name: {dtype, shape, data}}');
  const names = new Set(stateEntries.map((entry) => entry.name));
  const missing = [...names].filter((name) => !(name in state)).sort();
  const extra = Object.keys(state).filter((name) => !names.has(name)).sort();
  if (missing.length || extra.length) throw new InvalidInputError(`state: missing [${missing}], unexpected [${extra}]`);
  for (const entry of stateEntries) {
    const tensor = state[entry.name];
    const ArrayType = entry.dtype === 'int32' ? Int32Array : Float32Array;
    if (tensor?.dtype !== entry.dtype || !(tensor.data instanceof ArrayType) ||
        Array.from(tensor.shape ?? []).join() !== entry.shape.join() || tensor.data.length !== product(entry.shape)) {
      throw new InvalidInputError(`state '${entry.name}': ${tensor?.dtype} [${tensor?.shape}] ` +
                                  `(${tensor?.data?.length} values), expected ${entry.dtype} [${entry.shape}]`);
    }
    if (entry.dtype === 'float32' && !tensor.data.every(Number.isFinite)) {
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
