// hearth in WebKit, the engine of Safari: WebKitGTK's MiniBrowser as Debian
// ships it (JavaScriptCore, with its own wasm compilers, workers and Cache
// API), driven over WebDriver. The same independent references as in the
// other browsers: the npm package as a user starts it against the native
// engine (lib/user-start.mjs), the wasm engine against the exact float64
// reference (lib/fixture-case.mjs). Debian's WebKitGTK has no WebGPU, so
// both run on the CPU: `auto` must see that and say so. The demo site too,
// as a visitor uses it: the model loads, a chat reply streams in.
//
// Under WebDriver, MiniBrowser browses as in a private window (an ephemeral
// session). There WebKit keeps what a worker put in the Cache API only as
// long as that worker lives (and a page's entries only until it navigates),
// without an error at any put: so each load here downloads the package
// again, and must still work and reply the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { By, Key, until } from 'selenium-webdriver';
import { startWebKitSession, WEBKIT, ARTIFACTS } from './harness.mjs';
import { checkCase, missingReference, referenceCases } from './lib/fixture-case.mjs';
import { missingPrerequisites, prerequisitesMet } from './lib/package-fixtures.mjs';
import { checkUserStart } from './lib/user-start.mjs';
import { watchReply, replyStates } from './lib/demo.mjs';

const missing = [
  ...missingReference,
  ...missingPrerequisites({ cli: true }),
  ...[WEBKIT.browser, WEBKIT.driver, WEBKIT.xvfb].filter((f) => !fs.existsSync(f)).map((f) => `${f} (apt install webkit2gtk-driver xvfb)`),
];

let session;
before(async () => {
  if (missing.length === 0) session = await startWebKitSession();
});
after(() => session?.close());

test("a user's start in WebKit: createEngine with the default options, replies equal to the native engine's, and the same on a second load", async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const loads = await checkUserStart(t, session, { cachePersists: false });
  for (const info of loads) {
    // No WebGPU here: auto picks the CPU and says why; with shared memory
    // (as in Safari) the threaded build runs.
    assert.equal(info.backend, 'cpu', JSON.stringify(info));
    assert.match(info.reason, /WebGPU/i);
    assert.ok(info.threads > 1, `the threaded build: ${JSON.stringify(info)}`);
  }
});

test('WebKit, the wasm CPU backend: every case of the exact reference', async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await session.open('test/engine.html?context=256&backend=cpu');
  await page.waitForFunction(() => window.engineState !== undefined, { timeout: 300_000, polling: 500 });
  const state = await page.evaluate(() => window.engineState);
  assert.ok(state.ok, `the engine did not load: ${state.message}`);
  t.diagnostic(`${await page.evaluate(() => navigator.userAgent)}: ${state.adapter.name} (KV cache ${state.adapter.kv_cache}), load ${state.loadMs.toFixed(0)} ms`);
  for (const c of referenceCases) await checkCase(t, page, c, 16);
  await page.close();
});

test('WebKit without shared memory (WebKitGTK by default): the single-threaded build, the same replies', async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const plain = await startWebKitSession({}, { sharedMemory: false });
  try {
    const loads = await checkUserStart(t, plain, { cachePersists: false });
    for (const info of loads) assert.deepEqual([info.backend, info.threads], ['cpu', 1], JSON.stringify(info));
  } finally {
    await plain.close();
  }
});

test('the demo in WebKit: a visitor loads the default model and a chat reply streams in', async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const page = await session.open('');
  const { driver } = session;
  await page.waitForFunction(() => document.body.dataset.ready || !document.getElementById('error').hidden, { timeout: 120_000, polling: 500 });
  assert.ok(await page.evaluate(() => document.getElementById('error').hidden),
    `the demo failed to load: ${await page.evaluate(() => document.getElementById('error').textContent)}`);
  const shown = await page.evaluate(() => ({ backend: document.getElementById('backend').textContent, model: document.getElementById('model-name').textContent }));
  assert.match(shown.model, /SmolLM2-135M-Instruct · q4_1/);
  assert.match(shown.backend, /CPU/i);
  // As a visitor does: the reply length in the settings, then the message typed and sent with Enter.
  await driver.findElement(By.css('details.system summary')).click();
  const length = await driver.findElement(By.id('chat-max-tokens'));
  await length.clear();
  await length.sendKeys('8');
  await page.evaluate(watchReply, 0);
  await driver.findElement(By.id('chat-input')).sendKeys('What is the capital of France?', Key.ENTER);
  const reply = await driver.wait(until.elementLocated(By.css('.message.assistant')), 30_000);
  await page.waitForFunction(() => document.querySelector('.message.assistant').getAttribute('aria-busy') !== 'true', { timeout: 120_000 });
  const final = await reply.getText();
  const seen = await page.evaluate(replyStates);
  t.diagnostic(`backend badge ${JSON.stringify(shown.backend)}; reply ${JSON.stringify(final)} (${seen.length} states while streaming)`);
  assert.ok(final.trim().length > 0, 'an empty reply');
  assert.ok(seen.length >= 2, `the reply did not stream: ${JSON.stringify(seen)}`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'demo-chat-webkit.png'), await driver.takeScreenshot(), 'base64');
  await page.close();
});
