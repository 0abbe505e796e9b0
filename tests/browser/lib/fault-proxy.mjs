// A reverse proxy in front of the test server (web/tools/serve.mjs) that
// breaks chosen files the way a real network does: an HTTP error status for
// the first N requests (or every one), or a TCP connection closed part-way
// through the body. Everything else passes through unchanged (headers
// included, so pages stay cross-origin isolated). It logs every request it
// sees with the time it arrived and how many body bytes went out.
import http from 'node:http';
import { ISOLATION_HEADERS } from '../../../web/tools/serve.mjs';

/**
 * Starts the proxy on 127.0.0.1 (a free port) in front of `upstreamUrl`.
 *
 * `fault(file, rule)` breaks requests whose path ends in `/file`; a rule is
 * `{ status, times }` (answer `status`) or `{ drop: fraction, times, framing }`
 * (send the headers and `fraction` of the body, then destroy the socket;
 * `framing: 'length'` keeps the upstream Content-Length, `'chunked'` sends the
 * body chunked, `'close'` sends no length at all: the body ends when the
 * connection does). `times` is how many requests break (Infinity: all).
 * `heal()` removes every rule. `log` holds `{ file, path, t, status, sent,
 * dropped }` per request (`t`: ms, performance.now()); `take()` empties it.
 */
export async function startFaultProxy(upstreamUrl) {
  const upstream = new URL(upstreamUrl);
  const rules = new Map();
  const log = [];
  const sockets = new Set();

  const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = path.slice(path.lastIndexOf('/') + 1);
    const entry = { file, path, t: performance.now(), status: 0, sent: 0, dropped: false };
    log.push(entry);
    const rule = rules.get(file);
    const active = rule !== undefined && rule.times > 0;
    if (active) rule.times--;

    if (active && rule.status) {
      entry.status = rule.status;
      res.writeHead(rule.status, { ...ISOLATION_HEADERS, 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache' });
      res.end(`injected HTTP ${rule.status}\n`);
      return;
    }

    const headers = { ...req.headers, host: upstream.host };
    const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (upRes) => {
      entry.status = upRes.statusCode;
      const length = Number(upRes.headers['content-length']);
      if (!active || !rule.drop || upRes.statusCode !== 200 || !(length > 0)) {
        res.writeHead(upRes.statusCode, upRes.headers);
        upRes.on('data', (chunk) => (entry.sent += chunk.length));
        upRes.pipe(res);
        return;
      }
      // The fault: part of the body, then the connection goes away.
      const cut = Math.floor(length * rule.drop);
      const outHeaders = { ...upRes.headers };
      if (rule.framing === 'close') {
        // HTTP/1.1 without a length: the body is whatever arrives before the
        // connection closes. Written by hand: Node would chunk it.
        delete outHeaders['content-length'];
        outHeaders.connection = 'close';
        const head = [`HTTP/1.1 200 OK`, ...Object.entries(outHeaders).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
        res.socket.write(head);
      } else {
        if (rule.framing === 'chunked') delete outHeaders['content-length'];
        res.writeHead(200, outHeaders);
      }
      const write = (chunk, done) => (rule.framing === 'close' ? res.socket.write(chunk, done) : res.write(chunk, done));
      const onData = (chunk) => {
        const room = cut - entry.sent;
        if (chunk.length < room) {
          entry.sent += chunk.length;
          if (!write(chunk)) {
            upRes.pause();
            (rule.framing === 'close' ? res.socket : res).once('drain', () => upRes.resume());
          }
          return;
        }
        upRes.off('data', onData);
        upRes.destroy();
        entry.sent += room;
        entry.dropped = true;
        write(chunk.subarray(0, room), () => {
          // 'close' framing: a clean FIN (the client cannot tell the body is short);
          // otherwise the socket is destroyed under an unfinished body.
          if (rule.framing === 'close') res.socket.end();
          else res.socket.destroy();
        });
      };
      upRes.on('data', onData);
    });
    up.on('error', (e) => {
      entry.status = 502;
      if (!res.headersSent) res.writeHead(502, ISOLATION_HEADERS).end(String(e));
      else res.destroy();
    });
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    log,
    /** Breaks requests for `file` (see above). */
    fault(file, rule) {
      rules.set(file, { times: Infinity, framing: 'length', ...rule });
    },
    /** Removes every fault. */
    heal() {
      rules.clear();
    },
    /** The log so far, emptied. */
    take() {
      return log.splice(0);
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((done) => server.close(() => done()));
    },
  };
}
