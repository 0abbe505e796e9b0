// The static server the demo and the tests use (web/tools/serve.mjs), as a
// browser's HTTP cache sees it: a validator on every file, 304 for an
// unchanged one, ranges and paths outside the mounts as before. Node only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../../web/tools/serve.mjs';

let server;
let dir;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-serve-'));
  fs.writeFileSync(path.join(dir, 'a.wasm'), Buffer.from('0123456789'));
  server = await startServer({ mounts: { '/': dir } });
});
after(async () => {
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('an unchanged file is a 304 to a request naming its ETag; a changed one is served whole; ranges still work', async () => {
  const url = `${server.url}a.wasm`;
  const first = await fetch(url);
  const etag = first.headers.get('etag');
  assert.equal(first.status, 200);
  assert.equal(await first.text(), '0123456789');
  assert.ok(etag && first.headers.get('last-modified'), 'a validator');
  assert.equal(first.headers.get('cache-control'), 'no-cache', 'always asked for again');
  assert.equal(first.headers.get('content-type'), 'application/wasm');

  const unchanged = await fetch(url, { headers: { 'If-None-Match': `"other", ${etag}` } });
  assert.equal(unchanged.status, 304);
  assert.equal(await unchanged.text(), '');
  const stale = await fetch(url, { headers: { 'If-None-Match': '"other"' } });
  assert.equal(stale.status, 200);

  const range = await fetch(url, { headers: { Range: 'bytes=2-4', 'If-None-Match': etag } });
  assert.equal(range.status, 206);
  assert.equal(await range.text(), '234');

  fs.writeFileSync(path.join(dir, 'a.wasm'), Buffer.from('changed, and longer'));
  const changed = await fetch(url, { headers: { 'If-None-Match': etag } });
  assert.equal(changed.status, 200);
  assert.equal(await changed.text(), 'changed, and longer');
  assert.notEqual(changed.headers.get('etag'), etag);

  assert.equal((await fetch(`${server.url}..%2f..%2fetc/passwd`)).status, 404);
});
