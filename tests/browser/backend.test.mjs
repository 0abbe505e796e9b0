// The backend choice of the npm package (createEngine's `backend` and
// `threads`) in headless Chromium: `auto` picks the CPU on a software WebGPU
// adapter (SwiftShader here) and when there is no WebGPU; `webgpu` and `cpu`
// can be forced; on a cross-origin-isolated page the CPU backend runs the
// threaded wasm build on several threads and its greedy output equals
// WebGPU's; on a page that is not isolated it runs on one thread and says
// how to get more; a bad value is a typed error. The KV cache's type
// (`kvCache`): f32 anywhere, f16 on the CPU (by default there) and where
// WebGPU has shader-f16. Greedy
// decode steps chained on WebGPU (`chainedDecode`) or not: the same text. Also the threaded wasm build
// on its own (no package): greedy token ids equal to the WebGPU build's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSession, requireWebGPU, hideWebGPU, stallWebGPU, stallWebGPUDevice } from './harness.mjs';
import { startServer, DEFAULT_MOUNTS } from '../../web/tools/serve.mjs';
import { REPO, MODEL_PATH, GGUF, missingPrerequisites, prerequisitesMet, rawStoryCase } from './lib/package-fixtures.mjs';

const PAGES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pages');
const missing = missingPrerequisites();
if (!fs.existsSync(path.join(REPO, 'web/pkg-threads/hearth_llm.js'))) missing.push('web/pkg-threads (scripts/build.sh)');
if (!fs.existsSync(GGUF)) missing.push('models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh)');
// Greedy tokens compared between the backends. The CPU kernels keep
// activations in 16-bit fixed point, so a later token may differ where the
// top two logits are close; the first COMPARE_MIN must agree.
const TOKENS = 16;
const COMPARE_MIN = 8;

let session;
let plain; // the same files, served without the cross-origin isolation headers
let page;
const story = missing.length ? null : rawStoryCase();
const results = {};
before(async () => {
  if (missing.length) return;
  session = await startSession();
  plain = await startServer({ mounts: { ...DEFAULT_MOUNTS, '/test/': PAGES }, isolate: false });
  page = await openPackagePage(session.url);
});
after(async () => {
  await plain?.close();
  await session?.close();
});

/** A fresh context's page with the package imported as window.hearth; its console.info lines land in page.infos. */
async function openPackagePage(base, contextOptions = {}, prepare = async () => {}) {
  const context = await session.browser.newContext(contextOptions);
  await prepare(context);
  const p = await context.newPage();
  p.infos = [];
  p.on('console', (m) => {
    if (m.type() === 'info') p.infos.push(m.text());
    if (m.type() === 'error') console.error(`[page error] ${m.text()}`);
  });
  await p.goto(`${base}test/package.html`);
  await p.waitForFunction(() => window.hearthReady !== undefined);
  assert.equal(await p.evaluate(() => window.hearthReady), true, 'the package imports');
  return p;
}

/** Loads the default model with `options`, generates 8 and 16 greedy tokens of the story prompt, unloads. */
function run(p, options) {
  return p.evaluate(async ({ model, options, prompt, tokens }) => {
    const start = performance.now();
    const engine = await hearth.createEngine({ model, context: 128, ...options });
    const out = { info: engine.info, loadMs: performance.now() - start, isolated: crossOriginIsolated, texts: {} };
    for (const n of [8, tokens]) {
      const reply = await engine.completions.create({ prompt, max_tokens: n, temperature: 0 });
      out.texts[n] = reply.choices[0].text;
      out.stats = engine.stats();
    }
    await engine.unload();
    return out;
  }, { model: MODEL_PATH, options, prompt: story.prompt_text, tokens: TOKENS });
}

const describe = (r) => `${r.info.backend}, ${r.info.threads} thread(s), ${r.info.backendReason}; load ${r.loadMs.toFixed(0)} ms, ` +
  `decode ${r.stats.decode_tok_s.toFixed(1)} tok/s; ${JSON.stringify(r.texts[TOKENS])}`;

/** The first `n` tokens must agree; all TOKENS should (a diagnostic says when they do not). */
function assertSameGreedy(t, what, got, want) {
  if (got.texts[TOKENS] === want.texts[TOKENS]) return t.diagnostic(`${what}: all ${TOKENS} greedy tokens agree`);
  t.diagnostic(`${what}: the ${TOKENS}-token texts differ: ${JSON.stringify(got.texts[TOKENS])} vs ${JSON.stringify(want.texts[TOKENS])}`);
  assert.equal(got.texts[COMPARE_MIN], want.texts[COMPARE_MIN], `${what}: the first ${COMPARE_MIN} greedy tokens`);
}

test('an invalid backend or thread count is a typed invalid_request error', async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const got = await page.evaluate(async (model) => {
    const out = {};
    for (const [name, options] of Object.entries({ gpu: { backend: 'gpu' }, upper: { backend: 'CPU' }, threads: { backend: 'cpu', threads: 0 } })) {
      try {
        await hearth.createEngine({ model, ...options });
        out[name] = 'resolved';
      } catch (e) {
        out[name] = { instance: e instanceof hearth.HearthError, code: e.code, param: e.param, message: e.message };
      }
    }
    return out;
  }, MODEL_PATH);
  for (const name of ['gpu', 'upper']) {
    assert.equal(got[name].instance, true, JSON.stringify(got[name]));
    assert.deepEqual([got[name].code, got[name].param], ['invalid_request', 'backend']);
    assert.match(got[name].message, /backend must be one of 'auto', 'webgpu', 'cpu'/);
  }
  assert.deepEqual([got.threads.code, got.threads.param], ['invalid_request', 'threads']);
});

test('auto picks the CPU on a software WebGPU adapter (SwiftShader here), on every core of an isolated page', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const adapter = await page.evaluate(async () => {
    const a = await navigator.gpu?.requestAdapter();
    return a ? { ...Object.fromEntries(['vendor', 'architecture', 'description'].map((k) => [k, a.info?.[k] ?? ''])), fallback: a.info?.isFallbackAdapter ?? false } : null;
  });
  const software = !adapter || adapter.fallback || /swiftshader|llvmpipe|lavapipe|software/i.test(Object.values(adapter).join(' '));
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  const r = await run(page, {});
  t.diagnostic(`adapter ${JSON.stringify(adapter)}; ${cores} cores; auto: ${describe(r)}`);
  assert.equal(r.isolated, true, 'the test page is cross-origin isolated');
  assert.equal(r.info.backend, software ? 'cpu' : 'webgpu', r.info.backendReason);
  if (software) {
    assert.match(r.info.backendReason, adapter ? /^software adapter \(.*(swiftshader|llvmpipe|lavapipe|software|fallback)/i : /^no WebGPU/);
    assert.equal(r.info.threads, cores, 'threads default to navigator.hardwareConcurrency');
  } else {
    assert.match(r.info.backendReason, /^hardware adapter/);
  }
  assert.ok(r.texts[TOKENS].length > 0);
  results.auto = r;
});

test('backend webgpu: runs on WebGPU even on a software adapter, and generates', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const r = await run(page, { backend: 'webgpu' });
  t.diagnostic(`webgpu: ${describe(r)}`);
  assert.deepEqual([r.info.backend, r.info.threads, r.info.backendReason], ['webgpu', 0, 'requested']);
  assert.ok(r.info.gpuBytes > 50e6);
  assert.equal(r.stats.completion_tokens, TOKENS);
  results.webgpu = r;
});

test('kvCache: f32 on any backend; f16 on the CPU (its default: half the bytes) and on WebGPU with shader-f16, else a typed error', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const f16 = await page.evaluate(async () => (await navigator.gpu.requestAdapter()).features.has('shader-f16'));
  const exact = await run(page, { backend: 'webgpu', kvCache: 'f32' });
  assert.equal(exact.info.adapter.kernel_variants.f16_kv_cache, false);
  if (results.webgpu && !results.webgpu.info.adapter.kernel_variants.f16_kv_cache) {
    assert.deepEqual(exact.texts, results.webgpu.texts, 'the same kernels as the default here');
  }
  const tried = await page.evaluate(async (model) => {
    const out = {};
    for (const [name, options] of Object.entries({ webgpu: { backend: 'webgpu', kvCache: 'f16' }, cpu: { backend: 'cpu' },
      cpuF16: { backend: 'cpu', kvCache: 'f16' }, cpuF32: { backend: 'cpu', kvCache: 'f32' } })) {
      try {
        const engine = await hearth.createEngine({ model, context: 64, ...options });
        const variants = engine.info.adapter?.kernel_variants;
        out[name] = { kv: variants ? (variants.f16_kv_cache ? 'f16' : 'f32') : engine.info.adapter.kv_cache, bytes: engine.info.gpuBytes };
        await engine.unload();
      } catch (e) {
        out[name] = { instance: e instanceof hearth.HearthError, code: e.code, message: e.message };
      }
    }
    return out;
  }, MODEL_PATH);
  t.diagnostic(`shader-f16: ${f16}; ${JSON.stringify(tried)}`);
  if (f16) assert.equal(tried.webgpu.kv, 'f16');
  else assert.deepEqual([tried.webgpu.instance, tried.webgpu.code], [true, 'invalid_argument'], JSON.stringify(tried.webgpu));
  if (!f16) assert.match(tried.webgpu.message, /f16 KV cache needs shader-f16/);
  assert.deepEqual([tried.cpu.kv, tried.cpuF16.kv, tried.cpuF32.kv], ['f16', 'f16', 'f32']);
  assert.equal(tried.cpu.bytes, tried.cpuF16.bytes);
  const [layers, positions, kvDim] = [30, 64, 3 * 64];
  assert.equal(tried.cpuF32.bytes - tried.cpuF16.bytes, layers * 2 * positions * kvDim * 2, 'the f16 cache takes half the bytes');
  // Greedy text with the exact cache on the CPU: as with the f16 cache, up to where the top two logits are close.
  const cpuF32 = await run(page, { backend: 'cpu', kvCache: 'f32', threads: 2 });
  if (results.webgpu) assertSameGreedy(t, 'cpu with an f32 cache vs webgpu', cpuF32, results.webgpu);
});

test('chainedDecode: greedy steps chained on WebGPU generate what steps one at a time do', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  // (Each run generates 8 tokens, then 16 from the same prompt: the second
  // reuses the first's cache, past the step chained on its last token.)
  const chained = await run(page, { backend: 'webgpu', chainedDecode: true });
  const single = await run(page, { backend: 'webgpu', chainedDecode: false });
  t.diagnostic(`chained: ${describe(chained)}; one at a time: ${describe(single)}`);
  assert.deepEqual([chained.info.adapter.kernel_variants.chained_decode, single.info.adapter.kernel_variants.chained_decode], [true, false]);
  assert.deepEqual(chained.texts, single.texts);
  assert.equal(chained.stats.completion_tokens, TOKENS);
});

test('backend cpu on an isolated page: the threaded build on 2 threads, the same greedy text as WebGPU', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const r = await run(page, { backend: 'cpu', threads: 2 });
  t.diagnostic(`cpu: ${describe(r)}`);
  assert.deepEqual([r.info.backend, r.info.threads, r.info.backendReason], ['cpu', 2, 'requested']);
  assert.equal(r.stats.completion_tokens, TOKENS);
  assert.ok(!page.infos.some((line) => /Cross-Origin-Embedder-Policy/.test(line)), 'no isolation hint on an isolated page');
  results.cpu = r;
  if (results.webgpu) assertSameGreedy(t, 'cpu (2 threads) vs webgpu', r, results.webgpu);
  if (results.auto) assertSameGreedy(t, 'cpu (2 threads) vs auto', r, results.auto);
});

test('backend cpu in the page (worker: false): one thread (a page may not block), the same text', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const r = await run(page, { backend: 'cpu', worker: false });
  t.diagnostic(`cpu in the page: ${describe(r)}`);
  assert.deepEqual([r.info.backend, r.info.threads], ['cpu', 1]);
  if (results.cpu) assertSameGreedy(t, 'cpu (in the page) vs cpu (2 threads)', r, results.cpu);
});

test('a page that is not cross-origin isolated: cpu runs on 1 thread and logs the COOP/COEP hint', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const p = await openPackagePage(plain.url);
  const r = await run(p, { backend: 'cpu' });
  t.diagnostic(`cpu, not isolated: ${describe(r)}`);
  assert.equal(r.isolated, false);
  assert.deepEqual([r.info.backend, r.info.threads], ['cpu', 1]);
  const hint = p.infos.find((line) => /hearth-llm: the CPU backend runs on 1 thread/.test(line));
  assert.ok(hint, `no hint among ${JSON.stringify(p.infos)}`);
  assert.match(hint, /Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp/);
  if (results.cpu) assertSameGreedy(t, 'cpu (1 thread) vs cpu (2 threads)', r, results.cpu);
  await p.context().close();
});

test('auto without WebGPU: the CPU, saying why', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const p = await openPackagePage(session.url, {}, hideWebGPU);
  const r = await run(p, {});
  t.diagnostic(`auto, no WebGPU: ${describe(r)}`);
  assert.equal(r.info.backend, 'cpu');
  assert.equal(r.info.backendReason, 'no WebGPU (navigator.gpu is missing)');
  await p.context().close();
});

test('a thread pool whose workers never start (Firefox, now and then): the CPU on one thread after a bounded wait, the same text', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  // The threaded build's worker script, except that its workers never say they are ready.
  const snippets = path.join(REPO, 'web/dist/wasm-threads/snippets');
  const helperDir = path.join(fs.readdirSync(snippets)[0], 'src');
  const real = fs.readFileSync(path.join(snippets, helperDir, 'workerHelpers.js'), 'utf8');
  const ready = "postMessage({ type: 'wasm_bindgen_worker_ready' });";
  assert.ok(real.includes(ready), 'workerHelpers.js posts the ready message as this test expects');
  const stubDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-stuck-pool-'));
  fs.writeFileSync(path.join(stubDir, 'workerHelpers.js'), real.replace(ready, '/* never ready */'));
  const stuck = await startServer({
    mounts: { ...DEFAULT_MOUNTS, '/test/': PAGES, [`/hearth/wasm-threads/snippets/${helperDir}/`]: stubDir },
    isolate: true,
  });
  try {
    const p = await openPackagePage(stuck.url);
    const r = await run(p, { backend: 'cpu' });
    t.diagnostic(`cpu, pool never ready: ${describe(r)}`);
    assert.deepEqual([r.info.backend, r.info.threads], ['cpu', 1]);
    assert.ok(r.loadMs >= 9_000 && r.loadMs < 60_000, `the load took ${r.loadMs} ms (the pool's wait is 10 s)`);
    if (results.cpu) assertSameGreedy(t, 'cpu (1 thread, the fallback) vs cpu (2 threads)', r, results.cpu);
    await p.context().close();
  } finally {
    await stuck.close();
    fs.rmSync(stubDir, { recursive: true, force: true });
  }
});

test("a GPU process that never answers requestAdapter(): auto runs on the CPU after a bounded wait, saying why; webgpu fails with no_webgpu", { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const p = await openPackagePage(session.url, {}, stallWebGPU);
  const r = await run(p, {});
  t.diagnostic(`auto, requestAdapter() stalled: ${describe(r)}`);
  assert.equal(r.info.backend, 'cpu');
  assert.match(r.info.backendReason, /^no WebGPU \(requestAdapter\(\) did not answer in \d+ s\)$/);
  assert.ok(r.loadMs < 60_000, `the load took ${r.loadMs} ms`);
  const forced = await p.evaluate(async (model) => {
    try {
      await hearth.createEngine({ model, backend: 'webgpu' });
      return 'loaded';
    } catch (e) {
      return { code: e.code, message: e.message };
    }
  }, MODEL_PATH);
  assert.equal(forced.code, 'no_webgpu', JSON.stringify(forced));
  assert.match(forced.message, /did not answer.*backend 'cpu'/);
  await p.context().close();
});

test("a GPU process that hangs at requestDevice(): auto runs on the CPU after a bounded wait, saying why, with the CPU's replies; webgpu fails with no_webgpu", { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const p = await openPackagePage(session.url, {}, stallWebGPUDevice);
  const r = await run(p, {});
  t.diagnostic(`auto, requestDevice() stalled: ${describe(r)}`);
  assert.equal(r.info.backend, 'cpu');
  assert.match(r.info.backendReason, /^the WebGPU device did not open in \d+ s \(hardware adapter \(stalled-gpu/);
  assert.ok(r.loadMs < 90_000, `the load took ${r.loadMs} ms`);
  const cpu = await run(page, { backend: 'cpu' });
  assert.deepEqual(r.texts, cpu.texts);
  const forced = await p.evaluate(async (model) => {
    const start = performance.now();
    try {
      await hearth.createEngine({ model, backend: 'webgpu' });
      return 'loaded';
    } catch (e) {
      return { code: e.code, message: e.message, ms: performance.now() - start };
    }
  }, MODEL_PATH);
  assert.equal(forced.code, 'no_webgpu', JSON.stringify(forced));
  assert.match(forced.message, /device did not open.*backend 'cpu'/);
  assert.ok(forced.ms < 90_000, `the failure took ${forced.ms} ms`);
  await p.context().close();
});

test('the threaded wasm build on its own: greedy token ids equal to the WebGPU build\'s', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const generate = (input) => page.evaluate((input) => new Promise((resolve) => {
    const worker = new Worker('/test/engine-worker.js', { type: 'module' });
    worker.onmessage = ({ data }) => { worker.terminate(); resolve(data); };
    worker.postMessage(input);
  }), { model: '/models/SmolLM2-135M-Instruct.Q4_1.gguf', promptIds: story.prompt_ids, maxTokens: TOKENS, ...input });
  const gpu = await generate({ build: 'pkg', backend: 'webgpu' });
  assert.ok(gpu.ok, gpu.message);
  const cpu = await generate({ build: 'pkg-threads', backend: 'cpu', threads: 2 });
  assert.ok(cpu.ok, cpu.message);
  t.diagnostic(`webgpu ids ${JSON.stringify(gpu.ids)} (${gpu.decodeTokS.toFixed(1)} tok/s); cpu ids ${JSON.stringify(cpu.ids)} ` +
    `(${cpu.threads} threads, load ${cpu.loadMs.toFixed(0)} ms, ${cpu.decodeTokS.toFixed(1)} tok/s)`);
  assert.deepEqual([gpu.backend, cpu.backend, cpu.threads], ['webgpu', 'cpu', 2]);
  assert.equal(cpu.ids.length, TOKENS);
  const agree = cpu.ids.findIndex((id, i) => id !== gpu.ids[i]);
  if (agree >= 0) t.diagnostic(`first differing token: ${agree} (reference margin there ${story.margins[agree].toFixed(3)})`);
  assert.deepEqual(cpu.ids.slice(0, COMPARE_MIN), gpu.ids.slice(0, COMPARE_MIN));
  assert.deepEqual(gpu.ids, story.generated_ids.slice(0, TOKENS), 'the WebGPU build follows the exact reference');
});
