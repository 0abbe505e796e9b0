/**
 * Model files in the browser's Cache API: one cache (default
 * `hearth-models-v1`) holding each package's manifest.json, tokenizer and
 * shards keyed by absolute URL. Every failure to write is a console warning:
 * the load goes on uncached.
 * @module
 */

import { SHA256_HEADER } from './hash.js';
import { packageBaseUrl, packageFileUrl, validateManifest, type Manifest } from './manifest.js';

/** The Cache API cache the package stores model files in. */
export const DEFAULT_CACHE_NAME = 'hearth-models-v1';

export { SHA256_HEADER };

/** A model package found in the cache (see {@link listCachedModels}). */
export interface CachedModel {
  /** The package's folder URL (ends in `/`). */
  url: string;
  /** The model's name from its manifest. */
  name: string;
  /** Bytes of the package's files in the cache (shards and tokenizer). */
  bytes: number;
  /** Shards the package has. */
  shards: number;
  /** Shards of it in the cache. */
  cachedShards: number;
  /** True when the tokenizer and every shard are cached: the model loads offline. */
  complete: boolean;
}

/** The page's URL, against which relative model URLs resolve. */
function pageUrl(): string | undefined {
  return (globalThis as { location?: { href: string } }).location?.href;
}

/**
 * A handle on the model cache that never throws: where the Cache API is
 * missing (an insecure context) or fails, reads miss and writes warn.
 */
export class ModelCache {
  private constructor(
    private readonly cache: Cache | null,
    /** The cache's name; null when caching is off or unavailable. */
    readonly name: string | null,
  ) {}

  /** Opens cache `name` (null `name`: caching off). */
  static async open(name: string | null = DEFAULT_CACHE_NAME): Promise<ModelCache> {
    if (name === null) return new ModelCache(null, null);
    if (typeof caches === 'undefined') {
      console.warn('hearth-llm: the Cache API is not available here (an insecure context?); the model will not be cached');
      return new ModelCache(null, null);
    }
    try {
      return new ModelCache(await caches.open(name), name);
    } catch (e) {
      console.warn(`hearth-llm: cannot open cache ${name}; the model will not be cached:`, e);
      return new ModelCache(null, null);
    }
  }

  /** True when files can be stored. */
  get enabled(): boolean {
    return this.cache !== null;
  }

  /** The cached response for `url`, or undefined. */
  async get(url: string): Promise<Response | undefined> {
    if (!this.cache) return undefined;
    try {
      return await this.cache.match(url);
    } catch (e) {
      console.warn(`hearth-llm: reading ${url} from the cache failed:`, e);
      return undefined;
    }
  }

  /**
   * Stores `bytes` as `url`. A failure (QuotaExceededError or any other) is a
   * console warning and resolves to false: the load goes on uncached.
   */
  async put(url: string, bytes: Uint8Array | string, sha256?: string): Promise<boolean> {
    if (!this.cache) return false;
    const headers: Record<string, string> = { 'Content-Type': typeof bytes === 'string' ? 'application/json' : 'application/octet-stream' };
    if (sha256) headers[SHA256_HEADER] = sha256;
    try {
      await this.cache.put(url, new Response(bytes as BodyInit, { headers }));
      return true;
    } catch (e) {
      const why = e instanceof DOMException && e.name === 'QuotaExceededError' ? 'the storage quota is exceeded' : String(e);
      console.warn(`hearth-llm: could not cache ${url} (${why}); continuing without caching it`);
      return false;
    }
  }

  /** Removes `url` from the cache; resolves to whether it was there. */
  async delete(url: string): Promise<boolean> {
    if (!this.cache) return false;
    try {
      return await this.cache.delete(url);
    } catch (e) {
      console.warn(`hearth-llm: could not delete ${url} from the cache:`, e);
      return false;
    }
  }

  /** Every URL in the cache. */
  async urls(): Promise<string[]> {
    if (!this.cache) return [];
    return (await this.cache.keys()).map((r) => r.url);
  }
}

/** The cached manifest of the package at `baseUrl`, or undefined (also when it does not parse). */
async function cachedManifest(cache: ModelCache, baseUrl: string): Promise<Manifest | undefined> {
  const response = await cache.get(packageFileUrl(baseUrl, 'manifest.json'));
  if (!response) return undefined;
  try {
    return validateManifest(await response.json());
  } catch {
    return undefined;
  }
}

async function describe(baseUrl: string, manifest: Manifest, urls: Set<string>): Promise<CachedModel> {
  const has = (file: string) => urls.has(packageFileUrl(baseUrl, file));
  const cachedShards = manifest.shards.filter((s) => has(s.file));
  const bytes = cachedShards.reduce((sum, s) => sum + s.bytes, has(manifest.tokenizer.file) ? manifest.tokenizer.bytes : 0);
  return {
    url: baseUrl,
    name: manifest.name,
    bytes,
    shards: manifest.shards.length,
    cachedShards: cachedShards.length,
    complete: has(manifest.tokenizer.file) && cachedShards.length === manifest.shards.length,
  };
}

/**
 * True when the package at `url` (its folder, or its manifest.json) is cached
 * completely: its manifest, tokenizer and every shard, so it loads offline.
 */
export async function hasModelInCache(url: string | URL, options: { cacheName?: string } = {}): Promise<boolean> {
  const cache = await ModelCache.open(options.cacheName ?? DEFAULT_CACHE_NAME);
  const baseUrl = packageBaseUrl(url, pageUrl());
  const manifest = await cachedManifest(cache, baseUrl);
  if (!manifest) return false;
  return (await describe(baseUrl, manifest, new Set(await cache.urls()))).complete;
}

/**
 * Removes the package at `url` from the cache: its manifest, tokenizer,
 * shards, and any other file cached directly in its folder. Resolves to
 * whether anything was removed.
 */
export async function deleteModelFromCache(url: string | URL, options: { cacheName?: string } = {}): Promise<boolean> {
  const cache = await ModelCache.open(options.cacheName ?? DEFAULT_CACHE_NAME);
  const baseUrl = packageBaseUrl(url, pageUrl());
  // Files directly in the package folder (not in sub-folders: another package may live there).
  const inFolder = (await cache.urls()).filter((u) => u.startsWith(baseUrl) && !u.slice(baseUrl.length).includes('/'));
  const removed = await Promise.all(inFolder.map((u) => cache.delete(u)));
  return removed.some(Boolean);
}

/** Every model package with a manifest in the cache, complete or not. */
export async function listCachedModels(options: { cacheName?: string } = {}): Promise<CachedModel[]> {
  const cache = await ModelCache.open(options.cacheName ?? DEFAULT_CACHE_NAME);
  const urls = new Set(await cache.urls());
  const models: CachedModel[] = [];
  for (const url of urls) {
    if (!url.endsWith('/manifest.json')) continue;
    const baseUrl = url.slice(0, -'manifest.json'.length);
    const manifest = await cachedManifest(cache, baseUrl);
    if (manifest) models.push(await describe(baseUrl, manifest, urls));
  }
  return models;
}
