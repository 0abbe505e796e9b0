// Faults of the engine itself in headless Chromium (docs/reliability.md): a
// model too large for the backend is refused from its manifest with the
// numbers; a GPU device destroyed in mid-generation is a typed device_lost
// error and a new engine works; a prompt longer than the context is a
// context_full error unless the request asks for truncation (and the demo
// reloads a lost engine by itself and chats on); a worker that never
// answers unload is ended after a bound; a long session
// keeps wasm and GPU memory flat (HEARTH_SOAK_TURNS sets its length).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSession, requireWebGPU } from './harness.mjs';
import { DIST, MODEL_DIR, MODEL_PATH, missingPrerequisites, prerequisitesMet } from './lib/package-fixtures.mjs';
import { settled, setReplyLength, chat } from './lib/demo.mjs';

const missing = missingPrerequisites();
const SOAK_TURNS = Number(process.env.HEARTH_SOAK_TURNS ?? 60);
const GPU_SOAK_TURNS = Number(process.env.HEARTH_GPU_SOAK_TURNS ?? 8);

let session;
before(async () => {
  if (!missing.length) session = await startSession();
});
after(async () => session?.close());

/**
 * A fresh context's page with the package imported as window.hearth. Every
 * GPUDevice the page opens is kept in window.devices (to destroy it), and
 * its buffers' live bytes are counted in window.gpuLiveBytes().
 */
async function packagePage() {
  const context = await session.browser.newContext();
  await context.addInitScript(() => {
    if (!globalThis.GPUAdapter) return;
    window.devices = [];
    const live = new Map();
    window.gpuLiveBytes = () => [...live.values()].reduce((a, b) => a + b, 0);
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...args) {
      const device = await requestDevice.apply(this, args);
      window.devices.push(device);
      return device;
    };
    const createBuffer = GPUDevice.prototype.createBuffer;
    GPUDevice.prototype.createBuffer = function (descriptor) {
      const buffer = createBuffer.call(this, descriptor);
      live.set(buffer, descriptor.size);
      const destroy = buffer.destroy;
      buffer.destroy = function () {
        live.delete(buffer);
        return destroy.call(this);
      };
      return buffer;
    };
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[page error] ${m.text()}`);
  });
  await page.goto(`${session.url}test/package.html`);
  await page.waitForFunction(() => window.hearthReady !== undefined);
  assert.equal(await page.evaluate(() => window.hearthReady), true, 'the package imports');
  return page;
}

/** The default package's manifest, blown up to a model of `vocab` tokens (never downloaded). */
function hugeManifest(vocab) {
  const m = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8'));
  const embedding = m.tensors.find((t) => t.name === 'token_embd.weight');
  const shard = m.shards.find((s) => s.file === embedding.shard);
  m.config.vocab_size = vocab;
  embedding.shape = [vocab, embedding.shape[1]];
  const blockBytes = { q4_0: 18, q4_1: 20, q8_0: 34 }[embedding.dtype.toLowerCase()];
  embedding.length = (vocab * embedding.shape[1] / 32) * blockBytes;
  embedding.offset = shard.bytes; // after the shard's real tensors
  m.total_bytes += embedding.length;
  shard.bytes += embedding.length;
  assert.ok(blockBytes, `a block type: ${embedding.dtype}`);
  return m;
}

test('a model too large for the backend is refused from its manifest, with the numbers and what would fit', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await packagePage();
  if (!(await requireWebGPU(page, t))) return;
  // 7M tokens × 576 (4.0e9 values: still addressable by wasm32): an embedding of 4 GiB, more than any buffer and than wasm can address.
  const manifest = hugeManifest(7_000_000);
  let shardRequests = 0;
  await page.context().route(`**${MODEL_PATH}manifest.json`, (route) => route.fulfill({ json: manifest }));
  await page.context().route(`**${MODEL_PATH}*.safetensors`, () => { shardRequests++; }); // never answered
  const results = await page.evaluate(async (model) => {
    const out = {};
    for (const backend of ['webgpu', 'cpu']) {
      const start = performance.now();
      try {
        await hearth.createEngine({ model, backend, cacheName: null });
        out[backend] = { loaded: true };
      } catch (e) {
        out[backend] = { code: e.code, message: e.message, ms: performance.now() - start };
      }
    }
    return out;
  }, MODEL_PATH);
  for (const [backend, r] of Object.entries(results)) {
    t.diagnostic(`${backend}: ${r.code} after ${r.ms?.toFixed(0)} ms: ${r.message}`);
    assert.equal(r.code, 'too_large', `${backend}: ${JSON.stringify(r)}`);
    assert.match(r.message, /token_embd\.weight needs a buffer of \d+\.\d GiB|weights alone do not fit/, backend);
    assert.match(r.message, /the model needs \d+\.\d GiB \(weights \d+\.\d GiB, KV cache/, backend);
  }
  assert.match(results.webgpu.message, /this GPU allows at most [\d.]+ [MG]iB per buffer/);
  assert.match(results.cpu.message, /the CPU backend here can hold at most [\d.]+ GiB; its weights alone do not fit/);
  t.diagnostic(`shard requests started while the device opened (never answered): ${shardRequests}`);
  await page.context().close();
});

test('a context beyond the adapter\'s limits names the context that fits; a smaller one then loads', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await packagePage();
  if (!(await requireWebGPU(page, t))) return;
  // The package's model claims a context of a billion positions; one layer's keys outgrow any buffer.
  const manifest = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8'));
  manifest.config.context_length = 1_000_000_000;
  await page.context().route(`**${MODEL_PATH}manifest.json`, (route) => route.fulfill({ json: manifest }));
  const r = await page.evaluate(async (model) => {
    try {
      await hearth.createEngine({ model, backend: 'webgpu', context: 1_000_000_000, cacheName: null });
      return { loaded: true };
    } catch (e) {
      const fits = Number(/a context of at most (\d+)/.exec(e.message)?.[1]);
      const engine = await hearth.createEngine({ model, backend: 'webgpu', context: 256, cacheName: null });
      const context = engine.info.context;
      await engine.unload();
      return { code: e.code, message: e.message, fits, context };
    }
  }, MODEL_PATH);
  t.diagnostic(r.message);
  assert.equal(r.code, 'too_large', JSON.stringify(r));
  assert.ok(r.fits > 256 && r.fits < 1_000_000_000, r.message);
  assert.equal(r.context, 256);
  await page.context().close();
});

test('a GPU device destroyed in mid-generation: a typed device_lost error, then a new engine works', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await packagePage();
  if (!(await requireWebGPU(page, t))) return;
  const r = await page.evaluate(async (model) => {
    const options = { model, backend: 'webgpu', worker: false, context: 128, cacheName: null };
    const request = { prompt: 'Once upon a time', max_tokens: 6, temperature: 0 };
    let engine = await hearth.createEngine(options);
    const before = (await engine.completions.create(request)).choices[0].text;
    const out = { before };
    const stream = await engine.completions.create({ ...request, stream: true });
    let pieces = 0;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0].text && ++pieces === 1) for (const d of window.devices) d.destroy();
      }
      out.lost = { code: 'none' };
    } catch (e) {
      out.lost = { code: e.code, message: e.message, pieces };
    }
    try {
      await engine.completions.create(request);
      out.next = { code: 'none' };
    } catch (e) {
      out.next = { code: e.code, message: e.message };
    }
    await engine.unload();
    engine = await hearth.createEngine(options);
    out.after = (await engine.completions.create(request)).choices[0].text;
    await engine.unload();
    return out;
  }, MODEL_PATH);
  t.diagnostic(JSON.stringify(r));
  assert.equal(r.lost.code, 'device_lost', JSON.stringify(r.lost));
  assert.match(r.lost.message, /GPU device was lost/);
  assert.equal(r.next.code, 'device_lost', 'later requests on the lost engine fail the same way at once');
  assert.equal(r.after, r.before, 'a new engine gives the same greedy text');
  await page.context().close();
});

test('the demo on WebGPU: a device lost in mid-reply is explained, the model reloads by itself, and the chat goes on', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const context = await session.browser.newContext();
  await context.addInitScript(() => localStorage.setItem('hearth-backend', 'webgpu'));
  // The engine runs in the package's worker: keep its devices where the test can reach them.
  const keep = `self.devices = []; { const rd = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function (...a) { const d = await rd.apply(this, a); self.devices.push(d); return d; }; }`;
  await context.route('**/hearth/worker.js', async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: `${keep}\n${await response.text()}` });
  });
  await context.addInitScript(() => { delete Object.getPrototypeOf(navigator).serviceWorker; }); // routes miss a service worker's fetches
  const page = await session.open('', context);
  if (!(await requireWebGPU(page, t))) return;
  assert.ok(await settled(page), await page.locator('#error').textContent());
  assert.match(await page.locator('#backend').textContent(), /^WebGPU/);
  await setReplyLength(page, 8);
  await page.fill('#chat-input', 'Tell me a story.');
  await page.press('#chat-input', 'Enter');
  const reply = page.locator('.message.assistant').first();
  await page.waitForFunction(() => (document.querySelector('.message.assistant')?.textContent ?? '').trim().length > 0, null, { timeout: 300_000 });
  const workers = page.workers().filter((w) => w.url().endsWith('/hearth/worker.js'));
  assert.equal(workers.length, 1, 'the engine worker');
  await workers[0].evaluate(() => self.devices.forEach((d) => d.destroy()));
  await page.waitForFunction(() => document.querySelector('.message.assistant')?.getAttribute('aria-busy') !== 'true', null, { timeout: 120_000 });
  assert.match(await reply.textContent(), /GPU device was lost/);
  // The page says what happened and loads the model again (from the cache) on its own.
  // (If the reload stalls, say where: the load phase, its numbers and any error shown.)
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 300_000 }).catch(async (e) => {
    const where = await page.evaluate(() => ['load-phase', 'load-numbers', 'model-name', 'error-title', 'error-detail']
      .map((id) => `${id}: ${document.getElementById(id)?.textContent}`).join('; '));
    throw new Error(`the model did not load again: ${where}`, { cause: e });
  });
  await page.locator('#error').waitFor({ state: 'visible', timeout: 60_000 });
  assert.match(await page.locator('#error-title').textContent(), /GPU stopped responding/);
  const { final } = await chat(page, 'What is the capital of France?');
  assert.ok(final.trim().length > 0 && !/error/.test(final), final);
  await context.close();
});

test('a worker that never answers unload is ended after the bound, and a new engine loads', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const context = await session.browser.newContext();
  // The engine's worker swallows 'unload' (as one stuck in its GPU or a job would) before its own listener sees it.
  const deaf = `self.addEventListener('message', (e) => { if (e.data?.type === 'unload') e.stopImmediatePropagation(); });`;
  await context.route('**/worker.js', async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: `${deaf}\n${await response.text()}` });
  });
  const page = await session.open('test/package.html', context);
  await page.waitForFunction(() => window.hearthReady !== undefined);
  const r = await page.evaluate(async (model) => {
    const options = { model, backend: 'cpu', threads: 1, cacheName: null };
    const engine = await hearth.createEngine(options);
    const request = { prompt: 'The capital of France is', max_tokens: 4, temperature: 0 };
    const before = (await engine.completions.create(request)).choices[0].text;
    const t0 = performance.now();
    await engine.unload();
    const unloadMs = performance.now() - t0;
    const next = await engine.completions.create(request).then(() => 'ran', (e) => e.code);
    const again = await hearth.createEngine(options);
    const after = (await again.completions.create(request)).choices[0].text;
    await again.unload();
    return { before, unloadMs, next, after };
  }, MODEL_PATH);
  t.diagnostic(JSON.stringify(r));
  const { UNLOAD_TIMEOUT_MS: bound } = await import(path.join(DIST, 'connection.js'));
  assert.ok(r.unloadMs >= bound * 0.9 && r.unloadMs < bound + 5_000, `unload() ended after ${r.unloadMs} ms`);
  assert.equal(r.next, 'unloaded');
  assert.equal(r.after, r.before);
  // (Both engines' workers were deaf, so both were ended; Playwright hears of a worker's end a moment later.)
  const engineWorkers = () => page.workers().filter((w) => w.url().endsWith('/worker.js')).length;
  for (let waited = 0; engineWorkers() > 0 && waited < 5_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
  assert.equal(engineWorkers(), 0, 'no engine worker is left running');
  await context.close();
});

test('a prompt longer than the context: context_full by default, truncated when the request asks', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await packagePage();
  const r = await page.evaluate(async (model) => {
    const engine = await hearth.createEngine({ model, backend: 'cpu', context: 128, cacheName: null });
    const long = Array.from({ length: 40 }, (_, i) => `Fact ${i}: the number ${i} is written ${i}.`).join(' ');
    const out = {};
    const attempt = async (key, request) => {
      try {
        const reply = await engine.chat.completions.create(request);
        out[key] = { text: reply.choices[0].message.content, usage: reply.usage, finish: reply.choices[0].finish_reason };
      } catch (e) {
        out[key] = { code: e.code, message: e.message, param: e.param };
      }
    };
    const messages = [
      { role: 'system', content: 'Answer in one word.' },
      { role: 'user', content: long },
      { role: 'assistant', content: 'Noted.' },
      { role: 'user', content: 'What is the capital of France?' },
    ];
    await attempt('full', { messages, max_tokens: 8, temperature: 0 });
    await attempt('truncated', { messages, max_tokens: 8, temperature: 0, truncation: 'auto' });
    await attempt('alone', { messages: [messages[0], messages[3]], max_tokens: 8, temperature: 0 });
    await attempt('bad', { messages, truncation: 'middle' });
    out.completion = await engine.completions.create({ prompt: long, max_tokens: 4, temperature: 0, truncation: 'auto' })
      .then((reply) => ({ usage: reply.usage }), (e) => ({ code: e.code, message: e.message }));
    out.completionPlain = await engine.completions.create({ prompt: long, max_tokens: 4 }).then(() => 'ok', (e) => e.code);
    await engine.unload();
    return out;
  }, MODEL_PATH);
  t.diagnostic(JSON.stringify(r));
  assert.equal(r.full.code, 'context_full');
  assert.match(r.full.message, /truncation: 'auto'/);
  // Truncation dropped the long turn and its answer: the same prompt as the short conversation.
  assert.equal(r.truncated.usage.prompt_tokens, r.alone.usage.prompt_tokens);
  assert.equal(r.truncated.text, r.alone.text);
  assert.deepEqual([r.bad.code, r.bad.param], ['invalid_request', 'truncation']);
  assert.ok(r.completion.usage?.prompt_tokens <= 124, `a completion keeps its last tokens: ${JSON.stringify(r.completion)}`);
  assert.equal(r.completionPlain, 'context_full');
  await page.context().close();
});

/** Runs `turns` chat turns of one growing conversation (truncated to fit); wasm (and GPU) memory after each. */
function soak(page, options, turns) {
  return page.evaluate(async ({ model, options, turns }) => {
    const engine = await hearth.createEngine({ model, context: 256, ...options });
    const messages = [{ role: 'system', content: 'You are brief.' }];
    const samples = [];
    const start = performance.now();
    for (let i = 0; i < turns; i++) {
      messages.push({ role: 'user', content: `Turn ${i}: name a colour.` });
      const reply = await engine.chat.completions.create({ messages, max_tokens: 3, temperature: 0, truncation: 'auto' });
      messages.push({ role: 'assistant', content: reply.choices[0].message.content });
      samples.push({ wasm: engine.stats().wasm_memory_bytes, gpu: window.gpuLiveBytes?.() ?? 0, prompt: reply.usage.prompt_tokens });
    }
    const info = engine.info;
    await engine.unload();
    return { samples, seconds: (performance.now() - start) / 1000, backend: info.backend, modelBytes: info.gpuBytes };
  }, { model: MODEL_PATH, options, turns });
}

/** Memory after the first tenth of the session (warm-up) must not grow. */
function assertFlat(t, what, r) {
  const warm = Math.max(1, Math.floor(r.samples.length / 10));
  const mib = (b) => (b / 1048576).toFixed(1);
  for (const key of ['wasm', 'gpu']) {
    const series = r.samples.map((s) => s[key]);
    const [first, atWarm, last, max] = [series[0], series[warm - 1], series.at(-1), Math.max(...series.slice(warm))];
    t.diagnostic(`${what} ${key}: ${mib(first)} MiB after turn 1, ${mib(atWarm)} after turn ${warm}, ${mib(last)} after turn ${series.length} (max ${mib(max)})`);
    assert.ok(max <= atWarm, `${what}: ${key} memory grew from ${atWarm} to ${max} bytes after warm-up`);
  }
  const prompts = r.samples.map((s) => s.prompt);
  t.diagnostic(`${what}: ${r.samples.length} turns in ${r.seconds.toFixed(0)} s on ${r.backend}; prompt tokens ${Math.min(...prompts)}..${Math.max(...prompts)} (truncated to fit 256)`);
}

test(`a long session (${SOAK_TURNS} turns, CPU backend in the worker): wasm memory flat`, { timeout: 120_000 + SOAK_TURNS * 10_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await packagePage();
  const r = await soak(page, { backend: 'cpu', cacheName: null }, SOAK_TURNS);
  assertFlat(t, 'cpu', r);
  assert.ok(Math.max(...r.samples.map((s) => s.prompt)) > 192, 'the conversation reached the truncation limit');
  await page.context().close();
});

test(`a long session (${GPU_SOAK_TURNS} turns, WebGPU in the page): wasm memory and live GPU buffers flat`, { timeout: 120_000 + GPU_SOAK_TURNS * 60_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await packagePage();
  if (!(await requireWebGPU(page, t))) return;
  const r = await soak(page, { backend: 'webgpu', worker: false, cacheName: null }, GPU_SOAK_TURNS);
  assertFlat(t, 'webgpu', r);
  assert.ok(r.samples[0].gpu >= r.modelBytes, `the counted GPU buffers (${r.samples[0].gpu}) hold the model (${r.modelBytes})`);
  await page.context().close();
});
