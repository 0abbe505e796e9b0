/**
 * hearth-llm: run LLMs in the browser on WebGPU (or the CPU).
 *
 * ```ts
 * import { createEngine } from 'hearth-llm';
 * const engine = await createEngine({ model: '/models/SmolLM2-135M-Instruct-q4_1/' });
 * const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi!' }], stream: true });
 * for await (const chunk of stream) out.textContent += chunk.choices[0].delta.content ?? '';
 * ```
 * @module
 */

export { createEngine, HearthEngine, hostLoadOptions } from './engine.js';
export type { CreateEngineOptions, EngineStats, ChatCompletionStream, CompletionStream } from './engine.js';
export type { EngineInfo } from './host.js';
export type { Backend, BackendChoice, KvCacheType } from './backend.js';
export { HearthError, isHearthError, toHearthError } from './errors.js';
export type { HearthErrorCode, HearthErrorFields, SerializedHearthError } from './errors.js';
export { hasModelInCache, deleteModelFromCache, listCachedModels, DEFAULT_CACHE_NAME } from './cache.js';
export type { CachedModel } from './cache.js';
export { validateManifest, packageBaseUrl, packageFileUrl, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION } from './manifest.js';
export type { Manifest, ManifestFile, ManifestTensor, GenerationDefaults } from './manifest.js';
export { backoffDelay, isRetryableStatus, DEFAULT_RETRY } from './fetch.js';
export type { RetryOptions } from './fetch.js';
export { validateChatRequest, validateCompletionRequest } from './openai.js';
export type {
  ChatMessage,
  SamplingParams,
  ChatCompletionRequest,
  CompletionRequest,
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  CompletionChunk,
  CompletionUsage,
  FinishReason,
} from './openai.js';
export type { LoadProgress, LoadPhase, ProgressCallback } from './progress.js';
