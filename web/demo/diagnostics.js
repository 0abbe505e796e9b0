// Diagnostics page: loads the wasm engine, reports the WebGPU adapter and runs
// the kernel self-check: every WGSL kernel on this GPU against the engine's
// CPU reference (the checks tests/gpu_kernels.rs runs natively).
import init, { Gpu } from './hearth/wasm/hearth_llm.js';

const MODEL_URL = './models/SmolLM2-135M-Instruct-q4_1/manifest.json';

function show(id, text, state) {
  const el = document.getElementById(id);
  el.textContent = text;
  if (state) el.dataset.state = state;
}

async function checkModel() {
  try {
    const res = await fetch(MODEL_URL);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const manifest = await res.json();
    const mib = manifest.total_bytes / 2 ** 20;
    show('model', `${manifest.name} (${manifest.quantization}), ${manifest.shards.length} shards, ${mib.toFixed(1)} MiB, served at ${MODEL_URL}`, 'ok');
  } catch (e) {
    show('model', `not available (${e.message}): run scripts/serve.sh, which fetches it`, 'error');
  }
}

async function main() {
  checkModel();
  await init();
  if (!navigator.gpu) {
    show('adapter', 'this browser has no WebGPU: use a recent Chrome or Edge, or enable WebGPU in its flags', 'error');
    show('kernel', 'skipped (no WebGPU)', 'error');
    return;
  }
  let gpu;
  try {
    gpu = await Gpu.create();
  } catch (e) {
    show('adapter', `no usable WebGPU adapter: ${e.message ?? e}`, 'error');
    show('kernel', 'skipped (no adapter)', 'error');
    return;
  }
  // wgpu's WebGPU backend leaves the adapter's name empty: ask the browser.
  const js = (await navigator.gpu.requestAdapter())?.info ?? {};
  const name = [js.vendor, js.architecture, js.description].filter(Boolean).join(' · ') || 'unnamed adapter';
  const info = gpu.adapterInfo();
  const software = /swiftshader|llvmpipe|lavapipe|warp/i.test(`${js.architecture} ${js.description}`);
  const v = info.kernel_variants;
  const kernels = v.matmul_rows_per_thread === 4 ? 'matmul 4 rows per thread' : `matmul ${v.matmul_lanes_per_row} threads per row`;
  show('adapter', `${name} (WebGPU${software ? ', software' : ''}; max buffer ${info.max_buffer_size / 2 ** 20} MiB; ` +
    `${kernels}, KV cache ${v.f16_kv_cache ? 'f16' : 'f32'})`, 'ok');

  show('kernel', 'running every kernel against the CPU reference…');
  try {
    const t0 = performance.now();
    const checks = await gpu.kernelSelfCheck();
    const seconds = (performance.now() - t0) / 1000;
    const passed = checks.filter((c) => c.passed);
    const kernels = new Set(checks.map((c) => c.kernel)).size;
    // Each check's worst error as a fraction of what its tolerance allows
    // (bit-exact checks, tolerance 0, count as 0 when they pass).
    const ratio = (c) => (c.max_error === null ? Infinity : c.tolerance > 0 ? c.max_error / c.tolerance : c.max_error === 0 ? 0 : Infinity);
    const worst = checks.reduce((w, c) => (ratio(c) > ratio(w) ? c : w), checks[0]);
    const ok = checks.length > 0 && passed.length === checks.length;
    if (ok) {
      show('kernel', `${passed.length}/${checks.length} kernel checks match the CPU reference ` +
        `(${kernels} kernels; max error ${worst.max_error.toExponential(2)} = ${(100 * ratio(worst)).toFixed(1)}% of tolerance, ` +
        `${worst.kernel} ${worst.case}; ${seconds.toFixed(1)} s)`, 'ok');
    } else {
      const failed = checks.find((c) => !c.passed);
      show('kernel', `${passed.length}/${checks.length} kernel checks match the CPU reference; ` +
        (failed ? `${failed.kernel} ${failed.case} differs: ${failed.detail}` : 'no checks ran'), 'error');
    }
  } catch (e) {
    show('kernel', `kernel self-check failed: ${e.message ?? e}`, 'error');
  }
}

main();
