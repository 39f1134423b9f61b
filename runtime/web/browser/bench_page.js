// Times the signatures of compiled models in this page (wasm): only the LiteRT.js run and the
// read of its outputs are timed, on inputs built before the clock starts (like the host
// benchmark times only the signature runner call). benchmarks/web drives it. `?threads=1`
// loads LiteRT.js's multi-threaded wasm (the page must be cross-origin isolated), otherwise
// its single-threaded one.
import {Tensor} from '@litertjs/core';
import {TransferModel, loadLiteRtForPage} from '../src/index.js';

const threads = new URLSearchParams(location.search).get('threads') === '1';
const ready = loadLiteRtForPage(new URL('../node_modules/@litertjs/core/wasm/', import.meta.url).href, {threads});
const models = new Map();

function inputsFor(model, signature) {
  const details = model.compiled.signatures[signature].getInputDetails();
  return Object.fromEntries(details.map((d) => {
    const shape = Array.from(d.shape);
    const count = shape.reduce((a, b) => a * b, 1);
    const data = d.dtype === 'int32' ? new Int32Array(count)                      // label: class 0
      : d.dtype === 'uint8' ? Uint8Array.from({length: count}, (_, i) => (i * 37) % 256)
      : Float32Array.from({length: count}, (_, i) => (i * 37) % 256 / (d.name === model.names.input ? 1 : 255));
    return [d.name, {data, shape}];
  }));
}

/** Opens (timed) and keeps a model; returns the open time in ms and the wasm variant facts. */
window.openModel = async (url) => {
  const mode = await ready;
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const start = performance.now();
  const model = await TransferModel.open(bytes, {source: url, numThreads: mode.numThreads});
  const openMs = performance.now() - start;
  models.set(url, model);
  return {openMs, imageBatch: model.imageBatch, trainBatch: model.trainBatch, crossOriginIsolated: self.crossOriginIsolated,
          threads: mode.threads, numThreads: mode.numThreads};
};

/** `runs` timed calls of each signature (after `warmup` untimed ones); microseconds each. */
window.timeSignatures = async (url, signatures, runs, warmup) => {
  const model = models.get(url);
  const result = {};
  for (const signature of signatures) {
    const inputs = inputsFor(model, signature);
    const tensors = Object.fromEntries(Object.entries(inputs).map(([name, {data, shape}]) => [name, new Tensor(data, shape)]));
    const call = async () => {
      const outputs = await model.compiled.run(signature, tensors);
      for (const output of Object.values(outputs)) {
        await output.data();
        output.delete();
      }
    };
    let warm = performance.now();
    for (let i = 0; i < warmup; i++) await call();
    warm = (performance.now() - warm) / Math.max(1, warmup);
    // The page clock ticks in 5 us (cross-origin isolated) to 100 us steps: a sample repeats
    // fast calls until it spans ~2 ms and reports the time per call.
    const repeat = Math.max(1, Math.ceil(2 / Math.max(warm, 0.001)));
    const times = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      for (let j = 0; j < repeat; j++) await call();
      times.push(((performance.now() - start) * 1000) / repeat);
    }
    Object.values(tensors).forEach((tensor) => tensor.delete());
    result[signature] = times;
  }
  await model.reset();
  return result;
};
