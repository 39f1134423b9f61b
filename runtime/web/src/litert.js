/**
 * Loads LiteRT.js in a page with threads when the page can run them. LiteRT.js ships a
 * multi-threaded wasm (`loadLiteRt(dir, {threads: true})`: pthreads in Web Workers sharing a
 * SharedArrayBuffer), and browsers hand out SharedArrayBuffer only to a cross-origin-isolated
 * page: one served with `Cross-Origin-Opener-Policy: same-origin` and
 * `Cross-Origin-Embedder-Policy: require-corp` (runtime/web/serve.py sends both; BUILD.md,
 * "The web runtime", lists them for other servers). LiteRT.js also needs relaxed SIMD for its
 * threaded build. Elsewhere the single-threaded wasm runs, and the result says why.
 */

import {loadLiteRt, supportsFeature} from '@litertjs/core';

/**
 * @param {string} wasmDirectory URL of node_modules/@litertjs/core/wasm/
 * @param {{threads?: 'auto'|boolean}} options 'auto': threads exactly when the page allows them
 * @returns {Promise<{threads: boolean, numThreads: number, crossOriginIsolated: boolean, why: string}>}
 *   `numThreads`: what to pass to TransferModel.open (the threaded wasm's pool holds
 *   navigator.hardwareConcurrency workers).
 */
export async function loadLiteRtForPage(wasmDirectory, {threads = 'auto'} = {}) {
  const isolated = globalThis.crossOriginIsolated === true;
  let why;
  if (threads === false) {
    why = 'threads turned off';
  } else if (!isolated) {
    why = 'the page is not cross-origin isolated (no COOP/COEP headers), so it has no SharedArrayBuffer';
  } else if (!(await supportsFeature('threads')) || !(await supportsFeature('relaxedSimd'))) {
    why = 'this browser lacks wasm threads or relaxed SIMD';
  }
  if (why === undefined) {
    await loadLiteRt(wasmDirectory, {threads: true});
    const numThreads = Math.max(1, navigator.hardwareConcurrency || 1);
    return {threads: true, numThreads, crossOriginIsolated: isolated, why: `cross-origin isolated, ${numThreads} cores`};
  }
  if (threads === true) throw new Error(`LiteRT.js cannot use threads here: ${why}`);
  await loadLiteRt(wasmDirectory);
  return {threads: false, numThreads: 1, crossOriginIsolated: isolated, why};
}
