/**
 * The engine host: the wasm engine and everything that must run beside it
 * (the loader, the request queue, aborts). It runs in the Web Worker
 * (worker.ts wraps it in a message protocol) or, with `worker: false`, in
 * the page itself; both modes use this one implementation.
 * @module
 */

import type { Engine as WasmEngine } from './wasm/hearth_llm.js';
import { decideBackend, type Backend, type BackendChoice } from './backend.js';
import { HearthError, toHearthError } from './errors.js';
import type { RetryOptions } from './fetch.js';
import { loadModel } from './loader.js';
import { loadWasm } from './wasm-build.js';
import type { Manifest } from './manifest.js';
import { effectiveMaxTokens, resolveSampler, type GenerationJob, type GenerationOutcome, type SamplerParams } from './openai.js';
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
  /** CPU threads the engine computes on: 0 on WebGPU; 1 on a page that is not cross-origin isolated or with `worker: false`. */
  threads: number;
  /** Memory the model holds (weights, KV cache, activations), in bytes: GPU memory on WebGPU, wasm memory on the CPU. */
  gpuBytes: number;
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

  /**
   * Loads the model package (see loader.ts) and resolves to what was loaded.
   * `signal` aborts the load.
   */
  async load(options: HostLoadOptions, onProgress?: ProgressCallback, signal?: AbortSignal): Promise<EngineInfo> {
    if (this.engine || this.unloaded) throw new HearthError('engine', 'this engine host has already loaded a model');
    const decision = await decideBackend(options.backend ?? 'auto');
    if (decision.backend === 'webgpu' && !(navigator as unknown as { gpu?: unknown }).gpu) {
      throw new HearthError('no_webgpu', "this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Safari, enable WebGPU, or create the engine with backend 'cpu'");
    }
    const wasm = await loadWasm(decision.backend, options.threads, options);
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
        const engineOptions: { context?: number; maxBatch?: number; backend: Backend } = { backend: decision.backend };
        if (options.context !== undefined) engineOptions.context = options.context;
        if (options.maxBatch !== undefined) engineOptions.maxBatch = options.maxBatch;
        try {
          return await wasm.ModelLoader.create(manifestJson, tokenizerJson, engineOptions);
        } catch (e) {
          throw toHearthError(e);
        }
      },
    );
    this.engine = loaded.engine;
    this.manifest = loaded.manifest;
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
    this.engine?.free();
    this.engine = undefined;
  }

  private async execute(id: number, job: GenerationJob, onText?: (piece: string) => void): Promise<GenerationOutcome> {
    this.pending.delete(id);
    const abortedEarly = this.abortedEarly.delete(id);
    const engine = this.engine;
    if (this.unloaded || !engine) throw new HearthError('unloaded', 'the engine was unloaded before this request ran');
    let promptIds: Uint32Array;
    try {
      const text = job.kind === 'chat' ? engine.renderChat(job.messages!) : job.prompt!;
      promptIds = engine.encodePrompt(text);
    } catch (e) {
      throw toHearthError(e);
    }
    const outcome = (text: string, finishReason: GenerationOutcome['finishReason']): GenerationOutcome => ({
      text,
      finishReason,
      promptTokens: promptIds.length,
      cachedTokens: 0,
      completionTokens: 0,
      timings: { ttft_ms: 0, prefill_tokens: 0, prefill_tok_s: 0, decode_tokens: 0, decode_tok_s: 0 },
    });
    if (abortedEarly) return outcome('', 'abort');
    const context = engine.contextSize();
    const maxTokens = effectiveMaxTokens(job.maxTokens, promptIds.length, context);
    if (maxTokens < 1) {
      throw new HearthError('context_full',
        `the prompt is ${promptIds.length} tokens and the context holds ${context}: shorten the conversation or load the engine with a larger context`);
    }
    const request: { max_tokens: number; sampler: SamplerParams; stop?: string[] } = {
      max_tokens: maxTokens,
      sampler: resolveSampler(job, this.manifest?.generation),
    };
    if (job.stop.length > 0) request.stop = job.stop;
    this.current = id;
    try {
      const g = await engine.generate(promptIds, request, onText ?? null);
      return {
        text: g.text,
        finishReason: g.finish_reason,
        promptTokens: g.prompt_ids.length,
        cachedTokens: g.reused_tokens,
        completionTokens: g.ids.length,
        timings: g.timings,
      };
    } catch (e) {
      throw toHearthError(e);
    } finally {
      this.current = undefined;
    }
  }
}
