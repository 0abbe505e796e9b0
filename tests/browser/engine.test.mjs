// The whole engine in the browser (wasm + WebGPU, SwiftShader where there is
// no GPU; and the wasm CPU backend) against the exact float64 reference of
// the default model, case by case (lib/fixture-case.mjs says what is
// compared and with which thresholds), and its API's behaviour.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSession, requireWebGPU, IN_CI } from './harness.mjs';
import { checkCase, missingReference as missing, referenceCases as cases } from './lib/fixture-case.mjs';

// Greedy tokens generated per case: SwiftShader decodes a few tokens a second.
const GEN_TOKENS = Number(process.env.HEARTH_BROWSER_GEN_TOKENS ?? 16);

let session;
let page;
let ready = false;
before(async () => {
  if (missing.length) return;
  session = await startSession();
  page = await session.open('test/engine.html?context=256');
});
after(() => session?.close());

/** False (test skipped, or failed under CI) when the model or the fixture is missing or there is no WebGPU. */
async function engineReady(t) {
  if (missing.length) {
    const reason = `missing ${missing.join(', ')} (scripts/fetch-model.sh, ../shared/fixtures)`;
    if (IN_CI) throw new Error(`CI=true but ${reason}`);
    t.skip(reason);
    return false;
  }
  if (!(await requireWebGPU(page, t))) return false;
  if (!ready) {
    await page.waitForFunction(() => window.engineState !== undefined, null, { timeout: 300_000 });
    const state = await page.evaluate(() => window.engineState);
    assert.ok(state.ok, `the engine did not load: ${state.message}`);
    t.diagnostic(`adapter: ${state.adapter.name || state.browserAdapter} (${state.adapter.backend}); ` +
      `fetch ${state.fetchMs.toFixed(0)} ms, load ${state.loadMs.toFixed(0)} ms, GPU memory ${(state.gpuBytes / 2 ** 20).toFixed(1)} MiB`);
    ready = true;
  }
  return true;
}

for (const c of cases) {
  test(`${c.id}: tokens, chat text, logits and greedy output match the exact reference`, async (t) => {
    if (!(await engineReady(t))) return;
    await checkCase(t, page, c, GEN_TOKENS);
  });
}

test('the CPU backend in wasm, with its f16 KV cache, matches the exact reference on every case too', async (t) => {
  if (missing.length) {
    if (IN_CI) throw new Error(`CI=true but missing ${missing.join(', ')}`);
    return t.skip(`missing ${missing.join(', ')}`);
  }
  const cpuPage = await session.open('test/engine.html?context=256&backend=cpu');
  await cpuPage.waitForFunction(() => window.engineState !== undefined, null, { timeout: 300_000 });
  const state = await cpuPage.evaluate(() => window.engineState);
  assert.ok(state.ok, `the engine did not load: ${state.message}`);
  t.diagnostic(`${state.adapter.name}; KV cache ${state.adapter.kv_cache}; memory ${(state.gpuBytes / 2 ** 20).toFixed(1)} MiB`);
  assert.deepEqual([state.adapter.backend, state.adapter.kv_cache], ['cpu', 'f16']);
  for (const c of cases) await checkCase(t, cpuPage, c, GEN_TOKENS);
  await cpuPage.close();
});

test('bad requests reject with an Error that says what is wrong, and the engine still works', async (t) => {
  if (!(await engineReady(t))) return;
  const story = cases.find((c) => c.id === 'raw_story') ?? cases[0];
  const got = await page.evaluate(async ({ promptIds }) => {
    const engine = window.engine;
    const prompt = new Uint32Array(promptIds);
    const failure = async (promise) => {
      try {
        await promise;
        return 'resolved';
      } catch (e) {
        return e instanceof Error ? e.message : `non-Error: ${e}`;
      }
    };
    const temperature = await failure(engine.generate(prompt, { max_tokens: 4, sampler: { temperature: -1 } }, () => {}));
    const maxTokens = await failure(engine.generate(prompt, { max_tokens: 0 }, () => {}));
    const misspelt = await failure(engine.generate(prompt, { maxTokens: 4 }, () => {}));
    const emptyPrompt = await failure(engine.generate(new Uint32Array(0), { max_tokens: 4 }, () => {}));
    const badToken = await failure(engine.forwardLogits(new Uint32Array([10_000_000])));
    let sync;
    try {
      engine.renderChat([{ role: 'user' }]);
      sync = 'returned';
    } catch (e) {
      sync = e instanceof Error ? e.message : `non-Error: ${e}`;
    }
    // A second call while one runs is refused, not a panic.
    engine.reset();
    const running = engine.generate(prompt, { max_tokens: 2, ignore_eos: true }, () => {});
    const busy = await failure(engine.forwardLogits(prompt));
    await running;
    // onText throwing rejects the call with what it threw.
    const thrown = await failure(engine.generate(prompt, { max_tokens: 2 }, () => { throw new Error('from onText'); }));
    // Still works: greedy tokens after all that.
    engine.reset();
    const after = await engine.generate(prompt, { max_tokens: 2, ignore_eos: true }, () => {});
    return { temperature, maxTokens, misspelt, emptyPrompt, badToken, sync, busy, thrown, ids: after.ids };
  }, { promptIds: story.prompt_ids });
  t.diagnostic(JSON.stringify(got));
  assert.match(got.temperature, /temperature must be >= 0, got -1/);
  assert.match(got.maxTokens, /max_tokens must be at least 1/);
  assert.match(got.misspelt, /unknown request field\(s\) maxTokens/);
  assert.match(got.emptyPrompt, /prompt is empty/);
  assert.match(got.badToken, /outside the vocabulary/);
  assert.match(got.sync, /messages.*missing field `content`/);
  assert.match(got.busy, /busy/);
  assert.equal(got.thrown, 'from onText');
  assert.deepEqual(got.ids, story.generated_ids.slice(0, 2));
});

test('a prompt extending the cached one computes only its new tokens', async (t) => {
  if (!(await engineReady(t))) return;
  const story = cases.find((c) => c.id === 'raw_story') ?? cases[0];
  const got = await page.evaluate(async ({ promptIds }) => {
    const engine = window.engine;
    engine.reset();
    const first = await engine.generate(new Uint32Array(promptIds), { max_tokens: 2, ignore_eos: true }, null);
    const next = [...promptIds, ...first.ids];
    const second = await engine.generate(new Uint32Array(next), { max_tokens: 2, ignore_eos: true }, null);
    return { first: first.ids, second: second.ids, reused: second.reused_tokens, prefill: second.timings.prefill_tokens };
  }, { promptIds: story.prompt_ids });
  // The cache holds the prompt and the first generated token (the last one was never run).
  assert.equal(got.reused, story.prompt_ids.length + 1);
  assert.equal(got.prefill, 1);
  assert.deepEqual([...got.first, ...got.second], story.generated_ids.slice(0, 4));
});

test('seeded sampling runs in the browser and repeats itself', async (t) => {
  if (!(await engineReady(t))) return;
  const story = cases.find((c) => c.id === 'raw_story') ?? cases[0];
  const got = await page.evaluate(async ({ promptIds }) => {
    const engine = window.engine;
    const request = { max_tokens: 3, ignore_eos: true, sampler: { temperature: 0.9, top_p: 0.95, repetition_penalty: 1.1, seed: 7 } };
    const run = async () => { engine.reset(); return (await engine.generate(new Uint32Array(promptIds), request, null)).ids; };
    return [await run(), await run()];
  }, { promptIds: story.prompt_ids });
  t.diagnostic(`sampled ids: ${JSON.stringify(got[0])}`);
  assert.equal(got[0].length, 3);
  assert.deepEqual(got[1], got[0]);
});

test('profileStep times every kernel of a decode step and a prompt chunk, then the engine works as before', async (t) => {
  if (!(await engineReady(t))) return;
  const story = cases.find((c) => c.id === 'raw_story') ?? cases[0];
  const got = await page.evaluate(async ({ promptIds }) => {
    const engine = window.engine;
    const decode = await engine.profileStep(16, 1, 2);
    const prefill = await engine.profileStep(0, 8, 1);
    const refused = await engine.profileStep(0, 100_000, 1).then(() => 'resolved', (e) => `${e instanceof Error}: ${e.message}`);
    const floor = await (await window.hearth.Gpu.create()).dispatchFloor(20, 2);
    // profileStep forgets the conversation: a fresh prompt gives the fresh answer.
    const ids = (await engine.generate(new Uint32Array(promptIds), { max_tokens: 2, ignore_eos: true }, null)).ids;
    return { decode, prefill, refused, floor, ids, layers: engine.config().n_layers };
  }, { promptIds: story.prompt_ids });
  const line = (p) => p.kernels.map((k) => `${k.kernel} ${k.dispatches}× ${Math.round(k.us_per_token)} µs`).join(', ');
  t.diagnostic(`decode step ${Math.round(got.decode.step_us)} µs: ${line(got.decode)}`);
  t.diagnostic(`dispatch floor ${got.floor.wall_us.toFixed(1)} µs`);
  const count = (p, name) => p.kernels.find((k) => k.kernel === name)?.dispatches ?? 0;
  assert.equal(got.decode.tokens, 1);
  assert.deepEqual([count(got.decode, 'Attention'), count(got.decode, 'Argmax')], [got.layers, 1], line(got.decode));
  assert.equal(got.prefill.tokens, 8);
  assert.equal(count(got.prefill, 'Argmax'), 0, line(got.prefill)); // a chunk has no head
  for (const p of [got.decode, got.prefill]) {
    assert.ok(p.step_us > 0 && p.kernels.every((k) => k.us_per_token > 0), line(p));
    assert.equal(p.gpu_step_us, null); // WebGPU has no timestamps inside passes
  }
  assert.match(got.refused, /^true: .*max_batch/);
  assert.equal(got.floor.dispatches, 20);
  assert.ok(got.floor.wall_us > 0 && got.floor.gpu_us === null, JSON.stringify(got.floor));
  assert.deepEqual(got.ids, story.generated_ids.slice(0, 2));
});
