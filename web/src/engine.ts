/**
 * The public engine: `createEngine()` loads a model package (in a module Web
 * Worker by default) and resolves to a {@link HearthEngine} with an
 * OpenAI-style API (`chat.completions.create`, `completions.create`).
 * @module
 */

import { KV_CACHE_TYPES, validateBackend, type BackendChoice, type KvCacheType } from './backend.js';
import { connectInThread, connectWorker, type HostConnection } from './connection.js';
import { HearthError, invalidRequest } from './errors.js';
import type { RetryOptions } from './fetch.js';
import type { EngineInfo, HostLoadOptions } from './host.js';
import { packageBaseUrl, validateManifest, type Manifest } from './manifest.js';
import {
  chatChunk,
  chatCompletion,
  responseId,
  textChunk,
  textCompletion,
  validateChatRequest,
  validateCompletionRequest,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type Completion,
  type CompletionChunk,
  type CompletionRequest,
  type GenerationJob,
  type GenerationOutcome,
  type ResponseMeta,
} from './openai.js';
import type { ProgressCallback } from './progress.js';
import { ChunkStream } from './stream.js';

/** Options of {@link createEngine}. */
export interface CreateEngineOptions {
  /**
   * The model package: the URL of its folder (trailing slash optional; a
   * Hugging Face `.../resolve/main/` URL works), or its manifest object
   * together with `baseUrl`. Relative URLs resolve against the page.
   */
  model: string | URL | Manifest;
  /** The package folder, when `model` is a manifest object. */
  baseUrl?: string | URL;
  /** Load progress events (see {@link LoadProgress}). */
  onProgress?: ProgressCallback;
  /** Run the engine in a module Web Worker (default true) or in this thread (false). */
  worker?: boolean;
  /**
   * Where the model runs (default `auto`): `webgpu`; `cpu` (wasm SIMD, on
   * `threads` threads when the page is cross-origin isolated and the engine
   * runs in a worker, else on one); `auto`: WebGPU on a hardware adapter, the
   * CPU when there is no WebGPU or only a software adapter (SwiftShader,
   * llvmpipe...). {@link HearthEngine.info} says which ran and why.
   */
  backend?: BackendChoice;
  /**
   * The most CPU threads for the `cpu` backend (default
   * `navigator.hardwareConcurrency`). The first decode steps also try half
   * as many (and half of that...) and keep the fastest: a browser may count
   * logical cores sharing a physical one, or more cores than it gets.
   * {@link EngineStats.threads} says how many it settled on.
   */
  threads?: number;
  /** Positions the KV cache holds (default 2048, capped at the model's context). */
  context?: number;
  /** Tokens per forward pass during prefill (default 128). */
  maxBatch?: number;
  /**
   * The KV cache's type (default `auto`: f16 on GPUs with `shader-f16` and
   * on the CPU backend, f32 on software adapters). `f16` halves its memory;
   * on WebGPU it needs an adapter with `shader-f16` (elsewhere the load
   * fails with `invalid_argument`); `f32` keeps every key and value exact.
   */
  kvCache?: KvCacheType;
  /**
   * Greedy decoding on WebGPU queues each step before the previous token is
   * read back, its input token taken from where the previous step left it
   * on the GPU, so the GPU computes while this side reads and streams the
   * token (default: on). The CPU backend ignores it.
   */
  chainedDecode?: boolean;
  /** Cache API cache for the model files (default `hearth-models-v1`); null: no caching. */
  cacheName?: string | null;
  /** Shard downloads at once (default 4). */
  concurrency?: number;
  /** Download retries (default 3 retries, 250 ms doubling). */
  retry?: RetryOptions;
  /** Aborts the load: createEngine rejects with an `aborted` error. */
  signal?: AbortSignal;
  /** Where the wasm binary is (default: `wasm/hearth_llm_bg.wasm` beside this package's code). */
  wasmUrl?: string | URL;
  /** Where the threaded build's wasm binary is (default: `wasm-threads/hearth_llm_bg.wasm` beside this package's code). */
  wasmThreadsUrl?: string | URL;
}

/** Timings and token counts of the last finished request ({@link HearthEngine.stats}). */
export interface EngineStats {
  /** Prompt tokens computed per second. */
  prefill_tok_s: number;
  /** Tokens generated per second after the first. */
  decode_tok_s: number;
  /** Time to the first generated token, in ms. */
  ttft_ms: number;
  /** Tokens of the prompt. */
  prompt_tokens: number;
  /** Prompt tokens reused from the KV cache (not computed). */
  cached_tokens: number;
  /** Tokens generated. */
  completion_tokens: number;
  /** The engine's wasm memory after the request, in bytes: flat over a long session (it never shrinks, so growth would show). */
  wasm_memory_bytes: number;
  /** CPU threads the request ended on: at most `threads`, fewer when the engine found fewer faster; 0 on WebGPU. */
  threads: number;
}

/** The stream a chat completion with `stream: true` resolves to. */
export type ChatCompletionStream = AsyncIterable<ChatCompletionChunk>;
/** The stream a text completion with `stream: true` resolves to. */
export type CompletionStream = AsyncIterable<CompletionChunk>;

const OPTION_NAMES = new Set([
  'model', 'baseUrl', 'onProgress', 'worker', 'backend', 'threads', 'context', 'maxBatch', 'kvCache', 'chainedDecode', 'cacheName', 'concurrency',
  'retry', 'signal',
  'wasmUrl', 'wasmThreadsUrl',
]);

/** The URL relative model and wasm URLs resolve against: the document in a page, the script in a worker. */
function pageBase(): string | undefined {
  const g = globalThis as { document?: { baseURI: string }; location?: { href: string } };
  return g.document?.baseURI ?? g.location?.href;
}

function positiveInteger(options: Record<string, unknown>, key: string): void {
  const v = options[key];
  if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1)) {
    throw invalidRequest(key, `${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
}

/** Checks createEngine's options and maps them to what the host loads. */
export function hostLoadOptions(options: CreateEngineOptions): HostLoadOptions {
  if (options === null || typeof options !== 'object') throw invalidRequest('', 'createEngine needs an options object with a model');
  const unknown = Object.keys(options).filter((k) => !OPTION_NAMES.has(k));
  if (unknown.length > 0) throw invalidRequest(unknown[0]!, `createEngine: unknown option(s) ${unknown.join(', ')}`);
  const backend = validateBackend(options.backend);
  for (const key of ['threads', 'context', 'maxBatch', 'concurrency']) positiveInteger(options as unknown as Record<string, unknown>, key);
  if (options.retry !== undefined) {
    const { retries, baseDelayMs, maxDelayMs } = options.retry;
    for (const [k, v] of Object.entries({ retries, baseDelayMs, maxDelayMs })) {
      if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw invalidRequest(`retry.${k}`, `retry.${k} must be a number >= 0`);
    }
  }
  if (options.kvCache !== undefined && !KV_CACHE_TYPES.includes(options.kvCache)) {
    throw invalidRequest('kvCache', `kvCache must be one of ${KV_CACHE_TYPES.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(options.kvCache)}`);
  }
  if (options.chainedDecode !== undefined && typeof options.chainedDecode !== 'boolean') {
    throw invalidRequest('chainedDecode', `chainedDecode must be true or false, got ${JSON.stringify(options.chainedDecode)}`);
  }
  const base = pageBase();
  const load: HostLoadOptions = { baseUrl: '' };
  const model = options.model as unknown;
  if (typeof model === 'string' || model instanceof URL) {
    load.baseUrl = packageBaseUrl(model, base);
  } else if (model !== null && typeof model === 'object') {
    if (options.baseUrl === undefined) throw invalidRequest('baseUrl', 'a manifest object as model needs baseUrl (the folder its files are in)');
    load.manifest = validateManifest(model);
    load.baseUrl = packageBaseUrl(options.baseUrl, base);
  } else {
    throw invalidRequest('model', 'model must be the URL of a model package folder or a manifest object');
  }
  if (backend !== undefined) load.backend = backend;
  if (options.threads !== undefined) load.threads = options.threads;
  if (options.context !== undefined) load.context = options.context;
  if (options.maxBatch !== undefined) load.maxBatch = options.maxBatch;
  if (options.kvCache !== undefined) load.kvCache = options.kvCache;
  if (options.chainedDecode !== undefined) load.chainedDecode = options.chainedDecode;
  if (options.cacheName !== undefined) load.cacheName = options.cacheName;
  if (options.concurrency !== undefined) load.concurrency = options.concurrency;
  if (options.retry !== undefined) load.retry = { ...options.retry };
  if (options.wasmUrl !== undefined) load.wasmUrl = new URL(options.wasmUrl, base).href;
  if (options.wasmThreadsUrl !== undefined) load.wasmThreadsUrl = new URL(options.wasmThreadsUrl, base).href;
  return load;
}

/**
 * Loads a model package and resolves to an engine for it. By default the
 * engine runs in a module Web Worker (the page stays responsive); `worker:
 * false` runs it in this thread. `backend` picks WebGPU or the CPU (default
 * `auto`). Rejects with a {@link HearthError} (`invalid_request`,
 * `not_found`, `network`, `integrity`, `manifest`, `no_webgpu`...).
 *
 * @example
 * const engine = await createEngine({
 *   model: 'https://example.com/models/SmolLM2-135M-Instruct-q4_1/',
 *   onProgress: (p) => console.log(p.phase, p.loadedBytes, '/', p.totalBytes),
 * });
 * const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi!' }] });
 * console.log(reply.choices[0].message.content);
 */
export async function createEngine(options: CreateEngineOptions): Promise<HearthEngine> {
  const load = hostLoadOptions(options);
  const connect = options.worker === false ? connectInThread : connectWorker;
  const { connection, info } = await connect(load, options.onProgress, options.signal);
  // (In this thread it runs on one thread anyway: a page's main thread may not block on others.)
  if (info.backend === 'cpu' && options.worker !== false) {
    if (!globalThis.crossOriginIsolated) {
      console.info('hearth-llm: the CPU backend runs on 1 thread because this page is not cross-origin isolated; ' +
        'serve it with the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp to use every core');
    } else if (typeof SharedArrayBuffer !== 'function') {
      console.info('hearth-llm: the CPU backend runs on 1 thread because this browser gives no SharedArrayBuffer to a ' +
        'cross-origin isolated page (WebKitGTK does not unless it is enabled)');
    }
  }
  return new HearthEngine(connection, info);
}

/**
 * A loaded model. Requests run one at a time in the order they are made;
 * a request whose prompt extends the previous conversation reuses its KV
 * cache (reported as `usage.prompt_tokens_details.cached_tokens`).
 */
export class HearthEngine {
  /** The model, context, backend (and why), threads, adapter and memory of this engine. */
  readonly info: EngineInfo;

  /** OpenAI-style chat completions. */
  readonly chat: {
    completions: {
      /**
       * Generates the assistant's reply to `messages`. Without `stream`,
       * resolves to a `chat.completion`; with `stream: true`, to an async
       * iterable of `chat.completion.chunk`s (the first has `delta.role`,
       * the last `finish_reason` and `usage`). An aborted request ends with
       * finish_reason `abort`. Invalid requests reject with an
       * `invalid_request` {@link HearthError} before anything runs.
       */
      create(request: ChatCompletionRequest & { stream: true }): Promise<ChatCompletionStream>;
      create(request: ChatCompletionRequest & { stream?: false | null }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest): Promise<ChatCompletion | ChatCompletionStream>;
    };
  };

  /** OpenAI-style text completions (raw prompt, no chat template). */
  readonly completions: {
    /**
     * Continues `prompt`. Without `stream`, resolves to a `text_completion`;
     * with `stream: true`, to an async iterable of chunks (`choices[0].text`;
     * the last has `finish_reason` and `usage`).
     */
    create(request: CompletionRequest & { stream: true }): Promise<CompletionStream>;
    create(request: CompletionRequest & { stream?: false | null }): Promise<Completion>;
    create(request: CompletionRequest): Promise<Completion | CompletionStream>;
  };

  private nextId = 1;
  private lastStats: EngineStats | null = null;
  private unloaded = false;

  /** Made by {@link createEngine}. */
  constructor(private readonly connection: HostConnection, info: EngineInfo) {
    this.info = info;
    this.chat = {
      completions: {
        create: ((request: ChatCompletionRequest) => {
          try {
            const { job, stream, signal } = validateChatRequest(request);
            return this.start(job, stream, signal, 'chatcmpl');
          } catch (e) {
            return Promise.reject(e);
          }
        }) as HearthEngine['chat']['completions']['create'],
      },
    };
    this.completions = {
      create: ((request: CompletionRequest) => {
        try {
          const { job, stream, signal } = validateCompletionRequest(request);
          return this.start(job, stream, signal, 'cmpl');
        } catch (e) {
          return Promise.reject(e);
        }
      }) as HearthEngine['completions']['create'],
    };
  }

  /** Ends the running request (finish_reason `abort`); queued requests still run. */
  interrupt(): void {
    if (!this.unloaded) this.connection.interrupt();
  }

  /** Timings and token counts of the last finished request, or null before the first. */
  stats(): EngineStats | null {
    return this.lastStats && { ...this.lastStats };
  }

  /**
   * Frees the model's GPU memory and ends the worker. The running request
   * ends with finish_reason `abort`; queued and later ones reject with an
   * `unloaded` error.
   */
  async unload(): Promise<void> {
    this.unloaded = true;
    await this.connection.unload();
  }

  /** Runs a validated job; resolves to the whole response or to a stream. */
  private async start(
    job: GenerationJob,
    stream: boolean,
    signal: AbortSignal | undefined,
    idPrefix: string,
  ): Promise<ChatCompletion | Completion | AsyncIterable<ChatCompletionChunk | CompletionChunk>> {
    if (this.unloaded) throw new HearthError('unloaded', 'the engine is unloaded');
    const id = this.nextId++;
    const meta: ResponseMeta = { id: responseId(idPrefix), created: Math.floor(Date.now() / 1000), model: this.info.model };
    const isChat = job.kind === 'chat';
    const abort = () => this.connection.abort(id);

    if (!stream) {
      const running = this.connection.run(id, job);
      signal?.addEventListener('abort', abort, { once: true });
      if (signal?.aborted) abort();
      try {
        const outcome = await running;
        this.record(outcome);
        return isChat ? chatCompletion(meta, outcome) : textCompletion(meta, outcome);
      } finally {
        signal?.removeEventListener('abort', abort);
      }
    }

    const chunks = new ChunkStream<ChatCompletionChunk | CompletionChunk>(abort);
    if (isChat) chunks.push(chatChunk(meta, { first: true, content: '' }));
    const run = this.connection.run(id, job, (piece) => chunks.push(isChat ? chatChunk(meta, { content: piece }) : textChunk(meta, { text: piece })));
    signal?.addEventListener('abort', abort, { once: true });
    if (signal?.aborted) abort();
    run.then(
      (outcome) => {
        this.record(outcome);
        chunks.push(isChat ? chatChunk(meta, { last: outcome }) : textChunk(meta, { last: outcome }));
        chunks.end();
      },
      (e) => chunks.fail(e),
    ).finally(() => signal?.removeEventListener('abort', abort));
    return chunks;
  }

  private record(o: GenerationOutcome): void {
    this.lastStats = {
      prefill_tok_s: o.timings.prefill_tok_s,
      decode_tok_s: o.timings.decode_tok_s,
      ttft_ms: o.timings.ttft_ms,
      prompt_tokens: o.promptTokens,
      cached_tokens: o.cachedTokens,
      completion_tokens: o.completionTokens,
      wasm_memory_bytes: o.wasmBytes,
      threads: o.timings.threads,
    };
  }
}
