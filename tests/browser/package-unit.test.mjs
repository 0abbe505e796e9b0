// Unit tests of the npm package's pure logic, in Node (no browser): request
// validation and mapping, the retry/backoff schedule, manifest checks, URL
// resolution, errors crossing the worker boundary, progress bookkeeping,
// the chunk stream, and the loader driven by a fake fetch and a fake wasm
// loader. They import the built package (web/dist: web/tools/build-package.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.join(REPO, 'web', 'dist');
if (!fs.existsSync(path.join(DIST, 'index.js'))) {
  throw new Error('web/dist/index.js is missing: run web/tools/build-package.sh (after scripts/build.sh built web/pkg)');
}
const pkg = (file) => import(path.join(DIST, file));
const { validateChatRequest, validateCompletionRequest, resolveSampler, effectiveMaxTokens, chatChunk, textCompletion, firstFitting, replyReserve } = await pkg('openai.js');
const { backoffDelay, isRetryableStatus, downloadWithRetry, DEFAULT_RETRY } = await pkg('fetch.js');
const { validateManifest, packageBaseUrl, packageFileUrl } = await pkg('manifest.js');
const { HearthError, isHearthError, toHearthError, serializeError, deserializeError } = await pkg('errors.js');
const { ProgressTracker } = await pkg('progress.js');
const { ChunkStream } = await pkg('stream.js');
const { loadModel, sha256Hex } = await pkg('loader.js');
const { hostLoadOptions } = await pkg('engine.js');
const { withinTime, TIMED_OUT } = await pkg('deadline.js');

/** Asserts that `fn` throws (or rejects with) a HearthError of `code`, and returns it. */
async function rejects(fn, code, messageRe) {
  let error;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error, `expected a ${code} error, nothing was thrown`);
  assert.ok(isHearthError(error), `expected a HearthError, got ${error}`);
  assert.equal(error.code, code, error.message);
  if (messageRe) assert.match(error.message, messageRe);
  return error;
}

const user = (content) => ({ role: 'user', content });

test('withinTime: the value in time, TIMED_OUT after the bound, a rejection as it is', async () => {
  const later = (ms, value) => new Promise((resolve) => setTimeout(() => resolve(value), ms));
  assert.equal(await withinTime(later(5, 'early'), 500), 'early');
  assert.equal(await withinTime(later(500, 'late'), 20), TIMED_OUT);
  assert.equal(await withinTime(new Promise(() => {}), 20), TIMED_OUT);
  await assert.rejects(withinTime(Promise.reject(new Error('broken')), 500), /broken/);
});

test('chat requests map to a job: sampler fields only when given, stop as a list, model/user ignored', () => {
  const { job, stream, signal } = validateChatRequest({
    messages: [{ role: 'system', content: 'Be brief.' }, user('Hi')],
    model: 'anything', user: 'u1', max_tokens: 8, temperature: 0, top_k: 40, stop: '\n', seed: 3,
  });
  assert.equal(stream, false);
  assert.equal(signal, undefined);
  assert.deepEqual(job, {
    kind: 'chat',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }],
    maxTokens: 8,
    sampler: { temperature: 0, top_k: 40, seed: 3 },
    stop: ['\n'],
    truncation: 'disabled',
  });
  assert.equal(validateChatRequest({ messages: [user('x')], truncation: 'auto' }).job.truncation, 'auto');
  const controller = new AbortController();
  const streamed = validateChatRequest({ messages: [user('x')], stream: true, stop: ['a', 'b'], signal: controller.signal, n: 1, max_tokens: null });
  assert.equal(streamed.stream, true);
  assert.equal(streamed.signal, controller.signal);
  assert.deepEqual(streamed.job.stop, ['a', 'b']);
  assert.equal(streamed.job.maxTokens, undefined);
});

test('invalid chat requests are typed invalid_request errors naming the field', async () => {
  const ok = { messages: [user('Hi')] };
  const cases = [
    [{ ...ok, maxTokens: 4 }, 'maxTokens', /unknown field\(s\) maxTokens/],
    [{ ...ok, temperature: -0.1 }, 'temperature', /temperature must be a number >= 0/],
    [{ ...ok, temperature: 'hot' }, 'temperature', /temperature/],
    [{ ...ok, top_p: 0 }, 'top_p', /in \(0, 1\]/],
    [{ ...ok, top_p: 1.5 }, 'top_p', /in \(0, 1\]/],
    [{ ...ok, max_tokens: 0 }, 'max_tokens', />= 1/],
    [{ ...ok, max_tokens: 2.5 }, 'max_tokens', /integer/],
    [{ ...ok, stop: '' }, 'stop', /must not be empty/],
    [{ ...ok, stop: ['x', ''] }, 'stop', /must not be empty/],
    [{ ...ok, stop: [1] }, 'stop', /string or an array of strings/],
    [{ ...ok, n: 2 }, 'n', /n must be 1/],
    [{ ...ok, top_k: -1 }, 'top_k', />= 0/],
    [{ ...ok, min_p: 2 }, 'min_p', /\[0, 1\]/],
    [{ ...ok, repetition_penalty: 0 }, 'repetition_penalty', /> 0/],
    [{ ...ok, presence_penalty: 3 }, 'presence_penalty', /\[-2, 2\]/],
    [{ ...ok, frequency_penalty: -2.5 }, 'frequency_penalty', /\[-2, 2\]/],
    [{ ...ok, seed: -1 }, 'seed', />= 0/],
    [{ ...ok, stream: 'yes' }, 'stream', /boolean/],
    [{ ...ok, signal: {} }, 'signal', /AbortSignal/],
    [{ messages: [] }, 'messages', /non-empty array/],
    [{ messages: 'Hi' }, 'messages', /non-empty array/],
    [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role', /"system", "user" or "assistant"/],
    [{ messages: [user('a'), { role: 'user', content: [{ type: 'text', text: 'x' }] }] }, 'messages[1].content', /must be a string, got object/],
    [{ messages: [{ role: 'user', content: null }] }, 'messages[0].content', /got null/],
    [{ messages: [{ role: 'user', content: 'x', images: [] }] }, 'messages[0]', /unknown field\(s\) images/],
  ];
  for (const [request, param, re] of cases) {
    const e = await rejects(() => validateChatRequest(request), 'invalid_request', re);
    assert.equal(e.param, param, `${JSON.stringify(request)}: ${e.message}`);
  }
  await rejects(() => validateChatRequest(null), 'invalid_request', /must be an object/);
});

test('completion requests need a non-empty string prompt', async () => {
  const { job } = validateCompletionRequest({ prompt: 'Once', max_tokens: 4, temperature: 0 });
  assert.deepEqual(job, { kind: 'completion', prompt: 'Once', maxTokens: 4, sampler: { temperature: 0 }, stop: [], truncation: 'disabled' });
  await rejects(() => validateCompletionRequest({ prompt: ['a'] }), 'invalid_request', /prompt must be a non-empty string, got an array/);
  await rejects(() => validateCompletionRequest({ prompt: '' }), 'invalid_request', /prompt/);
  await rejects(() => validateCompletionRequest({ prompt: 'x', messages: [] }), 'invalid_request', /unknown field\(s\) messages/);
});

test('sampler settings: request over model defaults, a random seed only when sampling', () => {
  const job = (sampler) => ({ kind: 'completion', prompt: 'x', sampler, stop: [] });
  const defaults = { temperature: 0.2, top_p: 0.9, min_p: 0.5 }; // min_p is not a generation default: ignored
  assert.deepEqual(resolveSampler(job({ top_k: 5 }), defaults, () => 0.5), { temperature: 0.2, top_p: 0.9, top_k: 5, seed: 2 ** 31 });
  assert.deepEqual(resolveSampler(job({ temperature: 0 }), defaults, () => 0.5), { temperature: 0, top_p: 0.9 });
  assert.deepEqual(resolveSampler(job({ temperature: 1, seed: 7 }), {}, () => 0.5), { temperature: 1, seed: 7 });
  assert.equal(effectiveMaxTokens(undefined, 10, 256), 246, 'default: until the context fills');
  assert.equal(effectiveMaxTokens(8, 10, 256), 8);
  assert.equal(effectiveMaxTokens(500, 10, 256), 246, 'capped by the room left');
  assert.equal(effectiveMaxTokens(undefined, 256, 256), 0);
});

test('response builders follow OpenAI shapes', () => {
  const meta = { id: 'chatcmpl-1', created: 1, model: 'm' };
  const outcome = { text: 'Hi', finishReason: 'length', promptTokens: 5, cachedTokens: 3, completionTokens: 2, timings: {} };
  assert.deepEqual(chatChunk(meta, { first: true, content: '' }).choices[0], { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
  const last = chatChunk(meta, { last: outcome });
  assert.deepEqual(last.choices[0].delta, {});
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.deepEqual(last.usage, { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7, prompt_tokens_details: { cached_tokens: 3 } });
  const text = textCompletion(meta, outcome);
  assert.equal(text.object, 'text_completion');
  assert.equal(text.choices[0].text, 'Hi');
});

test('backoff: 250, 500, 1000 ms by default, capped; 408/429/5xx are retried, 404 is not', () => {
  assert.deepEqual(DEFAULT_RETRY, { retries: 3, baseDelayMs: 250, maxDelayMs: 8000 });
  assert.deepEqual([0, 1, 2, 3].map((r) => backoffDelay(r)), [250, 500, 1000, 2000]);
  assert.equal(backoffDelay(10), 8000);
  assert.equal(backoffDelay(2, { baseDelayMs: 100, maxDelayMs: 300 }), 300);
  for (const s of [408, 429, 500, 502, 503, 599]) assert.ok(isRetryableStatus(s), String(s));
  for (const s of [200, 400, 401, 403, 404, 410]) assert.ok(!isRetryableStatus(s), String(s));
});

/** A fetch that answers from `script` in order (a Response, or an Error to throw), recording calls. */
function scriptedFetch(script) {
  const calls = [];
  const fetch = async (url) => {
    calls.push(url);
    const next = script.length > 1 ? script.shift() : script[0];
    if (next instanceof Error) throw next;
    return typeof next === 'function' ? next() : next.clone();
  };
  return { fetch, calls };
}
const fast = { retries: 3, baseDelayMs: 1, maxDelayMs: 5 };

test('downloads retry network errors and 5xx/429, then succeed', async () => {
  const { fetch, calls } = scriptedFetch([new TypeError('Failed to fetch'), new Response('busy', { status: 503 }), new Response('', { status: 429 }), new Response('hello')]);
  const retried = [];
  const { bytes } = await downloadWithRetry('https://h/m/a.bin', { fetch, retry: fast, onRetry: (e, n) => retried.push([e.status ?? 'net', n]) });
  assert.equal(new TextDecoder().decode(bytes), 'hello');
  assert.equal(calls.length, 4);
  assert.deepEqual(retried, [['net', 0], [503, 1], [429, 2]]);
});

test('downloads give up after the retries with a network error; 404 fails at once naming the URL', async () => {
  const failing = scriptedFetch([new Response('', { status: 500 })]);
  const e = await rejects(() => downloadWithRetry('https://h/m/a.bin', { fetch: failing.fetch, retry: fast }), 'network', /HTTP 500.*gave up after 4 attempts/);
  assert.equal(e.status, 500);
  assert.equal(e.url, 'https://h/m/a.bin');
  assert.equal(failing.calls.length, 4);

  const missing = scriptedFetch([new Response('', { status: 404 })]);
  const nf = await rejects(() => downloadWithRetry('https://h/m/b.bin', { fetch: missing.fetch, retry: fast }), 'not_found', /https:\/\/h\/m\/b\.bin: HTTP 404/);
  assert.equal(nf.url, 'https://h/m/b.bin');
  assert.equal(nf.status, 404);
  assert.equal(missing.calls.length, 1, '404 is not retried');

  const forbidden = scriptedFetch([new Response('', { status: 403 })]);
  await rejects(() => downloadWithRetry('https://h/m/c.bin', { fetch: forbidden.fetch, retry: fast }), 'network', /HTTP 403/);
  assert.equal(forbidden.calls.length, 1, '403 is not retried');
});

test('download bodies: read into one buffer of the expected size, whatever size actually arrives', async () => {
  const body = (chunks) => new Response(new ReadableStream({ start(c) { chunks.forEach((x) => c.enqueue(new Uint8Array(x))); c.close(); } }));
  const seen = [];
  for (const [expectedBytes, chunks] of [[6, [[1, 2], [3, 4], [5, 6]]], [4, [[1, 2], [3, 4], [5, 6]]], [8, [[1, 2], [3, 4], [5, 6]]], [undefined, [[1], [2, 3]]]]) {
    const { fetch } = scriptedFetch([() => body(chunks)]);
    const { bytes } = await downloadWithRetry('https://h/x', { fetch, expectedBytes, onBytes: (n) => seen.push(n) });
    assert.deepEqual([...bytes], chunks.flat(), `expected ${expectedBytes}`);
  }
  assert.deepEqual(seen, [2, 4, 6, 2, 4, 6, 2, 4, 6, 1, 3]);
});

test('a Retry-After header sets the delay before the next attempt (capped at maxDelayMs)', async () => {
  const { fetch } = scriptedFetch([new Response('', { status: 503, headers: { 'Retry-After': '1' } }), new Response('ok')]);
  const delays = [];
  await downloadWithRetry('https://h/x', { fetch, retry: { baseDelayMs: 1, maxDelayMs: 20 }, onRetry: (e, n, ms) => delays.push(ms) });
  assert.deepEqual(delays, [20]);
});

test('a download aborted between retries rejects with aborted', async () => {
  const controller = new AbortController();
  const { fetch } = scriptedFetch([new TypeError('offline')]);
  const pending = downloadWithRetry('https://h/x', { fetch, retry: { retries: 3, baseDelayMs: 10_000 }, signal: controller.signal });
  setTimeout(() => controller.abort(), 10);
  await rejects(() => pending, 'aborted');
});

// A small package: a tokenizer and three shards with real sha256 digests.
function fakePackage() {
  const files = {
    'tokenizer.json': Buffer.from('{"tokenizer": true}'),
    'model-00001-of-00003.safetensors': crypto.randomBytes(3000),
    'model-00002-of-00003.safetensors': crypto.randomBytes(2000),
    'model-00003-of-00003.safetensors': crypto.randomBytes(1000),
  };
  const entry = (file) => ({ file, bytes: files[file].length, sha256: crypto.createHash('sha256').update(files[file]).digest('hex') });
  const shards = Object.keys(files).slice(1).map(entry);
  const manifest = {
    format: 'hearth-model-package',
    format_version: 1,
    name: 'tiny',
    config: { architecture: 'llama', context_length: 64 },
    quantization: 'q4_1',
    tokenizer: { ...entry('tokenizer.json'), special: { bos: 1, eos: 2 } },
    chat_template: null,
    generation: {},
    tensors: shards.map((s, i) => ({ name: `t${i}`, dtype: 'F32', shape: [s.bytes / 4], shard: s.file, offset: 0, length: s.bytes })),
    shards,
    total_bytes: Object.values(files).reduce((n, b) => n + b.length, 0),
  };
  return { files, manifest };
}

test('manifest validation accepts a package and names what is wrong otherwise', async () => {
  const { manifest } = fakePackage();
  assert.equal(validateManifest(manifest), manifest);
  const real = path.join(REPO, 'models', 'SmolLM2-135M-Instruct-q4_1', 'manifest.json');
  if (fs.existsSync(real)) validateManifest(JSON.parse(fs.readFileSync(real, 'utf8')));
  const bad = (change, re) => {
    const m = structuredClone(manifest);
    change(m);
    return rejects(() => validateManifest(m), 'manifest', re);
  };
  await bad((m) => (m.format = 'gguf'), /"format" must be "hearth-model-package"/);
  await bad((m) => (m.format_version = 2), /format_version 2 is not supported/);
  await bad((m) => (m.shards[0].file = '../secret'), /"..\/secret" is not a plain file name/);
  await bad((m) => (m.shards[1].file = 'a/b.safetensors'), /not a plain file name/);
  await bad((m) => (m.shards[0].sha256 = 'ABC'), /sha256 "ABC" is not 64 lowercase hex digits/);
  await bad((m) => (m.total_bytes += 1), /total_bytes is \d+, the files listed add up to \d+/);
  await bad((m) => (m.shards[1].file = m.shards[0].file), /listed twice/);
  await bad((m) => (m.tensors[0].shard = 'other.safetensors'), /t0: shard "other.safetensors" is not listed/);
  await bad((m) => (m.shards = []), /"shards" must be a non-empty array/);
  await rejects(() => validateManifest([]), 'manifest', /not a JSON object/);
});

test('package URLs: trailing slash optional, manifest.json accepted, relative to the page', async () => {
  const hf = 'https://huggingface.co/me/model/resolve/main';
  assert.equal(packageBaseUrl(hf), `${hf}/`);
  assert.equal(packageBaseUrl(`${hf}/`), `${hf}/`);
  assert.equal(packageBaseUrl(`${hf}/manifest.json`), `${hf}/`);
  assert.equal(packageFileUrl(packageBaseUrl(hf), 'model-00001-of-00002.safetensors'), `${hf}/model-00001-of-00002.safetensors`);
  assert.equal(packageBaseUrl('/models/m', 'http://127.0.0.1:8080/app/index.html'), 'http://127.0.0.1:8080/models/m/');
  assert.equal(packageBaseUrl('models/m/', 'http://127.0.0.1:8080/app/index.html'), 'http://127.0.0.1:8080/app/models/m/');
  assert.equal(packageBaseUrl(new URL('https://h/m#x')), 'https://h/m/');
  await rejects(() => packageBaseUrl('/models/m'), 'invalid_request', /is not a URL/); // relative, no page
  // createEngine's option checks
  assert.deepEqual(hostLoadOptions({ model: 'https://h/m', context: 128 }), { baseUrl: 'https://h/m/', context: 128 });
  const { manifest } = fakePackage();
  assert.equal(hostLoadOptions({ model: manifest, baseUrl: 'https://h/m' }).manifest, manifest);
  await rejects(() => hostLoadOptions({ model: manifest }), 'invalid_request', /needs baseUrl/);
  await rejects(() => hostLoadOptions({ model: 'https://h/m', contxt: 128 }), 'invalid_request', /unknown option\(s\) contxt/);
  await rejects(() => hostLoadOptions({ model: 'https://h/m', context: 0 }), 'invalid_request', /context must be a positive integer/);
  // backend and threads: passed on when given (the host defaults to auto)
  assert.deepEqual(hostLoadOptions({ model: 'https://h/m', backend: 'cpu', threads: 3 }), { baseUrl: 'https://h/m/', backend: 'cpu', threads: 3 });
  for (const backend of ['auto', 'webgpu', 'cpu']) assert.equal(hostLoadOptions({ model: 'https://h/m', backend }).backend, backend);
  for (const backend of ['gpu', 'CPU', '', null, 1]) {
    const e = await rejects(() => hostLoadOptions({ model: 'https://h/m', backend }), 'invalid_request', /backend must be one of 'auto', 'webgpu', 'cpu'/);
    assert.equal(e.param, 'backend');
  }
  await rejects(() => hostLoadOptions({ model: 'https://h/m', threads: 0 }), 'invalid_request', /threads must be a positive integer/);
  await rejects(() => hostLoadOptions({ model: 'https://h/m', threads: 1.5 }), 'invalid_request', /threads must be a positive integer/);
  // kvCache: passed on when given (the engine defaults to auto)
  for (const kvCache of ['auto', 'f16', 'f32']) assert.equal(hostLoadOptions({ model: 'https://h/m', kvCache }).kvCache, kvCache);
  for (const kvCache of ['F16', 'fp16', '', null, 16]) {
    const e = await rejects(() => hostLoadOptions({ model: 'https://h/m', kvCache }), 'invalid_request', /kvCache must be one of 'auto', 'f16', 'f32'/);
    assert.equal(e.param, 'kvCache');
  }
  // chainedDecode: a boolean, passed on when given
  for (const chainedDecode of [true, false]) assert.equal(hostLoadOptions({ model: 'https://h/m', chainedDecode }).chainedDecode, chainedDecode);
  assert.equal('chainedDecode' in hostLoadOptions({ model: 'https://h/m' }), false);
  for (const chainedDecode of ['true', 1, null]) {
    const e = await rejects(() => hostLoadOptions({ model: 'https://h/m', chainedDecode }), 'invalid_request', /chainedDecode must be true or false/);
    assert.equal(e.param, 'chainedDecode');
  }
});

test('truncation: the reply keeps max_tokens (at most half the context, a quarter by default); the first fitting start is found', () => {
  assert.deepEqual([replyReserve(8, 128), replyReserve(100, 128), replyReserve(undefined, 128), replyReserve(undefined, 2)], [8, 64, 32, 1]);
  // Prompt lengths when the conversation starts at message s: fits from 7 on.
  const lengths = [900, 800, 700, 600, 500, 400, 300, 200, 100, 50];
  let calls = 0;
  const fits = (s) => (calls++, lengths[s] <= 250);
  assert.equal(firstFitting(0, 9, fits), 7);
  assert.ok(calls <= 4, `binary search: ${calls} prompts rendered`);
  assert.equal(firstFitting(0, 9, (s) => lengths[s] <= 10), 9, 'none fits: the last message alone');
  assert.equal(firstFitting(3, 9, () => true), 3);
});

test('errors survive the worker boundary; wasm error codes pass through', () => {
  const e = new HearthError('integrity', 'bad shard', { url: 'https://h/m/s', shard: 's' });
  const back = deserializeError(structuredClone(serializeError(e)));
  assert.ok(back instanceof HearthError && back instanceof Error);
  assert.deepEqual([back.code, back.message, back.url, back.shard, back.status], ['integrity', 'bad shard', 'https://h/m/s', 's', undefined]);
  assert.ok(isHearthError(back, 'integrity'));
  const wasm = Object.assign(new Error('the prompt does not fit'), { code: 'context_full' });
  assert.deepEqual([toHearthError(wasm).code, toHearthError(wasm).wasmCode], ['context_full', 'context_full']);
  assert.equal(toHearthError(Object.assign(new Error('no adapter'), { code: 'no_adapter' })).code, 'no_webgpu');
  assert.equal(toHearthError(new TypeError('x')).code, 'engine');
  // A Rust panic traps: the engine's state is gone, and the error says to create a new one.
  const trap = toHearthError(new WebAssembly.RuntimeError('unreachable'));
  assert.equal(trap.code, 'crashed');
  assert.match(trap.message, /the engine crashed \(unreachable\); create a new engine/);
  assert.equal(serializeError('plain string').message, 'plain string');
});

test('progress: bytes only grow (a retried file is not counted twice), byte events are throttled', () => {
  const events = [];
  let now = 0;
  const p = new ProgressTracker(100, 2, (e) => events.push(e), 100, () => now);
  p.bytes('a', 30, 60);
  now = 10;
  p.bytes('a', 40, 60); // throttled
  now = 200;
  p.bytes('a', 10, 60); // a retry restarted the file: nothing new
  p.bytes('a', 50, 60);
  p.fileDone('a', 60, false);
  p.fileDone('b', 40, true);
  p.uploaded('a');
  assert.deepEqual(events.map((e) => [e.phase, e.loadedBytes, e.cachedBytes, e.shardsDone]), [
    ['download', 30, 0, 0], ['download', 50, 0, 0], ['download', 60, 0, 0], ['download', 100, 40, 0], ['upload', 100, 40, 1],
  ]);
});

test('chunk stream: buffers, ends, fails, and a consumer leaving early cancels', async () => {
  const s = new ChunkStream();
  s.push(1);
  s.push(2);
  setTimeout(() => { s.push(3); s.end(); }, 5);
  const got = [];
  for await (const v of s) got.push(v);
  assert.deepEqual(got, [1, 2, 3]);
  assert.throws(() => s[Symbol.asyncIterator](), /only once/);

  const failing = new ChunkStream();
  failing.push('a');
  failing.fail(new HearthError('engine', 'boom'));
  const seen = [];
  await assert.rejects(async () => { for await (const v of failing) seen.push(v); }, /boom/);
  assert.deepEqual(seen, ['a']);

  let cancelled = 0;
  const early = new ChunkStream(() => cancelled++);
  early.push('x');
  early.push('y');
  for await (const v of early) if (v === 'x') break;
  assert.equal(cancelled, 1);
});

/** The fake wasm loader: records shards as they arrive, one at a time. */
function fakeSink(manifest, log) {
  const missing = new Set(manifest.tensors.map((t) => t.name));
  return async (manifestJson, tokenizerJson) => {
    log.push(['create', JSON.parse(manifestJson).name, tokenizerJson]);
    return {
      addShard(file, bytes) {
        log.push(['shard', file, bytes.length]);
        manifest.tensors.filter((t) => t.shard === file).forEach((t) => missing.delete(t.name));
      },
      missingTensors: () => [...missing],
      finish: () => ({ engine: true }),
      free: () => log.push(['free']),
    };
  };
}

function packageFetch(files, { status = {}, flaky = {} } = {}) {
  const calls = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fetch = async (url) => {
    const file = url.slice('https://h/m/'.length);
    calls.push(file);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((r) => setTimeout(r, 5));
    inFlight--;
    if (flaky[file] > 0) {
      flaky[file]--;
      throw new TypeError('Failed to fetch');
    }
    if (status[file]) return new Response('', { status: status[file] });
    if (file === 'manifest.json') return new Response(JSON.stringify(files.manifest));
    return files.files[file] ? new Response(files.files[file]) : new Response('', { status: 404 });
  };
  return { fetch, calls, maxInFlight: () => maxInFlight };
}

test('loader: every file fetched, verified and fed once; bounded parallelism; progress ends at total', async () => {
  const p = fakePackage();
  const { fetch, calls, maxInFlight } = packageFetch(p, { flaky: { 'model-00002-of-00003.safetensors': 1 } });
  const log = [];
  const events = [];
  const loaded = await loadModel(
    { baseUrl: 'https://h/m/', cacheName: null, concurrency: 2, retry: fast, fetch, onProgress: (e) => events.push(e) },
    fakeSink(p.manifest, log),
  );
  assert.deepEqual(loaded.engine, { engine: true });
  assert.equal(calls.filter((c) => c === 'model-00002-of-00003.safetensors').length, 2, 'the flaky shard was retried');
  assert.ok(maxInFlight() <= 2, `at most 2 downloads at once, saw ${maxInFlight()}`);
  assert.deepEqual(log[0], ['create', 'tiny', '{"tokenizer": true}']);
  assert.deepEqual(log.filter((l) => l[0] === 'shard').map((l) => l[1]).sort(), p.manifest.shards.map((s) => s.file));
  assert.ok(!log.some((l) => l[0] === 'free'), 'finish() consumed the loader');
  assert.equal(events[0].phase, 'manifest');
  assert.deepEqual(events.at(-1), { phase: 'ready', loadedBytes: p.manifest.total_bytes, totalBytes: p.manifest.total_bytes, shardsDone: 3, shardsTotal: 3, cachedBytes: 0 });
  for (let i = 1; i < events.length; i++) assert.ok(events[i].loadedBytes >= events[i - 1].loadedBytes, 'loadedBytes never decreases');
  assert.equal(await sha256Hex(new TextEncoder().encode('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('loader: a corrupt shard is an integrity error naming it; a missing one a not_found naming its URL; the wasm loader is freed', async () => {
  const p = fakePackage();
  p.files['model-00002-of-00003.safetensors'][7] ^= 0xff;
  const log = [];
  const e = await rejects(() => loadModel({ baseUrl: 'https://h/m/', cacheName: null, retry: fast, fetch: packageFetch(p).fetch }, fakeSink(p.manifest, log)),
    'integrity', /model-00002-of-00003\.safetensors \(download\): sha256 [0-9a-f]{64} does not match/);
  assert.equal(e.shard, 'model-00002-of-00003.safetensors');
  assert.equal(e.url, 'https://h/m/model-00002-of-00003.safetensors');
  assert.deepEqual(log.at(-1), ['free']);

  const q = fakePackage();
  delete q.files['model-00003-of-00003.safetensors'];
  const nf = await rejects(() => loadModel({ baseUrl: 'https://h/m/', cacheName: null, retry: fast, fetch: packageFetch(q).fetch }, fakeSink(q.manifest, [])),
    'not_found', /https:\/\/h\/m\/model-00003-of-00003\.safetensors: HTTP 404/);
  assert.equal(nf.url, 'https://h/m/model-00003-of-00003.safetensors');

  const r = fakePackage();
  const noManifest = await rejects(() => loadModel({ baseUrl: 'https://h/m/', cacheName: null, retry: fast, fetch: packageFetch(r, { status: { 'manifest.json': 404 } }).fetch }, fakeSink(r.manifest, [])), 'not_found');
  assert.equal(noManifest.url, 'https://h/m/manifest.json');

  const s = fakePackage();
  const wasmError = Object.assign(new Error('shard x: tensor t0 disagrees with the manifest'), { code: 'model' });
  const failingSink = async () => ({ addShard() { throw wasmError; }, missingTensors: () => [], finish() {}, free() {} });
  await rejects(() => loadModel({ baseUrl: 'https://h/m/', cacheName: null, fetch: packageFetch(s).fetch }, failingSink), 'model', /disagrees/);
});
