// A module worker that runs one wasm build of the engine directly (no npm
// package): /pkg/ (single-threaded) or /pkg-threads/ (its rayon pool started
// with initThreadPool first; a worker may block on the pool, a page may not).
// It loads the GGUF with the given backend and answers one message with the
// greedy token ids of `promptIds`.
// in:  { build: 'pkg' | 'pkg-threads', threads, backend, model, promptIds, maxTokens }
// out: { ok: true, backend, threads, ids, text, loadMs, decodeTokS } | { ok: false, message }
self.addEventListener('message', async ({ data }) => {
  try {
    const wasm = await import(`/${data.build}/hearth_llm.js`);
    await wasm.default();
    if (data.build === 'pkg-threads') await wasm.initThreadPool(data.threads);
    const bytes = new Uint8Array(await (await fetch(data.model)).arrayBuffer());
    const start = performance.now();
    const engine = await wasm.Engine.load(bytes, { context: 256, backend: data.backend });
    const loadMs = performance.now() - start;
    const request = { max_tokens: data.maxTokens, ignore_eos: true, sampler: { temperature: 0 } };
    const g = await engine.generate(new Uint32Array(data.promptIds), request, null);
    self.postMessage({
      ok: true, backend: engine.backend(), threads: engine.threads(), ids: Array.from(g.ids), text: g.text, loadMs,
      decodeTokS: g.timings.decode_tok_s,
    });
    engine.free();
  } catch (e) {
    self.postMessage({ ok: false, message: e instanceof Error ? e.message : String(e) });
  }
});
