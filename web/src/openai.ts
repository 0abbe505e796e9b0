/**
 * OpenAI-style request and response shapes, the validation every request
 * goes through before anything runs, and the builders of the response
 * objects. Pure functions: no engine, no DOM.
 * @module
 */

import { invalidRequest } from './errors.js';

/** A message of a conversation. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
  /** Accepted and ignored. */
  name?: string;
}

/** Sampling and stopping options shared by chat and text completions. */
export interface SamplingParams {
  /** Most tokens to generate (default: until end-of-turn or the context fills). */
  max_tokens?: number | null;
  /** 0 is greedy (default: the model's recommended value, else 1). */
  temperature?: number | null;
  /** Nucleus sampling mass, in (0, 1]. */
  top_p?: number | null;
  /** Sample among the k most likely tokens (0: no limit). */
  top_k?: number | null;
  /** Drop tokens less likely than min_p times the most likely one, in [0, 1]. */
  min_p?: number | null;
  /** Divide (or multiply, for negative logits) logits of seen tokens by this, > 0. */
  repetition_penalty?: number | null;
  /** Subtract this from logits of tokens seen at least once, in [-2, 2]. */
  presence_penalty?: number | null;
  /** Subtract this times the count from logits of seen tokens, in [-2, 2]. */
  frequency_penalty?: number | null;
  /** Seed of the sampler; the same seed and request give the same output (default: random). */
  seed?: number | null;
  /** Stop before any of these strings (not included in the output). */
  stop?: string | string[] | null;
  /** Stream the output as chunks. */
  stream?: boolean | null;
  /** Accepted and ignored (usage is always reported in the last chunk). */
  stream_options?: { include_usage?: boolean } | null;
  /** Number of choices; only 1 is supported. */
  n?: number | null;
  /** Accepted and ignored: the engine runs the model it loaded. */
  model?: string | null;
  /** Accepted and ignored. */
  user?: string | null;
  /** Aborts the request: it ends with finish_reason `abort`. */
  signal?: AbortSignal | null;
  /**
   * What to do when the prompt does not leave room in the context for the
   * reply. `disabled` (the default): reject with a `context_full` error.
   * `auto`: drop the oldest messages after the system ones (chat; the last
   * message is always kept), or the prompt's first tokens (completions),
   * until the prompt leaves room for `max_tokens` (at most half the context;
   * without `max_tokens`, a quarter of it).
   */
  truncation?: 'disabled' | 'auto' | null;
}

/** `engine.chat.completions.create()`'s request. */
export interface ChatCompletionRequest extends SamplingParams {
  messages: ChatMessage[];
}

/** `engine.completions.create()`'s request. */
export interface CompletionRequest extends SamplingParams {
  /** Raw text (no chat template); special tokens written in it are parsed. */
  prompt: string;
}

/** Why a generation ended: a stop condition, `max_tokens`/context, or an abort. */
export type FinishReason = 'stop' | 'length' | 'abort';

/** Token counts of a request. */
export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: {
    /** Prompt tokens whose KV cache was reused from the previous request (not computed again). */
    cached_tokens: number;
  };
}

/** A non-streamed chat completion. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: [{ index: 0; message: { role: 'assistant'; content: string }; logprobs: null; finish_reason: FinishReason }];
  usage: CompletionUsage;
}

/** One chunk of a streamed chat completion. */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: [{ index: 0; delta: { role?: 'assistant'; content?: string }; logprobs: null; finish_reason: FinishReason | null }];
  /** Only on the last chunk. */
  usage?: CompletionUsage;
}

/** A non-streamed text completion. */
export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: [{ index: 0; text: string; logprobs: null; finish_reason: FinishReason }];
  usage: CompletionUsage;
}

/** One chunk of a streamed text completion (`object` is `text_completion`, as OpenAI sends it). */
export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: [{ index: 0; text: string; logprobs: null; finish_reason: FinishReason | null }];
  /** Only on the last chunk. */
  usage?: CompletionUsage;
}

/** Sampler settings as the wasm engine takes them (only the fields set). */
export interface SamplerParams {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  seed?: number;
}

/** A validated request, as it travels to the engine host (no signal, no callbacks). */
export interface GenerationJob {
  kind: 'chat' | 'completion';
  /** For `chat`. */
  messages?: { role: string; content: string }[];
  /** For `completion`. */
  prompt?: string;
  /** Undefined: until end-of-turn or the context fills. */
  maxTokens?: number;
  sampler: SamplerParams;
  stop: string[];
  /** See {@link SamplingParams.truncation}. */
  truncation: 'disabled' | 'auto';
}

/** The engine host's answer to a {@link GenerationJob}. */
export interface GenerationOutcome {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  timings: { ttft_ms: number; prefill_tokens: number; prefill_tok_s: number; decode_tokens: number; decode_tok_s: number; threads: number };
  /** The engine's wasm memory after the request, in bytes. */
  wasmBytes: number;
}

const COMMON_FIELDS = [
  'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty', 'presence_penalty', 'frequency_penalty',
  'seed', 'stop', 'stream', 'stream_options', 'n', 'model', 'user', 'signal', 'truncation',
];
const CHAT_FIELDS = new Set(['messages', ...COMMON_FIELDS]);
const COMPLETION_FIELDS = new Set(['prompt', ...COMMON_FIELDS]);
const ROLES = new Set(['system', 'user', 'assistant']);
const MESSAGE_FIELDS = new Set(['role', 'content', 'name']);

const given = (v: unknown): boolean => v !== undefined && v !== null;

function checkObject(request: unknown, allowed: Set<string>, what: string): Record<string, unknown> {
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    throw invalidRequest('', `${what}: the request must be an object`);
  }
  const unknown = Object.keys(request).filter((k) => !allowed.has(k));
  if (unknown.length > 0) {
    throw invalidRequest(unknown[0]!, `${what}: unknown field(s) ${unknown.join(', ')} (allowed: ${[...allowed].join(', ')})`);
  }
  return request as Record<string, unknown>;
}

function checkNumber(r: Record<string, unknown>, key: string, ok: (v: number) => boolean, rule: string, integer = false): number | undefined {
  const v = r[key];
  if (!given(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || !ok(v)) {
    throw invalidRequest(key, `${key} must be ${integer ? 'an integer ' : 'a number '}${rule}, got ${JSON.stringify(v) ?? String(v)}`);
  }
  return v;
}

/** Validates the fields chat and text completions share and maps them to a job's settings. */
function commonParams(r: Record<string, unknown>): Pick<GenerationJob, 'maxTokens' | 'sampler' | 'stop' | 'truncation'> & { stream: boolean } {
  if (given(r.n) && r.n !== 1) throw invalidRequest('n', `n must be 1 (one choice per request), got ${JSON.stringify(r.n)}`);
  if (given(r.stream) && typeof r.stream !== 'boolean') throw invalidRequest('stream', 'stream must be a boolean');
  if (given(r.stream_options) && (typeof r.stream_options !== 'object' || Array.isArray(r.stream_options))) {
    throw invalidRequest('stream_options', 'stream_options must be an object');
  }
  if (given(r.model) && typeof r.model !== 'string') throw invalidRequest('model', 'model must be a string');
  if (given(r.user) && typeof r.user !== 'string') throw invalidRequest('user', 'user must be a string');
  const signal = r.signal as AbortSignal | null | undefined;
  if (given(signal) && (typeof signal !== 'object' || typeof signal!.aborted !== 'boolean' || typeof signal!.addEventListener !== 'function')) {
    throw invalidRequest('signal', 'signal must be an AbortSignal');
  }
  const maxTokens = checkNumber(r, 'max_tokens', (v) => v >= 1, '>= 1', true);
  const sampler: SamplerParams = {};
  const set = <K extends keyof SamplerParams>(key: K, value: number | undefined) => {
    if (value !== undefined) sampler[key] = value;
  };
  set('temperature', checkNumber(r, 'temperature', (v) => v >= 0, '>= 0'));
  set('top_p', checkNumber(r, 'top_p', (v) => v > 0 && v <= 1, 'in (0, 1]'));
  set('top_k', checkNumber(r, 'top_k', (v) => v >= 0, '>= 0', true));
  set('min_p', checkNumber(r, 'min_p', (v) => v >= 0 && v <= 1, 'in [0, 1]'));
  set('repetition_penalty', checkNumber(r, 'repetition_penalty', (v) => v > 0, '> 0'));
  set('presence_penalty', checkNumber(r, 'presence_penalty', (v) => v >= -2 && v <= 2, 'in [-2, 2]'));
  set('frequency_penalty', checkNumber(r, 'frequency_penalty', (v) => v >= -2 && v <= 2, 'in [-2, 2]'));
  set('seed', checkNumber(r, 'seed', (v) => v >= 0 && Number.isSafeInteger(v), '>= 0', true));
  let stop: string[] = [];
  if (given(r.stop)) {
    const list = typeof r.stop === 'string' ? [r.stop] : r.stop;
    if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
      throw invalidRequest('stop', 'stop must be a string or an array of strings');
    }
    if (list.some((s) => s === '')) throw invalidRequest('stop', 'stop strings must not be empty');
    stop = list as string[];
  }
  if (given(r.truncation) && r.truncation !== 'auto' && r.truncation !== 'disabled') {
    throw invalidRequest('truncation', `truncation must be "auto" or "disabled", got ${JSON.stringify(r.truncation)}`);
  }
  const truncation = r.truncation === 'auto' ? 'auto' : 'disabled';
  return { maxTokens, sampler, stop, truncation, stream: r.stream === true };
}

/**
 * Checks a chat completion request and maps it to a {@link GenerationJob}.
 * Throws an `invalid_request` {@link HearthError} (with `param`) on unknown
 * fields, out-of-range values, `n` other than 1, empty stop strings, bad
 * roles or non-string content. `model` and `user` are accepted and ignored.
 */
export function validateChatRequest(request: unknown): { job: GenerationJob; stream: boolean; signal?: AbortSignal } {
  const r = checkObject(request, CHAT_FIELDS, 'chat.completions.create');
  if (!Array.isArray(r.messages) || r.messages.length === 0) {
    throw invalidRequest('messages', 'messages must be a non-empty array of {role, content}');
  }
  const messages = r.messages.map((m: unknown, i: number) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw invalidRequest(`messages[${i}]`, `messages[${i}] must be an object`);
    const msg = m as Record<string, unknown>;
    const extra = Object.keys(msg).filter((k) => !MESSAGE_FIELDS.has(k));
    if (extra.length > 0) throw invalidRequest(`messages[${i}]`, `messages[${i}]: unknown field(s) ${extra.join(', ')} (allowed: role, content, name)`);
    if (typeof msg.role !== 'string' || !ROLES.has(msg.role)) {
      throw invalidRequest(`messages[${i}].role`, `messages[${i}].role must be "system", "user" or "assistant", got ${JSON.stringify(msg.role)}`);
    }
    if (typeof msg.content !== 'string') {
      throw invalidRequest(`messages[${i}].content`, `messages[${i}].content must be a string, got ${msg.content === null ? 'null' : typeof msg.content}`);
    }
    if (given(msg.name) && typeof msg.name !== 'string') throw invalidRequest(`messages[${i}].name`, `messages[${i}].name must be a string`);
    return { role: msg.role, content: msg.content };
  });
  const { stream, ...params } = commonParams(r);
  return { job: { kind: 'chat', messages, ...params }, stream, ...(given(r.signal) ? { signal: r.signal as AbortSignal } : {}) };
}

/**
 * Checks a text completion request and maps it to a {@link GenerationJob}
 * (the rules of {@link validateChatRequest}; `prompt` must be a non-empty string).
 */
export function validateCompletionRequest(request: unknown): { job: GenerationJob; stream: boolean; signal?: AbortSignal } {
  const r = checkObject(request, COMPLETION_FIELDS, 'completions.create');
  if (typeof r.prompt !== 'string' || r.prompt === '') {
    throw invalidRequest('prompt', `prompt must be a non-empty string, got ${Array.isArray(r.prompt) ? 'an array' : JSON.stringify(r.prompt)}`);
  }
  const { stream, ...params } = commonParams(r);
  return { job: { kind: 'completion', prompt: r.prompt, ...params }, stream, ...(given(r.signal) ? { signal: r.signal as AbortSignal } : {}) };
}

/**
 * The sampler settings of a job over the model's recommended defaults. With
 * a temperature above 0 and no seed, a random seed: unseeded requests differ
 * from run to run, as with OpenAI.
 */
export function resolveSampler(job: GenerationJob, defaults: SamplerParams = {}, random: () => number = Math.random): SamplerParams {
  const picked: SamplerParams = {};
  for (const key of ['temperature', 'top_p', 'top_k', 'repetition_penalty'] as const) {
    if (typeof defaults[key] === 'number') picked[key] = defaults[key];
  }
  const sampler = { ...picked, ...job.sampler };
  if (sampler.seed === undefined && (sampler.temperature ?? 1) > 0) sampler.seed = Math.floor(random() * 2 ** 32);
  return sampler;
}

/**
 * Room a truncated prompt leaves for the reply: `max_tokens`, at most half
 * the context; a quarter of it when `max_tokens` is not given.
 */
export function replyReserve(maxTokens: number | undefined, contextSize: number): number {
  return Math.max(1, Math.min(maxTokens ?? Math.floor(contextSize / 4), Math.floor(contextSize / 2)));
}

/**
 * The smallest `start` in [lo, hi] for which `fits(start)` holds, given that
 * `fits` only turns from false to true as `start` grows; `hi` if none does.
 * (Dropping more of the oldest messages only shortens a prompt.)
 */
export function firstFitting(lo: number, hi: number, fits: (start: number) => boolean): number {
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) hi = mid;
    else lo = mid + 1;
  }
  return hi;
}

/** The `max_tokens` to ask the wasm engine for: the request's, capped by the room left in the context. */
export function effectiveMaxTokens(requested: number | undefined, promptTokens: number, contextSize: number): number {
  const room = contextSize - promptTokens;
  return requested === undefined ? room : Math.min(requested, room);
}

/** The usage block of a response. */
export function usageOf(o: GenerationOutcome): CompletionUsage {
  return {
    prompt_tokens: o.promptTokens,
    completion_tokens: o.completionTokens,
    total_tokens: o.promptTokens + o.completionTokens,
    prompt_tokens_details: { cached_tokens: o.cachedTokens },
  };
}

let counter = 0;
/** A response id: `prefix-` and random hex, unique within the page. */
export function responseId(prefix: string): string {
  const random = Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
  return `${prefix}-${random}${(counter++).toString(16)}`;
}

/** Identity of a response: id, creation time (Unix seconds), model name. */
export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
}

/** A non-streamed chat completion from the host's outcome. */
export function chatCompletion(meta: ResponseMeta, o: GenerationOutcome): ChatCompletion {
  return {
    ...meta,
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content: o.text }, logprobs: null, finish_reason: o.finishReason }],
    usage: usageOf(o),
  };
}

/** A chat completion chunk; `first` carries the role, `last` the finish reason and usage. */
export function chatChunk(meta: ResponseMeta, part: { content?: string; first?: boolean; last?: GenerationOutcome }): ChatCompletionChunk {
  const delta: { role?: 'assistant'; content?: string } = {};
  if (part.first) delta.role = 'assistant';
  if (part.content !== undefined) delta.content = part.content;
  const chunk: ChatCompletionChunk = {
    ...meta,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: part.last?.finishReason ?? null }],
  };
  if (part.last) chunk.usage = usageOf(part.last);
  return chunk;
}

/** A non-streamed text completion from the host's outcome. */
export function textCompletion(meta: ResponseMeta, o: GenerationOutcome): Completion {
  return {
    ...meta,
    object: 'text_completion',
    choices: [{ index: 0, text: o.text, logprobs: null, finish_reason: o.finishReason }],
    usage: usageOf(o),
  };
}

/** A text completion chunk; `last` carries the finish reason and usage. */
export function textChunk(meta: ResponseMeta, part: { text?: string; last?: GenerationOutcome }): CompletionChunk {
  const chunk: CompletionChunk = {
    ...meta,
    object: 'text_completion',
    choices: [{ index: 0, text: part.text ?? '', logprobs: null, finish_reason: part.last?.finishReason ?? null }],
  };
  if (part.last) chunk.usage = usageOf(part.last);
  return chunk;
}
