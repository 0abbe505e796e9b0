// The page that scripts/serve.sh serves: it must load the wasm engine, name
// the WebGPU adapter and show a kernel result that matches the CPU.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSession, requireWebGPU, ARTIFACTS } from './harness.mjs';

let session;
before(async () => { session = await startSession(); });
after(() => session?.close());

test('demo page reports the adapter and a kernel result matching the CPU', async (t) => {
  const page = await session.open('');
  if (!(await requireWebGPU(page, t))) return;
  await page.waitForFunction(() => document.getElementById('kernel').dataset.state, null, { timeout: 60_000 });
  const text = (id) => page.locator(`#${id}`).textContent();
  const state = (id) => page.locator(`#${id}`).getAttribute('data-state');
  t.diagnostic(`adapter: ${await text('adapter')}`);
  t.diagnostic(`kernel: ${await text('kernel')}`);
  assert.equal(await state('adapter'), 'ok', await text('adapter'));
  assert.equal(await state('kernel'), 'ok', await text('kernel'));
  assert.match(await text('kernel'), /matches the CPU reference/);
  await page.waitForFunction(() => document.getElementById('model').dataset.state);
  assert.equal(await state('model'), 'ok', await text('model'));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-foundation.png'), fullPage: true });
});
