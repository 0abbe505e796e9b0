/**
 * The engine host: the wasm engine and everything that must run beside it
 * (the loader, the request queue, aborts). It runs in the Web Worker
 * (worker.ts wraps it in a message protocol) or, with `worker: false`, in
 * the page itself; both modes use this one implementation.
 * @module
 */

import init, { ModelLoader, type Engine as WasmEngine } from './wasm/hearth_llm.js';
import { HearthError, toHearthError } from './errors.js';
import type { RetryOptions } from './fetch.js';
import { loadModel } from './loader.js';
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
  /** Where the wasm binary is (default: beside the JS bindings). */
  wasmUrl?: string;
}

/** The loaded engine: model, context, GPU. */
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
  /** GPU memory the model holds (weights, KV cache, activations), in bytes. */
  gpuBytes: number;
  /** The WebGPU adapter: the engine's view, plus the browser's `GPUAdapterInfo` (vendor, architecture...). */
  adapter: Record<string, unknown>;
  /** Bytes of the package the cache supplied on this load. */
  cachedBytes: number;
}

let wasmReady: Promise<unknown> | undefined;

/** Instantiates the wasm module once per realm. */
function initWasm(wasmUrl?: string): Promise<unknown> {
  wasmReady ??= init(wasmUrl ? { module_or_path: wasmUrl } : undefined).catch((e: unknown) => {
    wasmReady = undefined;
    throw new HearthError('engine', `the wasm engine failed to load: ${e instanceof Error ? e.message : e}`, {}, { cause: e });
  });
  return wasmReady;
}

/** The browser's own description of its adapter (wgpu reports no names on WebGPU). */
async function browserAdapterInfo(): Promise<Record<string, string>> {
  try {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } }).gpu;
    const info = (await gpu?.requestAdapter())?.info;
    if (!info) return {};
    const out: Record<string, string> = {};
    for (const key of ['vendor', 'architecture', 'device', 'description'] as const) if (info[key]) out[key] = info[key];
    return out;
  } catch {
    return {};
  }
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
    if (!(navigator as unknown as { gpu?: unknown }).gpu) {
      throw new HearthError('no_webgpu', 'this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or Safari, or enable WebGPU');
    }
    await initWasm(options.wasmUrl);
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
        const sizes: { context?: number; maxBatch?: number } = {};
        if (options.context !== undefined) sizes.context = options.context;
        if (options.maxBatch !== undefined) sizes.maxBatch = options.maxBatch;
        try {
          return await ModelLoader.create(manifestJson, tokenizerJson, sizes);
        } catch (e) {
          throw toHearthError(e);
        }
      },
    );
    this.engine = loaded.engine;
    this.manifest = loaded.manifest;
    return {
      model: loaded.manifest.name,
      url: options.baseUrl,
      quantization: loaded.manifest.quantization,
      config: this.engine.config() as Record<string, unknown>,
      context: this.engine.contextSize(),
      gpuBytes: this.engine.gpuBytes(),
      adapter: { ...(this.engine.adapterInfo() as Record<string, unknown>), browser: await browserAdapterInfo() },
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
