/**
 * A long-lived browser for benchmarks/web: reads one JSON command per stdin line, runs it in
 * the timing page (bench.html) and prints one JSON line. Commands:
 *   {"open": url}                                  -> {openMs, imageBatch, trainBatch, ...}
 *   {"time": url, "signatures": [...], "runs": n, "warmup": w}  -> {signature: [microseconds]}
 *   {"version": true}                              -> {browser}
 * node browser/bench_driver.mjs ORIGIN
 */
import {createInterface} from 'node:readline';
import {launchChromium} from './launch.mjs';

const origin = process.argv[2];
const {context, close} = await launchChromium();
const page = await context.newPage();
await page.goto(`${origin}/browser/bench.html`);
await page.waitForFunction(() => typeof window.timeSignatures === 'function');
const lines = createInterface({input: process.stdin});
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
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
