/**
 * Loads the wasm build an engine needs: the threaded one (shared memory, a
 * rayon pool on Web Workers) for the CPU backend where it can run, else the
 * single-threaded one. Kept apart from backend.ts so that the package's
 * public types never reach the generated wasm bindings' types.
 * @module
 */

import type { Backend } from './backend.js';
import { TIMED_OUT, withinTime } from './deadline.js';
import { HearthError } from './errors.js';
import type * as Wasm from './wasm/hearth_llm.js';

/** The wasm bindings, either build (they have the same API). */
export type WasmModule = typeof Wasm;

/** One instance of each build per realm: a module instantiates once, and its thread pool starts once. */
const builds = new Map<'plain' | 'threads', Promise<WasmModule>>();

/** Whether this thread may block (Atomics.wait): workers may, a page's main thread may not. */
function canBlock(): boolean {
  return typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';
}

/**
 * Whether this realm has shared memory. Cross-origin isolation is not
 * enough: WebKitGTK, for one, is isolated and has no SharedArrayBuffer
 * unless told to; trying the threaded build there would fetch and compile
 * it for nothing.
 */
function hasSharedMemory(): boolean {
  return globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
}

/** Instantiates build `key` once (a failed attempt may be retried). */
function once(key: 'plain' | 'threads', load: () => Promise<WasmModule>): Promise<WasmModule> {
  let loading = builds.get(key);
  if (!loading) {
    loading = load().catch((e: unknown) => {
      builds.delete(key);
      const message = e instanceof Error ? e.message : String(e);
      // A Content-Security-Policy without 'wasm-unsafe-eval' forbids compiling wasm at all.
      const hint = /Content.Security.Policy|wasm-unsafe-eval/i.test(message)
        ? " (the page's Content-Security-Policy must allow script-src 'wasm-unsafe-eval', for the page and the worker scripts)"
        : '';
      throw new HearthError('engine', `the wasm engine failed to load: ${message}${hint}`, {}, { cause: e });
    });
    builds.set(key, loading);
  }
  return loading;
}

function loadPlain(wasmUrl?: string): Promise<WasmModule> {
  return once('plain', async () => {
    const wasm = await import('./wasm/hearth_llm.js');
    await wasm.default(wasmUrl ? { module_or_path: wasmUrl } : undefined);
    return wasm;
  });
}

/**
 * How long the threaded build's pool may take to start (well under a
 * second, normally). Firefox now and then never starts one of its workers,
 * and initThreadPool would wait for it for good: the engine then runs on
 * the single-threaded build instead.
 */
export const POOL_START_TIMEOUT_MS = 10_000;

function loadThreaded(threads: number, wasmUrl?: string): Promise<WasmModule> {
  return once('threads', async () => {
    // Same crate, same bindings, plus initThreadPool: the cast only bridges the two generated .d.ts files.
    const wasm = (await import('./wasm-threads/hearth_llm.js')) as unknown as WasmModule & { initThreadPool(n: number): Promise<unknown> };
    await wasm.default(wasmUrl ? { module_or_path: wasmUrl } : undefined);
    // Before anything else calls into the module: a parallel call made
    // earlier would start a default pool and make initThreadPool fail.
    if ((await withinTime(wasm.initThreadPool(threads), POOL_START_TIMEOUT_MS)) === TIMED_OUT) {
      throw new Error(`its ${threads} worker threads did not start in ${POOL_START_TIMEOUT_MS / 1000} s`);
    }
    return wasm;
  });
}

/**
 * Loads the wasm build for `backend`: the threaded one for the CPU when this
 * realm has shared memory (cross-origin isolated, and SharedArrayBuffer), may block (the
 * pool's callers wait on it) and more than one thread is wanted; else, or
 * when the threaded one fails to start, the single-threaded one.
 */
export async function loadWasm(backend: Backend, threads: number | undefined, urls: { wasmUrl?: string; wasmThreadsUrl?: string }): Promise<WasmModule> {
  const wanted = threads ?? navigator.hardwareConcurrency ?? 1;
  if (backend === 'cpu' && hasSharedMemory() && canBlock() && wanted > 1) {
    try {
      return await loadThreaded(wanted, urls.wasmThreadsUrl);
    } catch (e) {
      console.warn(`hearth-llm: ${(e as Error).message}; running on one thread`);
    }
  }
  return loadPlain(urls.wasmUrl);
}
