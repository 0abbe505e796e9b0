/**
 * The loader's hashing worker: sha256 of the buffers it is sent, so that
 * verifying one shard runs beside the upload of another instead of before
 * it (WebCrypto's digest runs on the calling thread in Chromium: about
 * 45 ms for a 33 MB shard); and cached shards read from the Cache API and
 * hashed here, so that a warm load's reads run while the loading thread is
 * busy parsing the tokenizer. Buffers are transferred both ways: no copies.
 * Started by hash.ts with
 * `new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module' })`.
 * @module
 */

import { cachedForAnother, sha256Hex, type CachedFileRequest, type HashReply, type HashRequest } from './hash.js';

const scope = self as unknown as {
  postMessage(message: HashReply, transfer: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<HashRequest>) => void): void;
};

/** Hashes `buffer` and sends both back (the buffer alone, with `error`, when the digest fails). */
async function replyHashed(id: number, buffer: ArrayBuffer): Promise<void> {
  try {
    const hex = await sha256Hex(new Uint8Array(buffer));
    scope.postMessage({ id, buffer, hex }, [buffer]);
  } catch (e) {
    scope.postMessage({ id, buffer, error: e instanceof Error ? e.message : String(e) }, [buffer]);
  }
}

/**
 * Reads a cached file, then hashes it without holding up the next read; a
 * file cached for another sha256 is left unread (`stale`).
 */
async function replyRead(id: number, { cache, url, sha256 }: CachedFileRequest): Promise<void> {
  let buffer: ArrayBuffer;
  try {
    const response = await (await caches.open(cache)).match(url);
    if (!response) return scope.postMessage({ id, missing: true }, []);
    if (cachedForAnother(response, sha256)) return scope.postMessage({ id, stale: true }, []);
    buffer = await response.arrayBuffer();
  } catch (e) {
    return scope.postMessage({ id, error: e instanceof Error ? e.message : String(e) }, []); // read it on the loading thread
  }
  void replyHashed(id, buffer);
}

// Reads go one at a time, in the order asked (each while the one before is
// hashed): the first shard is then ready, and uploading, while the next is
// read, where reads side by side would all finish late together.
let reads: Promise<void> = Promise.resolve();

scope.addEventListener('message', ({ data: { id, buffer, read } }) => {
  if (read) reads = reads.then(() => replyRead(id, read));
  else if (buffer) void replyHashed(id, buffer);
  else scope.postMessage({ id, error: 'nothing to do' }, []);
});
scope.postMessage({ id: -1 }, []); // started: buffers can be sent
