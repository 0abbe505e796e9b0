// A user's start of the npm package in a browser other than Chromium
// (Firefox, WebKit): test/package.html, createEngine with the default
// options, a greedy chat reply and completion compared with the native
// engine's (`hearth generate --json`), then a second load that must read
// every file from the Cache API (where the browser keeps it: see
// `cachePersists`) and reply the same. `session` is one of
// harness.mjs's sessions (its `open` gives a page with `evaluate` and
// `waitForFunction(fn, options)`).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DIST, MODEL_DIR, MODEL_PATH, nativeGenerate, rawStoryCase } from './package-fixtures.mjs';

/** What checkUserStart throws when a load does not finish within its `hangMs`. */
export class LoadHung extends Error {}

/** `promise`'s value, or a LoadHung rejection after `ms` (none: no bound), by the package's own bounded wait. */
async function bounded(promise, ms) {
  if (!ms) return promise;
  const { withinTime, TIMED_OUT } = await import(pathToFileURL(path.join(DIST, 'deadline.js')).href);
  const value = await withinTime(promise, ms);
  if (value === TIMED_OUT) throw new LoadHung(`a load and its replies did not finish in ${ms / 1000} s`);
  return value;
}

const CHAT = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is the capital of France?' }];

/**
 * Two loads in one page; returns each load's engine info (backend, reason,
 * threads, cachedBytes). `cachePersists: false` is for a browser that
 * drops what a worker cached when the worker ends (WebKit's ephemeral
 * session): the second load then downloads everything again. `hangMs`: a
 * load not done by then throws LoadHung (its page is left as it is). The
 * model cache is emptied first, so the first load downloads.
 */
export async function checkUserStart(t, session, { cachePersists = true, hangMs } = {}) {
  const story = rawStoryCase();
  const native = {
    completion: nativeGenerate(['-p', story.prompt_text, '--max-tokens', '8']),
    chat: nativeGenerate(['--chat', '--system', CHAT[0].content, '-p', CHAT[1].content, '--max-tokens', '12']),
  };
  const page = await session.open('test/package.html');
  await page.waitForFunction(() => window.hearthReady !== undefined, { timeout: 60_000, polling: 200 });
  await page.evaluate(() => caches.delete(window.hearth.DEFAULT_CACHE_NAME));
  const load = () => bounded(page.evaluate(async ({ model, chat, story }) => {
    if (window.hearthReady !== true) throw new Error(window.hearthReady);
    const engine = await window.hearth.createEngine({ model });
    const reply = await engine.chat.completions.create({ messages: chat, max_tokens: 12, temperature: 0 });
    const completion = await engine.completions.create({ prompt: story, max_tokens: 8, temperature: 0 });
    const info = engine.info;
    const decodeThreads = engine.stats().threads;
    await engine.unload();
    return {
      info: { backend: info.backend, reason: info.backendReason, threads: info.threads, decodeThreads, cachedBytes: info.cachedBytes },
      chat: reply.choices[0].message.content,
      chatTokens: reply.usage,
      completion: completion.choices[0].text,
    };
  }, { model: MODEL_PATH, chat: CHAT, story: story.prompt_text }), hangMs);
  const first = await load();
  const again = await load();
  await page.close();
  t.diagnostic(`first load: ${JSON.stringify(first.info)}; again: ${JSON.stringify(again.info)}`);
  assert.equal(first.chat, native.chat.text);
  assert.equal(first.completion, native.completion.text);
  assert.equal(first.chatTokens.completion_tokens, native.chat.ids.length);
  assert.equal(first.info.cachedBytes, 0);
  const total = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8')).total_bytes;
  if (cachePersists) assert.equal(again.info.cachedBytes, total, 'the second load reads every file from the Cache API');
  else assert.ok([0, total].includes(again.info.cachedBytes), `all of the package or none of it from the cache: ${again.info.cachedBytes} bytes`);
  assert.deepEqual([again.chat, again.completion], [first.chat, first.completion]);
  for (const { info } of [first, again]) {
    // The decode ran on the pool's threads or on a half, quarter... of them (cpu::team_size); none on WebGPU.
    const teams = info.backend === 'cpu' ? [...Array(Math.floor(Math.log2(info.threads)) + 1).keys()].map((k) => info.threads >> k) : [0];
    assert.ok(teams.includes(info.decodeThreads), `decode threads ${info.decodeThreads}, pool ${info.threads}`);
  }
  return [first.info, again.info];
}
