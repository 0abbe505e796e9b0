/**
 * sha256 of model files, off the loading thread where a worker can start
 * (hash-worker.ts), else on it. The loader verifies every file before use;
 * with the worker, one shard is hashed while the previous one uploads, and
 * cached shards are read and hashed there while the loading thread parses
 * the tokenizer.
 * @module
 */

/**
 * The worker's input: a buffer to hash, or a file to read from the Cache API
 * and hash there (`read`; see {@link Hasher.readCached}).
 */
export interface HashRequest {
  id: number;
  buffer?: ArrayBuffer;
  read?: CachedFileRequest;
}
/** A cached file for the worker to read: `url` in cache `cache`, stored for `sha256`. */
export interface CachedFileRequest {
  cache: string;
  url: string;
  sha256: string;
}
/**
 * The worker's answer: the buffer back, with its hash or why there is none;
 * for a read, `missing` (not cached) or `stale` (cached for another sha256)
 * instead. Id -1: the worker has started.
 */
export interface HashReply {
  id: number;
  buffer?: ArrayBuffer;
  hex?: string;
  error?: string;
  missing?: boolean;
  stale?: boolean;
}

/**
 * The header a cached file carries with the sha256 the manifest gave it when
 * it was stored, so that a file the package has since replaced is told apart
 * from a corrupt one.
 */
export const SHA256_HEADER = 'X-Hearth-Sha256';

/** True when `response` was cached for another sha256 than `sha256` (the package has been updated since). */
export function cachedForAnother(response: Response, sha256: string): boolean {
  const storedFor = response.headers.get(SHA256_HEADER);
  return storedFor !== null && storedFor !== sha256;
}

/** A cached file as {@link Hasher.readCached} finds it. */
export type CachedFile = { bytes: Uint8Array; hex: string } | 'missing' | 'stale';

/** Lowercase hex sha256 of `bytes` (WebCrypto, on this thread). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The bytes and hash of a worker's reply; its digest failed: hashed here. */
async function hashedReply({ buffer, hex }: HashReply): Promise<Hashed> {
  if (!buffer) throw new Error('the hashing worker returned no buffer');
  const bytes = new Uint8Array(buffer);
  return { hex: hex ?? (await sha256Hex(bytes)), bytes };
}

/** What {@link Hasher.hash} resolves to: the hash and the bytes (the same values in a new view; the old one may be detached). */
export interface Hashed {
  hex: string;
  bytes: Uint8Array;
}

interface Pending {
  resolve: (reply: HashReply) => void;
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
    return hashedReply(await this.send({ id: this.nextId++, buffer: own.buffer }, [own.buffer]));
  }

  /**
   * Reads a cached file and hashes it, both on the worker: the loading
   * thread's own work (the tokenizer's parse) does not hold the reads up,
   * and the bytes arrive hashed. Resolves to undefined where the worker
   * cannot do it (no worker, it failed, no Cache API there): read it here.
   * Unlike a hash, a read may be sent before the worker has started: the
   * request waits in its queue and no buffer is at stake.
   */
  async readCached(read: CachedFileRequest): Promise<CachedFile | undefined> {
    if (!this.worker) return undefined;
    try {
      const reply = await this.send({ id: this.nextId++, read }, []);
      if (reply.missing) return 'missing';
      if (reply.stale) return 'stale';
      if (!reply.buffer) return undefined; // the read failed there (reply.error)
      return await hashedReply(reply);
    } catch {
      return undefined;
    }
  }

  /** Stops the worker (a pending hash fails). */
  close(): void {
    this.stop('the hashing worker was stopped');
  }

  private send(request: HashRequest, transfer: Transferable[]): Promise<HashReply> {
    return new Promise<HashReply>((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      this.worker!.postMessage(request, transfer);
    });
  }

  private reply(reply: HashReply): void {
    if (reply.id === -1) {
      this.started = true;
      return;
    }
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    p.resolve(reply);
  }

  /** Ends the worker; pending buffers are gone with it, so their hashes fail with `why`. */
  private stop(why: string): void {
    this.worker?.terminate();
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(new Error(why));
    this.pending.clear();
  }
}
