/**
 * Drives the demo page in headless Chromium like a user: open a model, add images per class
 * through the file inputs, train, predict, download a checkpoint, upload checkpoints. Prints
 * one JSON report on stdout (tests/web/test_demo_page.py checks it against Python).
 *
 *   node browser/drive_demo.mjs plan.json
 */
import {readFileSync} from 'node:fs';
import {launchChromium} from './launch.mjs';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const report = {consoleErrors: [], foreignRequests: [], steps: []};
// Chromium's fake camera (a moving test pattern) stands in for a webcam, permission granted.
const {context, close} = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
let page;
try {
  page = await context.newPage();
  // LiteRT's wasm logs its INFO and WARNING lines ("INFO: Created ...", "WARNING: [npu_registry.cc:34] ...") through console.error.
  page.on('console', (message) => {
    if (message.type() === 'error' && !/^(INFO|WARNING): /.test(message.text())) report.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => report.consoleErrors.push(String(error)));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!['data:', 'blob:'].includes(url.protocol) && url.origin !== plan.origin) report.foreignRequests.push(request.url());
  });
  const pageState = () => page.evaluate(async () => {
    const state = await window.demo.model.getState();
    const hex = (data) => Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), (b) => b.toString(16).padStart(2, '0')).join('');
    return Object.fromEntries(Object.entries(state).map(([name, t]) => [name, {dtype: t.dtype, shape: t.shape, hex: hex(t.data)}]));
  });
  const errorText = () => page.textContent('#error');

  await page.goto(`${plan.origin}/demo/?model=${encodeURIComponent(plan.modelPath)}`);
  await page.waitForSelector('#status[data-state=ready]', {timeout: 120_000});
  report.status = await page.textContent('#status');
  report.runtimeMode = await page.textContent('#runtime-mode');

  for (const [index, paths] of plan.classImages.entries()) {
    await page.setInputFiles(`input[data-class="${index}"]`, paths);
    await page.waitForFunction(([i, n]) => window.demo.counts[i] === n && !window.demo.busy, [index, paths.length], {timeout: 60_000});
  }
  report.counts = await page.evaluate(() => window.demo.counts);

  await page.fill('#epochs', String(plan.epochs));
  if (plan.learningRate !== undefined) await page.fill('#learning-rate', String(plan.learningRate));
  await page.click('#train');
  await page.waitForSelector('#train-status[data-state=done], #train-status[data-state=diverged]', {timeout: 120_000});
  report.trainState = await page.getAttribute('#train-status', 'data-state');
  report.losses = await page.evaluate(() => window.demo.losses);
  report.trainStatus = await page.textContent('#train-status');

  // A learning rate far past the stable one: fit rolls back and the page says so.
  if (plan.divergeLearningRate !== undefined) {
    report.stateBeforeDivergence = await pageState();
    await page.fill('#learning-rate', String(plan.divergeLearningRate));
    await page.click('#train');
    await page.waitForSelector('#train-status[data-state=diverged]', {timeout: 120_000});
    report.divergedStatus = await page.textContent('#train-status');
    report.divergedError = await errorText();
    report.stateAfterDivergence = await pageState();
    report.learningRateAfterDivergence = await page.inputValue('#learning-rate');
  }

  await page.setInputFiles('#predict-file', plan.predictImage);
  await page.waitForSelector('#probabilities li');
  report.probabilities = await page.$$eval('#probabilities li', (items) =>
    items.map((item) => [Number(item.dataset.class), Number(item.dataset.probability)]).sort((a, b) => a[0] - b[0]).map(([, p]) => p));

  // Capture (after training: a frame of the fake camera's test pattern is no colour class): one
  // frame added to the last class, then the camera frame predicted.
  await page.click('#camera-toggle');
  await page.waitForFunction(() => document.querySelector('#camera').readyState >= 2 && !window.demo.busy, null, {timeout: 30_000});
  const last = plan.classImages.length - 1;
  await page.click(`.class:nth-child(${last + 1}) button`);
  await page.waitForFunction(([i, n]) => window.demo.counts[i] === n && !window.demo.busy, [last, plan.classImages[last].length + 1]);
  report.countsAfterCapture = await page.evaluate(() => window.demo.counts);
  await page.click('#predict-camera');
  await page.waitForFunction(() => document.querySelectorAll('#probabilities li').length > 0 && !window.demo.busy);
  report.cameraProbabilities = await page.$$eval('#probabilities li', (items) => items.map((item) => Number(item.dataset.probability)));
  await page.click('#camera-toggle');

  if (plan.screenshot) await page.screenshot({path: plan.screenshot, fullPage: true});

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  await download.saveAs(plan.downloadTo);
  report.trainedState = await pageState();

  await page.setInputFiles('#upload', plan.uploadCheckpoint);
  await page.waitForFunction(() => (document.querySelector('#checkpoint-status').textContent.startsWith('Restored') ||
                                     document.querySelector('#error').textContent !== '') && !window.demo.busy);
  report.uploadError = await errorText();
  report.uploadedState = await pageState();

  await page.setInputFiles('#upload', plan.corruptCheckpoint);
  await page.waitForFunction(() => document.querySelector('#error').textContent !== '' && !window.demo.busy);
  report.corruptUploadError = await errorText();
  report.stateAfterCorruptUpload = await pageState();

  await page.setInputFiles('#predict-file', plan.notAnImage);
  await page.waitForFunction((previous) => document.querySelector('#error').textContent !== previous && !window.demo.busy, report.corruptUploadError);
  report.notAnImageError = await errorText();
} catch (error) {
  report.failure = String(error.stack ?? error);
  report.pageErrorAtFailure = await page?.textContent('#error').catch(() => null);
} finally {
  await close();
}
process.stdout.write(JSON.stringify(report));
