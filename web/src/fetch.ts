/**
 * Downloads with retries: network errors, HTTP 408/429 and 5xx are retried
 * with exponential backoff; 404/410 fail at once with a `not_found` error
 * naming the URL; other HTTP errors fail at once with a `network` error.
 * @module
 */

import { HearthError } from './errors.js';

/** How a download retries. */
export interface RetryOptions {
  /** Retries after the first attempt (default 3). */
  retries?: number;
  /** Delay before the first retry in ms; it doubles each time (default 250). */
  baseDelayMs?: number;
  /** Longest delay between attempts in ms (default 8000). */
  maxDelayMs?: number;
}

/** Default retry policy: 3 retries after 250, 500 and 1000 ms. */
export const DEFAULT_RETRY: Required<RetryOptions> = { retries: 3, baseDelayMs: 250, maxDelayMs: 8000 };

/**
 * The delay before retry number `retry` (0 for the first retry):
 * `baseDelayMs * 2^retry`, capped at `maxDelayMs`. No jitter: a page loads one
 * model, so there is no herd of clients to spread out.
 */
export function backoffDelay(retry: number, options: RetryOptions = {}): number {
  const { baseDelayMs, maxDelayMs } = { ...DEFAULT_RETRY, ...options };
  return Math.min(maxDelayMs, baseDelayMs * 2 ** retry);
}

/** True for HTTP statuses worth retrying: 408, 429 and every 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/** True when a failed attempt may succeed if tried again (see {@link isRetryableStatus}). */
export function isRetryableError(e: unknown): boolean {
  if (!(e instanceof HearthError) || e.code !== 'network') return false;
  return e.status === undefined || isRetryableStatus(e.status);
}

/**
 * The seconds of a `Retry-After` header as ms (the HTTP-date form is
 * ignored), or undefined.
 */
export function retryAfterMs(response: Response): number | undefined {
  const value = response.headers.get('Retry-After');
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value) * 1000;
}

/** Resolves after `ms`, or rejects with an `aborted` error when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal): HearthError {
  const reason = signal.reason instanceof HearthError ? signal.reason : undefined;
  return reason ?? new HearthError('aborted', 'the load was aborted');
}

/** The `Retry-After` delay a failed response asked for, by the error made of it. */
const retryHints = new WeakMap<HearthError, number>();

/** What {@link downloadWithRetry} needs besides the URL. */
export interface DownloadOptions {
  retry?: RetryOptions;
  /** Aborts the download (and any wait between attempts). */
  signal?: AbortSignal;
  /** Called as bytes arrive with the bytes of the current attempt so far. */
  onBytes?: (attemptBytes: number) => void;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Called before each retry (for logging). */
  onRetry?: (error: HearthError, retry: number, delayMs: number) => void;
  /** The size the body should have, when known: it is read straight into a buffer of that size. */
  expectedBytes?: number;
  /**
   * With `expectedBytes`: a body that ends short of it on a response without
   * a Content-Length is a retryable `network` error rather than a result.
   * Nothing says the server meant to send so few bytes: such a body ends when
   * the connection closes, so a connection cut part-way looks like a whole
   * (short) body. (With a Content-Length, the browser itself fails a body
   * that ends early; a short body it declared is returned as it is.)
   */
  retryTruncated?: boolean;
}

/**
 * Fetches `url` once and reads its whole body, throwing a {@link HearthError}
 * that {@link isRetryableError} classifies. The body is streamed so that
 * `onBytes` can report progress.
 */
async function downloadOnce(url: string, options: DownloadOptions): Promise<{ bytes: Uint8Array; response: Response }> {
  const fetchImpl = options.fetch ?? fetch;
  let response: Response;
  try {
    response = await fetchImpl(url, { signal: options.signal, cache: 'no-store' });
  } catch (e) {
    if (options.signal?.aborted) throw abortError(options.signal);
    throw new HearthError('network', `${url}: ${e instanceof Error ? e.message : String(e)}`, { url }, { cause: e });
  }
  if (response.status === 404 || response.status === 410) {
    throw new HearthError('not_found', `${url}: HTTP ${response.status} (the model package has no such file)`, { url, status: response.status });
  }
  if (!response.ok) {
    const error = new HearthError('network', `${url}: HTTP ${response.status} ${response.statusText}`.trim(), { url, status: response.status });
    const hint = retryAfterMs(response);
    if (hint !== undefined) retryHints.set(error, hint);
    throw error;
  }
  let bytes: Uint8Array;
  try {
    bytes = await readBody(response, options.onBytes, options.expectedBytes);
  } catch (e) {
    if (options.signal?.aborted) throw abortError(options.signal);
    throw new HearthError('network', `${url}: the download broke off: ${e instanceof Error ? e.message : String(e)}`, { url }, { cause: e });
  }
  const expected = options.expectedBytes;
  if (options.retryTruncated && expected !== undefined && bytes.byteLength < expected && !response.headers.has('Content-Length')) {
    throw new HearthError('network', `${url}: the download broke off after ${bytes.byteLength} of ${expected} bytes (the connection closed before the end of the body)`, { url });
  }
  return { bytes, response };
}

/**
 * The whole body of `response`, reporting the running byte count. With the
 * size known (`expectedBytes`, else Content-Length), chunks go straight into
 * one buffer of that size, so a shard is not held twice while it downloads.
 */
async function readBody(response: Response, onBytes?: (n: number) => void, expectedBytes?: number): Promise<Uint8Array> {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const header = Number(response.headers.get('Content-Length') ?? NaN);
  // A Content-Length is only a hint (compressed bodies differ); trust it up to 256 MiB.
  const size = expectedBytes ?? (Number.isSafeInteger(header) && header <= 2 ** 28 ? header : undefined);
  let buffer = size !== undefined ? new Uint8Array(size) : undefined;
  const overflow: Uint8Array[] = []; // used only when the body is not the expected size
  let received = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (buffer && received + value.byteLength <= buffer.byteLength) {
      buffer.set(value, received);
    } else {
      if (buffer) overflow.push(buffer.subarray(0, received));
      buffer = undefined;
      overflow.push(value);
    }
    received += value.byteLength;
    onBytes?.(received);
  }
  if (buffer) return received === buffer.byteLength ? buffer : buffer.slice(0, received);
  const out = new Uint8Array(received);
  let at = 0;
  for (const chunk of overflow) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/**
 * Downloads `url` whole, retrying network errors, 408/429 and 5xx with
 * exponential backoff ({@link backoffDelay}; a `Retry-After` header is
 * honoured up to `maxDelayMs`). Resolves to the body bytes and the response.
 */
export async function downloadWithRetry(url: string, options: DownloadOptions = {}): Promise<{ bytes: Uint8Array; response: Response }> {
  const retry = { ...DEFAULT_RETRY, ...options.retry };
  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadOnce(url, options);
    } catch (e) {
      if (!isRetryableError(e) || attempt >= retry.retries) {
        if (e instanceof HearthError && e.code === 'network' && attempt > 0) {
          throw new HearthError('network', `${e.message} (gave up after ${attempt + 1} attempts)`, { url, status: e.status }, { cause: e });
        }
        throw e;
      }
      const hinted = retryHints.get(e as HearthError);
      const delay = Math.min(retry.maxDelayMs, hinted ?? backoffDelay(attempt, retry));
      options.onRetry?.(e as HearthError, attempt, delay);
      await sleep(delay, options.signal);
    }
  }
}
