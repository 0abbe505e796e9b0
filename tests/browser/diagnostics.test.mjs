// The diagnostics page (diagnostics.html): it must load the wasm engine, name
// the WebGPU adapter and show that every kernel check matches the CPU.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSession, requireWebGPU, ARTIFACTS } from './harness.mjs';

let session;
before(async () => { session = await startSession(); });
after(() => session?.close());

test('diagnostics page reports the adapter and every kernel check matching the CPU', async (t) => {
  const page = await session.open('diagnostics.html');
  if (!(await requireWebGPU(page, t))) return;
  await page.waitForFunction(() => document.getElementById('kernel').dataset.state, null, { timeout: 60_000 });
  const text = (id) => page.locator(`#${id}`).textContent();
  const state = (id) => page.locator(`#${id}`).getAttribute('data-state');
  t.diagnostic(`adapter: ${await text('adapter')}`);
  t.diagnostic(`kernel: ${await text('kernel')}`);
  assert.equal(await state('adapter'), 'ok', await text('adapter'));
  assert.equal(await state('kernel'), 'ok', await text('kernel'));
  // "N/N kernel checks match the CPU reference (K kernels; max error ...)":
  // all of them passed, and every kernel of the engine was among them.
  const kernel = (await text('kernel')).match(/^(\d+)\/(\d+) kernel checks match the CPU reference \((\d+) kernels; max error /);
  assert.ok(kernel, await text('kernel'));
  const [, passed, total, kernels] = kernel.map(Number);
  assert.equal(passed, total, await text('kernel'));
  assert.equal(kernels, 12, await text('kernel'));
  assert.ok(total >= 80, `only ${total} checks ran`);
  await page.waitForFunction(() => document.getElementById('model').dataset.state);
  assert.equal(await state('model'), 'ok', await text('model'));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'diagnostics.png'), fullPage: true });
});
