// The demo's service worker: keeps the app shell (HTML, CSS, JS, the wasm
// engine) available offline. Network first, so a new deployment shows up at
// once; the cached copy when the network fails. Model files are not touched
// here: hearth-llm caches them itself (Cache API, verified by sha256).
// Every response it serves carries the cross-origin isolation headers (COOP,
// COEP, CORP): a page served from the cache must stay isolated, or the engine
// falls back to its single-threaded CPU build; and on a host that cannot send
// them, the page is isolated from its second load on. Likewise a
// Content-Security-Policy: the host's own is kept; a response without one
// gets the demo's (index.html's, plus frame-ancestors, which a <meta> policy
// cannot set), so that the engine's worker scripts, which take their policy
// from their own response, have it too.
const SHELL_CACHE = 'hearth-demo-shell-v1';
const CORE = [
  './', './index.html', './style.css', './app.js', './chat.js', './textgen.js', './stats.js', './format.js', './markdown.js',
  './hearth/index.js', './hearth/worker.js', './hearth/hash-worker.js', './hearth/wasm/hearth_llm.js', './hearth/wasm/hearth_llm_bg.wasm',
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

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The demo's policy: index.html's <meta> one (keep them the same) and frame-ancestors. */
const CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self' https:; " +
  "img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** `response` with the isolation headers and a Content-Security-Policy (a copy, when it lacks one). */
function isolated(response) {
  if (response.status === 0) return response; // opaque: cannot be copied, and not the page's own file
  const hasCsp = response.headers.has('Content-Security-Policy');
  if (hasCsp && Object.entries(ISOLATION_HEADERS).every(([name, value]) => response.headers.get(name) === value)) return response;
  const headers = new Headers(response.headers); // keeps the host's own policy, if it sent one
  for (const [name, value] of Object.entries(ISOLATION_HEADERS)) headers.set(name, value);
  if (!hasCsp) headers.set('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return isolated(response);
  } catch (error) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return isolated(cached);
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
