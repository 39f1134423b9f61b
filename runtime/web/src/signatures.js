/**
 * What a compiled model must be for this runtime, checked when it is opened: the metadata's
 * state types against what LiteRT.js can feed (before compiling), then the signatures LiteRT.js
 * reports against the contract (every tensor by the model's own names, static shapes, the
 * input, label and state types and sizes the metadata declares).
 */

import * as contract from './contract.js';
import {UnsupportedModelError} from './errors.js';
import {STATE_ARRAYS} from './inputs.js';

// LiteRT.js's Tensor holds float32, int32 and uint8 typed arrays only (its DATATYPES).
const FEEDABLE = Object.keys(STATE_ARRAYS);

/** Refuses, before LiteRT.js compiles anything, a state variable LiteRT.js could not save or restore. */
export function checkStateTypes(metadata, source) {
  const unfeedable = metadata.state.find((entry) => !FEEDABLE.includes(entry.dtype));
  if (unfeedable) {
    const whose = unfeedable.role === contract.BASE_STATE ? "the base's state variable" : 'state variable';
    throw new UnsupportedModelError(
      `${source}: ${whose} '${unfeedable.name}' is ${unfeedable.dtype} [${unfeedable.shape}]; LiteRT.js feeds ` +
      `${FEEDABLE.join(', ')} tensors only, so this runtime cannot save or restore it (the Python and C++ runtimes can)`);
  }
}

/**
 * The contract check against what LiteRT.js reports. Returns the input as the runtime feeds it
 * ({name, kind, dtype, shape (per sample), range}) and the fixed batches.
 */
export function checkSignatures(compiled, metadata, source) {
  const specs = contract.signatureSpecs(metadata.names, metadata.state.map((entry) => entry.name));
  const signatures = compiled.signatures;
  const missing = Object.keys(specs).filter((name) => !(name in signatures));
  if (missing.length) throw new UnsupportedModelError(`${source}: not a tflite-transfer model: missing signature(s) ${missing.join(', ')}`);
  const details = {};
  for (const [name, spec] of Object.entries(specs)) {
    const inputs = Object.fromEntries(signatures[name].getInputDetails().map((d) => [d.name, d]));
    const outputs = Object.fromEntries(signatures[name].getOutputDetails().map((d) => [d.name, d]));
    const absent = [...spec.inputs.filter((n) => !(n in inputs)), ...spec.outputs.filter((n) => !(n in outputs))];
    const extra = [...Object.keys(inputs).filter((n) => !spec.inputs.includes(n)), ...Object.keys(outputs).filter((n) => !spec.outputs.includes(n))];
    if (absent.length || extra.length) {
      throw new UnsupportedModelError(`${source}: signature '${name}' does not match the contract: lacks [${absent.join(', ')}], ` +
                                      `has unexpected [${extra.join(', ')}]; recompile the model`);
    }
    for (const tensor of [...Object.values(inputs), ...Object.values(outputs)]) {
      if (Array.from(tensor.shape).some((d) => d < 0)) {
        throw new UnsupportedModelError(
          `${source}: signature '${name}' tensor '${tensor.name}' has dynamic shape [${Array.from(tensor.shape)}], which LiteRT.js cannot run; ` +
          'recompile with a fixed batch, e.g. compile-transfer --batch=1,16');
      }
    }
    details[name] = {inputs, outputs};
  }
  const {names} = metadata;
  const input = inputSpec(details[contract.LOAD].inputs[names.input], metadata, source);
  const imageBatch = details[contract.LOAD].inputs[names.input].shape[0];
  const trainBatch = details[contract.TRAIN].inputs[names.bottleneck].shape[0];
  const label = details[contract.TRAIN].inputs[names.label];
  if (label.dtype !== metadata.label.dtype) {
    throw new UnsupportedModelError(`${source}: train's ${names.label} is ${label.dtype} but the metadata says ${metadata.label.dtype}; recompile the model`);
  }
  for (const [batch, declared, field] of [[imageBatch, metadata.imageBatch, 'image_batch'], [trainBatch, metadata.trainBatch, 'train_batch']]) {
    if (declared !== null && declared !== batch) {
      throw new UnsupportedModelError(`${source}: metadata ${field} ${declared} but the signatures fix batch ${batch}; recompile the model`);
    }
  }
  // The metadata's sizes are what this runtime allocates from: they must be the model's own.
  const shapeOf = (tensor) => Array.from(tensor.shape).join();
  const mismatches = [
    [`bottleneck_size ${metadata.bottleneckSize}`, details[contract.TRAIN].inputs[names.bottleneck], `${trainBatch},${metadata.bottleneckSize}`, 'float32'],
    [`num_outputs ${metadata.numOutputs}`, details[contract.INFER].outputs[names.output], `${imageBatch},${metadata.numOutputs}`, null],
    ...metadata.state.map((entry) => [`state '${entry.name}' ${entry.dtype} [${entry.shape}]`, details[contract.RESTORE].inputs[entry.name],
                                      entry.shape.join(), entry.dtype]),
  ].filter(([, tensor, shape, dtype]) => shapeOf(tensor) !== shape || (dtype !== null && tensor.dtype !== dtype));
  if (mismatches.length) {
    const [field, tensor] = mismatches[0];
    throw new UnsupportedModelError(`${source}: metadata ${field} does not match the model's tensor '${tensor.name}' ` +
                                    `${tensor.dtype} [${Array.from(tensor.shape)}]; recompile the model`);
  }
  return {input, imageBatch, trainBatch};
}

/**
 * The input as the metadata describes it (version 3; checked against `load`'s input) or as
 * versions 1 and 2 implied it (an image in the signature's shape and dtype).
 */
function inputSpec(details, metadata, source) {
  const shape = Array.from(details.shape).slice(1);
  const name = metadata.names.input;
  if (!shape.length) throw new UnsupportedModelError(`${source}: the input '${name}' has shape [${Array.from(details.shape)}]; expected [batch, sizes >= 1]`);
  if (!['float32', 'uint8', 'int32'].includes(details.dtype)) {
    throw new UnsupportedModelError(`${source}: the input '${name}' is ${details.dtype}; LiteRT.js feeds float32, int32 and uint8 tensors only`);
  }
  const declared = metadata.input;
  if (declared === null) return Object.freeze({name, kind: contract.IMAGE_KIND, dtype: details.dtype, shape, range: metadata.imageRange});
  if (declared.dtype !== details.dtype || declared.shape.join() !== shape.join()) {
    throw new UnsupportedModelError(`${source}: the metadata describes the input as ${declared.dtype} [${declared.shape}] ` +
                                    `but 'load' takes ${details.dtype} [${shape}]; recompile the model`);
  }
  return Object.freeze({name, kind: declared.kind, dtype: declared.dtype, shape, range: declared.range});
}
