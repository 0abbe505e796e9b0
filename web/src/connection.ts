/**
 * How the public engine talks to its {@link EngineHost}: directly (in-thread)
 * or through the Web Worker's messages. Both sides of this interface are
 * the same host; only the transport differs.
 * @module
 */

import { deserializeError, HearthError } from './errors.js';
import type { EngineHost, EngineInfo, HostLoadOptions } from './host.js';
import type { GenerationJob, GenerationOutcome } from './openai.js';
import type { ProgressCallback } from './progress.js';
import type { FromWorker, ToWorker } from './protocol.js';

/**
 * How long `unload()` waits for the worker to say it freed the engine before
 * ending the worker anyway (its memory, GPU buffers included, goes with it).
 * A worker whose job or GPU never answers must not keep a reload waiting.
 */
export const UNLOAD_TIMEOUT_MS = 10_000;

/** The engine host's operations after load, as the public engine uses them. */
export interface HostConnection {
  /** Queues job `id`; `onText` (for streams) gets each final piece of output. */
  run(id: number, job: GenerationJob, onText?: (piece: string) => void): Promise<GenerationOutcome>;
  /** Aborts job `id` (queued or running). */
  abort(id: number): void;
  /** Aborts the running job. */
  interrupt(): void;
  /** Frees the engine (and ends the worker). */
  unload(): Promise<void>;
}

/** Loads a model in this thread. */
export async function connectInThread(
  options: HostLoadOptions,
  onProgress?: ProgressCallback,
  signal?: AbortSignal,
): Promise<{ connection: HostConnection; info: EngineInfo }> {
  // Imported here so that worker mode never loads the wasm bindings into the page.
  const { EngineHost } = await import('./host.js');
  const host: EngineHost = new EngineHost();
  const info = await host.load(options, onProgress, signal);
  return { connection: host, info };
}

/** Loads a model in a new module Web Worker. */
export function connectWorker(
  options: HostLoadOptions,
  onProgress?: ProgressCallback,
  signal?: AbortSignal,
): Promise<{ connection: HostConnection; info: EngineInfo }> {
  if (typeof Worker === 'undefined') {
    return Promise.reject(new HearthError('engine', 'Web Workers are not available here: create the engine with { worker: false }'));
  }
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'hearth-llm' });
  return new Promise((resolve, reject) => {
    const jobs = new Map<number, { onText?: (piece: string) => void; resolve: (o: GenerationOutcome) => void; reject: (e: unknown) => void }>();
    let loaded = false;
    let closed = false;
    let onUnloaded: (() => void) | undefined;
    const send = (message: ToWorker) => worker.postMessage(message);

    /** Ends the worker; every job still waiting rejects with `error`. */
    const close = (error: HearthError) => {
      if (closed) return;
      closed = true;
      worker.terminate();
      signal?.removeEventListener('abort', onAbort);
      for (const job of jobs.values()) job.reject(error);
      jobs.clear();
      onUnloaded?.();
      if (!loaded) reject(error);
    };
    const onAbort = () => close(new HearthError('aborted', 'the load was aborted'));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });

    worker.addEventListener('error', (event: ErrorEvent) => {
      event.preventDefault();
      const what = event.message || 'the worker script failed to load or threw';
      if (!loaded) close(new HearthError('engine', `hearth-llm worker: ${what}`));
      else console.error(`hearth-llm worker: ${what}`);
    });
    worker.addEventListener('messageerror', () => console.error('hearth-llm: a worker message could not be read'));
    worker.addEventListener('message', (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      switch (message.type) {
        case 'progress':
          try {
            onProgress?.(message.progress);
          } catch (e) {
            console.error('hearth-llm: onProgress threw:', e);
          }
          break;
        case 'loaded':
          loaded = true;
          signal?.removeEventListener('abort', onAbort);
          resolve({ connection, info: message.info });
          break;
        case 'load-failed':
          close(deserializeError(message.error));
          break;
        case 'text':
          jobs.get(message.id)?.onText?.(message.piece);
          break;
        case 'done':
          jobs.get(message.id)?.resolve(message.outcome);
          jobs.delete(message.id);
          break;
        case 'failed':
          jobs.get(message.id)?.reject(deserializeError(message.error));
          jobs.delete(message.id);
          break;
        case 'unloaded':
          close(new HearthError('unloaded', 'the engine is unloaded'));
          break;
      }
    });

    const connection: HostConnection = {
      run(id, job, onText) {
        if (closed) return Promise.reject(new HearthError('unloaded', 'the engine is unloaded'));
        return new Promise((resolve, reject) => {
          jobs.set(id, { onText, resolve, reject });
          send({ type: 'run', id, job, stream: onText !== undefined });
        });
      },
      abort: (id) => !closed && send({ type: 'abort', id }),
      interrupt: () => !closed && send({ type: 'interrupt' }),
      unload() {
        if (closed) return Promise.resolve();
        return new Promise<void>((done) => {
          onUnloaded = done;
          send({ type: 'unload' });
          setTimeout(() => {
            if (closed) return;
            console.warn(`hearth-llm: the worker did not unload in ${UNLOAD_TIMEOUT_MS / 1000} s; ending it`);
            close(new HearthError('unloaded', 'the engine is unloaded'));
          }, UNLOAD_TIMEOUT_MS);
        });
      },
    };
    send({ type: 'load', options });
  });
}
