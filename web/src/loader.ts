/**
 * Loads a model package into the wasm engine: the manifest (network first,
 * the cached copy when offline), the tokenizer and the shards (from the
 * cache, else downloaded with bounded parallelism and retries), each file
 * verified against the manifest's sha256 before use and stored in the Cache
 * API. Shards go to the wasm loader one at a time as they verify, which
 * uploads their tensors to the GPU and drops them: the whole model is never
 * held in memory at once.
 * @module
 */

import { ModelCache } from './cache.js';
import { HearthError, toHearthError } from './errors.js';
import { downloadWithRetry, type RetryOptions } from './fetch.js';
import { cachedForAnother, Hasher, sha256Hex } from './hash.js';
import { packageFileUrl, validateManifest, type Manifest, type ManifestFile } from './manifest.js';
import { ProgressTracker, type ProgressCallback } from './progress.js';

/** The part of the wasm `ModelLoader` this module drives. */
export interface ShardSink<E> {
  addShard(file: string, bytes: Uint8Array): void;
  missingTensors(): string[];
  finish(): E;
  free(): void;
}

/** Options of {@link loadModel}. */
export interface LoaderOptions {
  /** The package folder's absolute URL, ending in `/`. */
  baseUrl: string;
  /** The manifest, when the caller has it already (else fetched from `baseUrl`). */
  manifest?: Manifest;
  /** Cache API cache name; null: no caching. */
  cacheName?: string | null;
  /** Downloads at once (default 4). */
  concurrency?: number;
  retry?: RetryOptions;
  /** Aborts the load. */
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
  /** Shortest time between two byte-count progress events (default 100 ms). */
  progressIntervalMs?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/** What {@link loadModel} resolves to. */
export interface LoadedModel<E> {
  engine: E;
  manifest: Manifest;
  /** Bytes the cache supplied. */
  cachedBytes: number;
}

export { sha256Hex };

/**
 * Checks `bytes` against the manifest's entry; the error names the file and
 * its URL. Resolves to the bytes to use from then on (`bytes` itself may be
 * detached: it went to the hashing worker and back).
 */
async function verify(entry: ManifestFile, file: { bytes: Uint8Array; hex?: string }, url: string, isShard: boolean, where: string, hasher: Hasher): Promise<Uint8Array> {
  const fields = { url, ...(isShard ? { shard: entry.file } : {}) };
  if (file.bytes.byteLength !== entry.bytes) {
    throw new HearthError('integrity', `${entry.file} (${where}): ${file.bytes.byteLength} bytes, the manifest says ${entry.bytes}`, fields);
  }
  const { hex, bytes: verified } = file.hex === undefined ? await hasher.hash(file.bytes) : { hex: file.hex, bytes: file.bytes };
  if (hex !== entry.sha256) {
    throw new HearthError('integrity', `${entry.file} (${where}): sha256 ${hex} does not match the manifest's ${entry.sha256}`, fields);
  }
  return verified;
}

/** A download's `network` or `not_found` error with `shard` set, as integrity errors have it. */
function namingShard(e: unknown, shard: string): unknown {
  if (!(e instanceof HearthError) || (e.code !== 'network' && e.code !== 'not_found') || e.shard !== undefined) return e;
  return new HearthError(e.code, e.message, { url: e.url, status: e.status, shard }, { cause: e.cause ?? e });
}

/** Fetches the manifest: network first, the cached copy when the network fails. */
async function fetchManifest(options: LoaderOptions, cache: ModelCache): Promise<{ manifest: Manifest; text: string }> {
  const url = packageFileUrl(options.baseUrl, 'manifest.json');
  const cached = await cache.get(url);
  let text: string;
  try {
    // With a cached copy to fall back on, one attempt: offline loads start at once.
    const retry = cached ? { ...options.retry, retries: 0 } : options.retry;
    const { bytes } = await downloadWithRetry(url, { retry, signal: options.signal, fetch: options.fetch });
    text = new TextDecoder().decode(bytes);
  } catch (e) {
    if (!cached || !(e instanceof HearthError) || e.code !== 'network') throw e;
    console.warn(`hearth-llm: ${e.message}; using the cached manifest`);
    return parseManifest(await cached.text(), url);
  }
  const parsed = parseManifest(text, url);
  await cache.put(url, text);
  return parsed;
}

function parseManifest(text: string, url: string): { manifest: Manifest; text: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new HearthError('manifest', `${url} is not JSON: ${e instanceof Error ? e.message : e}`, { url });
  }
  try {
    return { manifest: validateManifest(json), text };
  } catch (e) {
    throw new HearthError('manifest', `${url}: ${(e as Error).message}`, { url });
  }
}

/**
 * The cached copy of a package file, unverified (with its hash when it was
 * read on the hashing worker). Shards are read on the worker, so that the
 * reads go on while this thread parses the tokenizer (the tokenizer itself
 * is read here: the parse waits for it, and the worker may not have started).
 */
async function readCached(entry: ManifestFile, url: string, isShard: boolean, cache: ModelCache, hasher: Hasher): Promise<{ bytes: Uint8Array; hex?: string } | 'missing' | 'stale'> {
  if (cache.name === null) return 'missing';
  if (isShard) {
    const read = await hasher.readCached({ cache: cache.name, url, sha256: entry.sha256 });
    if (read !== undefined) return read;
  }
  const response = await cache.get(url);
  if (!response) return 'missing';
  if (cachedForAnother(response, entry.sha256)) return 'stale';
  return { bytes: new Uint8Array(await response.arrayBuffer()) };
}

/**
 * One file of the package, verified: from the cache when it is there, else
 * downloaded (and then cached). A cached copy that fails verification is
 * evicted and the load fails with an `integrity` error (the next load
 * downloads it again); a cached copy stored for a different sha256 (the
 * package was updated) is replaced silently.
 */
async function obtainFile(
  entry: ManifestFile,
  isShard: boolean,
  options: LoaderOptions,
  cache: ModelCache,
  progress: ProgressTracker,
  hasher: Hasher,
): Promise<Uint8Array> {
  const url = packageFileUrl(options.baseUrl, entry.file);
  const cached = await readCached(entry, url, isShard, cache, hasher);
  if (cached === 'stale') {
    await cache.delete(url); // an older version of the file: not corruption
  } else if (cached !== 'missing') {
    let bytes: Uint8Array;
    try {
      bytes = await verify(entry, cached, url, isShard, 'cached copy', hasher);
    } catch (e) {
      await cache.delete(url);
      throw new HearthError('integrity', `${(e as Error).message}; it was removed from the cache and will be downloaded again on the next load`,
        { url, ...(isShard ? { shard: entry.file } : {}) });
    }
    progress.fileDone(entry.file, entry.bytes, true);
    return bytes;
  }
  let bytes: Uint8Array;
  try {
    ({ bytes } = await downloadWithRetry(url, {
      retry: options.retry,
      signal: options.signal,
      fetch: options.fetch,
      expectedBytes: entry.bytes,
      retryTruncated: true,
      onBytes: (n) => progress.bytes(entry.file, n, entry.bytes),
      onRetry: (e, retry, delay) => console.warn(`hearth-llm: ${e.message}; retry ${retry + 1} in ${delay} ms`),
    }));
  } catch (e) {
    throw isShard ? namingShard(e, entry.file) : e;
  }
  bytes = await verify(entry, { bytes }, url, isShard, 'download', hasher);
  await cache.put(url, bytes, entry.sha256);
  progress.fileDone(entry.file, entry.bytes, false);
  return bytes;
}

/**
 * Loads the package at `options.baseUrl` into a wasm loader made by
 * `createSink(manifestJson, tokenizerJson)` and resolves to its engine.
 * Progress goes to `options.onProgress`; failures are {@link HearthError}s.
 */
export async function loadModel<E>(
  options: LoaderOptions,
  createSink: (manifestJson: string, tokenizerJson: string) => Promise<ShardSink<E>>,
): Promise<LoadedModel<E>> {
  // The hashing worker starts first. A worker's messages wait in this
  // thread until this thread has seen it start, and the tokenizer's parse
  // (in createSink) blocks this thread: started late, the worker would get
  // its shard reads only after the parse, instead of during it.
  const hasher = new Hasher();
  try {
    return await loadWith(hasher, options, createSink);
  } finally {
    hasher.close();
  }
}

async function loadWith<E>(
  hasher: Hasher,
  options: LoaderOptions,
  createSink: (manifestJson: string, tokenizerJson: string) => Promise<ShardSink<E>>,
): Promise<LoadedModel<E>> {
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 4));
  const cache = await ModelCache.open(options.cacheName);
  options.onProgress?.({ phase: 'manifest', loadedBytes: 0, totalBytes: options.manifest?.total_bytes ?? 0, shardsDone: 0, shardsTotal: options.manifest?.shards.length ?? 0, cachedBytes: 0 });

  let manifest: Manifest;
  let manifestText: string;
  if (options.manifest) {
    manifest = validateManifest(options.manifest);
    manifestText = JSON.stringify(manifest);
    await cache.put(packageFileUrl(options.baseUrl, 'manifest.json'), manifestText);
  } else {
    ({ manifest, text: manifestText } = await fetchManifest(options, cache));
  }
  const progress = new ProgressTracker(manifest.total_bytes, manifest.shards.length, options.onProgress, options.progressIntervalMs);
  progress.phaseEvent('download');

  // A failure anywhere stops the other downloads.
  const stop = new AbortController();
  const onOuterAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const inner: LoaderOptions = { ...options, signal: stop.signal };

  let sink: ShardSink<E> | undefined;
  try {
    const tokenizer = await obtainFile(manifest.tokenizer, false, inner, cache, progress, hasher);
    // The GPU device opens while the shards download.
    let firstError: unknown;
    const sinkPromise = createSink(manifestText, new TextDecoder().decode(tokenizer)).then((s) => (sink = s));
    sinkPromise.catch((e) => {
      firstError ??= e;
      stop.abort();
    });

    const queue = [...manifest.shards];
    // Each runner downloads a shard, waits until it is on the GPU, then takes
    // the next: at most `concurrency` shards are in memory at once. Shards go
    // to the GPU one at a time (uploadChain) in the order they verify.
    let uploadChain: Promise<void> = Promise.resolve();
    const runner = async () => {
      while (queue.length > 0 && firstError === undefined) {
        const entry = queue.shift()!;
        try {
          const bytes = await obtainFile(entry, true, inner, cache, progress, hasher);
          const upload = uploadChain.then(async () => {
            const target = await sinkPromise;
            if (firstError !== undefined) return;
            progress.uploading(entry.file);
            try {
              target.addShard(entry.file, bytes);
            } catch (e) {
              throw toHearthError(e, 'model');
            }
            progress.uploaded(entry.file);
          });
          uploadChain = upload.catch(() => {});
          await upload;
        } catch (e) {
          firstError ??= e;
          stop.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, runner));
    // Even after a failure: a loader that arrives late must still be freed (finally).
    await sinkPromise.catch(() => {});
    if (firstError !== undefined) throw firstError;
    if (options.signal?.aborted) throw new HearthError('aborted', 'the load was aborted');

    const missing = sink!.missingTensors();
    if (missing.length > 0) {
      throw new HearthError('manifest', `the shards did not hold every tensor; missing: ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? '…' : ''}`);
    }
    const target = sink!;
    sink = undefined; // finish() consumes the loader
    const engine = target.finish();
    progress.phaseEvent('ready');
    return { engine, manifest, cachedBytes: progress.snapshot().cachedBytes };
  } catch (e) {
    if (options.signal?.aborted && !(e instanceof HearthError && e.code === 'aborted')) {
      throw new HearthError('aborted', 'the load was aborted', {}, { cause: e });
    }
    throw toHearthError(e);
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    sink?.free();
  }
}
