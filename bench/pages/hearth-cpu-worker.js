// The benchmark's CPU-backend run: a module worker (a worker may block on the
// rayon pool, a page may not) that starts the threaded wasm build with
// `threads` threads, loads the GGUF on the CPU backend and, for each prompt
// (token ids), runs a short warm-up and then `repeats` timed generations.
// in:  { threads, model, context, prompts: number[][], genTokens, repeats }
// out: { ok: true, threads, loadMs, weightBytes, memoryBytes, rows: [[timings]] } | { ok: false, message }
self.addEventListener('message', async ({ data }) => {
  try {
    const wasm = await import('/pkg-threads/hearth_llm.js');
    await wasm.default();
    await wasm.initThreadPool(data.threads);
    const bytes = new Uint8Array(await (await fetch(data.model)).arrayBuffer());
    const start = performance.now();
    const engine = await wasm.Engine.load(bytes, { context: data.context, backend: 'cpu' });
    const loadMs = performance.now() - start;
    const rows = [];
    for (const ids of data.prompts) {
      const runs = [];
      for (let run = 0; run <= data.repeats; run++) {
        engine.reset();
        const g = run === 0
          ? await engine.generate(new Uint32Array(ids.slice(0, 8)), { max_tokens: 4, ignore_eos: true }, null)
          : await engine.generate(new Uint32Array(ids), { max_tokens: data.genTokens, ignore_eos: true }, null);
        if (run > 0) runs.push(g.timings);
      }
      rows.push(runs);
    }
    self.postMessage({
      ok: true, threads: engine.threads(), loadMs, weightBytes: engine.weightBytes(), memoryBytes: engine.gpuBytes(), rows,
    });
    engine.free();
  } catch (e) {
    self.postMessage({ ok: false, message: e instanceof Error ? e.message : String(e) });
  }
});
