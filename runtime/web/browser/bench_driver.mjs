/**
 * A long-lived browser for benchmarks/web: reads one JSON command per stdin line, runs it in
 * one of two timing pages (bench.html): `single` loads LiteRT.js's single-threaded wasm,
 * `threaded` its multi-threaded one (the origin must serve COOP/COEP). Prints one JSON line.
 * Commands (`page`: "single" or "threaded"):
 *   {"page", "open": url}                                   -> {openMs, imageBatch, trainBatch, numThreads, ...}
 *   {"page", "time": url, "signatures": [...], "runs": n, "warmup": w}  -> {signature: [microseconds]}
 *   {"version": true}                                       -> {browser}
 * node browser/bench_driver.mjs ORIGIN
 */
import {createInterface} from 'node:readline';
import {launchChromium} from './launch.mjs';

const origin = process.argv[2];
const {context, close} = await launchChromium();
const pages = {};
for (const [name, threads] of [['single', 0], ['threaded', 1]]) {
  pages[name] = await context.newPage();
  await pages[name].goto(`${origin}/browser/bench.html?threads=${threads}`);
  await pages[name].waitForFunction(() => typeof window.timeSignatures === 'function');
}
const lines = createInterface({input: process.stdin});
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  const page = pages[command.page ?? 'single'];
  let answer;
  try {
    if (command.open) answer = await page.evaluate((url) => window.openModel(url), command.open);
    else if (command.time) answer = await page.evaluate(({time, signatures, runs, warmup}) => window.timeSignatures(time, signatures, runs, warmup), command);
    else if (command.version) answer = {browser: context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent))};
  } catch (error) {
    answer = {error: String(error.message ?? error)};
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await close();
