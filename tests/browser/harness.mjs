// Shared set-up for the browser tests: a local static server (the same one
// that serves the demo) and headless Chromium with WebGPU (SwiftShader where
// there is no GPU), driven by playwright-core; or Firefox, driven by
// puppeteer-core; or WebKit (WebKitGTK's MiniBrowser under Xvfb), driven by
// selenium-webdriver.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { Builder } from 'selenium-webdriver';
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

/** WebKitGTK as Debian ships it (scripts/setup.sh installs it): its MiniBrowser, its WebDriver and Xvfb for its window. */
export const WEBKIT = {
  browser: process.env.WEBKIT_MINIBROWSER_PATH || firstExisting(fs.existsSync('/usr/lib') ? fs.readdirSync('/usr/lib').map((d) => `/usr/lib/${d}/webkit2gtk-4.1/MiniBrowser`) : []),
  driver: process.env.WEBKIT_DRIVER_PATH || '/usr/bin/WebKitWebDriver',
  xvfb: '/usr/bin/Xvfb',
};
/**
 * HEARTH_WEBKIT_DEBUG=1: the output of WebKitWebDriver and its browser on
 * stderr. (Not WEBKIT_DEBUG: WebKit reads that one itself. MiniBrowser
 * ignores its setting that prints console messages in automation mode, so
 * pages' console problems are not echoed as in the other browsers.)
 */
const DEBUG_WEBKIT = Boolean(process.env.HEARTH_WEBKIT_DEBUG);

function firstExisting(paths) {
  return paths.find((p) => fs.existsSync(p)) ?? paths[0] ?? 'MiniBrowser';
}

/**
 * startSession's twin in WebKit, the engine of Safari: WebKitGTK's
 * MiniBrowser (JavaScriptCore: its own wasm compilers, workers, Cache API),
 * in an Xvfb display of its own, driven by selenium-webdriver through
 * WebKitWebDriver. Pages are cross-origin isolated. As Safari does, it
 * then has SharedArrayBuffer: WebKitGTK only offers it with the
 * JavaScriptCore option useSharedArrayBuffer (unless `sharedMemory` is
 * false, which leaves the port's default, without). WebDriver drives one
 * window: `open` navigates it, so one page is open at a time. Its pages'
 * `evaluate(fn, arg)` and `waitForFunction(fn, { timeout })` are the other
 * drivers' (`fn`'s value must be JSON).
 */
export async function startWebKitSession(extraMounts = {}, { sharedMemory = true } = {}) {
  const server = await startTestServer(extraMounts);
  const stops = [() => server.close()];
  const stopAll = async () => { for (const stop of stops.reverse()) await stop(); };
  try {
    const display = await startXvfb(stops);
    const driverUrl = await startWebKitDriver(stops, {
      ...process.env,
      DISPLAY: display,
      XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? os.tmpdir(),
      ...(sharedMemory ? { JSC_useSharedArrayBuffer: '1' } : {}),
    });
    const driver = await new Builder().usingServer(driverUrl).withCapabilities({
      browserName: 'MiniBrowser',
      'webkitgtk:browserOptions': { binary: WEBKIT.browser, args: ['--automation'] },
    }).build();
    stops.push(() => driver.quit());
    // A page's evaluate() may run a whole generation.
    await driver.manage().setTimeouts({ script: 900_000, pageLoad: 120_000 });
    const page = webDriverPage(driver);
    return {
      url: server.url,
      driver,
      async open(relPath) {
        await driver.get(server.url + relPath);
        return page;
      },
      close: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/** The window of a WebDriver session as a page: evaluate, waitForFunction, close (to a blank page). */
function webDriverPage(driver) {
  const page = {
    async evaluate(fn, arg) {
      const result = await driver.executeAsyncScript(
        `const done = arguments[arguments.length - 1];
         Promise.resolve().then(() => (${fn})(arguments[0]))
           .then((value) => done({ value }), (e) => done({ error: e instanceof Error ? e.name + ': ' + e.message + ' @ ' + e.stack : String(e) }));`,
        arg ?? null);
      if (result.error !== undefined) throw new Error(result.error);
      return result.value;
    },
    async waitForFunction(fn, { timeout = 30_000, polling = 200 } = {}) {
      const end = Date.now() + timeout;
      for (;;) {
        if (await page.evaluate(fn)) return;
        if (Date.now() > end) throw new Error(`waitForFunction: ${fn} still false after ${timeout} ms`);
        await new Promise((r) => setTimeout(r, polling));
      }
    },
    close: () => driver.get('about:blank'),
  };
  return page;
}

/** Starts Xvfb on a free display (it writes the number it took to fd 3); returns ":N". */
function startXvfb(stops) {
  const xvfb = spawn(WEBKIT.xvfb, ['-displayfd', '3', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
  stops.push(() => stopProcess(xvfb));
  return new Promise((resolve, reject) => {
    let out = '';
    xvfb.stdio[3].on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(`:${out.trim()}`);
    });
    xvfb.once('error', reject);
    xvfb.once('exit', (code) => reject(new Error(`Xvfb exited (${code}) before it had a display`)));
  });
}

/** Starts WebKitWebDriver on a free port with `env`; returns its URL once it answers. */
async function startWebKitDriver(stops, env) {
  const port = await freePort();
  const driver = spawn(WEBKIT.driver, [`--port=${port}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  stops.push(() => stopProcess(driver));
  let exited = null;
  driver.once('exit', (code, signal) => { exited = `WebKitWebDriver exited (${code ?? signal})`; });
  driver.once('error', (e) => { exited = `WebKitWebDriver did not start: ${e.message}`; });
  for (const out of [driver.stdout, driver.stderr]) out.on('data', (d) => { if (DEBUG_WEBKIT) process.stderr.write(d); });
  const url = `http://127.0.0.1:${port}`;
  for (const end = Date.now() + 20_000; ;) {
    if (exited) throw new Error(exited);
    try {
      if ((await (await fetch(`${url}/status`)).json()).value?.ready) return url;
    } catch { /* not listening yet */ }
    if (Date.now() > end) throw new Error(`WebKitWebDriver did not answer on ${url} in 20 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** SIGTERM, then SIGKILL if it has not exited after 5 s; resolves once it has. */
function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => { clearTimeout(kill); resolve(); });
    child.kill('SIGTERM');
  });
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

/**
 * Makes `context` a browser whose GPU process hangs once asked for a device:
 * requestAdapter() answers with an adapter that says it is hardware (so
 * backend 'auto' picks WebGPU), and its requestDevice() never settles (as
 * hideWebGPU, keep service workers out).
 */
export async function stallWebGPUDevice(context) {
  await patchEveryRealm(context, `if (self.GPUAdapter) {
    GPUAdapter.prototype.requestDevice = () => new Promise(() => {});
    const info = { vendor: 'stalled-gpu', architecture: 'test', device: '', description: 'a GPU whose device never opens', isFallbackAdapter: false };
    Object.defineProperty(GPUAdapter.prototype, 'info', { get: () => info });
    Object.defineProperty(GPUAdapter.prototype, 'isFallbackAdapter', { get: () => false });
  }`);
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
