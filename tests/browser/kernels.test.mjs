// WGSL kernels in the browser (wasm + WebGPU): every kernel against the
// engine's own CPU reference compiled to wasm (the library's self-check, the
// same checks tests/gpu_kernels.rs runs natively), and RMSNorm against an
// independent float64 reference computed here in JavaScript.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSession, requireWebGPU, seededValues, maxAbsError } from './harness.mjs';

let session;
let page;
before(async () => {
  session = await startSession();
  page = await session.open('test/kernels.html');
  await page.waitForFunction(() => window.hearthReady === true);
});
after(() => session?.close());

function rmsNormF64(x, w, eps) {
  const cols = w.length;
  const out = [];
  for (let r = 0; r < x.length / cols; r++) {
    const row = x.slice(r * cols, (r + 1) * cols);
    const scale = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / cols + eps);
    row.forEach((v, i) => out.push(v * scale * w[i]));
  }
  return out;
}

test('RMSNorm on WebGPU matches the float64 reference at awkward sizes', async (t) => {
  if (!(await requireWebGPU(page, t))) return;
  const shapes = [[1, 1], [3, 7], [5, 63], [17, 576], [4, 1536], [2, 4099]];
  for (const [i, [rows, cols]] of shapes.entries()) {
    const x = seededValues(10 + i, rows * cols, 4);
    const w = seededValues(100 + i, cols, 2);
    const eps = 1e-5;
    const { gpu, cpu } = await page.evaluate(async ({ x, w, eps }) => {
      const { Gpu, rmsNormReference } = window.hearth;
      window.gpu ??= await Gpu.create();
      const gpu = Array.from(await window.gpu.rmsNorm(new Float32Array(x), new Float32Array(w), eps));
      const cpu = Array.from(rmsNormReference(new Float32Array(x), new Float32Array(w), eps));
      return { gpu, cpu };
    }, { x, w, eps });
    const want = rmsNormF64(x, w, eps);
    const gpuErr = maxAbsError(`gpu ${rows}x${cols}`, gpu, want, 1e-5 + 2e-5 * Math.max(...want.map(Math.abs)));
    maxAbsError(`wasm cpu ${rows}x${cols}`, cpu, want, 1e-6 * Math.max(...want.map(Math.abs)));
    t.diagnostic(`rms_norm ${rows}x${cols}: max abs error ${gpuErr.toExponential(2)}`);
  }
});

test('every kernel on WebGPU matches the CPU reference (kernelSelfCheck)', async (t) => {
  if (!(await requireWebGPU(page, t))) return;
  const { checks, ms } = await page.evaluate(async () => {
    window.gpu ??= await window.hearth.Gpu.create();
    const t0 = performance.now();
    const checks = await window.gpu.kernelSelfCheck();
    return { checks, ms: performance.now() - t0 };
  });
  const kernels = [...new Set(checks.map((c) => c.kernel))];
  t.diagnostic(`${checks.length} checks of ${kernels.length} kernels in ${(ms / 1000).toFixed(1)} s`);
  for (const kernel of kernels) {
    const mine = checks.filter((c) => c.kernel === kernel);
    const worst = mine.reduce((a, c) => (c.max_error === null || a === null ? null : Math.max(a, c.max_error)), 0);
    const time = mine.reduce((a, c) => a + c.ms, 0);
    t.diagnostic(`${kernel}: ${mine.filter((c) => c.passed).length}/${mine.length} passed, ` +
      `max error ${worst === null ? 'NaN' : worst.toExponential(2)}, ${time.toFixed(0)} ms`);
  }
  for (const c of checks.filter((c) => !c.passed)) t.diagnostic(`FAILED ${c.kernel} ${c.case}: ${c.detail}`);
  assert.deepEqual(kernels, ['embed', 'rms_norm', 'matmul', 'matmul_qkv', 'matmul_swiglu', 'rope', 'attention', 'swiglu', 'add', 'argmax', 'sample', 'read_bandwidth']);
  for (const ty of ['F32', 'F16', 'Q4_0', 'Q4_1', 'Q8_0']) {
    for (const kernel of ['embed', 'matmul', 'matmul_qkv', 'matmul_swiglu']) {
      assert.ok(checks.some((c) => c.kernel === kernel && c.case.startsWith(`${ty} `)), `${kernel} ${ty} is checked`);
    }
  }
  for (const c of checks) {
    assert.ok(c.passed, `${c.kernel} ${c.case}: ${c.detail}`);
    assert.ok(c.max_error <= c.tolerance, `${c.kernel} ${c.case}: max error ${c.max_error} > tolerance ${c.tolerance}`);
  }
});

test('the kernels a GPU gets also match the CPU reference here (kernelSelfCheck(true))', async (t) => {
  if (!(await requireWebGPU(page, t))) return;
  // Several threads per matmul row summed in workgroup memory (the browser
  // has no subgroups through wgpu), the attention sharing each key, a
  // decode step's attention runs added up by the output projection
  // (matmul_attention), and the prefill's tiled products (cases named "tiled: ...").
  const checks = await page.evaluate(async () => {
    window.gpu ??= await window.hearth.Gpu.create();
    return window.gpu.kernelSelfCheck(true);
  });
  t.diagnostic(`${checks.length} checks, ${checks.filter((c) => c.passed).length} passed`);
  for (const c of checks.filter((c) => !c.passed)) t.diagnostic(`FAILED ${c.kernel} ${c.case}: ${c.detail}`);
  assert.ok(checks.length > 100);
  for (const kernel of ['matmul', 'matmul_qkv', 'matmul_swiglu']) {
    assert.ok(checks.some((c) => c.kernel === kernel && c.case.startsWith('tiled: ')), `no tiled ${kernel} check`);
  }
  assert.ok(checks.some((c) => c.kernel === 'matmul_attention'), 'no matmul_attention check');
  for (const c of checks) assert.ok(c.passed, `${c.kernel} ${c.case}: ${c.detail}`);
});

test('a bad argument rejects with a readable Error, not a panic', async (t) => {
  if (!(await requireWebGPU(page, t))) return;
  const message = await page.evaluate(async () => {
    window.gpu ??= await window.hearth.Gpu.create();
    try {
      await window.gpu.rmsNorm(new Float32Array(5), new Float32Array(2), 1e-5);
      return 'resolved';
    } catch (e) {
      return e instanceof Error ? e.message : `non-Error: ${e}`;
    }
  });
  assert.match(message, /whole rows/);
  // The engine still works afterwards.
  const ok = await page.evaluate(async () => (await window.gpu.rmsNorm(new Float32Array([3, 4]), new Float32Array([1, 1]), 0)).length);
  assert.equal(ok, 2);
});

test('the adapter is reported', async (t) => {
  if (!(await requireWebGPU(page, t))) return;
  const info = await page.evaluate(async () => {
    window.gpu ??= await window.hearth.Gpu.create();
    return window.gpu.adapterInfo();
  });
  t.diagnostic(`adapter: ${JSON.stringify(info)}`);
  assert.equal(info.backend, 'BrowserWebGpu');
  assert.ok(info.max_storage_buffer_binding_size >= 128 * 2 ** 20);
  // SwiftShader: the variants of CPU-based adapters, no subgroups or f16 through wgpu.
  assert.equal(info.kernel_variants.matmul_rows_per_thread, info.is_software ? 4 : 1);
  assert.equal(info.kernel_variants.subgroup_shared_loads, false);
  assert.equal(info.kernel_variants.f16_kv_cache, !info.is_software && info.shader_f16);
});
