// The demo's service worker: keeps the app shell (HTML, CSS, JS, the wasm
// engine) available offline. Network first, so a new deployment shows up at
// once; the cached copy when the network fails. Model files are not touched
// here: hearth-llm caches them itself (Cache API, verified by sha256).
const SHELL_CACHE = 'hearth-demo-shell-v1';
const CORE = [
  './', './index.html', './style.css', './app.js', './chat.js', './textgen.js', './stats.js', './format.js', './markdown.js',
  './hearth/index.js', './hearth/worker.js', './hearth/wasm/hearth_llm.js', './hearth/wasm/hearth_llm_bg.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(CORE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith('hearth-demo-shell-') && name !== SHELL_CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

/** Same-origin app files, not model packages (those are hearth-llm's). */
function isShell(request) {
  const url = new URL(request.url);
  return request.method === 'GET' && url.origin === self.location.origin && !url.pathname.includes('/models/');
}

async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return cached;
    throw error;
  }
}

self.addEventListener('fetch', (event) => {
  if (isShell(event.request)) event.respondWith(networkFirst(event.request));
});

// The page lists what it loaded before this worker controlled it (the
// first visit), so those files are cached too.
self.addEventListener('message', (event) => {
  if (event.data?.type !== 'cache-urls') return;
  const urls = event.data.urls.filter((u) => isShell(new Request(u)));
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => Promise.all(urls.map((u) => cache.add(u).catch(() => {})))));
});
