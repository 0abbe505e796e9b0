// hearth in Firefox: Debian's Firefox ESR, the other browser engine people
// use besides Chromium's (its own wasm compiler, Web Workers, Cache API and
// WebGPU, which is wgpu and naga rather than Dawn and Tint). The same checks
// as in Chromium, against the same independent references: the wasm engine
// on each backend against the exact float64 reference (lib/fixture-case.mjs),
// and the npm package as a user starts it against the native engine (first,
// in a browser that has run nothing else yet, as a user's has).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startFirefoxSession, FIREFOX, IN_CI } from './harness.mjs';
import { checkCase, missingReference, referenceCases } from './lib/fixture-case.mjs';
import { missingPrerequisites, prerequisitesMet } from './lib/package-fixtures.mjs';
import { checkUserStart, LoadHung } from './lib/user-start.mjs';

const missing = [...missingReference, ...missingPrerequisites({ cli: true }), ...(fs.existsSync(FIREFOX) ? [] : [`${FIREFOX} (apt install firefox-esr)`])];

let session;
before(async () => {
  if (missing.length === 0) session = await startFirefoxSession();
});
after(() => session?.close());

/** engine.html on `backend` in a new tab, once its engine has loaded (its state). */
async function enginePage(t, backend) {
  const page = await session.open(`test/engine.html?context=256&backend=${backend}`);
  await page.waitForFunction(() => window.engineState !== undefined, { timeout: 300_000, polling: 500 });
  const state = await page.evaluate(() => window.engineState);
  assert.ok(state.ok, `the engine did not load on ${backend}: ${state.message}`);
  t.diagnostic(`${await page.evaluate(() => navigator.userAgent)}; ${backend}: ${state.adapter.name || state.browserAdapter} ` +
    `(KV cache ${state.adapter.kv_cache ?? (state.adapter.kernel_variants?.f16_kv_cache ? 'f16' : 'f32')}), load ${state.loadMs.toFixed(0)} ms`);
  return page;
}

test("a user's start in Firefox: createEngine with the default options, replies equal to the native engine's, then a load from the cache", async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  let loads;
  try {
    loads = await checkUserStart(t, session, { hangMs: 120_000 });
  } catch (e) {
    // Firefox 153 now and then leaves a load of the threaded build waiting
    // for good (docs/reliability.md); the check is made again in a new page.
    if (!(e instanceof LoadHung)) throw e;
    t.diagnostic(`Firefox hung: ${e.message}; once more in a new page`);
    loads = await checkUserStart(t, session, { hangMs: 120_000 });
  }
  // Cross-origin isolated, in its worker: the threaded CPU build (or, if
  // Firefox did not start its workers in time, the single-threaded one:
  // wasm-build.ts), or Firefox's WebGPU on a hardware adapter.
  for (const info of loads) {
    if (info.backend === 'cpu' && info.threads === 1) t.diagnostic("the threaded build's workers did not start: it ran on one thread");
  }
  // (Each load has its own worker and pool: both loads missing their pool would be more than that flake.)
  assert.ok(loads[0].backend === 'webgpu' || loads.some((info) => info.threads > 1), JSON.stringify(loads));
});

test('Firefox, the wasm CPU backend: every case of the exact reference', async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await enginePage(t, 'cpu');
  for (const c of referenceCases) await checkCase(t, page, c, 16);
  await page.close();
});

test("Firefox's own WebGPU: the cases of the exact reference too", async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await session.open('test/package.html'); // a page to ask for the adapter from (it loads no model)
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    return a ? { fallback: a.isFallbackAdapter ?? a.info?.isFallbackAdapter, ...Object.fromEntries(['vendor', 'architecture', 'device', 'description'].map((k) => [k, a.info?.[k]])) } : null;
  });
  await page.close();
  if (!adapter) {
    if (IN_CI) throw new Error('CI=true but Firefox has no WebGPU adapter');
    return t.skip('Firefox has no WebGPU adapter here');
  }
  t.diagnostic(`Firefox's adapter: ${JSON.stringify(adapter)}`);
  const gpuPage = await enginePage(t, 'webgpu');
  for (const c of referenceCases) await checkCase(t, gpuPage, c, 16);
  await gpuPage.close();
});
