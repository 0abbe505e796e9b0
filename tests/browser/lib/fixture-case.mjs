// A case of the exact float64 reference of the default model
// (../shared/fixtures/smollm2_exact.json) checked on a browser page's wasm
// Engine (tests/browser/pages/engine.html), with the thresholds the native
// tests use: the same token ids, chat rendering, last-position logits within
// 0.05, and greedy output equal to the reference up to its first ambiguous
// position (top-1/top-2 margin below 0.1). Shared by the Chromium and the
// Firefox tests; `p` is a Playwright or a Puppeteer page (the same
// `evaluate(fn, arg)`).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { FIXTURE, GGUF } from './package-fixtures.mjs';

export const LOGIT_TOLERANCE = 0.05;
export const MIN_MARGIN = 0.1;

/** What the engine tests need and is missing: the fixture, the GGUF. */
export const missingReference = [FIXTURE, GGUF].filter((f) => !fs.existsSync(f));
/** The reference's cases (none when it is missing). */
export const referenceCases = missingReference.length ? [] : JSON.parse(fs.readFileSync(FIXTURE, 'utf8')).cases;

/** One fixture case on the engine of `p`: tokens, chat text, last-position logits and greedy ids. */
export async function checkCase(t, p, c, genTokens) {
  // Only what the page needs; the reference logits stay in node.
  const input = { text: c.prompt_text, messages: c.messages ?? null, promptIds: c.prompt_ids, maxTokens: genTokens };
  const got = await p.evaluate(async ({ text, messages, promptIds, maxTokens }) => {
    const engine = window.engine;
    const ids = Array.from(engine.encode(text, true));
    const rendered = messages ? engine.renderChat(messages) : null;
    engine.reset();
    const logits = Array.from(await engine.forwardLogits(new Uint32Array(promptIds)));
    // The prompt is cached now: generate() recomputes only its last token.
    const pieces = [];
    const request = { max_tokens: maxTokens, ignore_eos: true, sampler: { temperature: 0 } };
    const generation = await engine.generate(new Uint32Array(promptIds), request, (piece) => pieces.push(piece));
    return { ids, rendered, logits, generation, pieces, decoded: engine.decode(new Uint32Array(generation.ids)) };
  }, input);

  assert.equal(got.generation.reused_tokens, c.prompt_ids.length - 1, 'generate() reuses the prompt cached by forwardLogits()');
  // (a) tokenization, (b) chat template
  assert.deepEqual(got.ids, c.prompt_ids, 'encode(prompt_text, true)');
  if (c.kind === 'chat') assert.equal(got.rendered, c.prompt_text, 'renderChat(messages)');

  // (c) last-position logits
  assert.equal(got.logits.length, c.last_logits.length, 'logits length');
  let maxErr = 0;
  let worst = 0;
  got.logits.forEach((v, i) => {
    const err = Math.abs(v - c.last_logits[i]);
    if (!(err <= maxErr)) { maxErr = err; worst = i; }
  });
  t.diagnostic(`${c.id}: last-position logits max abs error ${maxErr.toExponential(2)} (token ${worst})`);
  assert.ok(maxErr < LOGIT_TOLERANCE,
    `logit ${worst}: got ${got.logits[worst]}, want ${c.last_logits[worst]} (error ${maxErr})`);

  // (d) greedy generation, compared up to the first ambiguous position
  const g = got.generation;
  const { timings } = g;
  t.diagnostic(`${c.id}: prefill ${timings.prefill_tokens} tokens at ${timings.prefill_tok_s.toFixed(1)} tok/s ` +
    `(ttft ${timings.ttft_ms.toFixed(0)} ms), decode ${timings.decode_tokens} tokens at ${timings.decode_tok_s.toFixed(2)} tok/s`);
  assert.equal(g.ids.length, genTokens, 'ignore_eos: every requested token is generated');
  assert.equal(g.finish_reason, 'length');
  assert.deepEqual(g.prompt_ids, c.prompt_ids);
  let firstAmbiguous = c.margins.findIndex((m) => m < MIN_MARGIN);
  if (firstAmbiguous < 0) firstAmbiguous = c.margins.length;
  const n = Math.min(firstAmbiguous, genTokens);
  t.diagnostic(`${c.id}: ${n} of ${genTokens} greedy ids compared (first reference margin < ${MIN_MARGIN} at ${firstAmbiguous})`);
  assert.deepEqual(g.ids.slice(0, n), c.generated_ids.slice(0, n), 'greedy ids up to the first ambiguous position');
  // Streaming: the pieces make the text, and the text is the ids decoded.
  assert.equal(got.pieces.join(''), g.text, 'onText pieces concatenate to the returned text');
  assert.ok(got.pieces.every((p) => typeof p === 'string' && p.length > 0), 'no empty pieces');
  assert.equal(got.decoded, g.text, 'decode(ids) equals the returned text');
}

