// The npm package (web/dist, served at /hearth/) in headless Chromium with
// the default model package: load progress, greedy output equal to the
// native engine's, streaming, aborts with KV-cache reuse on the next turn,
// the request queue, typed validation errors, unload, and a second page
// that loads everything from the Cache API with the model host blocked,
// in-thread this time (the first load runs in the module worker).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSession, requireWebGPU } from './harness.mjs';
import { MODEL_PATH, missingPrerequisites, prerequisitesMet, nativeGenerate, rawStoryCase } from './lib/package-fixtures.mjs';

const missing = missingPrerequisites({ cli: true });
const CHAT = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is the capital of France?' }];

let session;
let context;
let page;
let native;
before(async () => {
  if (missing.length) return;
  session = await startSession();
  // One browser context for the whole file: the Cache API is per context.
  context = await session.browser.newContext();
  page = await session.open('test/package.html', context);
  await page.waitForFunction(() => window.hearthReady !== undefined);
  assert.equal(await page.evaluate(() => window.hearthReady), true, 'the package imports');
  const story = rawStoryCase();
  native = {
    story,
    completion: nativeGenerate(['-p', story.prompt_text, '--max-tokens', '8']),
    chat: nativeGenerate(['--chat', '--system', CHAT[0].content, '-p', CHAT[1].content, '--max-tokens', '12']),
  };
});
after(() => session?.close());

let loaded = false;
/** False (skipped) without prerequisites or WebGPU; the first call loads the engine in the worker. */
async function ready(t) {
  if (!prerequisitesMet(t, missing)) return false;
  if (!(await requireWebGPU(page, t))) return false;
  return loaded;
}

test('createEngine loads in a module worker, with progress events up to loaded == total', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const got = await page.evaluate(async (model) => {
    const events = [];
    const start = performance.now();
    window.engine = await hearth.createEngine({ model, backend: 'webgpu', context: 256, onProgress: (p) => events.push(p) });
    const resources = performance.getEntriesByType('resource').map((e) => e.name);
    return { events, info: window.engine.info, ms: performance.now() - start, resources };
  }, MODEL_PATH.slice(0, -1)); // no trailing slash: it is optional
  const { events, info } = got;
  t.diagnostic(`loaded in ${got.ms.toFixed(0)} ms with ${events.length} progress events; ${JSON.stringify(info.adapter.browser)}; GPU ${(info.gpuBytes / 2 ** 20).toFixed(1)} MiB`);
  assert.equal(events[0].phase, 'manifest');
  const last = events.at(-1);
  assert.equal(last.phase, 'ready');
  assert.ok(last.totalBytes > 90e6, `totalBytes ${last.totalBytes}`);
  assert.equal(last.loadedBytes, last.totalBytes, 'the last event has every byte loaded');
  assert.equal(last.shardsDone, last.shardsTotal);
  assert.equal(last.cachedBytes, 0, 'a fresh browser context has nothing cached');
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i].loadedBytes >= events[i - 1].loadedBytes, `loadedBytes went back at event ${i}`);
    assert.ok(events[i].shardsDone >= events[i - 1].shardsDone);
  }
  const phases = new Set(events.map((e) => e.phase));
  for (const phase of ['manifest', 'download', 'upload', 'ready']) assert.ok(phases.has(phase), `no ${phase} event`);
  assert.ok(events.some((e) => e.phase === 'upload' && /^model-\d{5}-of-\d{5}\.safetensors$/.test(e.file)), 'upload events name the shard');
  assert.ok(events.length < 200, `progress is throttled (${events.length} events)`);
  assert.equal(info.context, 256);
  assert.ok(info.url.endsWith(MODEL_PATH), info.url);
  assert.equal(info.quantization, 'q4_1');
  assert.ok(info.gpuBytes > 50e6);
  assert.ok(info.model.length > 0);
  // The engine is in the worker: the page itself never fetched the wasm binary.
  assert.ok(got.resources.some((r) => r.endsWith('/hearth/worker.js')), 'the page started the worker');
  assert.ok(!got.resources.some((r) => r.endsWith('.wasm')), 'the wasm was not loaded into the page');
  loaded = true;
});

test('completions: greedy text equals the native engine\'s; streamed chunks give the same text', { timeout: 180_000 }, async (t) => {
  if (!(await ready(t))) return;
  const { story, completion } = native;
  assert.deepEqual(completion.ids, story.generated_ids.slice(0, 8), 'native greedy ids equal the exact reference');
  const got = await page.evaluate(async (prompt) => {
    const request = { prompt, max_tokens: 8, temperature: 0 };
    const whole = await engine.completions.create(request);
    const chunks = [];
    for await (const chunk of await engine.completions.create({ ...request, stream: true })) chunks.push(chunk);
    return { whole, chunks, stats: engine.stats() };
  }, story.prompt_text);
  const { whole, chunks } = got;
  t.diagnostic(`text ${JSON.stringify(whole.choices[0].text)}; stream stats ${JSON.stringify(got.stats)}`);
  assert.equal(whole.object, 'text_completion');
  assert.match(whole.id, /^cmpl-/);
  assert.equal(whole.choices[0].text, completion.text);
  assert.equal(whole.choices[0].finish_reason, 'length');
  assert.deepEqual(whole.usage, { prompt_tokens: story.prompt_ids.length, completion_tokens: 8, total_tokens: story.prompt_ids.length + 8, prompt_tokens_details: { cached_tokens: 0 } });
  // Streamed: same text; only the last chunk has finish_reason and usage.
  assert.ok(chunks.length >= 3);
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), completion.text);
  assert.ok(chunks.every((c) => c.object === 'text_completion' && c.id === chunks[0].id));
  assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null && c.usage === undefined));
  const last = chunks.at(-1);
  assert.equal(last.choices[0].finish_reason, 'length');
  // The same prompt again: all but its last token come from the KV cache.
  assert.equal(last.usage.prompt_tokens_details.cached_tokens, story.prompt_ids.length - 1);
  assert.equal(got.stats.cached_tokens, story.prompt_ids.length - 1);
  assert.equal(got.stats.completion_tokens, 8);
});

test('chat.completions: greedy reply equals the native engine\'s; streaming gives the same text', { timeout: 180_000 }, async (t) => {
  if (!(await ready(t))) return;
  const got = await page.evaluate(async (messages) => {
    const request = { messages, max_tokens: 12, temperature: 0, model: 'ignored', user: 'ignored' };
    const whole = await engine.chat.completions.create(request);
    const chunks = [];
    for await (const chunk of await engine.chat.completions.create({ ...request, stream: true })) chunks.push(chunk);
    return { whole, chunks };
  }, CHAT);
  const { whole, chunks } = got;
  const reply = whole.choices[0].message;
  t.diagnostic(`reply ${JSON.stringify(reply.content)} (${whole.usage.completion_tokens} tokens, ${whole.choices[0].finish_reason})`);
  assert.equal(whole.object, 'chat.completion');
  assert.match(whole.id, /^chatcmpl-/);
  assert.equal(typeof whole.created, 'number');
  assert.equal(whole.model, (await page.evaluate(() => engine.info.model)));
  assert.deepEqual(reply, { role: 'assistant', content: native.chat.text });
  assert.equal(whole.choices[0].finish_reason, native.chat.finish_reason);
  assert.equal(whole.usage.prompt_tokens, native.chat.prompt_ids.length);
  assert.equal(whole.usage.completion_tokens, native.chat.ids.length);
  // Streaming: the first chunk has the role, the content deltas make the same text.
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), reply.content);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices[0].delta, {});
  assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
  assert.equal(last.usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(last.usage.prompt_tokens_details.cached_tokens, whole.usage.prompt_tokens - 1);
});

test('abort mid-stream (AbortSignal, then engine.interrupt()) ends with finish_reason abort; the next turn reuses the KV cache', { timeout: 240_000 }, async (t) => {
  if (!(await ready(t))) return;
  const turns = await page.evaluate(async () => {
    /** Streams `request`; calls `act` once `n` non-empty content deltas have arrived. */
    const streamUntil = async (request, n, act) => {
      let text = '';
      let pieces = 0;
      let last;
      for await (const chunk of await engine.chat.completions.create({ ...request, stream: true })) {
        const piece = chunk.choices[0].delta.content ?? '';
        text += piece;
        if (piece && ++pieces === n) act();
        last = chunk;
      }
      return { text, finish_reason: last.choices[0].finish_reason, usage: last.usage, stats: engine.stats() };
    };
    const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Write a poem about the sea.' }];
    const controller = new AbortController();
    const first = await streamUntil({ messages, max_tokens: 16, temperature: 0, signal: controller.signal }, 2, () => controller.abort());
    messages.push({ role: 'assistant', content: first.text }, { role: 'user', content: 'Make it rhyme.' });
    const second = await streamUntil({ messages, max_tokens: 16, temperature: 0 }, 1, () => engine.interrupt());
    messages.push({ role: 'assistant', content: second.text }, { role: 'user', content: 'Thanks.' });
    const third = await engine.chat.completions.create({ messages, max_tokens: 2, temperature: 0 });
    return [first, second, { text: third.choices[0].message.content, finish_reason: third.choices[0].finish_reason, usage: third.usage, stats: engine.stats() }];
  });
  turns.forEach((turn, i) => t.diagnostic(`turn ${i + 1}: ${turn.finish_reason}, ${JSON.stringify(turn.text)}, ${JSON.stringify(turn.usage)}`));
  const [first, second, third] = turns;
  assert.equal(first.finish_reason, 'abort');
  assert.ok(first.usage.completion_tokens >= 2 && first.usage.completion_tokens < 16, `aborted after ${first.usage.completion_tokens} tokens`);
  assert.equal(second.finish_reason, 'abort');
  assert.ok(second.usage.completion_tokens >= 1 && second.usage.completion_tokens < 16);
  assert.ok(['length', 'stop'].includes(third.finish_reason), 'the engine still works after two aborts');
  for (const [prev, next] of [[first, second], [second, third]]) {
    const cached = next.usage.prompt_tokens_details.cached_tokens;
    assert.ok(cached >= prev.usage.prompt_tokens, `cached_tokens ${cached} < the previous prompt's ${prev.usage.prompt_tokens} tokens`);
    // Only the new turn's tokens are computed: what follows the previous prompt and its reply.
    const newTokens = next.usage.prompt_tokens - (prev.usage.prompt_tokens + prev.usage.completion_tokens);
    const prefilled = next.usage.prompt_tokens - cached;
    assert.ok(prefilled <= newTokens + 2, `prefilled ${prefilled} tokens, the new turn has ${newTokens}`);
    assert.equal(next.stats.cached_tokens, cached);
  }
});

test('requests run one at a time in order; a request aborted while queued ends at once with abort', { timeout: 180_000 }, async (t) => {
  if (!(await ready(t))) return;
  const got = await page.evaluate(async () => {
    const order = [];
    const done = (name) => (r) => (order.push(name), r);
    const controller = new AbortController();
    const a = engine.completions.create({ prompt: 'The sky is', max_tokens: 2, temperature: 0 }).then(done('a'));
    const b = engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, signal: controller.signal }).then(done('b'));
    const c = engine.completions.create({ prompt: 'The sky is blue', max_tokens: 1, temperature: 0 }).then(done('c'));
    controller.abort();
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    return { order, a: ra.usage, b: { finish: rb.choices[0].finish_reason, content: rb.choices[0].message.content, usage: rb.usage }, c: rc.usage };
  });
  t.diagnostic(JSON.stringify(got));
  assert.deepEqual(got.order, ['a', 'b', 'c']);
  assert.deepEqual([got.b.finish, got.b.content, got.b.usage.completion_tokens], ['abort', '', 0]);
  assert.equal(got.a.completion_tokens, 2);
  assert.equal(got.c.completion_tokens, 1);
  assert.ok(got.c.prompt_tokens_details.cached_tokens >= got.a.prompt_tokens, 'c extends a\'s prompt: b did not run in between');
});

test('invalid requests reject with typed errors before anything runs', { timeout: 60_000 }, async (t) => {
  if (!(await ready(t))) return;
  const got = await page.evaluate(async () => {
    const user = [{ role: 'user', content: 'Hi' }];
    const before = engine.stats();
    const attempts = {
      unknownField: () => engine.chat.completions.create({ messages: user, maxTokens: 4 }),
      temperature: () => engine.chat.completions.create({ messages: user, temperature: -1, stream: true }),
      topP: () => engine.completions.create({ prompt: 'x', top_p: 0 }),
      maxTokens: () => engine.completions.create({ prompt: 'x', max_tokens: 0 }),
      emptyStop: () => engine.chat.completions.create({ messages: user, stop: ['\n', ''] }),
      n: () => engine.chat.completions.create({ messages: user, n: 2 }),
      content: () => engine.chat.completions.create({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }] }),
      role: () => engine.chat.completions.create({ messages: [{ role: 'robot', content: 'Hi' }] }),
      promptArray: () => engine.completions.create({ prompt: ['a', 'b'] }),
      option: () => hearth.createEngine({ model: '/models/x/', contxt: 64 }),
      contextFull: () => engine.completions.create({ prompt: 'word '.repeat(400), max_tokens: 1 }),
    };
    const out = {};
    for (const [name, attempt] of Object.entries(attempts)) {
      const start = performance.now();
      try {
        await attempt();
        out[name] = 'resolved';
      } catch (e) {
        out[name] = { instance: e instanceof hearth.HearthError, guard: hearth.isHearthError(e), name: e.name, code: e.code, param: e.param, message: e.message, ms: performance.now() - start };
      }
    }
    // A synchronous throw would escape .catch(): create() must return a rejected promise.
    let sync = 'no throw';
    try {
      engine.completions.create({ prompt: 1 }).catch(() => {});
    } catch {
      sync = 'threw';
    }
    return { out, sync, unchanged: JSON.stringify(before) === JSON.stringify(engine.stats()) };
  });
  const expect = {
    unknownField: ['maxTokens', /unknown field\(s\) maxTokens/],
    temperature: ['temperature', /temperature must be a number >= 0, got -1/],
    topP: ['top_p', /top_p/],
    maxTokens: ['max_tokens', /max_tokens/],
    emptyStop: ['stop', /must not be empty/],
    n: ['n', /n must be 1/],
    content: ['messages[0].content', /must be a string/],
    role: ['messages[0].role', /"system", "user" or "assistant"/],
    promptArray: ['prompt', /an array/],
    option: ['contxt', /unknown option\(s\) contxt/],
  };
  for (const [name, [param, re]] of Object.entries(expect)) {
    const e = got.out[name];
    assert.notEqual(e, 'resolved', `${name} resolved`);
    assert.deepEqual([e.instance, e.guard, e.name, e.code, e.param], [true, true, 'HearthError', 'invalid_request', param], `${name}: ${JSON.stringify(e)}`);
    assert.match(e.message, re);
    assert.ok(e.ms < 500, `${name} took ${e.ms} ms: did it run something?`);
  }
  // Too long for the context: refused by the host, as a typed error rebuilt from the worker.
  assert.deepEqual([got.out.contextFull.instance, got.out.contextFull.code], [true, 'context_full'], JSON.stringify(got.out.contextFull));
  assert.match(got.out.contextFull.message, /the context holds 256/);
  assert.equal(got.sync, 'no throw');
  assert.ok(got.unchanged, 'stats() unchanged: no request ran');
});

test('a second page in the same browser context loads every file from the cache with the model host blocked (in-thread engine)', { timeout: 180_000 }, async (t) => {
  if (!(await ready(t))) return;
  const blocked = [];
  await context.route('**/models/**', (route) => {
    blocked.push(route.request().url());
    return route.abort('internetdisconnected');
  });
  try {
    const second = await session.open('test/package.html', context);
    await second.waitForFunction(() => window.hearthReady !== undefined);
    const got = await second.evaluate(async (model) => {
      const listed = await hearth.listCachedModels();
      const cached = await hearth.hasModelInCache(model);
      const events = [];
      const engine = await hearth.createEngine({ model, backend: 'webgpu', worker: false, context: 128, onProgress: (p) => events.push(p) });
      const reply = await engine.completions.create({ prompt: 'The sky is', max_tokens: 2, temperature: 0 });
      const resources = performance.getEntriesByType('resource').map((e) => e.name);
      await engine.unload();
      let afterUnload;
      try {
        await engine.completions.create({ prompt: 'x', max_tokens: 1 });
      } catch (e) {
        afterUnload = e.code;
      }
      return { listed, cached, last: events.at(-1), info: engine.info, reply, resources, afterUnload };
    }, MODEL_PATH);
    t.diagnostic(`blocked requests: ${blocked.map((u) => u.split('/').pop()).join(', ')}; reply ${JSON.stringify(got.reply.choices[0].text)}`);
    assert.deepEqual(got.listed.map(({ name, shards, cachedShards, complete }) => ({ name, shards, cachedShards, complete })),
      [{ name: got.info.model, shards: got.last.shardsTotal, cachedShards: got.last.shardsTotal, complete: true }]);
    assert.equal(got.listed[0].bytes, got.last.totalBytes);
    assert.ok(got.cached, 'hasModelInCache');
    assert.equal(got.last.phase, 'ready');
    assert.equal(got.last.cachedBytes, got.last.totalBytes, 'every byte came from the cache');
    assert.equal(got.info.cachedBytes, got.last.totalBytes);
    // The only request to the model host was the manifest's (network first), and it failed.
    assert.deepEqual(blocked.map((u) => u.split('/').pop()), ['manifest.json']);
    assert.equal(got.reply.usage.completion_tokens, 2);
    assert.ok(got.resources.some((r) => r.endsWith('/hearth/wasm/hearth_llm_bg.wasm')), 'in-thread: the page loaded the wasm itself');
    assert.ok(!got.resources.some((r) => r.endsWith('/hearth/worker.js')), 'in-thread: no worker');
    assert.equal(got.afterUnload, 'unloaded');
    await second.close();
  } finally {
    await context.unroute('**/models/**');
  }
});

test('unload ends the running request with abort and rejects queued ones; the cache entry can be deleted', { timeout: 120_000 }, async (t) => {
  if (!(await ready(t))) return;
  const got = await page.evaluate(async (model) => {
    const stream = await engine.completions.create({ prompt: 'Once upon a time', max_tokens: 16, temperature: 0, stream: true });
    const queued = engine.completions.create({ prompt: 'x', max_tokens: 1 }).then(() => 'resolved', (e) => e.code);
    let unloading;
    let last;
    for await (const chunk of stream) {
      if (chunk.choices[0].text && !unloading) unloading = engine.unload();
      last = chunk;
    }
    await unloading;
    const later = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }] }).then(() => 'resolved', (e) => e.code);
    const deleted = await hearth.deleteModelFromCache(model);
    return { finish: last.choices[0].finish_reason, queued: await queued, later, deleted, cached: await hearth.hasModelInCache(model), listed: await hearth.listCachedModels() };
  }, MODEL_PATH);
  assert.deepEqual(got, { finish: 'abort', queued: 'unloaded', later: 'unloaded', deleted: true, cached: false, listed: [] });
});
