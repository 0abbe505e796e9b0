// The browser benchmark: hearth in headless Chromium (WebGPU; SwiftShader on
// machines without a GPU), driven by Playwright.
//   node bench/browser.mjs [--prompt-tokens 128,512] [--gen-tokens 128] [--repeats 1] [--profile]
// Prints one JSON object per prompt length with the native benchmark's keys
// (adapter, prompt_tokens, gen_tokens, load_ms, ttft_ms, prefill_tok_s,
// decode_tok_s, gpu_bytes, weight_bytes, read_bandwidth_gb_s,
// roofline_fraction) plus cold_load_ms / warm_load_ms (the default model
// package through hearth-llm: empty cache, then from the Cache API),
// warm_first_token_ms (a reloaded page's createEngine with the default options,
// to the first token of a streamed chat reply; after one such start, the
// median of five) and
// first_token_backend (the backend 'auto' picked for it),
// wasm_heap_bytes (wasm memory after the load: its peak, as wasm memory never
// shrinks) and the engine's wasm + JS size, raw and gzipped.
// Speed runs use the wasm engine directly (exact prompt lengths, greedy,
// end-of-generation ignored): one warm-up, then the median of --repeats runs.
// --profile also prints to stderr, as `hearth bench --profile` does, the
// dispatch floor and where a decode step after each prompt and the prompt's
// first chunk spend their time, kernel by kernel (engine.profileStep).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { startSession } from '../tests/browser/harness.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGE_URL = '/models/SmolLM2-135M-Instruct-q4_1/';
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const promptLengths = arg('--prompt-tokens', '128,512').split(',').map(Number);
const genTokens = Number(arg('--gen-tokens', 128));
const repeats = Number(arg('--repeats', 1));
const profile = process.argv.includes('--profile');
const text = fs.readFileSync(path.join(ROOT, '..', 'shared', 'fixtures', 'ppl_text.txt'), 'utf8');

/** The median of `key` over `runs`. */
function median(runs, key) {
  const v = runs.map((r) => r[key]).sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** The engine's files a page downloads (wasm + JS of web/dist), raw and gzipped. */
function engineSize() {
  const dist = path.join(ROOT, 'web/dist');
  const files = [...fs.readdirSync(dist).filter((f) => f.endsWith('.js')).map((f) => path.join(dist, f)),
    ...['hearth_llm.js', 'hearth_llm_bg.wasm'].map((f) => path.join(dist, 'wasm', f))];
  let raw = 0;
  let gz = 0;
  for (const f of files) {
    const bytes = fs.readFileSync(f);
    raw += bytes.length;
    gz += zlib.gzipSync(bytes, { level: 9 }).length;
  }
  return { engine_bytes: raw, engine_gzip_bytes: gz };
}

/** Loads the default package through hearth-llm in the page (in-thread, so the page sees the wasm memory). */
async function packageLoad(page) {
  await page.waitForFunction(() => window.hearthReady !== undefined);
  return page.evaluate(async (model) => {
    if (window.hearthReady !== true) throw new Error(window.hearthReady);
    const start = performance.now();
    const engine = await window.hearth.createEngine({ model, worker: false, backend: 'webgpu' });
    const ms = performance.now() - start;
    const { default: init } = await import('/hearth/wasm/hearth_llm.js');
    const heap = (await init()).memory.buffer.byteLength; // the instance the package loaded
    await engine.unload();
    return { ms, heap };
  }, PACKAGE_URL);
}

/**
 * A user's warm start, to the first token: the page reloaded in `tab`
 * creates an engine with the default options (its own worker, backend
 * 'auto') and streams a chat reply; ms until the reply's first text, and the
 * backend picked.
 */
async function firstTokenAfterReload(tab) {
  await reload(tab);
  return tab.evaluate(async (model) => {
    const start = performance.now();
    const engine = await window.hearth.createEngine({ model });
    let ms;
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    for await (const chunk of await engine.chat.completions.create({ messages, max_tokens: 4, temperature: 0, stream: true })) {
      if (ms === undefined && chunk.choices[0]?.delta?.content) ms = performance.now() - start;
    }
    const backend = engine.info.backend;
    await engine.unload();
    return { ms, backend };
  }, PACKAGE_URL);
}

/**
 * Loads the test page again in `tab`, as a user's reload does. (Not in a new
 * page: each new page is a new window in headless Chromium, whose window
 * UI starts in a renderer of its own that took about 0.5 s of CPU in the
 * next second, and a start in that second came 0.2 s later.)
 */
async function reload(tab) {
  await tab.goto(`${session.url}test/package.html`);
  await tab.waitForFunction(() => window.hearthReady !== undefined);
}

const WLLAMA = path.join(ROOT, '.cache/peers/wllama/node_modules/@wllama/wllama/esm');
const session = await startSession({ '/bench/': path.join(ROOT, 'bench/pages'), '/peers/wllama/': WLLAMA });

/** A profile (engine.profileStep's) as `hearth bench --profile` prints it, to stderr. */
function printProfile(p) {
  const what = p.tokens === 1 ? 'decode step' : `prefill of ${p.tokens} tokens`;
  console.error(`        ${what} ${Math.round(p.step_us)} µs in one pass; kernels alone:`);
  const sum = p.kernels.reduce((a, k) => a + k.us_per_token, 0);
  for (const k of p.kernels) {
    const share = ((100 * k.us_per_token) / sum).toFixed(1);
    console.error(`        ${k.kernel.padEnd(28)} ${String(k.dispatches).padStart(4)} × ${String(Math.round(k.us_per_token)).padStart(9)} µs ${share.padStart(5)} %`);
  }
}

/** The peer, wllama, on the same GGUF with `threads` CPU threads; one row per prompt (prompt_n from its own tokenizer). */
async function wllama(prompts, threads) {
  const page = await session.open('bench/wllama.html');
  await page.waitForFunction(() => window.wllamaReady, null, { timeout: 60_000 });
  const out = await page.evaluate((args) => window.runWllama(args), {
    model: '/models/SmolLM2-135M-Instruct.Q4_1.gguf', threads, context: Math.max(...promptLengths) + genTokens + 64,
    prompts, genTokens, repeats,
  });
  await page.close();
  return out;
}
/** hearth's CPU backend (threaded wasm build, `threads` threads) on the same prompts: one row per prompt. */
async function hearthCpu(prompts, threads) {
  const page = await session.open('bench/wllama.html'); // any isolated page will do: the work runs in a worker
  const out = await page.evaluate((args) => new Promise((resolve) => {
    const worker = new Worker('/bench/hearth-cpu-worker.js', { type: 'module' });
    worker.onmessage = ({ data }) => { worker.terminate(); resolve(data); };
    worker.onerror = (e) => resolve({ ok: false, message: e.message });
    worker.postMessage(args);
  }), { threads, model: '/models/SmolLM2-135M-Instruct.Q4_1.gguf', context: Math.max(...promptLengths) + genTokens + 8, prompts, genTokens, repeats });
  await page.close();
  if (!out.ok) throw new Error(`hearth CPU backend: ${out.message}`);
  return out;
}

try {
  const context = await session.browser.newContext();
  const tab = await session.open('test/package.html', context);
  const cold = await packageLoad(tab);
  // Warm: the median of three loads (one load alone varied 0.6-1.5 s here).
  const warms = [];
  for (let i = 0; i < 3; i++) {
    await reload(tab);
    warms.push(await packageLoad(tab));
  }
  warms.sort((a, b) => a.ms - b.ms);
  const warm = warms[1];
  // The first start with the default options is the threaded build's first
  // in this browser (the loads above ran the single-threaded one): it
  // downloads and compiles that build, a cold start, so it is not counted.
  // Then the median of five (one start varied 0.7-1.0 s here).
  await firstTokenAfterReload(tab);
  const firsts = [];
  for (let i = 0; i < 5; i++) firsts.push(await firstTokenAfterReload(tab));
  firsts.sort((a, b) => a.ms - b.ms);
  const firstToken = firsts[2];
  await context.close();

  const longest = Math.max(...promptLengths);
  const page = await session.open(`test/engine.html?context=${longest + genTokens + 8}`);
  await page.waitForFunction(() => window.engineState, null, { timeout: 120_000 });
  const state = await page.evaluate(() => window.engineState);
  if (!state.ok) throw new Error(state.message);
  const bandwidth = await page.evaluate(async () => (await window.hearth.Gpu.create()).readBandwidth(64 << 20, 9));
  if (profile) {
    const floor = await page.evaluate(async () => (await window.hearth.Gpu.create()).dispatchFloor(200, 5));
    console.error(`dispatch floor: ${floor.dispatches} 4-value adds one behind the other in one pass, ${floor.wall_us.toFixed(1)} µs each from submit to read-back`);
  }
  const weightBytes = await page.evaluate(() => window.engine.weightBytes());
  const sizes = engineSize();
  const promptTexts = [];
  for (const promptTokens of promptLengths) {
    const runs = await page.evaluate(async ({ text, promptTokens, genTokens, repeats }) => {
      const ids = Array.from(window.engine.encode(text, false)).slice(0, promptTokens);
      if (ids.length < promptTokens) throw new Error(`the text gives only ${ids.length} tokens`);
      window.lastPromptText = window.engine.decode(ids);
      const results = [];
      for (let run = 0; run <= repeats; run++) {
        window.engine.reset();
        // The warm-up (run 0) is short: it only compiles the pipelines.
        const g = run === 0
          ? await window.engine.generate(ids.slice(0, 8), { max_tokens: 4, ignore_eos: true })
          : await window.engine.generate(ids, { max_tokens: genTokens, ignore_eos: true });
        if (run > 0) results.push(g.timings);
      }
      return results;
    }, { text, promptTokens, genTokens, repeats });
    const decode = median(runs, 'decode_tok_s');
    if (profile) {
      const profiles = await page.evaluate(async ({ promptTokens }) => {
        const chunk = Math.min(promptTokens, 128); // the engine's default max_batch
        return [await window.engine.profileStep(promptTokens, 1, 10), await window.engine.profileStep(0, chunk, 3)];
      }, { promptTokens });
      profiles.forEach(printProfile);
    }
    promptTexts.push(await page.evaluate(() => window.lastPromptText));
    console.log(JSON.stringify({
      adapter: state.browserAdapter, backend: 'WebGPU (Chromium)', prompt_tokens: promptTokens, gen_tokens: genTokens,
      load_ms: state.loadMs, ttft_ms: median(runs, 'ttft_ms'), prefill_tok_s: median(runs, 'prefill_tok_s'), decode_tok_s: decode,
      gpu_bytes: state.gpuBytes, weight_bytes: weightBytes, read_bandwidth_gb_s: bandwidth / 1e9,
      roofline_fraction: (weightBytes * decode) / bandwidth, repeats,
      cold_load_ms: cold.ms, warm_load_ms: warm.ms, warm_first_token_ms: firstToken.ms, first_token_backend: firstToken.backend, wasm_heap_bytes: Math.max(cold.heap, warm.heap), ...sizes,
    }));
  }
  const threads = Number(arg('--threads', 2));
  const promptIds = [];
  for (const t of promptTexts) promptIds.push(Array.from(await page.evaluate((t) => window.engine.encode(t, false), t)));
  const cpu = await hearthCpu(promptIds, threads);
  cpu.rows.forEach((runs, i) => {
    const decode = median(runs, 'decode_tok_s');
    console.log(JSON.stringify({
      adapter: `wasm CPU, ${cpu.threads} threads (simd128)`, backend: 'CPU (Chromium)', engine_backend: 'cpu',
      prompt_tokens: promptLengths[i], gen_tokens: genTokens, load_ms: cpu.loadMs, ttft_ms: median(runs, 'ttft_ms'),
      prefill_tok_s: median(runs, 'prefill_tok_s'), decode_tok_s: decode, memory_bytes: cpu.memoryBytes, weight_bytes: cpu.weightBytes, repeats,
    }));
  });
  if (!fs.existsSync(WLLAMA)) {
    console.error(`no wllama at ${WLLAMA}: bench/run.sh installs it`);
  } else {
    const w = await wllama(promptTexts, threads);
    w.rows.forEach((runs, i) => {
      const med = (key) => median(runs, key);
      console.log(JSON.stringify({
        system: 'wllama', adapter: `wasm CPU, ${threads} threads${w.multiThread ? '' : ' (single-thread build!)'}`,
        prompt_tokens: runs[0].prompt_n, gen_tokens: runs[0].predicted_n, load_ms: w.loadMs,
        ttft_ms: med('prompt_ms'), prefill_tok_s: med('prompt_per_second'), decode_tok_s: med('predicted_per_second'), repeats,
      }));
    });
  }
} finally {
  await session.close();
}
