/**
 * TransferModel: the personalization lifecycle of one compiled tflite-transfer model in
 * LiteRT.js (wasm or WebGPU), the same lifecycle as the Python TransferModel:
 *
 *   const model = await TransferModel.open(modelBytesOrUrl);   // digest, metadata, contract
 *   await model.addSample(pixels, 'cat');                      // runs `load`, caches the bottleneck
 *   const losses = await model.fit({epochs: 20});              // `train` over the cache
 *   const [probabilities] = await model.predict(pixels);       // `infer`
 *   const file = await model.saveCheckpoint();                 // Uint8Array, same bytes as Python
 *
 * LiteRT.js needs static signature shapes, so models come from `compile-transfer --batch=1,16`.
 */

import {Tensor, loadAndCompile} from '@litertjs/core';

import * as contract from './contract.js';
import {readCheckpointState, writeCheckpoint} from './checkpoint.js';
import {InvalidInputError, TransferError, UnsupportedModelError} from './errors.js';
import {checkedBottlenecks, checkedImages, checkedLabels, checkedLearningRate, checkedState} from './inputs.js';
import {paddedChunks} from './batches.js';
import {fit, guardedStep} from './training.js';


export class TransferModel {
  /** Use TransferModel.open. */
  constructor(compiled, metadata, details, source) {
    this.compiled = compiled;
    this.metadata = metadata;
    this.source = source;
    this.imageShape = details.imageShape;         // per image, e.g. [224, 224, 3]
    this.imageDtype = details.imageDtype;         // 'float32' or 'uint8'
    this.imageBatch = details.imageBatch;         // fixed batch of load/infer/train_images
    this.trainBatch = details.trainBatch;         // fixed batch of train
    this._bottlenecks = [];                       // Float32Array per cached sample
    this._labels = [];                            // Int32Array(1) or Float32Array(k) per sample
    this._queue = Promise.resolve();              // LiteRT calls run one at a time
  }

  /**
   * Opens a model from its bytes (Uint8Array/ArrayBuffer) or a same-origin URL: checks the
   * model digest before LiteRT sees the bytes, reads the metadata, compiles, checks the contract.
   * `numThreads`: the wasm CPU threads (more than 1 needs LiteRT.js's threaded wasm, see
   * litert.js); unset, LiteRT.js uses its own default.
   */
  static async open(model, {accelerator = 'wasm', skipDigestCheck = false, source, numThreads} = {}) {
    let bytes = model;
    source = source ?? (typeof model === 'string' || model instanceof URL ? String(model) : '<model>');
    if (typeof model === 'string' || model instanceof URL) {
      const response = await fetch(model);
      if (!response.ok) throw new InvalidInputError(`${source}: HTTP ${response.status} while fetching the model`);
      bytes = new Uint8Array(await response.arrayBuffer());
    } else if (model instanceof ArrayBuffer) {
      bytes = new Uint8Array(model);
    }
    if (!(bytes instanceof Uint8Array)) throw new InvalidInputError(`${source}: pass the model as a Uint8Array, ArrayBuffer or URL`);
    if (numThreads !== undefined && (!Number.isSafeInteger(numThreads) || numThreads < 1 || numThreads > 64)) {
      throw new InvalidInputError(`numThreads must be an integer in [1, 64], got ${numThreads}`);
    }
    await contract.verifyModelDigest(bytes, source, skipDigestCheck);
    const metadata = contract.readModelMetadata(bytes, source);
    let compiled;
    try {
      compiled = await loadAndCompile(bytes.slice(), {accelerator, ...(numThreads === undefined ? {} : {cpuOptions: {numThreads}})});
    } catch (error) {
      throw new UnsupportedModelError(`${source}: LiteRT.js cannot load it: ${error.message}`);
    }
    try {
      return new TransferModel(compiled, metadata, checkSignatures(compiled, metadata, source), source);
    } catch (error) {
      compiled.delete();
      throw error;
    }
  }

  get numClasses() { return this.metadata.numOutputs; }
  get labels() { return [...this.metadata.labels]; }
  get classifies() { return this.metadata.label.kind === contract.CLASS_IDS; }
  get numSamples() { return this._labels.length; }
  get stateNames() { return this.metadata.state.map((entry) => entry.name); }

  /** Frees the compiled model's wasm memory. */
  delete() { this.compiled.delete(); }

  // --- the signatures -------------------------------------------------------------------

  /** Runs a signature with named typed-array inputs; returns named {dtype, shape, data} copies. */
  _run(signature, inputs) {
    const task = this._queue.then(async () => {
      const tensors = {};
      let outputs = {};
      try {
        for (const [name, {data, shape}] of Object.entries(inputs)) tensors[name] = new Tensor(data, shape);
        outputs = await this.compiled.run(signature, tensors);
        const result = {};
        for (const [name, tensor] of Object.entries(outputs)) {
          const data = await tensor.data();
          result[name] = {dtype: tensor.type.dtype, shape: Array.from(tensor.type.layout.dimensions), data: data.slice()};
        }
        return result;
      } catch (error) {
        if (error instanceof TransferError) throw error;
        throw new TransferError(`${this.source}: LiteRT.js failed running '${signature}': ${error.message}`);
      } finally {
        for (const tensor of [...Object.values(tensors), ...Object.values(outputs)]) tensor.delete();
      }
    });
    this._queue = task.catch(() => {});
    return task;
  }

  /** Runs an image signature over `count` images in chunks of the fixed image batch. */
  async _runImages(signature, images, outputName) {
    const {data, count} = checkedImages(images, this.imageShape, this.imageDtype, this.metadata.imageRange);
    const perImage = data.length / count;
    const rows = [];
    for (const {indices, real} of paddedChunks(count, this.imageBatch)) {
      const chunk = new data.constructor(indices.length * perImage);
      indices.forEach((sample, i) => chunk.set(data.subarray(sample * perImage, (sample + 1) * perImage), i * perImage));
      const output = (await this._run(signature, {[contract.IMAGE]: {data: chunk, shape: [indices.length, ...this.imageShape]}}))[outputName];
      const perRow = output.data.length / indices.length;
      for (let i = 0; i < real; i++) rows.push(output.data.slice(i * perRow, (i + 1) * perRow));  // padding dropped
    }
    return rows;
  }

  /** `load`: one bottleneck (Float32Array) per image. */
  load(images) { return this._runImages(contract.LOAD, images, contract.BOTTLENECK); }

  /** `infer`: one row of probabilities (or predictions) per image. */
  predict(images) { return this._runImages(contract.INFER, images, this.metadata.output); }

  /**
   * One optimizer step on exactly `trainBatch` bottlenecks (`train`); returns the loss. A step
   * whose loss or new state is NaN/Inf is undone (VerificationError).
   */
  async trainStep(bottlenecks, labels) {
    const {data, count} = checkedBottlenecks(bottlenecks, this.metadata.bottleneckSize);
    if (count !== this.trainBatch) {
      throw new InvalidInputError(`bottleneck: ${count} samples, but this model's train takes exactly ${this.trainBatch} per step`);
    }
    const labelData = checkedLabels(labels, count, this.metadata);
    return guardedStep(this, () => this._runTrain(data, labelData, count));
  }

  async _runTrain(bottlenecks, labels, count) {
    const labelShape = this.classifies ? [count] : [count, this.numClasses];
    const result = await this._run(contract.TRAIN, {
      [contract.BOTTLENECK]: {data: bottlenecks, shape: [count, this.metadata.bottleneckSize]},
      [contract.LABEL]: {data: labels, shape: labelShape},
    });
    return result[contract.LOSS].data[0];
  }

  /** One optimizer step on exactly `imageBatch` images (`train_images`); returns the loss; undone like trainStep's. */
  async trainImages(images, labels) {
    const {data, count} = checkedImages(images, this.imageShape, this.imageDtype, this.metadata.imageRange);
    if (count !== this.imageBatch) {
      throw new InvalidInputError(`image: ${count} images, but this model's train_images takes exactly ${this.imageBatch} per step`);
    }
    const labelData = checkedLabels(labels, count, this.metadata);
    return guardedStep(this, async () => (await this._run(contract.TRAIN_IMAGES, {
      [contract.IMAGE]: {data, shape: [count, ...this.imageShape]},
      [contract.LABEL]: {data: labelData, shape: this.classifies ? [count] : [count, this.numClasses]},
    }))[contract.LOSS].data[0]);
  }

  async setLearningRate(learningRate) {
    const value = checkedLearningRate(learningRate);
    await this._run(contract.SET_LEARNING_RATE, {[contract.LEARNING_RATE]: {data: new Float32Array([value]), shape: [1]}});
  }

  /** Back to the compiled initial weights and optimizer state (the sample cache is kept). */
  async reset() { await this._run(contract.INITIALIZE, {}); }

  /** Every variable and optimizer slot: {name: {dtype, shape, data}}. */
  getState() { return this._run(contract.SAVE, {}); }

  /** Validates every tensor first, so a bad state changes nothing. */
  async setState(state) {
    checkedState(state, this.metadata.state);
    await this._restore(state);
  }

  /** `restore` without the checks (a state this model's own `save` returned). */
  async _restore(state) {
    const inputs = {};
    for (const entry of this.metadata.state) inputs[entry.name] = {data: state[entry.name].data.slice(), shape: entry.shape};
    await this._run(contract.RESTORE, inputs);
  }

  async steps() { return (await this.getState())[contract.STEP].data[0]; }

  // --- the sample cache and training over it -------------------------------------------

  /** Runs `load` once on the image(s) and caches each bottleneck with its label. */
  async addSample(images, labels) {
    const {count} = checkedImages(images, this.imageShape, this.imageDtype, this.metadata.imageRange);
    const labelData = checkedLabels(labels, count, this.metadata);  // checked before any work
    const bottlenecks = await this.load(images);
    const perLabel = labelData.length / count;
    bottlenecks.forEach((bottleneck, i) => {
      this._bottlenecks.push(bottleneck);
      this._labels.push(labelData.slice(i * perLabel, (i + 1) * perLabel));
    });
  }

  /** Caches bottlenecks computed elsewhere (e.g. by `load` in another process). */
  addBottlenecks(bottlenecks, labels) {
    const {data, count} = checkedBottlenecks(bottlenecks, this.metadata.bottleneckSize);
    const labelData = checkedLabels(labels, count, this.metadata);
    const features = this.metadata.bottleneckSize, perLabel = labelData.length / count;
    for (let i = 0; i < count; i++) {
      this._bottlenecks.push(data.slice(i * features, (i + 1) * features));
      this._labels.push(labelData.slice(i * perLabel, (i + 1) * perLabel));
    }
  }

  clearSamples() {
    this._bottlenecks = [];
    this._labels = [];
  }

  /**
   * Trains over the cached samples in batches of the model's train batch (batches.js); returns
   * the mean loss of each epoch. `onEpoch(epoch, loss)` and `onBatch(index, loss)` report
   * progress; `batchSize`, when given, must be the model's train batch. Training that diverges
   * is rolled back to the end of the last good epoch (VerificationError); see training.js.
   */
  fit(options = {}) { return fit(this, options); }

  /**
   * Weight imprinting, as the Python runtime: a single-layer softmax head set to the
   * nearest-class-mean classifier (kernel[c] = s * mean_c, bias[c] = -s * |mean_c|^2 / 2,
   * s so a sample sits ~4 logits closer to its class); optimizer slots of the head zeroed.
   */
  async imprint() {
    const kernels = this.metadata.state.filter((entry) => entry.role === contract.KERNEL);
    if (!this.classifies || kernels.length !== 1) throw new UnsupportedModelError('imprint needs a single-layer softmax head (--head=softmax)');
    if (!this.numSamples) throw new InvalidInputError('imprint: no samples cached; call addSample first');
    const kernel = kernels[0];
    const bias = this.metadata.state.find((entry) => entry.role === contract.BIAS && entry.layer === kernel.layer);
    const features = this.metadata.bottleneckSize, classes = this.numClasses;
    const sums = new Map();
    this._bottlenecks.forEach((bottleneck, i) => {
      const label = this._labels[i][0];
      if (!sums.has(label)) sums.set(label, {sum: new Float64Array(features), count: 0});
      const entry = sums.get(label);
      bottleneck.forEach((value, j) => { entry.sum[j] += value; });
      entry.count += 1;
    });
    const means = new Map([...sums].map(([label, {sum, count}]) => [label, sum.map((value) => value / count)]));
    let total = 0, largest = 0;
    for (const bottleneck of this._bottlenecks) {
      for (const mean of means.values()) {
        let distance = 0;
        for (let j = 0; j < features; j++) distance += (bottleneck[j] - mean[j]) ** 2;
        total += distance;
        largest = Math.max(largest, distance);
      }
    }
    const scale = 8 / Math.max(total / (this.numSamples * means.size), 1e-12);
    const state = await this.getState();
    const kernelData = new Float32Array(classes * features);
    const biasData = new Float64Array(classes);
    for (const [label, mean] of means) {
      mean.forEach((value, j) => { kernelData[label * features + j] = scale * value; });
      biasData[label] = -scale * mean.reduce((a, value) => a + value * value, 0) / 2;
    }
    const lowest = Math.min(...[...means.keys()].map((label) => biasData[label]));
    for (let c = 0; c < classes; c++) if (!means.has(c)) biasData[c] = lowest - 10 - scale * largest;
    state[kernel.name].data = kernelData;
    state[bias.name].data = Float32Array.from(biasData);
    for (const entry of this.metadata.state) {
      if (entry.role === contract.SLOT && (entry.of === kernel.name || entry.of === bias.name)) state[entry.name].data.fill(0);
    }
    await this.setState(state);
  }

  // --- checkpoints ------------------------------------------------------------------------

  /** The training state as a checkpoint file (Uint8Array), byte-identical to Python's. */
  async saveCheckpoint() {
    return writeCheckpoint(await this.getState(), this.metadata.fingerprint, {num_samples_cached: String(this.numSamples)});
  }

  /** Restores a checkpoint of this model; on any problem throws and changes nothing. */
  async restoreCheckpoint(fileBytes, {source = 'checkpoint', allowVersion1 = false} = {}) {
    const bytes = fileBytes instanceof ArrayBuffer ? new Uint8Array(fileBytes) : fileBytes;
    await this._restore(await readCheckpointState(bytes, this.metadata, {source, allowVersion1}));
  }
}

/** The contract check against what LiteRT.js reports: names, dtypes, static batches. */
function checkSignatures(compiled, metadata, source) {
  const specs = contract.signatureSpecs(metadata.output, metadata.state.map((entry) => entry.name));
  const signatures = compiled.signatures;
  const missing = Object.keys(specs).filter((name) => !(name in signatures));
  if (missing.length) throw new UnsupportedModelError(`${source}: not a tflite-transfer model: missing signature(s) ${missing.join(', ')}`);
  const details = {};
  for (const [name, spec] of Object.entries(specs)) {
    const inputs = Object.fromEntries(signatures[name].getInputDetails().map((d) => [d.name, d]));
    const outputs = Object.fromEntries(signatures[name].getOutputDetails().map((d) => [d.name, d]));
    const absent = [...spec.inputs.filter((n) => !(n in inputs)), ...spec.outputs.filter((n) => !(n in outputs))];
    if (absent.length) throw new UnsupportedModelError(`${source}: not a tflite-transfer model: signature '${name}' lacks ${absent.join(', ')}`);
    for (const tensor of [...Object.values(inputs), ...Object.values(outputs)]) {
      if (Array.from(tensor.shape).some((d) => d < 0)) {
        throw new UnsupportedModelError(
          `${source}: signature '${name}' tensor '${tensor.name}' has dynamic shape [${Array.from(tensor.shape)}], which LiteRT.js cannot run; ` +
          'recompile with a fixed batch, e.g. compile-transfer --batch=1,16');
      }
    }
    details[name] = {inputs, outputs};
  }
  const image = details[contract.LOAD].inputs[contract.IMAGE];
  const imageBatch = image.shape[0];
  const trainBatch = details[contract.TRAIN].inputs[contract.BOTTLENECK].shape[0];
  if (!['float32', 'uint8'].includes(image.dtype)) {
    throw new UnsupportedModelError(`${source}: image tensor is ${image.dtype}; LiteRT.js feeds float32 and uint8 images only`);
  }
  const label = details[contract.TRAIN].inputs[contract.LABEL];
  if (label.dtype !== metadata.label.dtype) {
    throw new UnsupportedModelError(`${source}: train's label is ${label.dtype} but the metadata says ${metadata.label.dtype}; recompile the model`);
  }
  for (const [batch, declared, field] of [[imageBatch, metadata.imageBatch, 'image_batch'], [trainBatch, metadata.trainBatch, 'train_batch']]) {
    if (declared !== null && declared !== batch) {
      throw new UnsupportedModelError(`${source}: metadata ${field} ${declared} but the signatures fix batch ${batch}; recompile the model`);
    }
  }
  // The metadata's sizes are what this runtime allocates from: they must be the model's own.
  const shapeOf = (tensor) => Array.from(tensor.shape).join();
  const mismatches = [
    [`bottleneck_size ${metadata.bottleneckSize}`, details[contract.TRAIN].inputs[contract.BOTTLENECK], `${trainBatch},${metadata.bottleneckSize}`, 'float32'],
    [`num_outputs ${metadata.numOutputs}`, details[contract.INFER].outputs[metadata.output], `${imageBatch},${metadata.numOutputs}`, null],
    ...metadata.state.map((entry) => [`state '${entry.name}' ${entry.dtype} [${entry.shape}]`, details[contract.RESTORE].inputs[entry.name],
                                      entry.shape.join(), entry.dtype]),
  ].filter(([, tensor, shape, dtype]) => shapeOf(tensor) !== shape || (dtype !== null && tensor.dtype !== dtype));
  if (mismatches.length) {
    const [field, tensor] = mismatches[0];
    throw new UnsupportedModelError(`${source}: metadata ${field} does not match the model's tensor '${tensor.name}' ` +
                                    `${tensor.dtype} [${Array.from(tensor.shape)}]; recompile the model`);
  }
  return {imageShape: Array.from(image.shape).slice(1), imageDtype: image.dtype, imageBatch, trainBatch};
}
