/**
 * The model package format (`hearth convert` writes it): a folder with
 * `manifest.json`, `tokenizer.json` and safetensors shards. This module
 * checks a manifest's outline (what the loader relies on) and resolves the
 * URLs of the package's files. The wasm engine checks the rest (tensor
 * types, shapes and byte ranges) when it reads the manifest.
 * @module
 */

import { HearthError } from './errors.js';

/** The `format` value of every package manifest. */
export const MANIFEST_FORMAT = 'hearth-model-package';
/** The manifest layout this package reads. */
export const MANIFEST_FORMAT_VERSION = 1;

/** A file of the package with its size and sha256 (lowercase hex). */
export interface ManifestFile {
  /** A plain file name beside manifest.json. */
  file: string;
  /** Its size in bytes. */
  bytes: number;
  /** Its sha256, 64 lowercase hex digits. */
  sha256: string;
}

/** One tensor: its ggml type, row-major shape and bytes inside a shard. */
export interface ManifestTensor {
  name: string;
  dtype: string;
  shape: number[];
  shard: string;
  offset: number;
  length: number;
}

/** Sampling settings the model's authors recommend. */
export interface GenerationDefaults {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  repetition_penalty?: number;
}

/** `manifest.json` of a model package. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  format_version: number;
  /** A human name for the model. */
  name: string;
  /** The model's shape and constants (architecture, layers, context_length...). */
  config: Record<string, unknown> & { context_length?: number; architecture?: string };
  /** The type most weight matrices are stored in, for display. */
  quantization: string;
  /** The tokenizer file and the special tokens. */
  tokenizer: ManifestFile & { special: Record<string, unknown> };
  chat_template?: string | null;
  generation?: GenerationDefaults;
  tensors: ManifestTensor[];
  shards: ManifestFile[];
  /** Bytes of every file listed (shards and tokenizer). */
  total_bytes: number;
}

const FILE_NAME = /^[A-Za-z0-9._-]{1,255}$/;
const SHA256 = /^[0-9a-f]{64}$/;

function invalid(message: string): HearthError {
  return new HearthError('manifest', `manifest: ${message}`);
}

function checkFile(entry: unknown, what: string): ManifestFile {
  if (entry === null || typeof entry !== 'object') throw invalid(`${what} must be an object`);
  const { file, bytes, sha256 } = entry as Record<string, unknown>;
  // A plain name only: a manifest must never point the loader outside its package.
  if (typeof file !== 'string' || !FILE_NAME.test(file) || file === '.' || file === '..') {
    throw invalid(`${what}: file ${JSON.stringify(file)} is not a plain file name`);
  }
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw invalid(`${file}: bytes ${JSON.stringify(bytes)} is not a byte count`);
  }
  if (typeof sha256 !== 'string' || !SHA256.test(sha256)) {
    throw invalid(`${file}: sha256 ${JSON.stringify(sha256)} is not 64 lowercase hex digits`);
  }
  return entry as ManifestFile;
}

/**
 * Checks that `value` (parsed manifest.json) is a package manifest this
 * loader can use: format and version, plain file names, sizes and sha256
 * digests, no file listed twice, `total_bytes` adding up, every tensor in a
 * listed shard. Returns it typed; throws a `manifest` {@link HearthError}
 * saying what is wrong.
 */
export function validateManifest(value: unknown): Manifest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid('not a JSON object');
  const m = value as Record<string, unknown>;
  if (m.format !== MANIFEST_FORMAT) throw invalid(`"format" must be "${MANIFEST_FORMAT}"`);
  if (m.format_version !== MANIFEST_FORMAT_VERSION) {
    throw invalid(`format_version ${JSON.stringify(m.format_version)} is not supported (this loader reads ${MANIFEST_FORMAT_VERSION})`);
  }
  if (typeof m.name !== 'string' || m.name === '') throw invalid('"name" must be a non-empty string');
  if (m.config === null || typeof m.config !== 'object') throw invalid('"config" must be an object');
  if (!Array.isArray(m.shards) || m.shards.length === 0) throw invalid('"shards" must be a non-empty array');
  if (!Array.isArray(m.tensors)) throw invalid('"tensors" must be an array');
  const tokenizer = checkFile(m.tokenizer, 'tokenizer');
  const seen = new Set([tokenizer.file, 'manifest.json']);
  let listed = tokenizer.bytes;
  for (const [i, entry] of m.shards.entries()) {
    const shard = checkFile(entry, `shards[${i}]`);
    if (seen.has(shard.file)) throw invalid(`file ${shard.file} is listed twice`);
    seen.add(shard.file);
    listed += shard.bytes;
  }
  if (m.total_bytes !== listed) throw invalid(`total_bytes is ${m.total_bytes}, the files listed add up to ${listed}`);
  const shardNames = new Set((m.shards as ManifestFile[]).map((s) => s.file));
  for (const t of m.tensors as ManifestTensor[]) {
    if (t === null || typeof t !== 'object' || typeof t.name !== 'string') throw invalid('a tensor entry has no name');
    if (!shardNames.has(t.shard)) throw invalid(`${t.name}: shard ${JSON.stringify(t.shard)} is not listed`);
  }
  return value as Manifest;
}

/**
 * The folder URL of a model package, ending in `/`: `model` may be the folder
 * with or without its trailing slash, or the URL of its manifest.json.
 * Relative URLs resolve against `base` (the page's URL).
 *
 * @example
 * packageBaseUrl('https://huggingface.co/me/m/resolve/main') // 'https://huggingface.co/me/m/resolve/main/'
 */
export function packageBaseUrl(model: string | URL, base?: string | URL): string {
  let url: URL;
  try {
    url = new URL(model, base);
  } catch {
    throw new HearthError('invalid_request', `model: ${JSON.stringify(String(model))} is not a URL`, { param: 'model' });
  }
  url.hash = '';
  if (url.pathname.endsWith('/manifest.json')) url.pathname = url.pathname.slice(0, -'manifest.json'.length);
  // new URL('x', 'https://h/a/b') drops 'b': a folder URL must end in '/'.
  else if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url.href;
}

/** The absolute URL of `file` in the package at `baseUrl` (which ends in `/`). */
export function packageFileUrl(baseUrl: string, file: string): string {
  return new URL(file, baseUrl).href;
}
