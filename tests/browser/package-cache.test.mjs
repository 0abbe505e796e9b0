// The package's loader against a copy of the default model package served
// from a temporary folder, in headless Chromium: a corrupt shard (on the
// wire, then in the cache) is a typed integrity error naming it and never
// stays cached; a missing shard is a not_found error naming its URL; a load
// that failed part-way resumes without downloading the shards it already
// cached; a failed cache write only warns.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSession, requireWebGPU } from './harness.mjs';
import { MODEL_DIR, missingPrerequisites, prerequisitesMet } from './lib/package-fixtures.mjs';

const missing = missingPrerequisites();
const COPY = '/copy/';
let session;
let context;
let page;
let dir;
let manifest;
/** Files of the package requested by the browser since the last take(). */
let requested = [];
const take = () => requested.splice(0).map((u) => u.slice(u.lastIndexOf('/') + 1));

before(async () => {
  if (missing.length) return;
  // Links to the real files; a test that alters one replaces its link by a copy.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-package-'));
  for (const f of fs.readdirSync(MODEL_DIR)) fs.symlinkSync(path.join(MODEL_DIR, f), path.join(dir, f));
  manifest = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8'));
  session = await startSession({ [COPY]: dir });
  context = await session.browser.newContext();
  await context.route(`**${COPY}**`, (route) => {
    requested.push(route.request().url());
    return route.continue();
  });
  page = await session.open('test/package.html', context);
  await page.waitForFunction(() => window.hearthReady !== undefined);
});
after(async () => {
  await session?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Replaces the link to `file` by a copy with one byte flipped (or restores the link). */
function corrupt(file, on = true) {
  const target = path.join(dir, file);
  fs.rmSync(target);
  if (!on) return fs.symlinkSync(path.join(MODEL_DIR, file), target);
  const bytes = fs.readFileSync(path.join(MODEL_DIR, file));
  bytes[bytes.length >> 1] ^= 0x01;
  fs.writeFileSync(target, bytes);
}

/**
 * Loads the copy in the page (one download at a time, so the order is the
 * manifest's) and resolves to {ok, cachedBytes} or the error's fields, plus
 * the shard files in the cache afterwards.
 */
function load(options = {}) {
  return page.evaluate(async ({ base, options }) => {
    let result;
    try {
      const engine = await hearth.createEngine({ model: base, backend: 'webgpu', context: 64, concurrency: 1, retry: { retries: 1, baseDelayMs: 10 }, ...options });
      result = { ok: true, cachedBytes: engine.info.cachedBytes };
      await engine.unload();
    } catch (e) {
      result = { ok: false, instance: e instanceof hearth.HearthError, code: e.code, shard: e.shard, url: e.url, status: e.status, message: e.message };
    }
    const cache = await caches.open(options.cacheName ?? 'hearth-models-v1');
    result.cached = (await cache.keys()).map((r) => r.url.slice(r.url.lastIndexOf('/') + 1)).sort();
    return result;
  }, { base: new URL(COPY, session.url).href, options });
}

const shardFiles = () => manifest.shards.map((s) => s.file);

test('a corrupt shard is an integrity error naming it, nothing corrupt is cached, and the next load fetches only that shard', { timeout: 180_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const [first, second, third] = shardFiles();
  corrupt(third);
  const failed = await load();
  t.diagnostic(failed.message);
  assert.deepEqual([failed.ok, failed.instance, failed.code, failed.shard], [false, true, 'integrity', third]);
  assert.equal(failed.url, new URL(`${COPY}${third}`, session.url).href);
  assert.match(failed.message, new RegExp(`${third} \\(download\\): sha256 [0-9a-f]{64} does not match the manifest's ${manifest.shards[2].sha256}`));
  assert.deepEqual(failed.cached, [first, second, 'manifest.json', 'tokenizer.json'].sort(), 'the corrupt shard was not cached');
  take();

  corrupt(third, false);
  const fixed = await load();
  assert.equal(fixed.ok, true, fixed.message);
  assert.deepEqual(take(), ['manifest.json', third], 'only the shard that failed is downloaded again');
  assert.equal(fixed.cachedBytes, manifest.total_bytes - manifest.shards[2].bytes);
  assert.deepEqual(fixed.cached, [...shardFiles(), 'manifest.json', 'tokenizer.json'].sort());
});

test('a corrupt cached shard is evicted with an integrity error; the next load downloads it again (an outdated one silently)', { timeout: 180_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const [first] = shardFiles();
  // Overwrite the cached copy (same size, different bytes) through the Cache API.
  await page.evaluate(async ({ url, bytes }) => {
    const cache = await caches.open('hearth-models-v1');
    const data = new Uint8Array(await (await cache.match(url)).arrayBuffer());
    data[12345] ^= 0xff;
    await cache.put(url, new Response(data));
    return bytes;
  }, { url: new URL(`${COPY}${first}`, session.url).href, bytes: manifest.shards[0].bytes });
  take();
  const failed = await load();
  t.diagnostic(failed.message);
  assert.deepEqual([failed.ok, failed.code, failed.shard], [false, 'integrity', first]);
  assert.match(failed.message, /cached copy.*removed from the cache/);
  assert.ok(!failed.cached.includes(first), 'the corrupt entry was evicted');
  assert.deepEqual(take(), ['manifest.json'], 'the failure came from the cache, not the network');

  const again = await load();
  assert.equal(again.ok, true, again.message);
  assert.deepEqual(take(), ['manifest.json', first]);
  assert.ok(again.cached.includes(first));

  // A cached copy stored for another sha256 (the package was updated since)
  // is not corruption: it is replaced without an error.
  await page.evaluate(async (url) => {
    const cache = await caches.open('hearth-models-v1');
    await cache.put(url, new Response('an older version', { headers: { 'X-Hearth-Sha256': '0'.repeat(64) } }));
  }, new URL(`${COPY}${first}`, session.url).href);
  const updated = await load();
  assert.equal(updated.ok, true, updated.message);
  assert.deepEqual(take(), ['manifest.json', first]);
});

test('a missing shard is a not_found error naming its URL; the next load resumes after the shards already cached', { timeout: 180_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const [first, second, third] = shardFiles();
  const cacheName = 'resume-test';
  fs.renameSync(path.join(dir, second), path.join(dir, `${second}.away`));
  take();
  const failed = await load({ cacheName });
  assert.deepEqual([failed.ok, failed.instance, failed.code, failed.status], [false, true, 'not_found', 404]);
  assert.equal(failed.url, new URL(`${COPY}${second}`, session.url).href);
  assert.ok(failed.message.includes(failed.url), failed.message);
  assert.deepEqual(take(), ['manifest.json', 'tokenizer.json', first, second], '404 is not retried; the load stops there');
  assert.deepEqual(failed.cached, [first, 'manifest.json', 'tokenizer.json'].sort());

  fs.renameSync(path.join(dir, `${second}.away`), path.join(dir, second));
  const resumed = await load({ cacheName });
  assert.equal(resumed.ok, true, resumed.message);
  assert.deepEqual(take(), ['manifest.json', second, third], 'the tokenizer and the first shard come from the cache');
  assert.equal(resumed.cachedBytes, manifest.tokenizer.bytes + manifest.shards[0].bytes);
});

test('a failing cache write is a console warning and the load goes on uncached (in-thread)', { timeout: 180_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const warnings = [];
  const listener = (m) => m.type() === 'warning' && warnings.push(m.text());
  const quotaPage = await session.open('test/package.html', context);
  quotaPage.on('console', listener);
  await quotaPage.waitForFunction(() => window.hearthReady !== undefined);
  const got = await quotaPage.evaluate(async (base) => {
    // Every write fails as a full disk would (in this page only: worker: false).
    Cache.prototype.put = () => Promise.reject(new DOMException('The quota has been exceeded.', 'QuotaExceededError'));
    const engine = await hearth.createEngine({ model: base, backend: 'webgpu', worker: false, context: 64, cacheName: 'quota-test' });
    const reply = await engine.completions.create({ prompt: 'The sky is', max_tokens: 1, temperature: 0 });
    await engine.unload();
    const cache = await caches.open('quota-test');
    return { tokens: reply.usage.completion_tokens, cached: (await cache.keys()).length };
  }, new URL(COPY, session.url).href);
  await quotaPage.close();
  assert.deepEqual(got, { tokens: 1, cached: 0 });
  const quota = warnings.filter((w) => /could not cache .* \(the storage quota is exceeded\); continuing without caching it/.test(w));
  assert.equal(quota.length, manifest.shards.length + 2, `one warning per file (manifest, tokenizer, shards): ${warnings.join(' | ')}`);
});

test('shards are hashed on a worker beside the upload, and on the loading thread where no worker can start', async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const got = await page.evaluate(async () => {
    const { Hasher, sha256Hex } = await import('/hearth/hash.js');
    const bytes = () => Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31) & 0xff);
    const want = await sha256Hex(bytes());
    const hasher = new Hasher();
    // Until the worker says it has started, hashes are made here.
    for (let i = 0; i < 100 && !(hasher.ready); i++) await new Promise((r) => setTimeout(r, 20));
    const given = bytes();
    const onWorker = await hasher.hash(given);
    const sameBytes = onWorker.bytes.every((b, i) => b === ((i * 31) & 0xff));
    hasher.close();
    // A page whose policy refuses the worker: the constructor throws.
    const RealWorker = globalThis.Worker;
    globalThis.Worker = class { constructor() { throw new DOMException('refused', 'SecurityError'); } };
    let inline;
    try {
      const given2 = bytes();
      const h = await new Hasher().hash(given2);
      inline = { hex: h.hex, kept: given2.byteLength === 1 << 20 && h.bytes === given2 };
    } finally {
      globalThis.Worker = RealWorker;
    }
    return { want, worker: { hex: onWorker.hex, transferred: given.byteLength === 0, sameBytes }, inline };
  });
  assert.equal(got.worker.hex, got.want, 'the worker hashes right');
  assert.ok(got.worker.transferred && got.worker.sameBytes, `the bytes went to the worker and came back whole: ${JSON.stringify(got.worker)}`);
  assert.deepEqual(got.inline, { hex: got.want, kept: true });
});

test('a warm load reads and hashes the cached shards on the hashing worker, and on the loading thread where no worker can start', { timeout: 180_000 }, async (t) => {
  if (!prerequisitesMet(t, missing) || !(await requireWebGPU(page, t))) return;
  const first = await load();
  assert.equal(first.ok, true, first.message);
  const got = await page.evaluate(async (base) => {
    // In this page (worker: false), every read of the cache made here is seen.
    const realMatch = Cache.prototype.match;
    const readHere = [];
    Cache.prototype.match = function (request, options) {
      readHere.push(String(request.url ?? request).split('/').at(-1));
      return realMatch.call(this, request, options);
    };
    const warmLoad = async () => {
      readHere.length = 0;
      const engine = await hearth.createEngine({ model: base, backend: 'webgpu', worker: false, context: 64 });
      const reply = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 4, temperature: 0 });
      const result = { cachedBytes: engine.info.cachedBytes, text: reply.choices[0].text, readHere: [...readHere].sort() };
      await engine.unload();
      return result;
    };
    const RealWorker = globalThis.Worker;
    try {
      const onWorker = await warmLoad();
      // A page whose policy refuses the worker: the constructor throws.
      globalThis.Worker = class { constructor() { throw new DOMException('refused', 'SecurityError'); } };
      const here = await warmLoad();
      return { onWorker, here };
    } finally {
      globalThis.Worker = RealWorker;
      Cache.prototype.match = realMatch;
    }
  }, new URL(COPY, session.url).href);
  t.diagnostic(JSON.stringify(got));
  for (const [name, run] of Object.entries(got)) {
    assert.equal(run.cachedBytes, manifest.total_bytes, `${name}: everything came from the cache`);
  }
  assert.equal(got.here.text, got.onWorker.text, 'the same model either way');
  assert.deepEqual(got.onWorker.readHere, ['manifest.json', 'tokenizer.json'], 'no shard was read on the loading thread');
  assert.deepEqual(got.here.readHere, ['manifest.json', ...shardFiles(), 'tokenizer.json'].sort(), 'without a worker, every file is read here');
});

test('a tokenizer.json that is JSON but no tokenizer (a merge naming a token out of the vocabulary): a typed tokenizer error, read on a CPU pool thread or on the loading thread', { timeout: 180_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const doc = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'tokenizer.json'), 'utf8'));
  doc.model.merges[0] = ['Ġ', 'hearth_missing_token'];
  const bad = Buffer.from(JSON.stringify(doc));
  const badManifest = { ...manifest, total_bytes: manifest.total_bytes - manifest.tokenizer.bytes + bad.length, tokenizer: { ...manifest.tokenizer, bytes: bad.length, sha256: crypto.createHash('sha256').update(bad).digest('hex') } };
  for (const [file, text] of [['tokenizer.json', bad], ['manifest.json', JSON.stringify(badManifest)]]) {
    fs.rmSync(path.join(dir, file));
    fs.writeFileSync(path.join(dir, file), text);
  }
  try {
    // The threaded build in its worker reads the tokenizer on a pool thread
    // while the shards go in; the single-threaded one in the page, at once.
    for (const options of [{ backend: 'cpu' }, { backend: 'cpu', worker: false }]) {
      const failed = await load(options);
      t.diagnostic(`${JSON.stringify(options)}: ${failed.message}`);
      assert.deepEqual([failed.ok, failed.instance, failed.code], [false, true, 'tokenizer'], JSON.stringify(options));
      assert.match(failed.message, /Token `hearth_missing_token` out of vocabulary/);
    }
  } finally {
    for (const file of ['tokenizer.json', 'manifest.json']) {
      fs.rmSync(path.join(dir, file));
      fs.symlinkSync(path.join(MODEL_DIR, file), path.join(dir, file));
    }
  }
  const fixed = await load({ backend: 'cpu' });
  assert.equal(fixed.ok, true, fixed.message);
});
