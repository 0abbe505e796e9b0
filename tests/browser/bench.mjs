// Generation speed of the wasm engine in headless Chromium (WebGPU):
//   node tests/browser/bench.mjs [--prompt-tokens 128] [--gen-tokens 128]
// Prints one JSON line: adapter, prompt/generated tokens, load time, time to
// first token, prefill and decode tokens/s. The prompt is the start of the
// perplexity fixture text, cut to the requested number of tokens.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSession } from './harness.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const promptTokens = arg('--prompt-tokens', 128);
const genTokens = arg('--gen-tokens', 128);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const text = fs.readFileSync(path.join(root, '..', 'shared', 'fixtures', 'ppl_text.txt'), 'utf8').slice(2000, 2000 + promptTokens * 8);

const session = await startSession();
try {
  const page = await session.open(`test/engine.html?context=${promptTokens + genTokens + 8}`);
  await page.waitForFunction(() => window.engineState, null, { timeout: 120_000 });
  const state = await page.evaluate(() => window.engineState);
  if (!state.ok) throw new Error(state.message);
  const result = await page.evaluate(async ({ text, promptTokens, genTokens }) => {
    const ids = window.engine.encode(text, false).slice(0, promptTokens);
    if (ids.length < promptTokens) throw new Error(`the text gives only ${ids.length} tokens`);
    const g = await window.engine.generate(ids, { max_tokens: genTokens, ignore_eos: true }, () => {});
    return { prompt_tokens: ids.length, gen_tokens: g.ids.length, ...g.timings };
  }, { text, promptTokens, genTokens });
  console.log(JSON.stringify({ adapter: state.browserAdapter, load_ms: state.loadMs, fetch_ms: state.fetchMs, gpu_bytes: state.gpuBytes, ...result }));
} finally {
  await session.close();
}
