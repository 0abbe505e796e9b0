/**
 * The messages between the page and the engine's Web Worker. Every message
 * is plain data (structured-clone safe); errors travel serialized and are
 * rebuilt as {@link HearthError}s on the other side.
 * @module
 */

import type { SerializedHearthError } from './errors.js';
import type { EngineInfo, HostLoadOptions } from './host.js';
import type { GenerationJob, GenerationOutcome } from './openai.js';
import type { LoadProgress } from './progress.js';

/** Page → worker. */
export type ToWorker =
  /** Load the model (once, first). */
  | { type: 'load'; options: HostLoadOptions }
  /** Queue generation job `id`; with `stream`, its output comes piece by piece as `text` messages. */
  | { type: 'run'; id: number; job: GenerationJob; stream: boolean }
  /** Abort job `id` (queued or running). */
  | { type: 'abort'; id: number }
  /** Abort the running job. */
  | { type: 'interrupt' }
  /** Free the engine; the worker answers `unloaded`, then the page terminates it. */
  | { type: 'unload' };

/** Worker → page. */
export type FromWorker =
  | { type: 'progress'; progress: LoadProgress }
  | { type: 'loaded'; info: EngineInfo }
  | { type: 'load-failed'; error: SerializedHearthError }
  /** A piece of job `id`'s output, final. */
  | { type: 'text'; id: number; piece: string }
  | { type: 'done'; id: number; outcome: GenerationOutcome }
  | { type: 'failed'; id: number; error: SerializedHearthError }
  | { type: 'unloaded' };
