/**
 * The loader's hashing worker: sha256 of the buffers it is sent, so that
 * verifying one shard runs beside the upload of another instead of before
 * it (WebCrypto's digest runs on the calling thread in Chromium: about
 * 45 ms for a 33 MB shard). Buffers are transferred both ways: no copies.
 * Started by hash.ts with
 * `new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module' })`.
 * @module
 */

import { sha256Hex, type HashReply, type HashRequest } from './hash.js';

const scope = self as unknown as {
  postMessage(message: HashReply, transfer: Transferable[]): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<HashRequest>) => void): void;
};

scope.addEventListener('message', async ({ data: { id, buffer } }) => {
  try {
    const hex = await sha256Hex(new Uint8Array(buffer));
    scope.postMessage({ id, buffer, hex }, [buffer]);
  } catch (e) {
    scope.postMessage({ id, buffer, error: e instanceof Error ? e.message : String(e) }, [buffer]);
  }
});
scope.postMessage({ id: -1 }, []); // started: buffers can be sent
