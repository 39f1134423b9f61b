/**
 * Loading LiteRT.js in Node (tests, benchmarks): its wasm loader expects a browser or a
 * worker (`self`, `importScripts`) and the emscripten script a CommonJS scope (`require`,
 * `__dirname`). These shims give it that, then load the wasm files from node_modules.
 */

import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {fileURLToPath} from 'node:url';
import vm from 'node:vm';
import {webcrypto} from 'node:crypto';

export async function loadLiteRtInNode() {
  globalThis.self ??= globalThis;
  globalThis.crypto ??= webcrypto;
  globalThis.require ??= createRequire(import.meta.url);
  globalThis.importScripts ??= (url) => {
    const path = fileURLToPath(url);
    globalThis.__dirname = fileURLToPath(new URL('.', url));
    globalThis.__filename = path;
    vm.runInThisContext(readFileSync(path, 'utf8'), {filename: path});
  };
  const {loadLiteRt} = await import('@litertjs/core');
  const wasmDirectory = new URL('../node_modules/@litertjs/core/wasm/', import.meta.url);
  return loadLiteRt(wasmDirectory.href);
}
