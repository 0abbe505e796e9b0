#!/usr/bin/env node
// A small static file server for the demo, the model files and the browser
// tests. Node built-ins only. It sends COOP/COEP headers, so pages are
// cross-origin isolated (SharedArrayBuffer: the engine's threaded CPU build);
// `--no-isolation` (isolate: false) leaves them out, to try a page as a host
// without those headers serves it. `--csp [POLICY]` (csp: POLICY) sends a
// Content-Security-Policy header with every response, pages and worker
// scripts alike (a worker takes its policy from its own script's response);
// without a POLICY, STRICT_CSP. It supports HTTP Range requests, sends an
// ETag and answers a request that names it with 304, as static hosts do,
// and never serves a path outside its mounted folders.
//
// CLI: node web/tools/serve.mjs [--port 8080] [--host 127.0.0.1] [--root web/site] [--no-isolation] [--csp [POLICY]]
// API: startServer({ port, host, mounts, isolate, csp }) -> { url, close() }

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** URL prefix -> folder. The demo at `/`, the wasm build, the npm package build, the models. */
export const DEFAULT_MOUNTS = {
  '/pkg/': path.join(ROOT, 'web/pkg'),
  '/pkg-threads/': path.join(ROOT, 'web/pkg-threads'),
  '/hearth/': path.join(ROOT, 'web/dist'),
  '/models/': path.join(ROOT, 'models'),
  '/': path.join(ROOT, 'web/demo'),
};

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};

/** Maps a request path to a file inside one of `mounts`, or null. */
function resolveFile(mounts, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  // Longest prefix first, so '/pkg/' wins over '/'.
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  for (const prefix of prefixes) {
    if (!decoded.startsWith(prefix)) continue;
    const base = path.resolve(mounts[prefix]);
    let file = path.resolve(base, '.' + path.sep + decoded.slice(prefix.length));
    if (file !== base && !file.startsWith(base + path.sep)) return null; // traversal
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    return file;
  }
  return null;
}

/** The headers that make a page cross-origin isolated, and its files loadable by such a page. */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/**
 * A strict Content-Security-Policy that the demo and the npm package run
 * under (tests/browser/csp.test.mjs): scripts, workers and fetches from the
 * page's own origin only, no 'unsafe-eval' and no 'unsafe-inline';
 * 'wasm-unsafe-eval' is what lets the engine's WebAssembly compile.
 */
export const STRICT_CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

function handler(mounts, isolate, csp) {
  return (req, res) => {
    if (isolate) for (const [name, value] of Object.entries(ISOLATION_HEADERS)) res.setHeader(name, value);
    if (csp) res.setHeader('Content-Security-Policy', csp);
    res.setHeader('Cache-Control', 'no-cache');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    const file = resolveFile(mounts, new URL(req.url, 'http://x').pathname);
    let stat;
    try {
      stat = file && fs.statSync(file);
    } catch {
      stat = null;
    }
    if (!stat || !stat.isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const type = MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    res.setHeader('Content-Type', type);
    res.setHeader('Accept-Ranges', 'bytes');
    // A validator, as static hosts send: 'no-cache' then means "ask first",
    // and an unchanged file is a 304 instead of a new download. (Whether V8
    // then reuses its compiled wasm was not seen: warm loads in a persistent
    // profile took the same time with and without it.)
    const etag = `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Last-Modified', stat.mtime.toUTCString());
    if (!req.headers.range && req.headers['if-none-match']?.split(/\s*,\s*/).includes(etag)) {
      res.writeHead(304).end();
      return;
    }
    let start = 0;
    let end = stat.size - 1;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      start = range[1] === '' ? Math.max(0, stat.size - Number(range[2])) : Number(range[1]);
      end = range[1] !== '' && range[2] !== '' ? Math.min(Number(range[2]), stat.size - 1) : end;
      if (start > end || start >= stat.size) {
        res.writeHead(416, { 'Content-Range': `bytes */${stat.size}` }).end();
        return;
      }
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${stat.size}`);
    }
    res.setHeader('Content-Length', end - start + 1);
    if (req.method === 'HEAD' || stat.size === 0) {
      res.end();
      return;
    }
    fs.createReadStream(file, { start, end }).pipe(res);
  };
}

/**
 * Starts a server on `host:port` (port 0 picks a free one); `isolate: false`
 * sends no cross-origin isolation headers; `csp` (a policy string, such as
 * STRICT_CSP) is sent as the Content-Security-Policy header of every response.
 * @returns {Promise<{url: string, close: () => Promise<void>}>}
 */
export function startServer({ port = 0, host = '127.0.0.1', mounts = DEFAULT_MOUNTS, isolate = true, csp = undefined } = {}) {
  const server = http.createServer(handler(mounts, isolate, csp));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: bound } = server.address();
      resolve({
        url: `http://${host}:${bound}/`,
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(() => done()); }),
      });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : fallback;
  };
  // --root DIR serves one folder (the built site, web/site) instead of the mounts.
  const root = arg('--root');
  const mounts = root ? { '/': path.resolve(root) } : DEFAULT_MOUNTS;
  const isolate = !process.argv.includes('--no-isolation');
  // --csp alone sends STRICT_CSP; --csp "POLICY" sends that policy.
  const cspAt = process.argv.indexOf('--csp');
  const cspValue = process.argv[cspAt + 1];
  const csp = cspAt < 0 ? undefined : cspValue && !cspValue.startsWith('--') ? cspValue : STRICT_CSP;
  const { url } = await startServer({ port: Number(arg('--port', 8080)), host: arg('--host', '127.0.0.1'), mounts, isolate, csp });
  console.log(`hearth demo: ${url}  (${isolate ? 'cross-origin isolated' : 'not cross-origin isolated: the CPU backend runs on one thread'}` +
    `${csp ? `; Content-Security-Policy: ${csp}` : ''}; Ctrl+C to stop)`);
}
