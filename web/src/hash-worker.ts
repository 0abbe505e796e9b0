/**
 * The loader's hashing worker: sha256 of the buffers it is sent, so that
 * verifying one shard runs beside the upload of another instead of before
 * it (WebCrypto's digest runs on the calling thread in Chromium: about
 * 45 ms for a 33 MB shard). Buffers are transferred both ways: no copies.
 * Started by hash.ts with
 * `new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module' })`.
 * @module
 */

import type { HashReply, HashRequest } from './hash.js';

const scope = self as unknown as {
  postMessage(message: HashReply, transfer: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<HashRequest>) => void): void;
};

scope.addEventListener('message', async ({ data: { id, buffer } }) => {
  try {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', buffer));
    scope.postMessage({ id, buffer, hex: Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('') }, [buffer]);
  } catch (e) {
    scope.postMessage({ id, buffer, error: e instanceof Error ? e.message : String(e) }, [buffer]);
  }
});
scope.postMessage({ id: -1 }, []); // started: buffers can be sent
