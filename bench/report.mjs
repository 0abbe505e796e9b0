// Turns one benchmark run (bench/run.sh's output folder) into a table with
// our/peer ratios (docs/bench.md, also printed) and a bar chart
// (docs/bench.svg).
//   node bench/report.mjs RUN_DIR
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = process.argv[2];
if (!dir) throw new Error('usage: node bench/report.mjs RUN_DIR');
const lines = (file) => {
  const p = path.join(dir, file);
  return fs.existsSync(p) ? fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : [];
};

/** { prefill: {128: tok/s, 512: tok/s}, decode: tok/s, roofline?, extra } per system. */
function ours(rows) {
  if (!rows.length) return null;
  return {
    adapter: rows[0].adapter,
    prefill: Object.fromEntries(rows.map((r) => [r.prompt_tokens, r.prefill_tok_s])),
    decode: rows[0].decode_tok_s,
    roofline: rows[0].roofline_fraction,
    bandwidth: rows[0].read_bandwidth_gb_s,
    row: rows[0],
  };
}

function llamaCpp(rows) {
  if (!rows.length) return null;
  const prefill = {};
  let decode = null;
  for (const r of rows) {
    if (r.n_prompt > 0 && r.n_gen === 0) prefill[r.n_prompt] = r.avg_ts;
    if (r.n_gen > 0 && r.n_prompt === 0) decode = r.avg_ts;
  }
  return { adapter: `CPU, ${rows[0].n_threads} threads (${rows[0].cpu_info ?? ''})`.trim(), prefill, decode };
}

const browserRows = lines('browser.jsonl');
const systems = [
  ['hearth native (wgpu)', ours(lines('hearth-native.jsonl'))],
  ['hearth native (CPU)', ours(lines('hearth-native-cpu.jsonl'))],
  ['llama.cpp native (CPU)', llamaCpp(lines('llama-cpp.jsonl'))],
  ['hearth in Chromium (WebGPU)', ours(browserRows.filter((r) => !r.system && r.engine_backend !== 'cpu'))],
  ['hearth in Chromium (wasm CPU)', ours(browserRows.filter((r) => !r.system && r.engine_backend === 'cpu'))],
  ['wllama in Chromium (wasm)', ours(browserRows.filter((r) => r.system === 'wllama'))],
].filter(([, s]) => s);
const lengths = [...new Set(systems.flatMap(([, s]) => Object.keys(s.prefill).map(Number)))].sort((a, b) => a - b);
const fmt = (v) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(1));
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : '–');

const header = ['system', 'device', ...lengths.map((n) => `prefill ${n} (tok/s)`), 'decode (tok/s)', 'roofline'];
const table = [header, header.map(() => '---')];
for (const [name, s] of systems) {
  table.push([name, s.adapter, ...lengths.map((n) => fmt(s.prefill[n])), fmt(s.decode), s.roofline ? s.roofline.toFixed(3) : '–']);
}
const pairs = [
  ['hearth native (wgpu)', 'llama.cpp native (CPU)'], ['hearth native (CPU)', 'llama.cpp native (CPU)'],
  ['hearth in Chromium (WebGPU)', 'wllama in Chromium (wasm)'], ['hearth in Chromium (wasm CPU)', 'wllama in Chromium (wasm)'],
];
const get = (name) => systems.find(([n]) => n === name)?.[1];
for (const [a, b] of pairs) {
  if (!get(a) || !get(b)) continue;
  table.push([`ratio: ${a} / ${b}`, '',
    ...lengths.map((n) => ratio(get(a).prefill[n], get(b).prefill[n])), ratio(get(a).decode, get(b).decode), '']);
}
const browser = get('hearth in Chromium (WebGPU)')?.row;
let md = `# Benchmark: SmolLM2-135M-Instruct Q4_1, same GGUF, same machine, one run\n\n`;
md += `Run: \`bench/run.sh\` (${path.basename(dir)}). Generation ${systems[0]?.[1].row?.gen_tokens ?? 128} tokens; prefill and decode medians.\n\n`;
md += table.map((r) => `| ${r.join(' | ')} |`).join('\n') + '\n';
if (browser) {
  md += `\nBrowser extras: load of the package cold ${Math.round(browser.cold_load_ms)} ms, warm ${Math.round(browser.warm_load_ms)} ms `
    + `(WebGPU, in the page); warm start to the first token of a chat reply with the default options ${Math.round(browser.warm_first_token_ms)} ms `
    + `(its own worker, backend auto: ${browser.first_token_backend}); `
    + `wasm heap after load ${(browser.wasm_heap_bytes / 2 ** 20).toFixed(1)} MiB; engine wasm + JS ${(browser.engine_bytes / 2 ** 20).toFixed(2)} MiB raw, `
    + `${(browser.engine_gzip_bytes / 2 ** 20).toFixed(2)} MiB gzipped; read bandwidth ${browser.read_bandwidth_gb_s.toFixed(2)} GB/s.\n`;
}
const native = get('hearth native (wgpu)');
if (native) md += `\nNative: read bandwidth ${native.bandwidth.toFixed(2)} GB/s; load ${Math.round(native.row.load_ms)} ms; GPU memory ${(native.row.gpu_bytes / 2 ** 20).toFixed(1)} MiB.\n`;
md += '\n![tokens per second](bench.svg)\n';

// A grouped bar chart: per system, one bar per prefill length and one for decode.
const metrics = [...lengths.map((n) => [`prefill ${n}`, (s) => s.prefill[n]]), ['decode', (s) => s.decode]];
const colors = ['#f59e0b', '#c2410c', '#2563eb', '#16a34a'];
const max = Math.max(1, ...systems.flatMap(([, s]) => metrics.map(([, f]) => f(s) ?? 0)));
const W = 720, rowH = 26 * metrics.length + 24, H = 40 + rowH * systems.length + 30, left = 210, barMax = W - left - 70;
let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="12">\n`;
svg += `<rect width="100%" height="100%" fill="#fff"/><text x="10" y="22" font-size="15" font-weight="600">Tokens per second, SmolLM2-135M Q4_1 (higher is better)</text>\n`;
systems.forEach(([name, s], i) => {
  const y0 = 40 + i * rowH;
  svg += `<text x="10" y="${y0 + 16}" font-weight="600">${name}</text>\n`;
  metrics.forEach(([label, f], k) => {
    const v = f(s);
    const y = y0 + 4 + k * 26;
    const w = v ? Math.max(1, (v / max) * barMax) : 0;
    svg += `<text x="${left - 8}" y="${y + 15}" text-anchor="end" fill="#555">${label}</text>`;
    svg += `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="20" fill="${colors[k % colors.length]}"/>`;
    svg += `<text x="${left + w + 6}" y="${y + 15}">${fmt(v)}</text>\n`;
  });
});
svg += `</svg>\n`;
fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'docs/bench.md'), md);
fs.writeFileSync(path.join(ROOT, 'docs/bench.svg'), svg);
console.log(md);
