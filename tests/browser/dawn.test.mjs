// Chrome's WebGPU implementation, Dawn, in Node (the `webgpu` npm package)
// on its null device, which runs nothing but validates every shader with
// Tint, Chrome's WGSL compiler, as Chrome does. Here it stands in for Chrome
// on a real GPU, which these machines lack: the null device has shader-f16
// and is no software adapter, so the engine compiles what a GPU gets (the
// matmul with several threads per row, the split attention and its combine,
// the tiled prefill, the f16 KV cache), while the Chromium tests' SwiftShader
// has no shader-f16. Tint is stricter than naga, which wgpu uses natively
// (its uniformity analysis, for one): a kernel that runs on lavapipe may
// still be refused by Chrome. Outputs are not checked: the device computes
// nothing (the Chromium tests and tests/*.rs check the values).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, globals } from 'webgpu';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WASM = path.join(ROOT, 'web/dist/wasm');
const MODEL = path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf');

let wasm;
before(async () => {
  Object.assign(globalThis, globals); // GPUBufferUsage and the like
  // wgpu looks for navigator.gpu where a page (a global `Window`) or a worker has it.
  globalThis.Window ??= class Window {};
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: create(['backend=null']) }, configurable: true });
  wasm = await import(path.join(WASM, 'hearth_llm.js'));
  await wasm.default({ module_or_path: fs.readFileSync(path.join(WASM, 'hearth_llm_bg.wasm')) });
});

test("Tint accepts every kernel a GPU with shader-f16 gets (Dawn's null device)", async (t) => {
  const gpu = await wasm.Gpu.create();
  const info = gpu.adapterInfo();
  t.diagnostic(`${info.name}: ${JSON.stringify(info.kernel_variants)}`);
  assert.equal(info.is_software, false);
  assert.equal(info.shader_f16, true);
  const variants = info.kernel_variants;
  assert.equal(variants.f16_kv_cache, true);
  assert.equal(variants.cpu_attention, false);
  assert.ok(variants.matmul_lanes_per_row > 1 && variants.attention_runs > 1, 'the GPU variants');
  // Each check compiles its kernel inside GPU error scopes: a shader Tint
  // refuses rejects the promise, naming the kernel.
  const checks = await gpu.kernelSelfCheck();
  const kernels = new Set(checks.map((c) => c.kernel));
  t.diagnostic(`${checks.length} kernel checks compiled and ran: ${[...kernels].join(', ')}`);
  for (const kernel of ['embed', 'rms_norm', 'matmul', 'matmul_qkv', 'matmul_swiglu', 'rope', 'attention', 'matmul_attention', 'swiglu', 'add', 'argmax', 'sample']) {
    assert.ok(kernels.has(kernel), `no ${kernel} check`);
  }
  for (const kernel of ['matmul', 'matmul_qkv', 'matmul_swiglu']) {
    assert.ok(checks.some((c) => c.kernel === kernel && c.case.startsWith('tiled: ')), `no tiled ${kernel} check`);
  }
  gpu.free();
});

test("the default model's forward compiles there too: a tiled prefill and a decode step, f16 KV cache", async () => {
  const engine = await wasm.Engine.load(fs.readFileSync(MODEL), { context: 256, kvCache: 'f16' });
  assert.equal(engine.adapterInfo().kernel_variants.f16_kv_cache, true);
  const vocab = engine.config().vocab_size;
  // Pipelines are compiled on first use: a GPU error (a refused shader) fails the call.
  const prompt = Array.from({ length: 40 }, (_, i) => 1000 + 17 * i);
  assert.equal((await engine.forwardLogits(new Uint32Array(prompt))).length, vocab);
  assert.equal((await engine.forwardLogits(new Uint32Array([42]))).length, vocab);
  engine.free();
});
