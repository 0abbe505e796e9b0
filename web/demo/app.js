// The demo's entry point: tabs and theme, the backend choice (Auto, WebGPU,
// CPU; remembered), loading a model with a progress bar (phase, bytes, speed,
// ETA), clear errors, the model panel, and the service worker that keeps the
// page working offline.
import { createEngine, listCachedModels, hasModelInCache, deleteModelFromCache } from './hearth/index.js';
import { initChat, setEngine as setChatEngine } from './chat.js';
import { initTextGeneration, setEngine as setTextEngine } from './textgen.js';
import * as stats from './stats.js';
import { bytes, duration, setText } from './format.js';

const $ = (id) => document.getElementById(id);
export const DEFAULT_MODEL = new URL('./models/SmolLM2-135M-Instruct-q4_1/', document.baseURI).href;

let engine = null;
let loading = null;

// --- tabs (arrow keys move between them, as the ARIA pattern expects)
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab) {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute('aria-selected', String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !selected;
  }
  tab.focus();
  if (tab.id === 'tab-model') refreshModelPanel();
}
tabs.forEach((tab, i) => {
  tab.addEventListener('click', () => selectTab(tab));
  tab.addEventListener('keydown', (e) => {
    const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
    if (step) selectTab(tabs[(i + step + tabs.length) % tabs.length]);
  });
});

// --- theme: system by default, the toggle forces light or dark
const savedTheme = localStorage.getItem('hearth-theme');
if (savedTheme) document.documentElement.dataset.theme = savedTheme;
$('theme').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === 'dark'
    : matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.dataset.theme = dark ? 'light' : 'dark';
  localStorage.setItem('hearth-theme', document.documentElement.dataset.theme);
});

// --- errors a person can act on
function explain(error) {
  const code = error?.code;
  const message = error?.message ?? String(error);
  if (code === 'no_webgpu' || code === 'no_adapter') {
    return ['This browser cannot run the model on WebGPU: WebGPU is not available.',
      'Pick Auto or CPU above to run it on the processor instead, or use a recent Chrome, Edge or Opera on desktop or Android ' +
      '(Safari 26+ and Firefox 141+ on Windows also work), or enable WebGPU in the browser\'s flags. ' +
      'On Linux, Chrome needs --enable-unsafe-webgpu. ' + `(${message})`];
  }
  if (code === 'too_large') {
    return ['This model does not fit on this device.', message];
  }
  if (code === 'device_lost' || code === 'crashed') {
    return [code === 'device_lost' ? 'The GPU stopped responding (its device was lost).' : 'The engine crashed.',
      `The model is being loaded again from the cache; send your message again once it is ready. (${message})`];
  }
  if (/out of memory|OutOfMemory|allocation/i.test(message) || code === 'device' || code === 'out_of_memory') {
    return ['The GPU ran out of memory loading the model.', `Close other tabs using the GPU, or pick a smaller model. (${message})`];
  }
  if (code === 'integrity') {
    return ['A model file failed its integrity check.', `The damaged copy was removed from the cache; try again to download it afresh. (${message})`];
  }
  if (code === 'network' || code === 'not_found') {
    return ['The model could not be downloaded.', `Check the connection or the model URL; files already downloaded stay cached. (${message})`];
  }
  return ['Something went wrong.', message];
}

function showError(error) {
  const [title, detail] = explain(error);
  setText('error-title', title);
  setText('error-detail', detail);
  $('error').hidden = false;
}

// --- the backend: Auto (the package decides: WebGPU on a hardware adapter,
// else the CPU), WebGPU or CPU; a change reloads the model.
const backendChoice = $('backend-choice');
backendChoice.value = ['auto', 'webgpu', 'cpu'].includes(localStorage.getItem('hearth-backend')) ? localStorage.getItem('hearth-backend') : 'auto';
backendChoice.addEventListener('change', () => {
  localStorage.setItem('hearth-backend', backendChoice.value);
  loadModel($('model-url').value.trim() || DEFAULT_MODEL);
});

function backendLabel(info) {
  if (info.backend === 'cpu') return `CPU · ${stats.threads(info.threads)}`;
  const software = /swiftshader|llvmpipe|lavapipe|software/i.test(Object.values(info.adapter?.browser ?? {}).join(' '));
  return `WebGPU${software ? ' (software)' : ''}`;
}

function showBackend(info) {
  stats.showDevice(info);
  setText('backend', backendLabel(info));
  $('backend').title = `where the model runs: ${info.backendReason}`;
  document.body.dataset.backend = info.backend;
}

// --- loading with progress
function progressReporter() {
  const started = performance.now();
  return (p) => {
    const seconds = (performance.now() - started) / 1000;
    const fetched = p.loadedBytes - p.cachedBytes;
    const speed = fetched / Math.max(seconds, 1e-3);
    const left = p.totalBytes - p.loadedBytes;
    const phase = { manifest: 'Reading the model manifest', download: 'Downloading the model', upload: 'Loading the weights', ready: 'Ready' }[p.phase] ?? p.phase;
    setText('load-phase', `${phase}${p.shardsTotal ? ` (${p.shardsDone}/${p.shardsTotal} shards)` : ''}`);
    const parts = [`${bytes(p.loadedBytes)} of ${bytes(p.totalBytes)}`];
    if (p.cachedBytes) parts.push(`${bytes(p.cachedBytes)} from cache`);
    if (fetched > 0 && left > 0) parts.push(`${bytes(speed)}/s`, `${duration(left / speed)} left`);
    setText('load-numbers', parts.join(' · '));
    $('load-progress').value = p.totalBytes ? p.loadedBytes / p.totalBytes : 0;
  };
}

async function loadModel(url) {
  if (loading) return loading;
  $('error').hidden = true;
  $('loading').hidden = false;
  setText('model-name', 'loading…');
  setText('backend', '…');
  backendChoice.disabled = true; // one load at a time
  delete document.body.dataset.ready;
  setChatEngine(null);
  setTextEngine(null);
  const previous = engine;
  engine = null;
  loading = (async () => {
    try {
      await previous?.unload();
      const t0 = performance.now();
      engine = await createEngine({ model: url, backend: backendChoice.value, onProgress: progressReporter() });
      performance.measure('hearth:load', { start: t0 }); // read by the tests for the load-time figures
      showBackend(engine.info);
      setText('model-name', `${engine.info.model} · ${engine.info.quantization}`);
      $('model-url').value = url;
      setChatEngine(engine);
      setTextEngine(engine);
      $('loading').hidden = true;
      document.body.dataset.ready = 'true';
    } catch (e) {
      $('loading').hidden = true;
      setText('model-name', 'no model loaded');
      showError(e);
    } finally {
      loading = null;
      backendChoice.disabled = false;
      refreshModelPanel();
    }
  })();
  return loading;
}

// An engine whose GPU device was lost (or that crashed) cannot run again:
// say so and load the model afresh (from the cache, so it is quick).
document.addEventListener('hearth:engine-lost', (event) => {
  const url = engine?.info.url ?? ($('model-url').value.trim() || DEFAULT_MODEL);
  loadModel(url).then(() => showError(event.detail));
});

// --- model panel

/** The package's size: its manifest's total, or what the cache holds when offline. */
async function packageBytes(url, cachedModels) {
  try {
    const response = await fetch(new URL('manifest.json', url));
    if (response.ok) return (await response.json()).total_bytes;
  } catch {
    // offline: fall through to the cache listing
  }
  return cachedModels.find((m) => m.url === url)?.bytes ?? NaN;
}
async function refreshModelPanel() {
  const info = $('model-info');
  const facts = [];
  const models = await listCachedModels().catch(() => []);
  if (engine) {
    const i = engine.info;
    facts.push(['Model', i.model], ['Quantization', i.quantization], ['Download size', bytes(await packageBytes(i.url, models))],
      ['Context', `${i.context} tokens`], ['Runs on', `${backendLabel(i)} (${i.backendReason})`],
      [i.backend === 'cpu' ? 'Memory' : 'GPU memory', bytes(i.gpuBytes)],
      ['Cached', (await hasModelInCache(i.url)) ? 'yes: loads offline' : 'no'], ['URL', i.url]);
  } else {
    facts.push(['Model', 'none loaded']);
  }
  info.replaceChildren(...facts.flatMap(([k, v]) => [Object.assign(document.createElement('dt'), { textContent: k }), Object.assign(document.createElement('dd'), { textContent: v })]));
  const list = $('cached');
  list.replaceChildren(...models.map((m) => {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = `${m.name}: ${bytes(m.bytes)}${m.complete ? '' : ` (partial: ${m.cachedShards}/${m.shards} shards)`}`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Delete';
    remove.setAttribute('aria-label', `Delete ${m.name} from the cache`);
    remove.addEventListener('click', async () => {
      await deleteModelFromCache(m.url);
      refreshModelPanel();
    });
    li.append(label, remove);
    return li;
  }));
  if (!models.length) list.append(Object.assign(document.createElement('li'), { textContent: 'none', className: 'muted' }));
}

$('model-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const url = $('model-url').value.trim();
  if (url) loadModel(url);
});
$('error-retry').addEventListener('click', () => loadModel($('model-url').value.trim() || DEFAULT_MODEL));

// --- offline: the service worker caches the app shell (the model files are
// cached by hearth-llm itself, in the Cache API).
// On the first visit the engine's worker is created only once the service
// worker controls the page, so the worker's files are cached as they load.
async function startServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  try {
    await navigator.serviceWorker.register('./sw.js');
    // A worker that never activates (its install failed, or it is blocked)
    // must not keep the model from loading.
    const registration = await Promise.race([navigator.serviceWorker.ready, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    if (!registration) throw new Error('it did not activate');
    if (!navigator.serviceWorker.controller) {
      await Promise.race([
        new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true })),
        new Promise((resolve) => setTimeout(resolve, 3000)),
      ]);
    }
    const urls = [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];
    registration.active?.postMessage({ type: 'cache-urls', urls });
  } catch (e) {
    console.warn('offline support unavailable: the service worker did not start:', e);
  }
}

initChat();
initTextGeneration();
$('model-url').value = new URLSearchParams(location.search).get('model') ?? DEFAULT_MODEL;
startServiceWorker().then(() => loadModel($('model-url').value));
