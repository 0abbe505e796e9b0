// The stats panel: time to first token, prefill and decode speed, tokens in
// context, where the model runs; and a sparkline of decode speed while a reply streams.
import { rate, setText } from './format.js';

const chart = document.getElementById('speed-chart');
let samples = [];
let lastTokenAt = 0;

/** Call when a request starts. */
export function startRequest() {
  samples = [];
  lastTokenAt = 0;
  draw();
}

/** Call for each streamed chunk: records the instantaneous decode speed. */
export function tokenArrived() {
  const now = performance.now();
  if (lastTokenAt) samples.push(1000 / Math.max(now - lastTokenAt, 1));
  lastTokenAt = now;
  if (samples.length % 2 === 0) draw();
}

/** Shows a finished request's usage (`usage` of a completion, with `timings`). */
export function showUsage(usage, stats) {
  if (stats) {
    setText('stat-ttft', `${Math.round(stats.ttft_ms)} ms`);
    setText('stat-prefill', `${rate(stats.prefill_tok_s)} (${stats.prompt_tokens - stats.cached_tokens} new, ${stats.cached_tokens} cached)`);
    setText('stat-decode', rate(stats.decode_tok_s));
  }
  if (usage) setText('stat-context', String(usage.total_tokens));
  draw();
}

/** Shows where the engine runs: the WebGPU adapter's names, or the CPU and its threads. */
export function showDevice(info) {
  const a = info.adapter ?? {};
  const b = a.browser ?? {};
  const adapter = [b.vendor, b.architecture, b.description].filter(Boolean).join(' · ') || a.name || 'WebGPU adapter';
  setText('stat-adapter', info.backend === 'cpu' ? `CPU, ${threads(info.threads)}` : adapter);
  return adapter;
}

export const threads = (n) => `${n} thread${n === 1 ? '' : 's'}`;

function draw() {
  const ctx = chart.getContext('2d');
  const { width, height } = chart;
  ctx.clearRect(0, 0, width, height);
  if (samples.length < 2) return;
  const max = Math.max(...samples) * 1.1;
  const style = getComputedStyle(document.documentElement);
  ctx.strokeStyle = style.getPropertyValue('--accent').trim() || '#c2410c';
  ctx.lineWidth = 2;
  ctx.beginPath();
  samples.forEach((s, i) => {
    const x = (i / (samples.length - 1)) * (width - 4) + 2;
    const y = height - 2 - (s / max) * (height - 16);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = style.getPropertyValue('--muted').trim() || '#888';
  ctx.font = '11px system-ui';
  ctx.fillText(`${samples[samples.length - 1].toFixed(1)} tok/s`, 4, 12);
}
