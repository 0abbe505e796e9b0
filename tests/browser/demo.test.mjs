// The demo site as a visitor uses it, in headless Chromium (backend Auto: the
// CPU here, where WebGPU is SwiftShader): the first visit downloads the default model with a
// progress bar and chats with a streamed reply; Stop ends a reply and the
// next turn reuses the KV cache; text generation with a fixed seed repeats
// itself; a reload with the network off still loads the page and the model
// and chats; the backend can be switched and the choice is remembered;
// without WebGPU it runs on the CPU; Markdown rendering never turns model
// text into HTML. Writes
// screenshots (desktop and phone width) to artifacts/ and prints the load
// and first-token times.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startSession, hideWebGPU, ARTIFACTS, IN_CI } from './harness.mjs';
import { settled, setReplyLength, chat } from './lib/demo.mjs';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const PACKAGE = path.join(REPO, 'models/SmolLM2-135M-Instruct-q4_1/manifest.json');
const DIST = path.join(REPO, 'web/dist/index.js');

let session;
before(async () => { session = await startSession(); });
after(() => session?.close());

function prerequisites(t) {
  const missing = [PACKAGE, DIST].filter((f) => !fs.existsSync(f));
  if (!missing.length) return true;
  const reason = `missing ${missing.join(', ')} (scripts/build.sh makes them)`;
  if (IN_CI) throw new Error(`CI=true but ${reason}`);
  t.skip(reason);
  return false;
}

/** A fresh profile (empty caches, no service worker) with the demo open. */
async function visit(t, context) {
  context ??= await session.browser.newContext({ viewport: { width: 1200, height: 900 } });
  // Record every progress text the page shows while loading.
  await context.addInitScript(() => {
    window.__phases = [];
    addEventListener('DOMContentLoaded', () => {
      const phase = document.getElementById('load-phase');
      new MutationObserver(() => window.__phases.push([phase.textContent, document.getElementById('load-progress').value]))
        .observe(phase, { childList: true, characterData: true, subtree: true });
    });
  });
  const page = await session.open('', context);
  await page.waitForFunction(() => document.body.dataset.ready || !document.getElementById('error').hidden, null, { timeout: 120_000 });
  const error = await page.locator('#error').isVisible();
  assert.ok(!error, `the demo failed to load: ${await page.locator('#error').textContent()}`);
  return { context, page };
}

async function statText(page, id) {
  return page.locator(`#stat-${id}`).textContent();
}

test('first visit: the model loads with progress and a reply streams in', async (t) => {
  if (!prerequisites(t)) return;
  const { page, context } = await visit(t);
  const phases = await page.evaluate(() => window.__phases);
  assert.ok(phases.some(([p]) => /Downloading the model/.test(p)), JSON.stringify(phases));
  const fractions = phases.map(([, value]) => value);
  assert.ok(fractions.every((f, i) => i === 0 || f >= fractions[i - 1]), `progress went backwards: ${fractions}`);
  assert.match(await page.locator('#model-name').textContent(), /SmolLM2-135M-Instruct · q4_1/);
  assert.match(await statText(page, 'adapter'), /\w/);

  await setReplyLength(page, 6);
  const { seen, final } = await chat(page, 'What is the capital of France?');
  assert.ok(final.length > 0, 'an empty reply');
  assert.ok(seen.length >= 2, `the reply did not stream (states seen: ${JSON.stringify(seen)})`);
  assert.ok(seen.every((s) => final.startsWith(s.replace(/\s+$/, '').slice(0, 3))), JSON.stringify({ seen, final }));
  assert.match(await statText(page, 'decode'), /tok\/s/);
  const cold = await page.evaluate(() => ({
    load: performance.getEntriesByName('hearth:load')[0]?.duration,
    firstToken: performance.getEntriesByName('hearth:first-token')[0]?.startTime,
  }));
  t.diagnostic(`cold visit: model load ${Math.round(cold.load)} ms; navigation to first token ${Math.round(cold.firstToken)} ms`);

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-chat-desktop.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-chat-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1200, height: 900 });

  // Warm: a second visit in the same profile finds the model in the cache.
  const warm = await session.open('', context);
  await warm.waitForFunction(() => document.body.dataset.ready, null, { timeout: 120_000 });
  await setReplyLength(warm, 2);
  await chat(warm, 'Hi');
  const w = await warm.evaluate(() => ({
    load: performance.getEntriesByName('hearth:load')[0]?.duration,
    firstToken: performance.getEntriesByName('hearth:first-token')[0]?.startTime,
  }));
  t.diagnostic(`warm visit: model load ${Math.round(w.load)} ms; navigation to first token ${Math.round(w.firstToken)} ms`);
  await context.close();
});

test('Stop ends a reply at once; the next turn reuses the conversation', async (t) => {
  if (!prerequisites(t)) return;
  const { page, context } = await visit(t);
  await setReplyLength(page, 400);
  await page.fill('#chat-input', 'Write a long story about a dragon.');
  await page.press('#chat-input', 'Enter');
  const reply = page.locator('.message.assistant').first();
  await page.waitForFunction(() => (document.querySelector('.message.assistant')?.textContent ?? '').length > 0, null, { timeout: 120_000 });
  await page.click('#stop');
  await page.waitForFunction(() => !document.querySelector('.message.assistant[aria-busy]'), null, { timeout: 30_000 });
  assert.match(await reply.textContent(), /\(stopped\)$/);
  assert.ok(await page.locator('#chat-input').isEnabled());

  await setReplyLength(page, 3);
  await chat(page, 'Give it a name.');
  // "N tok/s (new, cached)": the first exchange came from the KV cache.
  const prefill = await statText(page, 'prefill');
  const cached = Number(prefill.match(/(\d+) cached/)?.[1]);
  assert.ok(cached > 20, `the follow-up reused ${cached} tokens: ${prefill}`);

  // Regenerate replaces the last reply; edit puts the last message back.
  await page.click('#regenerate');
  await page.waitForFunction(() => !document.querySelector('.message.assistant[aria-busy]') && !document.getElementById('send').disabled, null, { timeout: 120_000 });
  assert.equal(await page.locator('.message.user').count(), 2);
  assert.equal(await page.locator('.message.assistant').count(), 2);
  await page.click('#edit-last');
  assert.equal(await page.inputValue('#chat-input'), 'Give it a name.');
  assert.equal(await page.locator('.message.user').count(), 1);
  await page.click('#clear');
  assert.equal(await page.locator('.message').count(), 0);
  await context.close();
});

test('text generation with a fixed seed is reproducible', async (t) => {
  if (!prerequisites(t)) return;
  const { page, context } = await visit(t);
  await page.click('#tab-text');
  await page.fill('#text-prompt', 'The best thing about mornings is');
  await page.fill('#max-tokens', '5');
  await page.fill('#temperature', '1.0');
  const run = async (seed) => {
    await page.fill('#seed', String(seed));
    await page.click('#generate');
    await page.waitForFunction(() => !document.getElementById('generate').disabled, null, { timeout: 120_000 });
    return page.locator('#text-output .generated').textContent();
  };
  const first = await run(7);
  assert.ok(first.length > 0);
  assert.equal(await run(7), first, 'the same seed gave another text');
  const others = [await run(8), await run(9)];
  assert.ok(others.some((o) => o !== first), `seeds 7, 8, 9 all gave ${JSON.stringify(first)}`);

  // The model panel: facts about the loaded model; deleting it from the cache.
  await page.click('#tab-model');
  await page.waitForFunction(() => /Cached/.test(document.getElementById('model-info').textContent));
  const facts = await page.locator('#model-info').textContent();
  for (const want of ['SmolLM2-135M-Instruct', 'q4_1', '93.6 MiB', '2048 tokens', 'yes: loads offline']) assert.ok(facts.includes(want), `${want} not in ${facts}`);
  await page.locator('#cached button').first().click();
  await page.waitForFunction(() => document.getElementById('cached').textContent === 'none');
  await context.close();
});

test('after one visit, the page and the model load offline (still cross-origin isolated) and chat', async (t) => {
  if (!prerequisites(t)) return;
  const { page, context } = await visit(t);
  const online = await page.locator('#backend').textContent();
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  await context.setOffline(true);
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready || !document.getElementById('error').hidden, null, { timeout: 120_000 });
  assert.ok(!(await page.locator('#error').isVisible()), await page.locator('#error').textContent());
  // The service worker's copy of the page keeps the isolation headers: the same backend and threads as online.
  assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  assert.equal(await page.locator('#backend').textContent(), online);
  await setReplyLength(page, 2);
  const { final } = await chat(page, 'Hello!');
  assert.ok(final.length > 0);
  await context.close();
});

test('the backend choice: the badge says where the model runs; a switch reloads it and is remembered', async (t) => {
  if (!prerequisites(t)) return;
  const { page, context } = await visit(t);
  const auto = await page.locator('#backend').textContent();
  const why = await page.locator('#backend').getAttribute('title');
  t.diagnostic(`auto: ${auto} (${why}); runs on ${await statText(page, 'adapter')}`);
  assert.equal(await page.inputValue('#backend-choice'), 'auto');
  assert.match(auto, /^(WebGPU|CPU · \d+ threads?)$/);
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the demo is cross-origin isolated');
  const other = auto.startsWith('CPU') ? 'webgpu' : 'cpu';
  await page.selectOption('#backend-choice', other);
  assert.ok(await settled(page), await page.locator('#error').textContent());
  assert.match(await page.locator('#backend').textContent(), other === 'cpu' ? /^CPU · / : /^WebGPU/);
  await setReplyLength(page, 2);
  assert.ok((await chat(page, 'Hi')).final.length > 0);
  await page.reload();
  assert.ok(await settled(page));
  assert.equal(await page.inputValue('#backend-choice'), other, 'the choice survives a reload');
  assert.match(await page.locator('#backend').textContent(), other === 'cpu' ? /^CPU · / : /^WebGPU/);
  await context.close();
});

test('without WebGPU the demo runs on the CPU; WebGPU chosen, it says so and what to do', async (t) => {
  if (!prerequisites(t)) return;
  // Routes do not see a service worker's fetches: no service worker here.
  const context = await session.browser.newContext();
  await context.addInitScript(() => { delete Object.getPrototypeOf(navigator).serviceWorker; });
  await hideWebGPU(context);
  const page = await session.open('', context);
  assert.ok(await settled(page), await page.locator('#error').textContent());
  assert.match(await page.locator('#backend').textContent(), /^CPU · /);
  assert.match(await page.locator('#backend').getAttribute('title'), /no WebGPU/);
  await page.selectOption('#backend-choice', 'webgpu');
  await page.locator('#error').waitFor({ state: 'visible', timeout: 60_000 });
  assert.match(await page.locator('#error-title').textContent(), /WebGPU is not available/);
  assert.match(await page.locator('#error-detail').textContent(), /Auto or CPU/);
  assert.ok(await page.locator('#chat-input').isDisabled());
  await context.close();
});

test('model output and user text are never rendered as HTML', async (t) => {
  if (!prerequisites(t)) return;
  const context = await session.browser.newContext();
  const page = await session.open('diagnostics.html', context); // any page of the site; no model needed
  const attacks = [
    '<img src=x onerror="window.__xss=1">',
    '<script>window.__xss=2</script>',
    '**bold <img src=x onerror="window.__xss=3">**',
    '[click](javascript:window.__xss=4)',
    '```html\n<img src=x onerror="window.__xss=5">\n```',
    '`<svg onload="window.__xss=6">`',
    '> <iframe src="javascript:window.__xss=7"></iframe>',
    '- <a href="javascript:window.__xss=8">x</a>\n- [ok](https://example.com)',
  ];
  const result = await page.evaluate(async (attacks) => {
    const { renderMarkdown } = await import('./markdown.js');
    const box = document.createElement('div');
    document.body.append(box);
    for (const a of attacks) box.append(renderMarkdown(a));
    await new Promise((r) => setTimeout(r, 300)); // let any onerror fire
    return {
      xss: window.__xss ?? null,
      dangerous: box.querySelectorAll('img, script, iframe, svg, [onerror], [onload]').length,
      links: [...box.querySelectorAll('a')].map((a) => a.href),
      text: box.textContent,
    };
  }, attacks);
  assert.equal(result.xss, null);
  assert.equal(result.dangerous, 0);
  assert.deepEqual(result.links, ['https://example.com/']);
  assert.ok(result.text.includes('<img src=x onerror="window.__xss=1">'), 'the markup is shown as text');
  await context.close();
});
