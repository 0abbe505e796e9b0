// Foundation demo: loads the wasm engine, reports the WebGPU adapter, runs the
// RMSNorm kernel on the GPU and compares it with the engine's CPU reference.
import init, { Gpu, rmsNormReference } from './pkg/hearth_llm.js';

const MODEL_URL = './models/SmolLM2-135M-Instruct.Q4_1.gguf';

function show(id, text, state) {
  const el = document.getElementById(id);
  el.textContent = text;
  if (state) el.dataset.state = state;
}

// Deterministic inputs (mulberry32), so a result can be reproduced.
function seededValues(seed, n, scale) {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

async function checkModel() {
  try {
    const res = await fetch(MODEL_URL, { method: 'HEAD' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const mib = Number(res.headers.get('Content-Length')) / 2 ** 20;
    show('model', `SmolLM2-135M-Instruct Q4_1 GGUF, ${mib.toFixed(1)} MiB, served at ${MODEL_URL}`, 'ok');
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
  show('adapter', `${name} (WebGPU${software ? ', software' : ''}; max buffer ${info.max_buffer_size / 2 ** 20} MiB)`, 'ok');

  const rows = 8, cols = 576, eps = 1e-5;
  const x = seededValues(1, rows * cols, 4);
  const w = seededValues(2, cols, 2);
  try {
    const t0 = performance.now();
    const got = await gpu.rmsNorm(x, w, eps);
    const ms = performance.now() - t0;
    const want = rmsNormReference(x, w, eps);
    let maxErr = 0;
    for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
    const ok = maxErr <= 1e-4;
    show('kernel', `RMSNorm ${rows}×${cols} on the GPU ${ok ? 'matches' : 'DIFFERS FROM'} the CPU reference ` +
      `(max abs error ${maxErr.toExponential(2)}, ${ms.toFixed(1)} ms)`, ok ? 'ok' : 'error');
  } catch (e) {
    show('kernel', `kernel failed: ${e.message ?? e}`, 'error');
  }
}

main();
