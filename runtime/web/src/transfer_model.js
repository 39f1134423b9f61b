/**
 * TransferModel: the personalization lifecycle of one compiled tflite-transfer model in
 * LiteRT.js (wasm or WebGPU), the same lifecycle as the Python TransferModel:
 *
 *   const model = await TransferModel.open(modelBytesOrUrl);   // digest, metadata, contract
 *   await model.addSample(pixels, 'cat');                      // runs `load`, caches the bottleneck
 *   const losses = await model.fit();                          // `train` over the cache (50 epochs)
 *   const [probabilities] = await model.predict(pixels);       // `infer`
 *   const file = await model.saveCheckpoint();                 // Uint8Array, same bytes as Python
 *
 * LiteRT.js needs static signature shapes, so models come from `compile-transfer --batch=1,16`.
 * Every signature tensor is looked up by the model's own names (metadata.names, contract
 * version 3); the input may be an image or any tensor (inputSpec). A base that keeps state
 * between calls (state entries with role `base_state`, runtime/SPEC.md#stateful-bases) is one
 * stream per model: `load`, `predict`, `addSample` and `trainImages` advance it one call per
 * chunk of `imageBatch` inputs (never padded), the state and checkpoints include it, `reset()`
 * rewinds it; `fit` and `imprint` work on cached bottlenecks and leave it alone.
 */

import {Tensor, loadAndCompile} from '@litertjs/core';

import * as contract from './contract.js';
import {readCheckpointState, writeCheckpoint} from './checkpoint.js';
import {InvalidInputError, TransferError, UnsupportedModelError} from './errors.js';
import {checkedBottlenecks, checkedInput, checkedLabels, checkedLearningRate, checkedState} from './inputs.js';
import {paddedChunks} from './batches.js';
import {classRow, imprintedHead} from './imprint.js';
import {checkSignatures, checkStateTypes} from './signatures.js';
import {fit, guardedStep} from './training.js';
import {largestNorm2, stableLearningRate} from './training_watch.js';


export class TransferModel {
  /** Use TransferModel.open. */
  constructor(compiled, metadata, details, source) {
    this.compiled = compiled;
    this.metadata = metadata;
    this.source = source;
    this.names = metadata.names;                  // role -> tensor name: input, bottleneck, label, loss, output
    this.inputSpec = details.input;               // {name, kind ('image'|'tensor'), dtype, shape, range}
    this.imageBatch = details.imageBatch;         // fixed batch of load/infer/train_images
    this.trainBatch = details.trainBatch;         // fixed batch of train
    this._bottlenecks = [];                       // Float32Array per cached sample
    this._labels = [];                            // Int32Array(1) or Float32Array(k) per sample
    this._queue = Promise.resolve();              // LiteRT calls run one at a time
    this._compiledHead = null;                    // kernel and bias as opened (fit's imprint-first test)
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
    checkStateTypes(metadata, source);
    let compiled;
    try {
      compiled = await loadAndCompile(bytes.slice(), {accelerator, ...(numThreads === undefined ? {} : {cpuOptions: {numThreads}})});
    } catch (error) {
      throw new UnsupportedModelError(`${source}: LiteRT.js cannot load it: ${error.message}`);
    }
    try {
      const opened = new TransferModel(compiled, metadata, checkSignatures(compiled, metadata, source), source);
      opened._compiledHead = await opened._headWeights();    // the compiled initial weights
      return opened;
    } catch (error) {
      compiled.delete();
      throw error;
    }
  }

  /** One sample of the input, without the batch dimension, and its dtype ('float32', 'uint8', 'int32'). */
  get inputShape() { return [...this.inputSpec.shape]; }
  get inputDtype() { return this.inputSpec.dtype; }
  get imageShape() { return this.inputShape; }     // their names before inputs of any kind
  get imageDtype() { return this.inputDtype; }
  /** The values the app feeds ([low, high]) when the model records them, else null. */
  get inputRange() { return this.inputSpec.range; }
  get numClasses() { return this.metadata.numOutputs; }
  get labels() { return [...this.metadata.labels]; }
  /** Class ids or one-hot (soft) rows: a classifier (imprint needs one). */
  get classifies() { return [contract.CLASS_IDS, contract.ONE_HOT].includes(this.metadata.label.kind); }
  get hasBaseState() { return this.metadata.state.some((entry) => entry.role === contract.BASE_STATE); }
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

  _checkedInput(values) { return checkedInput(values, this.inputSpec); }

  /**
   * Runs an input signature over `count` samples in chunks of the fixed image batch, the last
   * padded, except on a stateful base: padding would feed the stream inputs that are not the
   * caller's, so a count that is not a multiple of the batch is refused before anything runs.
   */
  async _runImages(signature, values, outputName) {
    const {data, count} = this._checkedInput(values);
    this._checkWholeChunks(count);
    const perImage = data.length / count;
    const rows = [];
    for (const {indices, real} of paddedChunks(count, this.imageBatch)) {
      const chunk = new data.constructor(indices.length * perImage);
      indices.forEach((sample, i) => chunk.set(data.subarray(sample * perImage, (sample + 1) * perImage), i * perImage));
      const output = (await this._run(signature, {[this.names.input]: {data: chunk, shape: [indices.length, ...this.inputShape]}}))[outputName];
      const perRow = output.data.length / indices.length;
      for (let i = 0; i < real; i++) rows.push(output.data.slice(i * perRow, (i + 1) * perRow));  // padding dropped
    }
    return rows;
  }

  _checkWholeChunks(count) {
    if (this.hasBaseState && count % this.imageBatch) {
      throw new InvalidInputError(
        `this model's base keeps state between calls, advanced once per call of ${this.imageBatch} inputs: ` +
        `pass a multiple of ${this.imageBatch} inputs, got ${count} (padding would feed the stream inputs that are not yours)`);
    }
  }

  /** `load`: one bottleneck (Float32Array) per input sample. */
  load(inputs) { return this._runImages(contract.LOAD, inputs, this.names.bottleneck); }

  /** `infer`: one row of probabilities (or predictions) per input sample. */
  predict(inputs) { return this._runImages(contract.INFER, inputs, this.names.output); }

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

  _labelShape(count) { return this.metadata.label.kind === contract.CLASS_IDS ? [count] : [count, this.numClasses]; }

  async _runTrain(bottlenecks, labels, count) {
    const result = await this._run(contract.TRAIN, {
      [this.names.bottleneck]: {data: bottlenecks, shape: [count, this.metadata.bottleneckSize]},
      [this.names.label]: {data: labels, shape: this._labelShape(count)},
    });
    return result[this.names.loss].data[0];
  }

  /** One optimizer step on exactly `imageBatch` input samples (`train_images`); returns the loss; undone like trainStep's. */
  async trainImages(inputs, labels) {
    const {data, count} = this._checkedInput(inputs);
    if (count !== this.imageBatch) {
      throw new InvalidInputError(`${this.names.input}: ${count} samples, but this model's train_images takes exactly ${this.imageBatch} per step`);
    }
    const labelData = checkedLabels(labels, count, this.metadata);
    return guardedStep(this, async () => (await this._run(contract.TRAIN_IMAGES, {
      [this.names.input]: {data, shape: [count, ...this.inputShape]},
      [this.names.label]: {data: labelData, shape: this._labelShape(count)},
    }))[this.names.loss].data[0]);
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

  /** Runs `load` once on the input sample(s) (images or any tensor) and caches each bottleneck with its label. */
  async addSample(inputs, labels) {
    const {count} = this._checkedInput(inputs);
    const labelData = checkedLabels(labels, count, this.metadata);  // checked before any work
    this._checkWholeChunks(count);
    const bottlenecks = await this.load(inputs);
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
   * the mean loss of each epoch. Options: `epochs` (default 50), `imprint` (left out: imprint a
   * fresh single-layer softmax head first; true: always; false: never), `seed`, `shuffle`,
   * `onEpoch(epoch, loss)` and `onBatch(index, loss)`; `batchSize`, when given, must be the
   * model's train batch. Training that diverges is rolled back and throws
   * TrainingDivergedError (a VerificationError) with `losses` and `stableLearningRate`; see training.js.
   */
  fit(options = {}) { return fit(this, options); }

  /** The head's kernels and biases now (bit patterns compared by _imprintsFirst). */
  async _headWeights() {
    const state = await this.getState();
    return this.metadata.state.filter((entry) => [contract.KERNEL, contract.BIAS].includes(entry.role))
      .map((entry) => [entry.name, new Uint8Array(state[entry.name].data.buffer.slice(0))]);
  }

  /** fit's `imprint` option: undefined imprints a single-layer softmax head still at its compiled weights, bit for bit. */
  async _imprintsFirst(imprint) {
    if (imprint === false || !this.classifies || this.metadata.state.filter((entry) => entry.role === contract.KERNEL).length !== 1) {
      if (imprint === true) throw new UnsupportedModelError('fit({imprint: true}) needs a single-layer softmax head (--head=softmax)');
      return false;
    }
    if (imprint === true) return true;
    const now = new Map(await this._headWeights());
    return this._compiledHead.every(([name, bytes]) => bytes.length === now.get(name).length && bytes.every((byte, i) => byte === now.get(name)[i]));
  }

  /**
   * The largest stable SGD/momentum learning rate for this model's head on the cached samples
   * (training_watch.js states the formula); null for Adam or with no samples.
   */
  stableLearningRate() {
    if (!this.numSamples) return null;
    const {optimizer} = this.metadata;
    return stableLearningRate(largestNorm2(this._bottlenecks), this.metadata.loss, this.numClasses, String(optimizer.name),
                              Number(optimizer.momentum ?? 0) || 0);
  }

  /**
   * Weight imprinting (imprint.js): a single-layer softmax head set to the nearest-class-mean
   * classifier, class means weighted by the label rows; optimizer slots of the head zeroed, the
   * step counter and learning rate kept.
   */
  async imprint() {
    const kernels = this.metadata.state.filter((entry) => entry.role === contract.KERNEL);
    if (!this.classifies || kernels.length !== 1) throw new UnsupportedModelError('imprint needs a single-layer softmax head (--head=softmax)');
    if (!this.numSamples) throw new InvalidInputError('imprint: no samples cached; call addSample first');
    const kernel = kernels[0];
    const bias = this.metadata.state.find((entry) => entry.role === contract.BIAS && entry.layer === kernel.layer);
    const classIds = this.metadata.label.kind === contract.CLASS_IDS;
    const rows = this._labels.map((label) => classRow(label, this.numClasses, classIds));
    const head = imprintedHead(this._bottlenecks, rows, this.numClasses, this.metadata.bottleneckSize);
    const state = await this.getState();
    state[kernel.name].data = head.kernel;
    state[bias.name].data = head.bias;
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
