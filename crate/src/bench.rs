//! Benchmarks: the generation speed of a loaded engine (time to first
//! token, prefill and decode tokens/s, medians over repeats after a warm-up),
//! and the device's streaming-read bandwidth, which bounds a memory-bound
//! decode step: the roofline fraction = weight bytes read per token × decode
//! tokens/s ÷ bandwidth.

use crate::engine::{Engine, GenerateRequest};
use crate::error::{HearthError, Result};
use crate::gpu::{self, ops, program, GpuContext, Step};
use crate::sampler::SamplerOptions;
use serde::Serialize;
use web_time::Instant;

/// English prose the benchmark prompts are cut from (any text would do; a
/// fixed one keeps runs comparable).
const PROMPT_TEXT: &str = "The history of the lighthouse is a history of people trying to make the sea a little \
less dangerous. Long before electric lamps, keepers climbed narrow stairs every evening to trim wicks, polish \
lenses and wind the clockwork that turned the light. Ships counted the seconds between flashes to tell one coast \
from another, and a keeper who let the light fail could cost a crew their lives. ";

/// One prompt length's figures (medians of the timed runs).
#[derive(Debug, Clone, Serialize)]
pub struct GenerationFigures {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub ttft_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

/// `n` prompt token ids cut from [`PROMPT_TEXT`] repeated (BOS first when the model wants one).
pub fn prompt_ids(engine: &Engine, n: usize) -> Result<Vec<u32>> {
    let unit = engine.tokenizer.encode(PROMPT_TEXT, false)?;
    let mut ids: Vec<u32> = if engine.tokenizer.add_bos() { engine.tokenizer.bos_id().into_iter().collect() } else { Vec::new() };
    while ids.len() < n {
        ids.extend_from_slice(&unit);
    }
    ids.truncate(n);
    Ok(ids)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Generation of `gen_tokens` after a `prompt_tokens` prompt with the
/// sampler's settings `sampler` (the same seed every run), from an empty KV
/// cache each time: one warm-up run, then `repeats` timed runs.
pub async fn generation(engine: &mut Engine, prompt_tokens: usize, gen_tokens: usize, repeats: usize, sampler: &SamplerOptions) -> Result<GenerationFigures> {
    if prompt_tokens == 0 || gen_tokens < 2 || repeats == 0 {
        return Err(HearthError::InvalidArgument("the benchmark needs a prompt, at least 2 generated tokens and 1 repeat".into()));
    }
    let context = engine.model.options().context;
    if prompt_tokens + gen_tokens > context {
        return Err(HearthError::ContextFull { needed: prompt_tokens + gen_tokens, context });
    }
    let prompt = prompt_ids(engine, prompt_tokens)?;
    let request = GenerateRequest { max_tokens: gen_tokens, ignore_eos: true, sampler: sampler.clone(), ..Default::default() };
    let (mut ttft, mut prefill, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=repeats {
        engine.reset();
        let g = engine.generate(&prompt, &request, &mut |_| {}).await?;
        if run > 0 {
            ttft.push(g.timings.ttft_ms);
            prefill.push(g.timings.prefill_tok_s);
            decode.push(g.timings.decode_tok_s);
        }
    }
    engine.reset();
    Ok(GenerationFigures { prompt_tokens, gen_tokens, ttft_ms: median(ttft), prefill_tok_s: median(prefill), decode_tok_s: median(decode) })
}

/// Where a forward's time goes on the GPU backend: after a `cached`-token
/// prompt (none: from an empty cache), each kernel of a forward of `tokens`
/// tokens (1: a decode step; more: a prefill chunk, at most the model's
/// `max_batch`) timed alone and the whole forward (`GpuModel::profile_step`,
/// `repeats` times each). None on the CPU backend.
pub async fn step_profile(engine: &mut Engine, cached: usize, tokens: usize, repeats: usize) -> Result<Option<StepProfile>> {
    let crate::model::Model::Gpu(_) = &engine.model else { return Ok(None) };
    engine.reset();
    if cached > 0 {
        let prompt = prompt_ids(engine, cached)?;
        engine.model.forward_greedy(&prompt).await?;
    }
    let crate::model::Model::Gpu(model) = &engine.model else { unreachable!("checked above") };
    let (kernels, step_us) = model.profile_step(tokens, repeats).await?;
    engine.reset();
    let gpu_step_us = kernels.iter().map(|k| k.gpu_us_in_pass).sum();
    Ok(Some(StepProfile { tokens, step_us, gpu_step_us, kernels }))
}

/// A forward's time, whole and kernel by kernel.
#[derive(Debug, Clone, Serialize)]
pub struct StepProfile {
    /// Its tokens: 1 for a decode step.
    pub tokens: usize,
    /// The whole forward (every dispatch in one pass), in microseconds.
    pub step_us: f64,
    /// The whole forward's GPU time in its one pass, from timestamps
    /// between dispatches, where the device has them (natively on most
    /// GPUs): the sum of the kernels' `gpu_us_in_pass`.
    pub gpu_step_us: Option<f64>,
    /// Each kernel's dispatches timed alone: their sum exceeds `step_us`
    /// where the adapter overlaps dispatches, falls short where caches
    /// stay warm across repeats.
    pub kernels: Vec<crate::gpu::model::KernelTime>,
}

/// The device's streaming-read bandwidth in bytes per second: a trivial
/// kernel reads a `bytes`-byte buffer (capped at what one binding allows),
/// in both of its orders (shaders/read_bandwidth.wgsl: GPUs and CPU-based
/// adapters read fastest in different ones), the fastest of `repeats` timed
/// runs of each after one whose result is checked against the CPU. The
/// fastest, not the median: it is the ceiling a decode step is held against,
/// and anything else running on the machine (a software adapter shares the
/// CPU) only ever makes a run slower.
pub async fn read_bandwidth(ctx: &GpuContext, bytes: usize, repeats: usize) -> Result<f64> {
    let bytes = bytes.min(ctx.report.max_storage_buffer_binding_size as usize) & !15;
    let words = bytes / 4;
    if words == 0 || repeats == 0 {
        return Err(HearthError::InvalidArgument("the bandwidth probe needs a buffer and at least one repeat".into()));
    }
    let pattern = |i: usize| (i as u32).wrapping_mul(2_654_435_761) ^ 0x9e37_79b9;
    let data: Vec<u32> = (0..words).map(pattern).collect();
    let vec4s = words / 4;
    let threads = (vec4s / 64).clamp(1, 1 << 18) as u32;
    let step = gpu::uniform_from(ctx, "bandwidth.step", &Step { tokens: 1, ..Default::default() });
    let buffer = gpu::storage_from(ctx, "bandwidth.data", &data);
    let out = gpu::storage_zeroed(ctx, "bandwidth.out", threads as usize)?;
    let staging = gpu::staging::<u32>(ctx, "bandwidth.staging", threads as usize);

    let mut fastest = f64::INFINITY;
    for runs in [false, true] {
        let dispatch = ops::read_bandwidth(ctx, &step, &buffer, &out, words, threads, runs);
        for run in 0..=repeats {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            program::encode(&mut encoder, std::slice::from_ref(&dispatch), 1);
            let start = Instant::now();
            let got: Vec<u32> = gpu::submit_and_read_via(ctx, encoder, &out, &staging, threads as usize).await?;
            if run > 0 {
                fastest = fastest.min(start.elapsed().as_secs_f64());
                continue;
            }
            // The checked run (which also compiled the pipeline) is not timed.
            let want = (0..threads as usize).map(|t| {
                ops::read_bandwidth_reads(t, threads as usize, vec4s, runs).fold(0u32, |acc, v| acc ^ (0..4).fold(0, |a, k| a ^ data[4 * v + k]))
            });
            if let Some(t) = want.zip(&got).position(|(w, &g)| w != g) {
                return Err(HearthError::Gpu(format!("the bandwidth probe read wrong data (thread {t})")));
            }
        }
    }
    Ok((words * 4) as f64 / fastest)
}

/// What a dispatch costs on the device whatever its work: `count`
/// dispatches of a 4-value `x += y` (shaders/add.wgsl) in one pass, each
/// behind the one before (they write the same buffer, so a barrier
/// separates each), after a first submit whose result is checked
/// (x = count · y).
pub async fn dispatch_floor(ctx: &GpuContext, count: usize, repeats: usize) -> Result<DispatchFloor> {
    if count == 0 || repeats == 0 {
        return Err(HearthError::InvalidArgument("the dispatch floor needs at least one dispatch and one repeat".into()));
    }
    let y = [1.0f32, 2.0, 3.0, 4.0];
    let step = gpu::uniform_from(ctx, "floor.step", &Step { tokens: 1, ..Default::default() });
    let x = gpu::storage_zeroed(ctx, "floor.x", y.len())?;
    let y_buf = gpu::storage_from(ctx, "floor.y", &y);
    let staging = gpu::staging::<f32>(ctx, "floor.staging", y.len());
    let add = ops::add(ctx, &step, &x, &y_buf, y.len());
    let all = vec![&add; count];
    let mut fastest = f64::INFINITY;
    for run in 0..=repeats {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        program::encode(&mut encoder, all.iter().copied(), 1);
        let start = Instant::now();
        let got: Vec<f32> = gpu::submit_and_read_via(ctx, encoder, &x, &staging, y.len()).await?;
        if run > 0 {
            fastest = fastest.min(start.elapsed().as_secs_f64());
        } else if got.iter().zip(y).any(|(&g, v)| g != count as f32 * v) {
            return Err(HearthError::Gpu(format!("the dispatch floor's {count} adds gave {got:?}, not {count} × {y:?}")));
        }
    }
    let gpu_us = if ctx.has_timestamps_in_passes() { Some(median(program::gpu_times_in_pass(ctx, &all, 1, repeats).await?)) } else { None };
    Ok(DispatchFloor { dispatches: count, wall_us: fastest * 1e6 / count as f64, gpu_us })
}

/// [`dispatch_floor`]'s figures.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchFloor {
    /// Dispatches in the pass.
    pub dispatches: usize,
    /// The pass's time from submit to read-back (the fastest), per dispatch, in microseconds.
    pub wall_us: f64,
    /// The median dispatch's GPU time in the pass, from timestamps written
    /// between them, where the device has them (as `KernelTime::gpu_us_in_pass`).
    pub gpu_us: Option<f64>,
}

/// The CPU's streaming-read bandwidth in bytes per second over the thread
/// pool: every thread XORs its share of a `bytes`-byte buffer (8 bytes at a
/// time, the compiler vectorises it); the fastest of `repeats` timed runs
/// (as for the GPU probe) after a warm-up that also faults the pages in.
pub fn cpu_read_bandwidth(bytes: usize, repeats: usize) -> f64 {
    use rayon::prelude::*;
    let data: Vec<u64> = (0..bytes / 8).map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let chunk = data.len().div_ceil(rayon::current_num_threads() * 8).max(1);
    let mut seconds = Vec::new();
    for _ in 0..=repeats.max(1) {
        let start = Instant::now();
        let folded = data.par_chunks(chunk).map(|c| c.iter().fold(0u64, |a, &v| a ^ v)).reduce(|| 0, |a, b| a ^ b);
        std::hint::black_box(folded);
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.remove(0);
    (data.len() * 8) as f64 / seconds.into_iter().fold(f64::INFINITY, f64::min)
}
