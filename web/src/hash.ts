/**
 * sha256 of model files, off the loading thread where a worker can start
 * (hash-worker.ts), else on it. The loader verifies every file before use;
 * with the worker, one shard is hashed while the previous one uploads.
 * @module
 */

/** A buffer to hash (the worker's input). */
export interface HashRequest {
  id: number;
  buffer: ArrayBuffer;
}
/** The worker's answer: the buffer back, with its hash or why there is none (id -1: the worker has started). */
export interface HashReply {
  id: number;
  buffer?: ArrayBuffer;
  hex?: string;
  error?: string;
}

/** Lowercase hex sha256 of `bytes` (WebCrypto, on this thread). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** What {@link Hasher.hash} resolves to: the hash and the bytes (the same values in a new view; the old one may be detached). */
export interface Hashed {
  hex: string;
  bytes: Uint8Array;
}

interface Pending {
  resolve: (h: Hashed) => void;
  reject: (e: unknown) => void;
}

/**
 * Hashes on a worker once it has said it started; until then, and for good
 * when it cannot start (no nested workers, a Content-Security-Policy without
 * the package's origin in worker-src), on this thread. Nothing is sent to
 * the worker before it has started, so no buffer is ever lost in transfer.
 */
export class Hasher {
  private worker: Worker | undefined;
  private started = false;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  constructor() {
    if (typeof Worker === 'undefined') return;
    try {
      this.worker = new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module', name: 'hearth-llm-hash' });
    } catch {
      return; // refused (a policy): hash here
    }
    this.worker.onmessage = ({ data }: MessageEvent<HashReply>) => this.reply(data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.stop('the hashing worker stopped'); // hash here from now on
    };
  }

  /** True while hashes go to the worker (it has started and not failed). */
  get ready(): boolean {
    return this.worker !== undefined && this.started;
  }

  /** sha256 of `bytes`; use the returned view afterwards (the one given may be detached). */
  async hash(bytes: Uint8Array): Promise<Hashed> {
    if (!this.ready) return { hex: await sha256Hex(bytes), bytes };
    // A view over part of a buffer is copied out: transferring would send the rest too.
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
    const own = whole ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
    const id = this.nextId++;
    return new Promise<Hashed>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ id, buffer: own.buffer } satisfies HashRequest, [own.buffer]);
    });
  }

  /** Stops the worker (a pending hash fails). */
  close(): void {
    this.stop('the hashing worker was stopped');
  }

  private reply({ id, buffer, hex }: HashReply): void {
    if (id === -1) {
      this.started = true;
      return;
    }
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (!buffer) return p.reject(new Error('the hashing worker returned no buffer'));
    const bytes = new Uint8Array(buffer);
    if (hex !== undefined) p.resolve({ hex, bytes });
    else sha256Hex(bytes).then((h) => p.resolve({ hex: h, bytes }), p.reject); // the worker's digest failed: try here
  }

  /** Ends the worker; pending buffers are gone with it, so their hashes fail with `why`. */
  private stop(why: string): void {
    this.worker?.terminate();
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
  }
}
