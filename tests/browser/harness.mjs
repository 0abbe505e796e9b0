// Shared set-up for the browser tests: a local static server (the same one
// that serves the demo) and headless Chromium with WebGPU (SwiftShader where
// there is no GPU), driven by playwright-core; or Firefox, driven by
// puppeteer-core.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { startServer, DEFAULT_MOUNTS } from '../../web/tools/serve.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.join(HERE, 'artifacts');
export const IN_CI = process.env.CI === 'true';

// WebGPU in headless Chromium (../shared/TOOLCHAIN.md); the networking flags
// keep Chromium from calling home on a machine with a closed network.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The test server: the defaults (demo at /, /pkg/, /models/), test pages at /test/, plus `extraMounts`. */
function startTestServer(extraMounts, { isolate = true, csp } = {}) {
  return startServer({ mounts: { ...DEFAULT_MOUNTS, '/test/': path.join(HERE, 'pages'), ...extraMounts }, isolate, csp });
}

/** Echoes a page's console errors and warnings and its uncaught exceptions to stderr. */
function echoProblems(page) {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning' || m.type() === 'warn') console.error(`[page ${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.error(`[page exception] ${e.message}`));
}

/** A started server and browser (Playwright's or Puppeteer's: both have newPage, goto, close). */
function sessionOf(server, browser) {
  return {
    url: server.url,
    browser,
    /** Opens `server.url + relPath` (in `context`, by default the browser); console errors are echoed to stderr. */
    async open(relPath, context = browser) {
      const page = await context.newPage();
      echoProblems(page);
      await page.goto(server.url + relPath);
      return page;
    },
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

/**
 * Starts the server and the browser. `mounts` adds URL prefixes to the
 * defaults (demo at /, /pkg/, /models/); test pages are at /test/. Pages are
 * cross-origin isolated unless `isolate` is false. `csp`, a policy string,
 * is sent as every response's Content-Security-Policy header.
 */
export async function startSession(extraMounts = {}, { isolate = true, csp } = {}) {
  const server = await startTestServer(extraMounts, { isolate, csp });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
  });
  return sessionOf(server, browser);
}

/** Firefox ESR, as Debian ships it (scripts/setup.sh installs it). */
export const FIREFOX = process.env.FIREFOX_PATH || '/usr/bin/firefox-esr';
/** FIREFOX_DEBUG=1: Firefox's own output and every console message (its workers' too) on stderr. */
const DEBUG_FIREFOX = Boolean(process.env.FIREFOX_DEBUG);

/**
 * startSession's twin in Firefox: stock Firefox (no patched build, unlike
 * Playwright's), driven over WebDriver BiDi by puppeteer-core, with its
 * WebGPU on (`dom.webgpu.enabled`; `gfx.webgpu.ignore-blocklist` lets it
 * offer the software adapter it blocks by default, as Chromium's
 * --enable-unsafe-webgpu does). Pages are cross-origin isolated.
 * Puppeteer's pages have the same `evaluate(fn, arg)` as Playwright's;
 * their `waitForFunction` takes `(fn, options)`.
 */
export async function startFirefoxSession(extraMounts = {}) {
  const server = await startTestServer(extraMounts);
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    // A page's evaluate() may run a whole generation on a slow adapter.
    protocolTimeout: 900_000,
    extraPrefsFirefox: { 'dom.webgpu.enabled': true, 'gfx.webgpu.ignore-blocklist': true, ...(DEBUG_FIREFOX ? { 'devtools.console.stdout.content': true } : {}) },
    dumpio: DEBUG_FIREFOX,
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? os.tmpdir() },
  });
  return sessionOf(server, browser);
}

/**
 * True when the page has a WebGPU adapter. Otherwise the test is skipped with
 * a visible reason, except under CI=true, where a missing adapter is a failure.
 */
export async function requireWebGPU(page, t) {
  const reason = await page.evaluate(async () => {
    if (!navigator.gpu) return 'navigator.gpu is missing';
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ? null : 'requestAdapter() returned null';
  });
  if (reason === null) return true;
  if (IN_CI) throw new Error(`CI=true but no WebGPU in headless Chromium: ${reason}`);
  t.skip(`no WebGPU adapter: ${reason}`);
  return false;
}

/**
 * Makes `context` a browser without WebGPU: navigator.gpu is gone from its
 * pages and from hearth-llm's worker (whose script is served with a line in
 * front that removes it). Routes do not see a service worker's requests:
 * keep service workers out of `context`.
 */
export async function hideWebGPU(context) {
  await patchEveryRealm(context, 'delete Object.getPrototypeOf(navigator).gpu;');
}

/**
 * Makes `context` a browser whose GPU process never answers: its pages' and
 * hearth-llm's worker's navigator.gpu.requestAdapter() return a promise that
 * never settles (as hideWebGPU, keep service workers out).
 */
export async function stallWebGPU(context) {
  await patchEveryRealm(context, 'if (navigator.gpu) Object.getPrototypeOf(navigator.gpu).requestAdapter = () => new Promise(() => {});');
}

/** Runs `script` first in every page of `context` and in hearth-llm's worker. */
async function patchEveryRealm(context, script) {
  await context.addInitScript(script);
  await context.route('**/hearth/worker.js', async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: `${script}\n${await response.text()}` });
  });
}

/** Seeded uniform values in [-scale, scale) (mulberry32). */
export function seededValues(seed, n, scale) {
  let a = seed >>> 0;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = Math.fround(((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale);
  }
  return out;
}

/** Largest |got[i] - want[i]|; throws naming the first index over `tol`. */
export function maxAbsError(what, got, want, tol) {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  let max = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol)) throw new Error(`${what}: index ${i}: got ${got[i]}, want ${want[i]} (error ${err})`);
    max = Math.max(max, err);
  }
  return max;
}
