// The demo and the npm package under a strict Content-Security-Policy
// (web/tools/serve.mjs STRICT_CSP: no 'unsafe-eval', no 'unsafe-inline';
// 'wasm-unsafe-eval' compiles the engine), sent as a header with every
// response, worker scripts included: the demo loads the model and a reply
// streams in; the package runs createEngine in its module worker (auto, the
// CPU on the threaded build with its rayon workers, in the page, and WebGPU
// where there is an adapter) and generates; model output and user text full
// of markup and javascript: links stay inert text; nothing violates the
// policy. A negative control shows the watch is real: without
// 'wasm-unsafe-eval' the engine fails to load with a typed error and the
// violation is seen. Violations are watched three ways: the pages'
// securitypolicyviolation events, console lines about the policy, and the
// browser's violation reports (report-uri, added to the policy under test:
// a worker's violations reach neither the page's events nor its console).
// Also: the demo's own policy (its <meta> tags and the service worker's
// header for hosts that send none) is one policy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { startSession, IN_CI } from './harness.mjs';
import { startServer, DEFAULT_MOUNTS, STRICT_CSP } from '../../web/tools/serve.mjs';
import { settled, setReplyLength, chat } from './lib/demo.mjs';
import { REPO, MODEL_PATH, missingPrerequisites, prerequisitesMet } from './lib/package-fixtures.mjs';

const PAGES = path.join(REPO, 'tests/browser/pages');
const missing = missingPrerequisites();
if (!fs.existsSync(path.join(REPO, 'web/dist/wasm-threads/hearth_llm.js'))) missing.push('web/dist/wasm-threads (scripts/build.sh)');
const NO_WASM_CSP = STRICT_CSP.replace(" 'wasm-unsafe-eval'", '');

/** The browser's CSP violation reports (report-uri), as their `csp-report` objects. */
const reports = [];
const collector = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    try {
      reports.push(JSON.parse(body)['csp-report'] ?? { unparsed: body });
    } catch {
      reports.push({ unparsed: body });
    }
    res.writeHead(204, { 'Access-Control-Allow-Origin': '*' }).end();
  });
});

let session; // the strict policy, cross-origin isolated
let noWasm; // the same files under the policy without 'wasm-unsafe-eval'
before(async () => {
  if (missing.length) return;
  await new Promise((resolve) => collector.listen(0, '127.0.0.1', resolve));
  const reportUri = `; report-uri http://127.0.0.1:${collector.address().port}/`;
  session = await startSession({}, { csp: STRICT_CSP + reportUri });
  noWasm = await startServer({ mounts: { ...DEFAULT_MOUNTS, '/test/': PAGES }, csp: NO_WASM_CSP + reportUri });
});
after(async () => {
  await noWasm?.close();
  await session?.close();
  collector.close();
});

/**
 * A fresh browser context whose violations are recorded: `violations()`
 * lists its pages' securitypolicyviolation events, its console lines about
 * the policy and the reports that arrived since it was made.
 */
async function watchedContext() {
  const context = await session.browser.newContext();
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const consoleLines = [];
  context.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) consoleLines.push(m.text()); });
  const workers = [];
  context.on('page', (p) => p.on('worker', (w) => workers.push(w.url())));
  const firstReport = reports.length;
  return {
    context,
    workers,
    async violations() {
      await new Promise((r) => setTimeout(r, 500)); // reports are sent asynchronously
      const events = [];
      for (const p of context.pages()) events.push(...(await p.evaluate(() => window.__cspViolations ?? []).catch(() => [])));
      const sent = reports.slice(firstReport).map((r) => `${r['violated-directive']} blocked ${r['blocked-uri']} in ${r['document-uri']} (${r['source-file']}:${r['line-number']})`);
      return { events, console: consoleLines, reports: sent, all: [...events, ...consoleLines, ...sent] };
    },
  };
}

async function openIn(context, url) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[page exception] ${e.message}`));
  await page.goto(url);
  return page;
}

test('the demo under the strict policy: the model loads and a reply streams in; diagnostics runs; no violation', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const watch = await watchedContext();
  const page = await openIn(watch.context, session.url);
  assert.ok(await settled(page, 120_000), `the demo failed to load: ${await page.locator('#error').textContent()}`);
  t.diagnostic(`runs on ${await page.locator('#backend').textContent()}`);
  await setReplyLength(page, 6);
  const { seen, final } = await chat(page, 'What is the capital of France?');
  assert.ok(final.length > 0, 'an empty reply');
  assert.ok(seen.length >= 2, `the reply did not stream (states seen: ${JSON.stringify(seen)})`);
  // The engine's worker was served through the demo's service worker, with the policy.
  assert.ok(await page.evaluate(() => navigator.serviceWorker.controller !== null), 'the service worker controls the page');
  assert.ok(watch.workers.some((w) => w.endsWith('/hearth/worker.js')), `workers: ${watch.workers}`);

  // The diagnostics page compiles the engine in the page.
  const diagnostics = await openIn(watch.context, `${session.url}diagnostics.html`);
  await diagnostics.waitForFunction(() => document.getElementById('adapter').dataset.state && document.getElementById('model').dataset.state, null, { timeout: 60_000 });
  assert.equal(await diagnostics.locator('#model').getAttribute('data-state'), 'ok', await diagnostics.locator('#model').textContent());

  const v = await watch.violations();
  assert.deepEqual(v.all, [], 'CSP violations');
  await watch.context.close();
});

test('under the strict policy, model output and user text with markup and javascript: links stay inert text', { timeout: 120_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const watch = await watchedContext();
  // No model (a package that does not exist): the panels get a stand-in
  // engine whose "model output" is the attack text, through the real UI.
  const page = await openIn(watch.context, `${session.url}?model=./no-such-model/`);
  assert.equal(await settled(page, 60_000), false);
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const attacks = [
    '[x](javascript:alert(1))',
    '<img src=x onerror="alert(2)">',
    '<script>alert(3)</script>',
    '**<svg onload="alert(4)">**',
    '[y](JaVaScRiPt:alert(5)) [z](data:text/html,<script>alert(6)</script>)',
    '<a href="javascript:alert(7)">a</a> <iframe srcdoc="<script>alert(8)</script>"></iframe>',
    '[ok](https://example.com)',
  ];
  const text = attacks.join('\n\n');
  await page.evaluate(async (text) => {
    const fake = {
      chat: { completions: { create: async () => (async function* () {
        for (const piece of text.match(/[\s\S]{1,7}/g)) yield { choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] };
        yield { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] };
      })() } },
      completions: { create: async () => (async function* () {
        for (const piece of text.match(/[\s\S]{1,7}/g)) yield { choices: [{ index: 0, text: piece, finish_reason: null }] };
      })() },
      stats: () => null,
    };
    (await import('./chat.js')).setEngine(fake);
    (await import('./textgen.js')).setEngine(fake);
  }, text);
  const { final } = await chat(page, text); // the user's message is the same text
  assert.ok(final.includes('<img src=x onerror="alert(2)">'), `the markup shows as text: ${final}`);
  await page.click('#tab-text');
  await page.click('#generate');
  await page.waitForFunction(() => !document.getElementById('generate').disabled && document.querySelector('#text-output .generated')?.textContent.length > 0);
  await page.waitForTimeout(300); // let anything that was created load or fire
  const dom = await page.evaluate(() => {
    const roots = [document.getElementById('messages'), document.getElementById('text-output')];
    const all = (selector) => roots.flatMap((r) => [...r.querySelectorAll(selector)]);
    return {
      dangerous: all('img, script, iframe, svg, object, embed, [onerror], [onload], [srcdoc]').map((e) => e.outerHTML),
      links: all('a').map((a) => a.href),
      user: document.querySelector('.message.user').textContent,
      generated: document.querySelector('#text-output .generated').textContent,
    };
  });
  assert.deepEqual(dom.dangerous, []);
  assert.deepEqual(dom.links, ['https://example.com/'], 'only the https link became a link');
  assert.equal(dom.user, text, 'the user message is shown as typed');
  assert.equal(dom.generated, text, 'generated text is shown as text');
  assert.deepEqual(dialogs, []);
  assert.deepEqual((await watch.violations()).all, [], 'CSP violations');
  await watch.context.close();
});

test('the npm package under the strict policy: createEngine in its module worker (auto; cpu on the threaded build) and in the page generates; no violation', { timeout: 600_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const watch = await watchedContext();
  const page = await openIn(watch.context, `${session.url}test/package.html`);
  await page.waitForFunction(() => window.hearthReady !== undefined);
  assert.equal(await page.evaluate(() => window.hearthReady), true, 'the package imports');
  const hasAdapter = await page.evaluate(async () => Boolean(await navigator.gpu?.requestAdapter()));
  const cases = [
    ['default (auto)', {}],
    ['cpu, threaded build on 2 threads', { backend: 'cpu', threads: 2 }],
    ['cpu in the page (worker: false)', { backend: 'cpu', worker: false }],
  ];
  // WebGPU on a software adapter (SwiftShader) is slow: a short prompt and 2 tokens.
  if (hasAdapter) cases.push(['webgpu', { backend: 'webgpu' }]);
  else if (IN_CI) throw new Error('CI=true but no WebGPU adapter');
  else t.diagnostic('no WebGPU adapter: the webgpu case is skipped');
  for (const [name, options] of cases) {
    const r = await page.evaluate(async ({ model, options }) => {
      const start = performance.now();
      const engine = await hearth.createEngine({ model, context: 64, ...options });
      const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: options.backend === 'webgpu' ? 2 : 4, temperature: 0 });
      const out = { info: engine.info, text: reply.choices[0].message.content, tokens: reply.usage.completion_tokens, ms: performance.now() - start };
      await engine.unload();
      return out;
    }, { model: MODEL_PATH, options });
    t.diagnostic(`${name}: ${r.info.backend}, ${r.info.threads} thread(s) (${r.info.backendReason}); ${r.tokens} tokens ${JSON.stringify(r.text)} in ${r.ms.toFixed(0)} ms`);
    assert.ok(r.tokens > 0 && r.text.length > 0, `${name}: no text`);
    if (options.backend) assert.equal(r.info.backend, options.backend, name);
    if (options.threads) assert.equal(r.info.threads, options.threads, `${name}: the threaded build runs`);
    if (options.worker === false) assert.equal(r.info.threads, 1, name);
  }
  assert.ok(watch.workers.some((w) => w.endsWith('/hearth/worker.js')), `the engine's module worker: ${watch.workers}`);
  assert.ok(watch.workers.some((w) => w.endsWith('/workerHelpers.js')), `the threaded build's rayon workers: ${watch.workers}`);
  assert.deepEqual((await watch.violations()).all, [], 'CSP violations');
  await watch.context.close();
});

test('negative control: without \'wasm-unsafe-eval\' the engine fails to load with a typed error, and the violation is seen', { timeout: 120_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const watch = await watchedContext();
  const page = await openIn(watch.context, `${noWasm.url}test/package.html`);
  await page.waitForFunction(() => window.hearthReady !== undefined);
  assert.equal(await page.evaluate(() => window.hearthReady), true, 'the package imports (it is JavaScript: no wasm yet)');
  const got = await page.evaluate(async (model) => {
    const out = {};
    for (const [name, options] of Object.entries({ worker: { backend: 'cpu', threads: 2 }, page: { backend: 'cpu', worker: false } })) {
      try {
        await hearth.createEngine({ model, ...options });
        out[name] = 'loaded';
      } catch (e) {
        out[name] = { instance: e instanceof hearth.HearthError, code: e.code, message: e.message };
      }
    }
    return out;
  }, MODEL_PATH);
  for (const name of ['worker', 'page']) {
    assert.equal(got[name].instance, true, `${name}: ${JSON.stringify(got[name])}`);
    assert.equal(got[name].code, 'engine', `${name}: ${JSON.stringify(got[name])}`);
    assert.match(got[name].message, /wasm engine failed to load.*Content Security Policy/i, name);
  }
  // The demo says so too.
  const demo = await openIn(watch.context, noWasm.url);
  assert.equal(await settled(demo, 60_000), false, 'the demo loaded a model without wasm-unsafe-eval');
  assert.match(await demo.locator('#error-detail').textContent(), /Content Security Policy/);
  const v = await watch.violations();
  t.diagnostic(`seen: ${v.events.length} page events, ${v.console.length} console lines, ${v.reports.length} reports`);
  assert.ok(v.events.some((e) => /^script-src blocked wasm-eval/.test(e)), `the page's event (worker: false): ${JSON.stringify(v.events)}`);
  assert.ok(v.reports.some((r) => /^script-src blocked wasm-eval in .*\/hearth\/worker\.js/.test(r)), `the worker's report: ${JSON.stringify(v.reports)}`);
  assert.ok(v.console.length > 0, 'a console line about the policy');
  await watch.context.close();
});

test('the demo ships one strict policy: its <meta> tags and the service worker agree; on a host that sends none, the service worker adds it', { timeout: 120_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  const demo = path.join(REPO, 'web/demo');
  const meta = (file) => fs.readFileSync(path.join(demo, file), 'utf8').match(/<meta http-equiv="Content-Security-Policy" content="([^"]+)">/)?.[1];
  const policy = meta('index.html');
  assert.ok(policy, 'index.html has a <meta> policy');
  assert.equal(meta('diagnostics.html'), policy);
  for (const bad of ["'unsafe-eval'", "'unsafe-inline'", 'frame-ancestors']) assert.ok(!policy.includes(bad), `${bad} in ${policy}`);
  for (const want of ["script-src 'self' 'wasm-unsafe-eval'", "object-src 'none'", "base-uri 'none'", "style-src 'self'"]) assert.ok(policy.includes(want), `${want} not in ${policy}`);

  // A host without the policy header (nor the isolation headers).
  const bare = await startServer({ isolate: false });
  try {
    const watch = await watchedContext();
    const page = await openIn(watch.context, `${bare.url}?model=./no-such-model/`);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
    const headers = await page.evaluate(async () => Promise.all(['./', './hearth/worker.js'].map(async (u) => (await fetch(u)).headers.get('content-security-policy'))));
    assert.deepEqual(headers, [`${policy}; frame-ancestors 'none'`, `${policy}; frame-ancestors 'none'`]);
    assert.deepEqual((await watch.violations()).all, [], 'CSP violations');
    await watch.context.close();
  } finally {
    await bare.close();
  }
});
