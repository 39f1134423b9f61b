// The demo page: open a compiled model, add images per class (files or camera), train while
// the loss is drawn, predict, and download/upload checkpoints. Everything runs in this page;
// `window.demo` exposes the model for the browser tests.
import {TransferModel, TransferError, TrainingDivergedError, loadLiteRtForPage, pixelsFromImage} from '../src/index.js';

const $ = (id) => document.getElementById(id);
const state = {model: null, counts: [], losses: [], busy: false, stream: null};
window.demo = state;

// Multi-threaded wasm when the page is cross-origin isolated (runtime/web/serve.py), else one thread.
const liteRtReady = loadLiteRtForPage(new URL('../node_modules/@litertjs/core/wasm/', import.meta.url).href).then((mode) => {
  state.runtime = mode;
  const mark = $('runtime-mode');
  mark.dataset.threads = String(mode.numThreads);
  mark.textContent = mode.threads ? `LiteRT.js wasm, ${mode.numThreads} threads (${mode.why}).`
    : `LiteRT.js wasm, 1 thread: ${mode.why}. Serve the page with runtime/web/serve.py for threads.`;
  return mode;
});

function showError(error) {
  $('error').textContent = error ? (error instanceof TransferError ? `${error.name}: ${error.message}` : `Error: ${error.message ?? error}`) : '';
  if (error) console.warn(error);
}

/** Runs one user action at a time, with buttons disabled and errors shown on the page. */
async function action(work) {
  if (state.busy) return;
  state.busy = true;
  updateButtons();
  showError(null);
  try {
    await work();
  } catch (error) {
    showError(error);
  } finally {
    state.busy = false;
    updateButtons();
  }
}

function updateButtons() {
  const ready = state.model !== null && !state.busy;
  const samples = state.counts.reduce((a, b) => a + b, 0);
  for (const id of ['reset', 'download', 'camera-toggle']) $(id).disabled = !ready;
  $('train').disabled = !ready || samples === 0;
  $('imprint').disabled = !ready || samples === 0;
  $('predict-camera').disabled = !ready || state.stream === null;
  document.querySelectorAll('.class button').forEach((button) => { button.disabled = !ready || state.stream === null; });
}

async function openModel(source, name) {
  await liteRtReady;
  $('status').dataset.state = 'loading';
  $('status').textContent = `Loading ${name}…`;
  state.model?.delete();
  state.model = null;
  try {
    state.model = await TransferModel.open(source, {source: name, numThreads: (await liteRtReady).numThreads});
  } catch (error) {
    $('status').dataset.state = 'error';
    $('status').textContent = `Could not open ${name}.`;
    throw error;
  }
  const model = state.model;
  state.counts = new Array(model.numClasses).fill(0);
  state.losses = [];
  $('learning-rate').value = model.metadata.optimizer.learning_rate ?? '';
  $('status').dataset.state = 'ready';
  const input = model.inputSpec;
  $('status').textContent = `${name}: ${model.numClasses} classes, ${input.kind === 'image' ? 'images' : 'input'} '${input.name}' ` +
    `${input.dtype} [${input.shape}]${input.range ? ` in [${input.range.join(', ')}]` : ''} (batch ${model.imageBatch}), ` +
    `train batch ${model.trainBatch}, ${model.metadata.optimizer.name ?? 'optimizer'} head.`;
  buildClasses();
  drawLosses();
}

function buildClasses() {
  const container = $('classes');
  container.replaceChildren();
  const names = state.model.labels.length ? state.model.labels : state.counts.map((_, i) => `class ${i}`);
  names.forEach((name, index) => {
    const box = document.createElement('div');
    box.className = 'class';
    box.innerHTML = `<h3>${escapeHtml(name)} <span data-count>0 images</span></h3>
      <label class="button">Add images… <input type="file" accept="image/*" multiple hidden data-class="${index}"></label>
      <button type="button" disabled>Capture</button><div class="thumbs"></div>`;
    box.querySelector('input').addEventListener('change', (event) => action(async () => {
      for (const file of event.target.files) await addImage(await imageFromFile(file), index, box);
      event.target.value = '';
    }));
    box.querySelector('button').addEventListener('click', () => action(() => addImage($('camera'), index, box)));
    container.append(box);
  });
  updateButtons();
}

async function addImage(source, index, box) {
  const pixels = pixelsFromImage(source, state.model);
  await state.model.addSample(pixels, index);
  state.counts[index] += 1;
  box.querySelector('[data-count]').textContent = `${state.counts[index]} image${state.counts[index] === 1 ? '' : 's'}`;
  box.querySelector('.thumbs').append(thumbnail(source));
}

function thumbnail(source) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 72;
  canvas.getContext('2d').drawImage(source, 0, 0, 72, 72);
  const image = new Image();
  image.src = canvas.toDataURL();
  return image;
}

async function imageFromFile(file) {
  const url = URL.createObjectURL(file);
  try {
    const image = new Image();
    image.src = url;
    await image.decode().catch(() => { throw new TransferError(`${file.name}: not an image this browser can decode`); });
    return image;
  } finally {
    URL.revokeObjectURL(url);
  }
}

function drawLosses() {
  const canvas = $('loss-chart'), context = canvas.getContext('2d');
  const {width, height} = canvas, losses = state.losses.filter(Number.isFinite);
  context.clearRect(0, 0, width, height);
  context.fillStyle = '#5a6472';
  context.font = '12px system-ui';
  if (!losses.length) {
    context.fillText('loss per epoch appears here while training', 12, height / 2);
    return;
  }
  const top = Math.max(...losses) * 1.05, left = 44, bottom = height - 20;
  context.fillText(top.toFixed(3), 4, 14);
  context.fillText('0', 30, bottom);
  context.fillText(`epoch ${losses.length}`, width - 70, height - 4);
  context.strokeStyle = '#dde2ea';
  context.strokeRect(left, 6, width - left - 8, bottom - 6);
  context.strokeStyle = '#2f6fde';
  context.lineWidth = 2;
  context.beginPath();
  losses.forEach((loss, i) => {
    const x = left + ((width - left - 8) * i) / Math.max(1, losses.length - 1);
    const y = bottom - ((bottom - 6) * loss) / top;
    if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
  });
  context.stroke();
}

/**
 * Trains (a fresh softmax head is imprinted first, as fit does by default). A loss that
 * diverges is rolled back by fit; the page says so and proposes the stable learning rate.
 */
async function train() {
  const rate = $('learning-rate').value;
  if (rate !== '') await state.model.setLearningRate(Number(rate));
  const epochs = Number($('epochs').value);
  state.losses = [];
  $('train-status').dataset.state = 'training';
  try {
    await state.model.fit({epochs: Number.isInteger(epochs) ? epochs : NaN, seed: Date.now() >>> 0, onEpoch: (epoch, loss) => {
      state.losses.push(loss);
      $('train-status').textContent = `epoch ${epoch + 1}/${epochs}: loss ${loss.toFixed(4)}`;
      drawLosses();
    }});
  } catch (error) {
    if (!(error instanceof TrainingDivergedError)) throw error;
    $('train-status').dataset.state = 'diverged';
    const stable = error.stableLearningRate;
    if (stable !== null) $('learning-rate').value = String(Number(stable.toPrecision(2)));
    $('train-status').textContent = `Training diverged, weights rolled back: ${error.message}` +
      (stable !== null ? ` The learning rate field now holds ${$('learning-rate').value}.` : '');
    return;
  }
  $('train-status').dataset.state = 'done';
  $('train-status').textContent += ` (${await state.model.steps()} steps in total)`;
}

async function predict(source) {
  const [row] = await state.model.predict(pixelsFromImage(source, state.model));
  const names = state.model.labels.length ? state.model.labels : Array.from(row, (_, i) => `class ${i}`);
  const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a]);
  $('probabilities').replaceChildren(...order.map((i) => {
    const item = document.createElement('li');
    item.dataset.class = i;
    item.dataset.probability = row[i];
    const bar = Object.assign(document.createElement('span'), {className: 'bar'});
    bar.style.width = `${Math.round(120 * row[i])}px`;  // CSSOM, not an inline style attribute (CSP)
    item.append(`${names[i]}: ${(100 * row[i]).toFixed(1)}%`, bar);
    return item;
  }));
}

async function toggleCamera() {
  if (state.stream) {
    state.stream.getTracks().forEach((track) => track.stop());
    state.stream = null;
    $('camera').hidden = true;
    $('camera-toggle').textContent = 'Start camera';
    return;
  }
  state.stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'environment'}});
  $('camera').srcObject = state.stream;
  $('camera').hidden = false;
  $('camera-toggle').textContent = 'Stop camera';
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

$('model-file').addEventListener('change', (event) => action(async () => {
  const file = event.target.files[0];
  if (file) await openModel(new Uint8Array(await file.arrayBuffer()), file.name);
}));
$('train').addEventListener('click', () => action(train));
$('imprint').addEventListener('click', () => action(async () => {
  await state.model.imprint();
  $('train-status').textContent = 'Head imprinted from the class means (no gradient steps).';
}));
$('reset').addEventListener('click', () => action(async () => {
  await state.model.reset();
  state.losses = [];
  drawLosses();
  $('train-status').textContent = 'Weights and optimizer back to the compiled initial state (samples kept).';
}));
$('predict-file').addEventListener('change', (event) => action(async () => {
  const file = event.target.files[0];
  if (!file) return;
  const image = await imageFromFile(file);
  $('predict-preview').src = thumbnail(image).src;
  await predict(image);
  event.target.value = '';
}));
$('predict-camera').addEventListener('click', () => action(() => predict($('camera'))));
$('camera-toggle').addEventListener('click', () => action(toggleCamera));
$('download').addEventListener('click', () => action(async () => {
  const file = await state.model.saveCheckpoint();
  const link = Object.assign(document.createElement('a'), {href: URL.createObjectURL(new Blob([file])), download: 'personal.ckpt'});
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  $('checkpoint-status').textContent = `Saved ${file.length} bytes (step ${await state.model.steps()}).`;
}));
$('upload').addEventListener('change', (event) => action(async () => {
  const file = event.target.files[0];
  event.target.value = '';
  if (!file) return;
  await state.model.restoreCheckpoint(new Uint8Array(await file.arrayBuffer()), {source: file.name});
  $('checkpoint-status').textContent = `Restored ${file.name} (step ${await state.model.steps()}).`;
}));

// ?model=<same-origin URL> opens a model on load (the tests and the README screenshot use it).
const modelUrl = new URLSearchParams(location.search).get('model');
if (modelUrl) {
  const url = new URL(modelUrl, location.href);
  if (url.origin !== location.origin) showError(new TransferError(`model URL ${modelUrl}: this page loads models from its own origin only`));
  else action(() => openModel(url.href, url.pathname.split('/').pop()));
}
drawLosses();
