/**
 * The engine's module Web Worker: one {@link EngineHost} driven by the
 * messages of protocol.ts. `createEngine()` starts it with
 * `new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })`.
 * @module
 */

import { serializeError } from './errors.js';
import { EngineHost } from './host.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** The worker global scope, typed narrowly (the DOM lib has no worker types). */
const scope = self as unknown as {
  postMessage(message: FromWorker): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<ToWorker>) => void): void;
};

const host = new EngineHost();
const post = (message: FromWorker) => scope.postMessage(message);

scope.addEventListener('message', (event) => {
  const message = event.data;
  switch (message.type) {
    case 'load':
      host.load(message.options, (progress) => post({ type: 'progress', progress })).then(
        (info) => post({ type: 'loaded', info }),
        (e) => post({ type: 'load-failed', error: serializeError(e) }),
      );
      break;
    case 'run':
      host.run(message.id, message.job, message.stream ? (piece) => post({ type: 'text', id: message.id, piece }) : undefined).then(
        (outcome) => post({ type: 'done', id: message.id, outcome }),
        (e) => post({ type: 'failed', id: message.id, error: serializeError(e) }),
      );
      break;
    case 'abort':
      host.abort(message.id);
      break;
    case 'interrupt':
      host.interrupt();
      break;
    case 'unload':
      host.unload().finally(() => post({ type: 'unloaded' }));
      break;
  }
});
