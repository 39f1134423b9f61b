/**
 * Opens the demo page with a model in headless Chromium and reports how LiteRT.js runs there:
 * whether the page is cross-origin isolated, the mode line the page shows, which LiteRT.js
 * wasm file it fetched, and one prediction and one training step (so the mode really runs).
 * Prints one JSON object (tests/web/test_threads.py checks it).
 *
 *   node browser/page_mode.mjs http://127.0.0.1:PORT /models/NAME.tflite
 */
import {launchChromium} from './launch.mjs';

const [origin, modelPath] = process.argv.slice(2);
const report = {wasmFiles: [], consoleErrors: []};
const {context, close} = await launchChromium();
try {
  const page = await context.newPage();
  page.on('request', (request) => {
    const name = new URL(request.url()).pathname.split('/').pop();
    if (name.endsWith('.wasm')) report.wasmFiles.push(name);
  });
  page.on('console', (message) => {
    if (message.type() === 'error' && !/^(INFO|WARNING): /.test(message.text())) report.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => report.consoleErrors.push(String(error)));
  await page.goto(`${origin}/demo/?model=${encodeURIComponent(modelPath)}`);
  await page.waitForSelector('#status[data-state=ready]', {timeout: 120_000});
  Object.assign(report, await page.evaluate(async () => {
    const model = window.demo.model;
    const [probabilities] = await model.predict(new Uint8Array(model.imageShape.reduce((a, b) => a * b, 1)).fill(7));
    const features = model.metadata.bottleneckSize;
    const loss = await model.trainStep(Array.from({length: model.trainBatch * features}, (_, i) => (i % 5) / 5),
                                       Array.from({length: model.trainBatch}, (_, i) => i % model.numClasses));
    return {
      crossOriginIsolated: self.crossOriginIsolated,
      sharedArrayBuffer: typeof SharedArrayBuffer === 'function',
      hardwareConcurrency: navigator.hardwareConcurrency,
      mode: document.querySelector('#runtime-mode').textContent,
      threads: Number(document.querySelector('#runtime-mode').dataset.threads),
      probabilities: Array.from(probabilities),
      loss,
    };
  }));
} catch (error) {
  report.failure = String(error.stack ?? error);
} finally {
  await close();
}
process.stdout.write(JSON.stringify(report));
