/**
 * The one error type of the package. Every failure the package reports is a
 * {@link HearthError} with a machine-readable {@link HearthError.code}; the
 * message says what went wrong in words a person can act on.
 * @module
 */

/**
 * What kind of failure a {@link HearthError} is.
 *
 * - `invalid_request`: a request or option was rejected before anything ran.
 * - `not_found`: a file of the model package does not exist (HTTP 404/410).
 * - `network`: a download failed after its retries (or got another HTTP error).
 * - `integrity`: a file's sha256 or size does not match the manifest.
 * - `manifest`: the manifest is not a valid hearth model package.
 * - `no_webgpu`: the browser has no WebGPU, or no adapter.
 * - `unloaded`: the engine was unloaded (or its worker died).
 * - `aborted`: a load was aborted.
 * - `context_full`: the prompt does not fit in the engine's context (see the
 *   requests' `truncation` option).
 * - `too_large`: the model (with the asked context) cannot fit on this
 *   backend; found from the manifest before any weight is downloaded, the
 *   message gives the numbers and what would fit.
 * - `out_of_memory`: the GPU or the wasm memory ran out while loading.
 * - `device_lost`: the GPU device was lost (driver reset, out of memory):
 *   this engine cannot run anymore; create a new one.
 * - `crashed`: the wasm engine hit a bug and stopped (a trap); create a new
 *   engine. Please report it.
 * - `engine`: anything else the engine reported. Errors from the wasm engine
 *   keep their own code (`model`, `gpu`, `busy`, `invalid_argument`...).
 */
export type HearthErrorCode =
  | 'invalid_request'
  | 'not_found'
  | 'network'
  | 'integrity'
  | 'manifest'
  | 'no_webgpu'
  | 'unloaded'
  | 'aborted'
  | 'context_full'
  | 'too_large'
  | 'out_of_memory'
  | 'device_lost'
  | 'crashed'
  | 'engine'
  | (string & {});

/** Optional details a {@link HearthError} carries. */
export interface HearthErrorFields {
  /** The URL the failure is about (a download). */
  url?: string;
  /** The file name of the shard the failure is about. */
  shard?: string;
  /** The HTTP status of the failed response. */
  status?: number;
  /** The request field that was rejected (`invalid_request`). */
  param?: string;
  /** The wasm engine's own error code, when it reported the failure. */
  wasmCode?: string;
}

/** The plain-object form of a {@link HearthError}, for `postMessage`. */
export interface SerializedHearthError extends HearthErrorFields {
  code: string;
  message: string;
  stack?: string;
}

/**
 * An error of the hearth-llm package. `code` tells failures apart; `url`,
 * `shard`, `status` and `param` say where, when they apply.
 *
 * @example
 * try { await createEngine({ model }); }
 * catch (e) { if (isHearthError(e, 'integrity')) console.log('corrupt shard', e.shard); }
 */
export class HearthError extends Error implements HearthErrorFields {
  /** What kind of failure this is. */
  readonly code: HearthErrorCode;
  /** The URL the failure is about (a download). */
  readonly url?: string;
  /** The file name of the shard the failure is about. */
  readonly shard?: string;
  /** The HTTP status of the failed response. */
  readonly status?: number;
  /** The request field that was rejected (`invalid_request`). */
  readonly param?: string;
  /** The wasm engine's own error code, when it reported the failure. */
  readonly wasmCode?: string;

  /**
   * @param code what kind of failure this is
   * @param message what went wrong, for a person
   * @param fields where it went wrong
   * @param options `cause`: the underlying error
   */
  constructor(code: HearthErrorCode, message: string, fields: HearthErrorFields = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HearthError';
    this.code = code;
    // Only the fields that apply become properties, so errors print cleanly.
    for (const key of ['url', 'shard', 'status', 'param', 'wasmCode'] as const) {
      if (fields[key] !== undefined) Object.defineProperty(this, key, { value: fields[key], enumerable: true });
    }
  }

  /** The plain-object form, for `postMessage` (see {@link deserializeError}). */
  toJSON(): SerializedHearthError {
    const out: SerializedHearthError = { code: this.code, message: this.message };
    for (const key of ['url', 'shard', 'status', 'param', 'wasmCode'] as const) {
      if (this[key] !== undefined) (out as unknown as Record<string, unknown>)[key] = this[key];
    }
    if (this.stack) out.stack = this.stack;
    return out;
  }
}

/**
 * True when `e` is a {@link HearthError} (and, given `code`, one of that code).
 * Works on errors rebuilt from a worker too.
 */
export function isHearthError(e: unknown, code?: HearthErrorCode): e is HearthError {
  return e instanceof HearthError && (code === undefined || e.code === code);
}

/** Shorthand for an `invalid_request` error about request field `param`. */
export function invalidRequest(param: string, message: string): HearthError {
  return new HearthError('invalid_request', message, { param });
}

/**
 * Any thrown value as a {@link HearthError}: HearthErrors pass through;
 * errors from the wasm engine (an `Error` with a string `code`) keep their
 * code (`no_adapter` becomes `no_webgpu`, and `context_full`,
 * `invalid_argument`... stay as they are) with the original in `wasmCode`;
 * a wasm trap (`WebAssembly.RuntimeError`, a Rust panic) becomes `crashed`;
 * anything else becomes `fallbackCode`.
 */
export function toHearthError(e: unknown, fallbackCode: HearthErrorCode = 'engine'): HearthError {
  if (e instanceof HearthError) return e;
  // A Rust panic in the wasm engine is a trap: its state is undefined from then on.
  if (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError) {
    return new HearthError('crashed', `the engine crashed (${e.message}); create a new engine, and please report this`, {}, { cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  const wasmCode = e !== null && typeof e === 'object' && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code
    : undefined;
  if (wasmCode !== undefined) {
    const code = wasmCode === 'no_adapter' ? 'no_webgpu' : wasmCode;
    return new HearthError(code, message, { wasmCode }, { cause: e });
  }
  return new HearthError(fallbackCode, message, {}, { cause: e });
}

/** The plain-object form of any thrown value (a worker sends this). */
export function serializeError(e: unknown): SerializedHearthError {
  return toHearthError(e).toJSON();
}

/** Rebuilds a {@link HearthError} from {@link serializeError}'s output. */
export function deserializeError(s: SerializedHearthError): HearthError {
  const { code, message, stack, ...fields } = s;
  const error = new HearthError(code, message, fields);
  // Keep the worker's stack: it shows where the failure happened.
  if (stack) error.stack = stack;
  return error;
}
