/**
 * The engine host: the wasm engine and everything that must run beside it
 * (the loader, the request queue, aborts). It runs in the Web Worker
 * (worker.ts wraps it in a message protocol) or, with `worker: false`, in
 * the page itself; both modes use this one implementation.
 * @module
 */

import type { Engine as WasmEngine } from './wasm/hearth_llm.js';
import { decideBackend, DEVICE_TIMEOUT_MS, type Backend, type BackendChoice, type KvCacheType } from './backend.js';
import { TIMED_OUT, withinTime } from './deadline.js';
import { HearthError, toHearthError } from './errors.js';
import type { RetryOptions } from './fetch.js';
import { loadModel } from './loader.js';
import { loadWasm, type WasmModule } from './wasm-build.js';
import type { Manifest } from './manifest.js';
import { effectiveMaxTokens, firstFitting, replyReserve, resolveSampler, type GenerationJob, type GenerationOutcome, type SamplerParams } from './openai.js';
import type { ProgressCallback } from './progress.js';

/** What the host needs to load a model (plain data: it crosses postMessage). */
export interface HostLoadOptions {
  /** The package folder's absolute URL, ending in `/`. */
  baseUrl: string;
  /** The manifest, when the caller gave one (else fetched). */
  manifest?: Manifest;
  /** Positions the KV cache holds (default: the engine's, 2048 capped at the model's). */
  context?: number;
  /** Tokens per forward pass in prefill (default: the engine's). */
  maxBatch?: number;
  /** The KV cache's type (default `auto`). */
  kvCache?: KvCacheType;
  /** Greedy decode steps chained on the GPU (default: the adapter's choice). */
  chainedDecode?: boolean;
  /** Cache API cache name; null: no caching. */
  cacheName?: string | null;
  /** Downloads at once (default 4). */
  concurrency?: number;
  retry?: RetryOptions;
  /** Where the model runs (default `auto`: see backend.ts). */
  backend?: BackendChoice;
  /** CPU threads (default: navigator.hardwareConcurrency; used on cross-origin-isolated pages). */
  threads?: number;
  /** Where the wasm binary is (default: beside the JS bindings). */
  wasmUrl?: string;
  /** Where the threaded build's wasm binary is (default: beside its JS bindings). */
  wasmThreadsUrl?: string;
}

/** The loaded engine: model, context, backend, device. */
export interface EngineInfo {
  /** The model's name from its manifest. */
  model: string;
  /** The package folder the model came from. */
  url: string;
  /** Its weight format (`q4_1`...). */
  quantization: string;
  /** The model's shape and constants, as the engine read them. */
  config: Record<string, unknown>;
  /** Positions the KV cache holds. */
  context: number;
  /** Where the model runs. */
  backend: Backend;
  /** Why: `requested` (an explicit `backend`), or what `auto` saw (`software adapter (google · swiftshader)`...). */
  backendReason: string;
  /** CPU threads the engine's pool has: 0 on WebGPU; 1 on a page that is not cross-origin isolated or with `worker: false`. The first decode steps may settle on fewer (`stats().threads`). */
  threads: number;
  /** Memory the model holds (weights, KV cache, activations), in bytes: GPU memory on WebGPU, wasm memory on the CPU. */
  gpuBytes: number;
  /** The engine's wasm memory right after the load, in bytes (it only grows; `stats()` has the latest). */
  wasmBytes: number;
  /** The engine's device (the WebGPU adapter, or the CPU), plus the browser's `GPUAdapterInfo` (vendor, architecture...) when it has WebGPU. */
  adapter: Record<string, unknown>;
  /** Bytes of the package the cache supplied on this load. */
  cachedBytes: number;
}

/**
 * Runs one wasm engine: loads it, then runs generation jobs one at a time in
 * the order they arrive (the wasm engine refuses a second call while one
 * runs, and interleaving would spoil the KV cache reuse anyway).
 */
export class EngineHost {
  private engine?: WasmEngine;
  private manifest?: Manifest;
  private tail: Promise<unknown> = Promise.resolve();
  /** Jobs accepted and not started yet. */
  private readonly pending = new Set<number>();
  /** Pending jobs aborted before they started. */
  private readonly abortedEarly = new Set<number>();
  private current?: number;
  private unloaded = false;
  /** The loaded wasm build's linear memory size. */
  private wasmMemoryBytes: () => number = () => 0;
  /** Set once the engine can no longer run (`device_lost`, `crashed`): every later job fails with it. */
  private broken?: HearthError;
  /** Fails the running job at once (the engine crashed where no call of ours could see it). */
  private failRunning?: (e: HearthError) => void;
  /**
   * A Rust panic inside a callback (a GPU promise settling) traps there, not
   * in our call, whose promise then never settles: seen as an uncaught
   * `WebAssembly.RuntimeError` from the engine's wasm, it fails the running
   * job with `crashed` instead of leaving it hanging.
   */
  private readonly onUncaught = (event: Event) => {
    const e = (event as PromiseRejectionEvent).reason ?? (event as ErrorEvent).error;
    if (!(e instanceof WebAssembly.RuntimeError) || !String(e.stack).includes('hearth_llm')) return;
    const error = this.failed(e);
    this.failRunning?.(error);
    event.preventDefault();
  };

  /**
   * Loads the model package (see loader.ts) and resolves to what was loaded.
   * `signal` aborts the load.
   */
  async load(options: HostLoadOptions, onProgress?: ProgressCallback, signal?: AbortSignal): Promise<EngineInfo> {
    if (this.engine || this.unloaded) throw new HearthError('engine', 'this engine host has already loaded a model');
    let decision = await decideBackend(options.backend ?? 'auto');
    if (decision.backend === 'webgpu' && !(navigator as unknown as { gpu?: unknown }).gpu) {
      throw new HearthError('no_webgpu', "this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Safari, enable WebGPU, or create the engine with backend 'cpu'");
    }
    // The wasm engine starts (and, for the CPU, its threads) while the
    // manifest and tokenizer are fetched and the shards read: only
    // createSink needs it. A failure to start is the load's error there.
    let wasmReady = loadWasm(decision.backend, options.threads, options);
    wasmReady.catch(() => {}); // (a load that fails before createSink never awaits it)
    const loaded = await loadModel(
      {
        baseUrl: options.baseUrl,
        manifest: options.manifest,
        cacheName: options.cacheName,
        concurrency: options.concurrency,
        retry: options.retry,
        signal,
        onProgress,
      },
      async (manifestJson, tokenizerJson) => {
        const create = async (wasm: WasmModule, backend: Backend) => {
          const engineOptions: { context?: number; maxBatch?: number; kvCache?: KvCacheType; chainedDecode?: boolean; backend: Backend } = { backend };
          if (options.context !== undefined) engineOptions.context = options.context;
          if (options.maxBatch !== undefined) engineOptions.maxBatch = options.maxBatch;
          if (options.kvCache !== undefined) engineOptions.kvCache = options.kvCache;
          if (options.chainedDecode !== undefined) engineOptions.chainedDecode = options.chainedDecode;
          try {
            return await wasm.ModelLoader.create(manifestJson, tokenizerJson, engineOptions);
          } catch (e) {
            throw toHearthError(e);
          }
        };
        if (decision.backend === 'cpu') return create(await wasmReady, 'cpu');
        // The bound starts once the wasm build is here (it may still be downloading).
        const opening = create(await wasmReady, 'webgpu');
        const loader = await withinTime(opening, DEVICE_TIMEOUT_MS);
        if (loader !== TIMED_OUT) return loader;
        opening.then((late) => late.free(), () => {}); // should the GPU answer after all
        const stalled = `the WebGPU device did not open in ${DEVICE_TIMEOUT_MS / 1000} s`;
        if (options.backend === 'webgpu') {
          throw new HearthError('no_webgpu', `backend 'webgpu': ${stalled}; the browser's GPU process may be stuck (reload the browser), or create the engine with backend 'cpu'`);
        }
        console.warn(`hearth-llm: ${stalled}; running on the CPU`);
        decision = { ...decision, backend: 'cpu', reason: `${stalled} (${decision.reason})` };
        wasmReady = loadWasm('cpu', options.threads, options);
        return create(await wasmReady, 'cpu');
      },
    );
    this.engine = loaded.engine;
    this.manifest = loaded.manifest;
    globalThis.addEventListener?.('unhandledrejection', this.onUncaught);
    globalThis.addEventListener?.('error', this.onUncaught);
    this.wasmMemoryBytes = (await wasmReady).wasmMemoryBytes;
    const backend = this.engine.backend() as Backend;
    return {
      model: loaded.manifest.name,
      url: options.baseUrl,
      quantization: loaded.manifest.quantization,
      config: this.engine.config() as Record<string, unknown>,
      context: this.engine.contextSize(),
      backend,
      backendReason: decision.reason,
      threads: this.engine.threads(),
      gpuBytes: this.engine.gpuBytes(),
      wasmBytes: this.wasmMemoryBytes(),
      adapter: { ...(this.engine.adapterInfo() as Record<string, unknown>), browser: decision.adapter },
      cachedBytes: loaded.cachedBytes,
    };
  }

  /**
   * Queues job `id`; it runs after every job queued before it. `onText` gets
   * each piece of the output as soon as it is final.
   */
  run(id: number, job: GenerationJob, onText?: (piece: string) => void): Promise<GenerationOutcome> {
    if (this.unloaded || !this.engine) return Promise.reject(new HearthError('unloaded', 'the engine is unloaded'));
    if (this.broken) return Promise.reject(new HearthError(this.broken.code, this.broken.message));
    this.pending.add(id);
    const result = this.tail.then(() => this.execute(id, job, onText));
    this.tail = result.catch(() => {});
    return result;
  }

  /** Aborts job `id`: a queued job ends at once, a running one at its next token (finish_reason `abort`). */
  abort(id: number): void {
    if (this.current === id) this.engine?.interrupt();
    else if (this.pending.has(id)) this.abortedEarly.add(id);
  }

  /** Aborts the running job, if any (queued jobs still run). */
  interrupt(): void {
    if (this.current !== undefined) this.engine?.interrupt();
  }

  /**
   * Frees the engine and its GPU memory: the running job ends (abort),
   * queued ones reject with `unloaded`.
   */
  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    this.interrupt();
    await this.tail;
    globalThis.removeEventListener?.('unhandledrejection', this.onUncaught);
    globalThis.removeEventListener?.('error', this.onUncaught);
    try {
      this.engine?.free();
    } catch {
      // A crashed engine may trap again here; its memory goes with the worker.
    }
    this.engine = undefined;
  }

  private async execute(id: number, job: GenerationJob, onText?: (piece: string) => void): Promise<GenerationOutcome> {
    this.pending.delete(id);
    const abortedEarly = this.abortedEarly.delete(id);
    const engine = this.engine;
    if (this.unloaded || !engine) throw new HearthError('unloaded', 'the engine was unloaded before this request ran');
    if (this.broken) throw new HearthError(this.broken.code, this.broken.message);
    let context: number;
    let promptIds: Uint32Array;
    try {
      context = engine.contextSize();
      promptIds = promptOf(engine, job, context);
    } catch (e) {
      throw this.failed(e);
    }
    const outcome = (text: string, finishReason: GenerationOutcome['finishReason']): GenerationOutcome => ({
      text,
      finishReason,
      promptTokens: promptIds.length,
      cachedTokens: 0,
      completionTokens: 0,
      timings: { ttft_ms: 0, prefill_tokens: 0, prefill_tok_s: 0, decode_tokens: 0, decode_tok_s: 0, threads: engine.threads() },
      wasmBytes: this.wasmMemoryBytes(),
    });
    if (abortedEarly) return outcome('', 'abort');
    const maxTokens = effectiveMaxTokens(job.maxTokens, promptIds.length, context);
    if (maxTokens < 1) {
      throw new HearthError('context_full',
        `the prompt is ${promptIds.length} tokens and the context holds ${context}: shorten the conversation, ask for truncation: 'auto', or load the engine with a larger context`);
    }
    const request: { max_tokens: number; sampler: SamplerParams; stop?: string[] } = {
      max_tokens: maxTokens,
      sampler: resolveSampler(job, this.manifest?.generation),
    };
    if (job.stop.length > 0) request.stop = job.stop;
    this.current = id;
    try {
      const crashed = new Promise<never>((_, reject) => (this.failRunning = reject));
      const g = await Promise.race([engine.generate(promptIds, request, onText ?? null), crashed]);
      return {
        text: g.text,
        finishReason: g.finish_reason,
        promptTokens: g.prompt_ids.length,
        cachedTokens: g.reused_tokens,
        completionTokens: g.ids.length,
        timings: g.timings,
        wasmBytes: this.wasmMemoryBytes(),
      };
    } catch (e) {
      throw this.failed(e);
    } finally {
      this.current = undefined;
      this.failRunning = undefined;
    }
  }

  /** `e` as a HearthError; one that leaves the engine unable to run marks it broken. */
  private failed(e: unknown): HearthError {
    const error = toHearthError(e);
    if (error.code === 'device_lost' || error.code === 'crashed') this.broken = error;
    return error;
  }
}

/**
 * The job's prompt as token ids. With `truncation: 'auto'` and a prompt that
 * leaves no room for the reply: a chat drops its oldest messages after the
 * leading system ones (never the last message), a completion keeps only its
 * last tokens. Otherwise the prompt as it is (the caller reports
 * `context_full`).
 */
function promptOf(engine: WasmEngine, job: GenerationJob, context: number): Uint32Array {
  const limit = context - replyReserve(job.maxTokens, context);
  if (job.kind === 'completion') {
    const ids = engine.encodePrompt(job.prompt!);
    return job.truncation === 'auto' && ids.length > limit ? ids.slice(ids.length - limit) : ids;
  }
  const messages = job.messages!;
  const first = Math.max(0, messages.findIndex((m) => m.role !== 'system'));
  const system = messages.slice(0, first);
  const encode = (start: number) => engine.encodePrompt(engine.renderChat([...system, ...messages.slice(start)]));
  const whole = encode(first);
  if (job.truncation !== 'auto' || whole.length <= limit) return whole;
  let start = firstFitting(first, messages.length - 1, (s) => encode(s).length <= limit);
  // The kept turns start with the user's, as chat templates expect.
  while (start < messages.length - 1 && messages[start]!.role === 'assistant') start++;
  return encode(start);
}
