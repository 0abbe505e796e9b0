/**
 * Where the model runs: WebGPU or the CPU (wasm simd128, on several threads
 * when the page is cross-origin isolated). `auto` picks WebGPU on a hardware
 * adapter and the CPU otherwise: a software WebGPU adapter (SwiftShader,
 * llvmpipe...) runs the same kernels far slower than the CPU backend does.
 * Runs where the engine runs (the worker, or the page with `worker: false`);
 * wasm-build.ts loads the wasm build for the backend.
 * @module
 */

import { TIMED_OUT, withinTime } from './deadline.js';
import { HearthError, invalidRequest } from './errors.js';

/** The backend `createEngine` is asked for. */
export type BackendChoice = 'auto' | 'webgpu' | 'cpu';
/** The backend an engine runs on. */
export type Backend = 'webgpu' | 'cpu';

export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'webgpu', 'cpu'];

/** Checks the `backend` option (undefined means `auto`). */
export function validateBackend(value: unknown): BackendChoice | undefined {
  if (value === undefined || BACKEND_CHOICES.includes(value as BackendChoice)) return value as BackendChoice | undefined;
  throw invalidRequest('backend', `backend must be one of ${BACKEND_CHOICES.map((b) => `'${b}'`).join(', ')}, got ${JSON.stringify(value)}`);
}

/** The browser's description of a WebGPU adapter (`GPUAdapterInfo`'s strings). */
export type AdapterNames = Partial<Record<'vendor' | 'architecture' | 'device' | 'description', string>>;

/** The backend to run on and why it was picked. */
export interface BackendDecision {
  backend: Backend;
  /** Why: `requested`, `no WebGPU (...)`, `software adapter (...)`, `hardware adapter (...)`. */
  reason: string;
  /** The browser's adapter, when there is one. */
  adapter: AdapterNames;
}

interface GpuAdapterLike {
  info?: AdapterNames & { isFallbackAdapter?: boolean };
  /** Older browsers put the flag on the adapter itself. */
  isFallbackAdapter?: boolean;
}
type GpuLike = { requestAdapter(): Promise<GpuAdapterLike | null> };

/** Names of CPU-based WebGPU implementations, as adapters report them. */
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|software|microsoft basic render/i;

/**
 * How long requestAdapter() may take. A browser whose GPU process never
 * answers (a hung driver, a stuck GPU process) would otherwise hang
 * createEngine for good; `auto` then runs on the CPU.
 */
export const ADAPTER_TIMEOUT_MS = 8000;

/**
 * How long opening the engine's WebGPU device may take (the wasm loader's
 * create: the tokenizer's parse, then requestAdapter and requestDevice):
 * a GPU process that answers requestAdapter and then hangs, as one may
 * after a lost device, would otherwise hang createEngine for good. `auto`
 * then runs on the CPU.
 */
export const DEVICE_TIMEOUT_MS = 20_000;

/** The browser's adapter, or why there is none (`stalled`: no answer in time). */
async function requestAdapter(): Promise<{ adapter: GpuAdapterLike | null; missing?: string; stalled?: boolean }> {
  const gpu = (navigator as unknown as { gpu?: GpuLike }).gpu;
  if (!gpu) return { adapter: null, missing: 'navigator.gpu is missing' };
  try {
    const adapter = await withinTime(gpu.requestAdapter(), ADAPTER_TIMEOUT_MS);
    if (adapter === TIMED_OUT) {
      return { adapter: null, missing: `requestAdapter() did not answer in ${ADAPTER_TIMEOUT_MS / 1000} s`, stalled: true };
    }
    return adapter ? { adapter } : { adapter: null, missing: 'requestAdapter() returned null' };
  } catch (e) {
    return { adapter: null, missing: `requestAdapter() failed: ${e instanceof Error ? e.message : e}` };
  }
}

function adapterNames(adapter: GpuAdapterLike | null): AdapterNames {
  const out: AdapterNames = {};
  for (const key of ['vendor', 'architecture', 'device', 'description'] as const) {
    const value = adapter?.info?.[key];
    if (value) out[key] = value;
  }
  return out;
}

/** Resolves `auto` (and reports the adapter for an explicit choice too). */
export async function decideBackend(choice: BackendChoice): Promise<BackendDecision> {
  const { adapter, missing, stalled } = await requestAdapter();
  if (stalled && choice === 'webgpu') {
    // The engine's own request would wait as long: fail now, saying why.
    throw new HearthError('no_webgpu', `backend 'webgpu': ${missing}; the browser's GPU process may be stuck (reload the browser), or create the engine with backend 'cpu'`);
  }
  const names = adapterNames(adapter);
  if (choice !== 'auto') return { backend: choice, reason: 'requested', adapter: names };
  if (!adapter) return { backend: 'cpu', reason: `no WebGPU (${missing})`, adapter: names };
  const label = Object.values(names).join(' · ') || 'unnamed';
  const software = adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
  if (software || SOFTWARE_ADAPTER.test(label)) {
    return { backend: 'cpu', reason: `software adapter (${software ? 'fallback adapter: ' : ''}${label})`, adapter: names };
  }
  return { backend: 'webgpu', reason: `hardware adapter (${label})`, adapter: names };
}

/** The KV cache's value types (`CreateEngineOptions.kvCache`). */
export type KvCacheType = 'auto' | 'f16' | 'f32';
export const KV_CACHE_TYPES: readonly KvCacheType[] = ['auto', 'f16', 'f32'];
