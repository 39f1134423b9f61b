/**
 * Headless Debian Chromium through playwright-core, with the flags this machine needs
 * (no sandbox as root, no GPU, no background network) and a fresh profile directory.
 */
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** `extraArgs`: e.g. a fake camera (--use-fake-device-for-media-stream --use-fake-ui-for-media-stream). */
export async function launchChromium(extraArgs = []) {
  const profile = mkdtempSync(join(tmpdir(), 'tflite-transfer-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  });
  const close = async () => {
    await context.close();
    rmSync(profile, {recursive: true, force: true});
  };
  return {context, close};
}
