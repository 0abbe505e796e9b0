//! Every WGSL kernel against its CPU reference (`crate::reference`,
//! `crate::quant`) on seeded random inputs whose sizes are not multiples of
//! the workgroup size, driven exactly as the model drives them: buffers, a
//! `Step` uniform, a `Dispatch` from `gpu::ops`, `program::encode`,
//! `submit_and_read`.
//!
//! The same checks run natively (`tests/gpu_kernels.rs`, on lavapipe in CI)
//! and in the browser (`Gpu.kernelSelfCheck()`, the demo page and
//! `tests/browser/kernels.test.mjs`, on SwiftShader in CI). Inputs come from
//! ChaCha8 streams, which are the same on every target, so both see the same
//! numbers.
//!
//! Tolerances are relative to a stated magnitude per op: the error at index i
//! may be at most `tolerance * mag[i]`; `mag = 0` demands bit-exact equality.
//! A check that fails is reported (`passed: false`, the first failing index in
//! `detail`), never a panic; a GPU error (validation, out of memory, lost
//! device, failed read-back) is an `Err`.

use super::ops::{InputNorm, MatmulOut};
use super::weights::{GpuMatrix, GpuWeights};
use super::{ops, program, storage_from, storage_zeroed, submit_and_read, uniform_from, Dispatch, GpuContext, Kernel, Step, Variants};
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::model::rope_cos_sin;
use crate::quant::dequantize;
use crate::reference::{self, Matrix};
use crate::weights::RawTensor;
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::future::Future;
use web_time::Instant;

/// Every kernel, in the order [`run_all`] checks them.
pub const KERNELS: [Kernel; 13] = [
    Kernel::Embed,
    Kernel::RmsNorm,
    Kernel::Matmul,
    Kernel::MatmulQkv,
    Kernel::MatmulSwiglu,
    Kernel::Rope,
    Kernel::Attention,
    Kernel::MatmulAttention,
    Kernel::Swiglu,
    Kernel::Add,
    Kernel::Argmax,
    Kernel::Sample,
    Kernel::ReadBandwidth,
];

/// Every weight type the GPU decodes (embed and matmul are checked on each).
pub const WEIGHT_TYPES: [TensorType; 5] = [TensorType::F32, TensorType::F16, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0];

/// The outcome of one kernel on one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelCheck {
    /// The kernel's name (`embed`, `rms_norm`, `matmul`, ...; see [`kernel_name`]).
    pub kernel: String,
    /// The input: shape, weight type, mode.
    pub case: String,
    /// The worst `error / magnitude` over all values (the plain error where
    /// the magnitude is 0; for argmax, the distance between the indices).
    /// Infinite (JSON `null`) when a value is NaN or the lengths differ.
    pub max_error: f64,
    /// The largest `error / magnitude` allowed (0: bit-exact).
    pub tolerance: f64,
    pub passed: bool,
    /// On failure, the first failing index with what the GPU gave and what the
    /// reference wants (and how many more failed); otherwise how many values agreed.
    pub detail: String,
    /// Wall time of the check: upload, dispatch, read-back and the CPU reference.
    pub ms: f64,
}

/// The name a kernel's checks carry.
pub fn kernel_name(kernel: Kernel) -> &'static str {
    match kernel {
        Kernel::Embed => "embed",
        Kernel::RmsNorm => "rms_norm",
        Kernel::Matmul => "matmul",
        Kernel::MatmulQkv => "matmul_qkv",
        Kernel::MatmulSwiglu => "matmul_swiglu",
        Kernel::MatmulAttention => "matmul_attention",
        Kernel::Rope => "rope",
        // (Checked with the attention: the runs it adds up are the attention's.)
        Kernel::Attention | Kernel::AttentionTiles | Kernel::AttentionCombine => "attention",
        Kernel::Swiglu => "swiglu",
        Kernel::Add => "add",
        Kernel::Argmax => "argmax",
        Kernel::Sample => "sample",
        Kernel::ReadBandwidth => "read_bandwidth",
    }
}

/// Runs every check of every kernel; where the model would prefill with
/// tiled products (`Variants::tiled_prefill_from`), the products' checks
/// again with those (cases named `tiled: ...`).
pub async fn run_all(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    for kernel in KERNELS {
        checks.extend(run(ctx, kernel).await?);
    }
    if ctx.variants().tiled_prefill_from > 0 && !ctx.variants().matmul_tiled {
        let tiled = ctx.with_variants(Variants { matmul_tiled: true, ..ctx.variants() });
        for kernel in KERNELS.into_iter().filter(|k| k.is_matmul()) {
            let named = |c: KernelCheck| KernelCheck { case: format!("tiled: {}", c.case), ..c };
            checks.extend(run(&tiled, kernel).await?.into_iter().map(named));
        }
    }
    Ok(checks)
}

/// Runs the checks of one kernel.
pub async fn run(ctx: &GpuContext, kernel: Kernel) -> Result<Vec<KernelCheck>> {
    match kernel {
        Kernel::Embed => embed(ctx).await,
        Kernel::RmsNorm => rms_norm(ctx).await,
        Kernel::Matmul => matmul(ctx).await,
        Kernel::MatmulQkv => matmul_qkv(ctx).await,
        Kernel::MatmulSwiglu => matmul_swiglu(ctx).await,
        Kernel::MatmulAttention => attention_output_product(ctx).await,
        Kernel::Rope => rope(ctx).await,
        Kernel::Attention | Kernel::AttentionTiles | Kernel::AttentionCombine => attention(ctx).await,
        Kernel::Swiglu => elementwise(ctx, Kernel::Swiglu).await,
        Kernel::Add => elementwise(ctx, Kernel::Add).await,
        Kernel::Argmax => argmax(ctx).await,
        Kernel::Sample => sample(ctx).await,
        Kernel::ReadBandwidth => read_bandwidth(ctx).await,
    }
}

/// The benchmark's read probe, both orders: each thread's XOR of the vec4s
/// `ops::read_bandwidth_reads` lists, and every vec4 read once.
async fn read_bandwidth(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    // (vec4s, threads): fewer threads than data, more, and counts off the
    // workgroup size and off the runs' thread groups.
    for runs in [false, true] {
        for (vec4s, threads) in [(1000usize, 7u32), (1000, 64), (257, 300), (4096, 130), (1001, 21)] {
            checks.push(
                check(ctx, Kernel::ReadBandwidth, format!("vec4s {vec4s} threads {threads} runs {runs}"), async {
                    let data: Vec<u32> = (0..vec4s as u32 * 4).map(|i| i.wrapping_mul(2_654_435_761) ^ (i >> 3)).collect();
                    let step = uniform_from(ctx, "step", &Step { tokens: 1, ..Default::default() });
                    let (buf, out) = (storage_from(ctx, "data", &data), storage_zeroed(ctx, "out", threads as usize)?);
                    let d = ops::read_bandwidth(ctx, &step, &buf, &out, data.len(), threads, runs);
                    let got: Vec<u32> = dispatch(ctx, &[d], 1, &out, threads as usize).await?;
                    let reads = |t: usize| ops::read_bandwidth_reads(t, threads as usize, vec4s, runs);
                    let mut times_read = vec![0; vec4s];
                    (0..threads as usize).flat_map(reads).for_each(|v| times_read[v] += 1);
                    let want: Vec<u32> = (0..threads as usize).map(|t| reads(t).flat_map(|v| &data[4 * v..4 * v + 4]).fold(0, |a, &w| a ^ w)).collect();
                    Ok(if let Some(v) = times_read.iter().position(|&n| n != 1) {
                        Outcome { max_error: 1.0, tolerance: 0.0, passed: false, detail: format!("vec4 {v} is read {} times", times_read[v]) }
                    } else if let Some(t) = got.iter().zip(&want).position(|(g, w)| g != w) {
                        Outcome { max_error: 1.0, tolerance: 0.0, passed: false, detail: format!("thread {t}: got {:#x}, want {:#x}", got[t], want[t]) }
                    } else {
                        Outcome { max_error: 0.0, tolerance: 0.0, passed: true, detail: format!("{threads} folds, exact") }
                    })
                })
                .await?,
            );
        }
    }
    Ok(checks)
}

/// A comparison's verdict, before it is named and timed.
struct Outcome {
    max_error: f64,
    tolerance: f64,
    passed: bool,
    detail: String,
}

/// Runs `body` (which uploads, dispatches, reads back and compares) inside GPU
/// error scopes, so a validation or out-of-memory error becomes an `Err`
/// naming the check rather than a panic (native) or a console line (browser).
async fn check(ctx: &GpuContext, kernel: Kernel, case: String, body: impl Future<Output = Result<Outcome>>) -> Result<KernelCheck> {
    let start = Instant::now();
    ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let result = body.await;
    let out_of_memory = ctx.device.pop_error_scope().await;
    let invalid = ctx.device.pop_error_scope().await;
    if let Some(e) = invalid.or(out_of_memory) {
        return Err(HearthError::Gpu(format!("{} {case}: {e}", kernel_name(kernel))));
    }
    let o = result.map_err(|e| HearthError::Gpu(format!("{} {case}: {e}", kernel_name(kernel))))?;
    Ok(KernelCheck {
        kernel: kernel_name(kernel).into(),
        case,
        max_error: o.max_error,
        tolerance: o.tolerance,
        passed: o.passed,
        detail: o.detail,
        ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// Checks `|got[i] - want[i]| <= tol * mag[i]` for every i (NaN fails).
fn compare(got: &[f32], want: &[f64], mag: &[f64], tol: f64) -> Outcome {
    if got.len() != want.len() || mag.len() != want.len() {
        return Outcome {
            max_error: f64::INFINITY,
            tolerance: tol,
            passed: false,
            detail: format!("got {} values, want {} (magnitudes: {})", got.len(), want.len(), mag.len()),
        };
    }
    let (mut worst, mut failures, mut first) = (0f64, 0usize, None);
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - w).abs();
        let within = err <= tol * m; // false for NaN
        if !within {
            failures += 1;
            first.get_or_insert_with(|| format!("index {i}: got {g:e}, want {w:e} (error {err:e} > {tol:e} × magnitude {m:e})"));
        }
        let rel = if m > 0.0 { err / m } else { err };
        worst = if rel.is_nan() { f64::INFINITY } else { worst.max(rel) };
    }
    let detail = match first {
        None => format!("{} values within tolerance", got.len()),
        Some(f) if failures == 1 => format!("first failure at {f}; 1 of {} values off", got.len()),
        Some(f) => format!("first failure at {f}; {failures} of {} values off", got.len()),
    };
    Outcome { max_error: worst, tolerance: tol, passed: failures == 0, detail }
}

/// Seeded uniform values in [-scale, scale).
fn random_vec(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn step(ctx: &GpuContext, tokens: usize, pos0: usize, row0: usize) -> wgpu::Buffer {
    uniform_from(ctx, "step", &Step { tokens: tokens as u32, pos0: pos0 as u32, row0: row0 as u32, _pad: 0 })
}

/// Records `dispatches` for `tokens` tokens, submits, reads back `len` values of `out`.
async fn dispatch<T: bytemuck::Pod>(ctx: &GpuContext, dispatches: &[Dispatch], tokens: usize, out: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    program::encode(&mut encoder, dispatches, tokens as u32);
    submit_and_read(ctx, encoder, out, len).await
}

/// A random f16 in [-scale, scale), or one time in eight a random subnormal.
fn random_half(rng: &mut ChaCha8Rng, scale: f32) -> [u8; 2] {
    if rng.random_ratio(1, 8) {
        (rng.random_range(1u16..0x400) | if rng.random() { 0x8000 } else { 0 }).to_le_bytes()
    } else {
        f16::from_f32(rng.random_range(-scale..scale)).to_le_bytes()
    }
}

/// Raw ggml bytes of a random `rows × cols` tensor of type `ty`: random f16
/// scales (subnormals included) and random quant bytes.
fn random_tensor(ty: TensorType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rows * cols;
    let mut bytes = Vec::new();
    match ty {
        TensorType::F32 => (0..n).for_each(|_| bytes.extend(rng.random_range(-1f32..1.0).to_le_bytes())),
        TensorType::F16 => (0..n).for_each(|_| bytes.extend(random_half(&mut rng, 1.0))),
        _ => {
            let (scales, quants) = match ty {
                TensorType::Q4_0 => (1, 16),
                TensorType::Q4_1 => (2, 16),
                TensorType::Q8_0 => (1, 32),
                _ => unreachable!("WEIGHT_TYPES holds F32, F16, Q4_0, Q4_1, Q8_0"),
            };
            for _ in 0..n / 32 {
                (0..scales).for_each(|_| bytes.extend(random_half(&mut rng, 0.1)));
                (0..quants).for_each(|_| bytes.push(rng.random::<u8>()));
            }
        }
    }
    bytes
}

/// A random weight matrix on the GPU and, from `quant::dequantize`, its values.
fn random_matrix(ctx: &GpuContext, ty: TensorType, rows: usize, cols: usize, seed: u64) -> Result<(GpuMatrix, Matrix)> {
    let bytes = random_tensor(ty, rows, cols, seed);
    let data = dequantize(ty, &bytes, rows * cols)?;
    let raw = RawTensor { ty, shape: vec![rows, cols], bytes: &bytes };
    Ok((GpuMatrix::upload(ctx, "w", &raw)?, Matrix { rows, cols, data }))
}

/// Random matrices of `parts` rows each, stacked in one buffer by
/// `GpuWeights` as a model's Q, K and V are, as one matrix on the GPU and,
/// from `quant::dequantize`, the stacked values.
fn random_stack(ctx: &GpuContext, ty: TensorType, parts: &[usize], cols: usize, seed: u64) -> Result<(GpuMatrix, Matrix)> {
    let names: Vec<String> = (0..parts.len()).map(|i| format!("part{i}")).collect();
    let mut weights = GpuWeights::new(vec![(names.iter().cloned().zip(parts.iter().copied()).collect(), cols)]);
    let mut data = Vec::new();
    for (i, (name, &rows)) in names.iter().zip(parts).enumerate() {
        let bytes = random_tensor(ty, rows, cols, seed + i as u64);
        data.extend(dequantize(ty, &bytes, rows * cols)?);
        weights.add(ctx, name, &RawTensor { ty, shape: vec![rows, cols], bytes: &bytes })?;
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let stacked = weights.stacked(&names).ok_or_else(|| HearthError::Gpu("the parts were not stacked".into()))?;
    Ok((stacked, Matrix { rows: parts.iter().sum(), cols, data }))
}

/// x · Wᵀ in f64 for every token (one row of `rows` values each), and each
/// value's magnitude: Σ_c blockmax|W[r, c]|·|x[t, c]| (see [`matmul`]).
fn product_and_magnitude(m: &Matrix, x: &[f32]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let xs: Vec<Vec<f64>> = x.chunks(m.cols).map(f64s).collect();
    let block_maxes: Vec<Vec<f64>> = (0..m.rows).map(|r| block_max(m.row(r))).collect();
    let mag = xs.iter().map(|xt| block_maxes.iter().map(|bm| bm.iter().zip(xt).map(|(a, b)| a * b.abs()).sum()).collect()).collect();
    (m.matmul(&xs), mag)
}

/// Reads `len` values of `buffer` back.
async fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    submit_and_read(ctx, ctx.device.create_command_encoder(&Default::default()), buffer, len).await
}

/// `v` as the KV cache holds it: rounded to f16 where the cache is f16
/// (`Variants::f16_kv_cache`), else as it is.
fn kv_rounded(ctx: &GpuContext, v: &[f32]) -> Vec<f32> {
    if ctx.variants().f16_kv_cache {
        v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
    } else {
        v.to_vec()
    }
}

/// A KV cache buffer holding `v` in the cache's element type.
fn kv_buffer_from(ctx: &GpuContext, label: &str, v: &[f32]) -> wgpu::Buffer {
    if !ctx.variants().f16_kv_cache {
        return storage_from(ctx, label, v);
    }
    let mut halves: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    halves.resize(v.len().div_ceil(2) * 2, f16::ZERO); // whole 4-byte words
    storage_from(ctx, label, &halves)
}

/// Reads `len` values of a KV cache buffer back, as f32.
async fn read_kv(ctx: &GpuContext, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    if !ctx.variants().f16_kv_cache {
        return read(ctx, buffer, len).await;
    }
    let words: Vec<u32> = submit_and_read(ctx, ctx.device.create_command_encoder(&Default::default()), buffer, len.div_ceil(2)).await?;
    let halves: &[f16] = bytemuck::cast_slice(&words);
    Ok(halves[..len].iter().map(|h| h.to_f32()).collect())
}

/// The magnitudes `mag` of computed values `want` widened, where the KV
/// cache is f16, by what rounding them to f16 may add (half an f16 ulp,
/// relative 2^-11, plus the subnormal step 2^-25), as a multiple of `tol`:
/// a value within tol · mag before its rounding is within the result after.
/// Values to be kept bit for bit (mag 0, already rounded) stay so.
fn kv_magnitudes(ctx: &GpuContext, want: &[f64], mag: &[f64], tol: f64) -> Vec<f64> {
    if !ctx.variants().f16_kv_cache {
        return mag.to_vec();
    }
    let widened = |(w, &m): (&f64, &f64)| if m == 0.0 { 0.0 } else { m + (w.abs() * 2f64.powi(-11) + 2f64.powi(-25)) / tol };
    want.iter().zip(mag).map(widened).collect()
}

/// For each value, the largest |value| of its 32-value block: the scale of
/// the block's quantization (d·8, |m|, ...), the natural magnitude of its error.
fn block_max(row: &[f32]) -> Vec<f64> {
    row.chunks(32)
        .flat_map(|b| {
            let m = b.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
            std::iter::repeat_n(m, b.len())
        })
        .collect()
}

/// RMSNorm, two ways. The one-shot `gpu::rms_norm` over whole matrices
/// (a single value, odd widths, the model's widths, a wide row) against
/// `reference::rms_norm`: tolerance 1e-5 of 1 + |want|. Then the model's
/// last-token norm, rows row0 .. row0 + tokens of a larger x, against
/// `reference::rms_norm_row` in f64: tolerance 1e-5 of |want| (f32 sum of
/// squares and inverseSqrt).
async fn rms_norm(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    for (seed, &(rows, cols)) in [(1, 1), (3, 7), (5, 63), (17, 576), (4, 1536), (2, 4099)].iter().enumerate() {
        let case = format!("{rows}x{cols} (one-shot gpu::rms_norm)");
        checks.push(
            check(ctx, Kernel::RmsNorm, case, async {
                let x = random_vec(seed as u64, rows * cols, 4.0);
                let w = random_vec(100 + seed as u64, cols, 2.0);
                let got = super::rms_norm(ctx, &x, &w, 1e-5).await?;
                let want = f64s(&reference::rms_norm(&x, &w, 1e-5));
                let mag: Vec<f64> = want.iter().map(|v| 1.0 + v.abs()).collect();
                Ok(compare(&got, &want, &mag, 1e-5))
            })
            .await?,
        );
    }
    for (seed, &(rows, cols, row0, tokens)) in [(9, 576, 8, 1), (5, 97, 2, 3), (3, 1, 1, 2), (8, 160, 1, 7)].iter().enumerate() {
        let case = format!("rows {row0}..{} of {rows}x{cols}", row0 + tokens);
        checks.push(
            check(ctx, Kernel::RmsNorm, case, async {
                let x = random_vec(200 + seed as u64, rows * cols, 3.0);
                let w = random_vec(300 + seed as u64, cols, 2.0);
                let (x_buf, w_buf) = (storage_from(ctx, "x", &x), storage_from(ctx, "w", &w));
                let out = storage_zeroed(ctx, "out", tokens * cols)?;
                let s = step(ctx, tokens, 0, row0);
                let d = ops::rms_norm(ctx, &s, &x_buf, None, &w_buf, &out, cols, 1e-5);
                let got: Vec<f32> = dispatch(ctx, &[d], tokens, &out, tokens * cols).await?;
                let rows_in = &x[row0 * cols..(row0 + tokens) * cols];
                let want: Vec<f64> = rows_in.chunks(cols).flat_map(|r| reference::rms_norm_row(&f64s(r), &f64s(&w), 1e-5)).collect();
                Ok(compare(&got, &want, &abs(&want), 1e-5))
            })
            .await?,
        );
    }
    // With a residual add first (x += y in place, then the norm of the sum):
    // the sum bit-exact (one f32 rounding), the norm as above; the row past
    // the tokens keeps its bits.
    for (seed, &(tokens, cols)) in [(1, 576), (3, 97), (7, 160)].iter().enumerate() {
        checks.push(
            check(ctx, Kernel::RmsNorm, format!("add then norm, {tokens}x{cols}"), async {
                let x = random_vec(400 + seed as u64, (tokens + 1) * cols, 3.0);
                let y = random_vec(500 + seed as u64, tokens * cols, 3.0);
                let w = random_vec(600 + seed as u64, cols, 2.0);
                let [x_buf, y_buf, w_buf] = [&x, &y, &w].map(|v| storage_from(ctx, "rms_norm", v));
                let out = storage_zeroed(ctx, "out", tokens * cols)?;
                let d = ops::rms_norm(ctx, &step(ctx, tokens, 0, 0), &x_buf, Some(&y_buf), &w_buf, &out, cols, 1e-5);
                let got: Vec<f32> = dispatch(ctx, &[d], tokens, &out, tokens * cols).await?;
                let got_x: Vec<f32> = dispatch(ctx, &[], tokens, &x_buf, x.len()).await?;
                let mut sum = x.clone();
                sum.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
                let want: Vec<f64> = sum[..tokens * cols].chunks(cols).flat_map(|r| reference::rms_norm_row(&f64s(r), &f64s(&w), 1e-5)).collect();
                let norm = compare(&got, &want, &abs(&want), 1e-5);
                Ok(if norm.passed { compare(&got_x, &f64s(&sum), &vec![0.0; sum.len()], 0.0) } else { norm })
            })
            .await?,
        );
    }
    Ok(checks)
}

/// Embedding rows decoded on the GPU against `quant::dequantize`, for every
/// weight type. Tolerance 2^-23 of the block's largest |value| (one rounding:
/// d·q + m may be fused). Ids include the last row and a repeated id.
async fn embed(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (i, &ty) in WEIGHT_TYPES.iter().enumerate() {
        for &(vocab, cols, tokens) in &[(97, 96, 1), (33, 160, 3), (65, 576, 7)] {
            let mut ids: Vec<u32> = (0..tokens).map(|_| rng.random_range(0..vocab as u32)).collect();
            if tokens > 1 {
                ids[0] = vocab as u32 - 1; // the last row, and a repeated id
                ids[1] = ids[tokens - 1];
            }
            let case = format!("{ty} {vocab}x{cols} ids {ids:?}");
            checks.push(
                check(ctx, Kernel::Embed, case, async {
                    let (w, m) = random_matrix(ctx, ty, vocab, cols, 1000 + i as u64)?;
                    let ids_buf = storage_from(ctx, "ids", &ids);
                    let out = storage_zeroed(ctx, "out", tokens * cols)?;
                    let s = step(ctx, tokens, 0, 0);
                    let got: Vec<f32> = dispatch(ctx, &[ops::embed(ctx, &s, &w, &ids_buf, &out)], tokens, &out, tokens * cols).await?;
                    let rows: Vec<&[f32]> = ids.iter().map(|&id| m.row(id as usize)).collect();
                    let want: Vec<f64> = rows.iter().flat_map(|r| f64s(r)).collect();
                    let mag: Vec<f64> = rows.iter().flat_map(|r| block_max(r)).collect();
                    Ok(compare(&got, &want, &mag, 2f64.powi(-23)))
                })
                .await?,
            );
        }
    }
    Ok(checks)
}

/// out = x · Wᵀ for every weight type against `reference::Matrix::matmul`
/// on the dequantized weights. Tolerance 1e-5 of Σ_c blockmax|W[r, c]|·|x[t, c]|
/// (f32 sums over up to 576 terms; Q4 kernels factor scales out of the sums).
/// With out_at_pos, rows pos0 .. pos0 + tokens of a larger buffer are written
/// and every other row (random sentinels) must keep its bits.
async fn matmul(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    // (rows, cols, tokens): 7 = one pass of four tokens plus three one by
    // one; single tokens with row counts that do not split in four (the
    // rows-per-thread decode path); 37 = several whole chunks of tokens and
    // part of one more where workgroups take `Variants::matmul_token_chunk` (8).
    let cases: [(usize, usize, usize); 10] =
        [(1, 32, 1), (33, 96, 3), (97, 576, 7), (65, 160, 7), (33, 96, 4), (1, 64, 9), (33, 96, 1), (130, 64, 1), (97, 576, 1), (65, 96, 37)];
    for (i, &ty) in WEIGHT_TYPES.iter().enumerate() {
        for (j, &(rows, cols, tokens)) in cases.iter().enumerate() {
            let case = format!("{ty} {rows}x{cols} tokens {tokens}");
            checks.push(
                check(ctx, Kernel::Matmul, case, async {
                    let seed = 2000 + 10 * i as u64 + j as u64;
                    let (w, m) = random_matrix(ctx, ty, rows, cols, seed)?;
                    let x = random_vec(seed, tokens * cols, 1.0);
                    let (prod, mag) = product_and_magnitude(&m, &x);
                    // Two sentinel rows past the tokens', which must keep their bits.
                    let total = (tokens + 2) * rows;
                    let before = random_vec(seed + 1, total, 100.0);
                    let (x_buf, out) = (storage_from(ctx, "x", &x), storage_from(ctx, "out", &before));
                    let s = step(ctx, tokens, 0, 0);
                    let got: Vec<f32> = dispatch(ctx, &[ops::matmul(ctx, &s, &w, &x_buf, MatmulOut::One { out: &out })], tokens, &out, total).await?;
                    let (mut want, mut full_mag) = (f64s(&before), vec![0.0; total]);
                    want[..tokens * rows].copy_from_slice(&prod.concat());
                    full_mag[..tokens * rows].copy_from_slice(&mag.concat());
                    Ok(compare(&got, &want, &full_mag, 1e-5))
                })
                .await?,
            );
        }
    }
    if ctx.variants().fuses_norm() {
        checks.extend(normed_and_added_products(ctx).await?);
    }
    Ok(checks)
}

/// Where products take the RMSNorm and the residual add (`Variants::fuses_norm`):
/// x put through the RMSNorm (`reference::rms_norm_row`, random gain) by
/// the product, and the product added to what `out` held, for every weight
/// type, against [`matmul`]'s reference and tolerance (the normalised x
/// in the magnitude). The rows past the tokens' must keep their bits.
async fn normed_and_added_products(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    // 37 tokens: several chunks of tokens, each with its own norms.
    let cases: [(usize, usize, usize); 3] = [(33, 96, 1), (65, 160, 7), (65, 96, 37)];
    let eps = 1e-5;
    for (i, &ty) in WEIGHT_TYPES.iter().enumerate() {
        for (j, &(rows, cols, tokens)) in cases.iter().enumerate() {
            for add in [false, true] {
                let case = format!("{ty} {rows}x{cols} tokens {tokens}, {}", if add { "added to out" } else { "x normalised by the product" });
                checks.push(
                    check(ctx, Kernel::Matmul, case, async {
                        let seed = 2300 + 10 * i as u64 + j as u64;
                        let (w, m) = random_matrix(ctx, ty, rows, cols, seed)?;
                        let x = random_vec(seed, tokens * cols, 3.0);
                        let gain = random_vec(seed + 3, cols, 2.0);
                        let normed: Vec<f32> = match add {
                            true => x.clone(),
                            false => x.chunks(cols).flat_map(|r| reference::rms_norm_row(&f64s(r), &f64s(&gain), eps as f64)).map(|v| v as f32).collect(),
                        };
                        let (prod, mag) = product_and_magnitude(&m, &normed);
                        let total = (tokens + 2) * rows;
                        let before = random_vec(seed + 1, total, 100.0);
                        let (x_buf, out, gain_buf) = (storage_from(ctx, "x", &x), storage_from(ctx, "out", &before), storage_from(ctx, "gain", &gain));
                        let s = step(ctx, tokens, 0, 0);
                        let d = match add {
                            true => ops::matmul(ctx, &s, &w, &x_buf, MatmulOut::AddTo { x: &out }),
                            false => ops::matmul_normed(ctx, &s, &w, &x_buf, MatmulOut::One { out: &out }, Some(InputNorm { gain: &gain_buf, eps })),
                        };
                        let got: Vec<f32> = dispatch(ctx, &[d], tokens, &out, total).await?;
                        let (mut want, mut full_mag) = (f64s(&before), vec![0.0; total]);
                        for (k, (p, m)) in prod.concat().iter().zip(mag.concat()).enumerate() {
                            want[k] = if add { want[k] + p } else { *p };
                            // (An added product's magnitude includes what it is added to.)
                            full_mag[k] = if add { m + want[k].abs() } else { m };
                        }
                        Ok(compare(&got, &want, &full_mag, 1e-5))
                    })
                    .await?,
                );
            }
        }
    }
    Ok(checks)
}

/// A layer's Q, K and V stacked in one buffer, multiplied in one dispatch
/// whose rows go to three outputs (the queries, the keys, and the value
/// cache at pos0 + t), and one matrix multiplied into the value cache alone,
/// for every weight type, against [`matmul`]'s reference and tolerance (the
/// values rounded as the cache holds them: see [`kv_magnitudes`]). Where
/// `Variants::rope_in_qkv`, the keys go to their cache at pos0 + t too, and
/// the queries and keys are rotated by RoPE (`reference::rope`; a rotated
/// pair's magnitude is the sum of its two). The rows outside the step
/// (random sentinels) must keep their bits.
async fn matmul_qkv(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    let fused = ctx.variants().rope_in_qkv();
    // (q rows, kv rows, cols, tokens, pos0, rope_dim of heads of 32); q rows 0:
    // a V projection alone (`MatmulOut::Values`). The second: partial rotary.
    let cases: [(usize, usize, usize, usize, usize, usize); 8] = [
        (64, 64, 96, 1, 0, 32),
        (128, 64, 64, 6, 3, 16),
        (192, 64, 160, 1, 7, 32),
        (0, 65, 160, 7, 5, 0),
        (0, 33, 96, 4, 0, 0),
        (0, 130, 64, 1, 3, 0),
        (64, 64, 64, 21, 2, 32),
        (64, 64, 96, 37, 5, 32),
    ];
    let head_dim = 32;
    for (i, &ty) in WEIGHT_TYPES.iter().enumerate() {
        for (j, &(q_rows, kv_rows, cols, tokens, pos0, rope_dim)) in cases.iter().enumerate() {
            let case = match q_rows {
                0 => format!("{ty} values {kv_rows} x {cols} alone, tokens {tokens} at {pos0}"),
                _ if fused => format!("{ty} stacked q {q_rows} k {kv_rows} v {kv_rows} x {cols} with RoPE (rope_dim {rope_dim}), tokens {tokens} at {pos0}"),
                _ => format!("{ty} stacked q {q_rows} k {kv_rows} v {kv_rows} x {cols}, tokens {tokens} at {pos0}"),
            };
            checks.push(
                check(ctx, Kernel::MatmulQkv, case, async {
                    let seed = 2500 + 10 * i as u64 + j as u64;
                    let (w, m) = match q_rows {
                        0 => random_matrix(ctx, ty, kv_rows, cols, seed)?,
                        _ => random_stack(ctx, ty, &[q_rows, kv_rows, kv_rows], cols, seed)?,
                    };
                    let x = random_vec(seed, tokens * cols, 1.0);
                    let (mut prod, mut mag) = product_and_magnitude(&m, &x);
                    // Each cache one row longer than the step writes (sentinels).
                    let cache_len = (pos0 + tokens + 1) * kv_rows;
                    let v_before = kv_rounded(ctx, &random_vec(seed + 2, cache_len, 100.0));
                    let v = kv_buffer_from(ctx, "v", &v_before);
                    let x_buf = storage_from(ctx, "x", &x);
                    let s = step(ctx, tokens, pos0, 0);
                    let (mut want, mut want_mag) = (Vec::new(), Vec::new());
                    // A cache (`before`) with rows `part` of the product at pos0 + t,
                    // and its magnitudes (widened for the cache's rounding).
                    let cache_part = |before: &[f32], part: std::ops::Range<usize>, prod: &[Vec<f64>], mag: &[Vec<f64>]| {
                        let (mut cache, mut cache_mag) = (f64s(before), vec![0.0; cache_len]);
                        for t in 0..tokens {
                            let at = (pos0 + t) * kv_rows;
                            cache[at..at + kv_rows].copy_from_slice(&prod[t][part.clone()]);
                            cache_mag[at..at + kv_rows].copy_from_slice(&mag[t][part.clone()]);
                        }
                        let widened = kv_magnitudes(ctx, &cache, &cache_mag, 1e-5);
                        (cache, widened)
                    };
                    if q_rows == 0 {
                        dispatch::<f32>(ctx, &[ops::matmul(ctx, &s, &w, &x_buf, MatmulOut::Values { v: &v })], tokens, &v, 1).await?;
                        let (want, want_mag) = cache_part(&v_before, 0..kv_rows, &prod, &mag);
                        return Ok(compare(&read_kv(ctx, &v, cache_len).await?, &want, &want_mag, 1e-5));
                    }
                    let q_before = random_vec(seed + 1, (tokens + 1) * q_rows, 100.0);
                    let q = storage_from(ctx, "q", &q_before);
                    let mut got: Vec<f32>;
                    if fused {
                        // Want: the queries and keys rotated, with magnitudes summed per pair.
                        for t in 0..tokens {
                            for part in [0..q_rows, q_rows..q_rows + kv_rows] {
                                reference::rope(&mut prod[t][part.clone()], head_dim, rope_dim, (pos0 + t) as f64, 10_000.0);
                                for r in part.step_by(head_dim) {
                                    for p in (r..r + rope_dim).step_by(2) {
                                        let sum = mag[t][p] + mag[t][p + 1];
                                        (mag[t][p], mag[t][p + 1]) = (sum, sum);
                                    }
                                }
                            }
                        }
                        let table = storage_from(ctx, "table", &rope_cos_sin(pos0 + tokens + 1, rope_dim, 10_000.0, 1.0));
                        let k_before = kv_rounded(ctx, &random_vec(seed + 3, cache_len, 100.0));
                        let k = kv_buffer_from(ctx, "k", &k_before);
                        let rope = Some(ops::QkvRope { table: &table, head_dim, rope_dim });
                        let out = MatmulOut::Qkv { q: &q, q_rows, k: &k, v: &v, kv_rows, rope };
                        got = dispatch(ctx, &[ops::matmul(ctx, &s, &w, &x_buf, out)], tokens, &q, q_before.len()).await?;
                        got.extend(read_kv(ctx, &k, cache_len).await?);
                        rows_then_sentinels(&mut want, &mut want_mag, &prod, &mag, &q_before, 0..q_rows);
                        let (k_want, k_mag) = cache_part(&k_before, q_rows..q_rows + kv_rows, &prod, &mag);
                        want.extend(k_want);
                        want_mag.extend(k_mag);
                    } else {
                        let k_before = random_vec(seed + 3, (tokens + 1) * kv_rows, 100.0);
                        let k = storage_from(ctx, "k", &k_before);
                        let out = MatmulOut::Qkv { q: &q, q_rows, k: &k, v: &v, kv_rows, rope: None };
                        got = dispatch(ctx, &[ops::matmul(ctx, &s, &w, &x_buf, out)], tokens, &q, q_before.len()).await?;
                        got.extend(read(ctx, &k, k_before.len()).await?);
                        rows_then_sentinels(&mut want, &mut want_mag, &prod, &mag, &q_before, 0..q_rows);
                        rows_then_sentinels(&mut want, &mut want_mag, &prod, &mag, &k_before, q_rows..q_rows + kv_rows);
                    }
                    got.extend(read_kv(ctx, &v, cache_len).await?);
                    let (v_want, v_mag) = cache_part(&v_before, q_rows + kv_rows..q_rows + 2 * kv_rows, &prod, &mag);
                    want.extend(v_want);
                    want_mag.extend(v_mag);
                    Ok(compare(&got, &want, &want_mag, 1e-5))
                })
                .await?,
            );
        }
    }
    Ok(checks)
}

/// Appends to `want` and `mag` rows `part` of each token's product, then
/// the rest of `before` (the sentinel rows past the tokens', kept exactly).
fn rows_then_sentinels(want: &mut Vec<f64>, mag: &mut Vec<f64>, prod: &[Vec<f64>], prod_mag: &[Vec<f64>], before: &[f32], part: std::ops::Range<usize>) {
    for (p, m) in prod.iter().zip(prod_mag) {
        want.extend(&p[part.clone()]);
        mag.extend(&m[part.clone()]);
    }
    want.extend(f64s(&before[prod.len() * part.len()..]));
    mag.resize(want.len(), 0.0);
}

/// A layer's FFN gate and up projections stacked in one buffer, multiplied
/// in one dispatch that writes silu(gate) · up, for every weight type,
/// against the f64 product. Tolerance 1e-5 of 1.1·|up|·mag(gate) + |gate|·mag(up)
/// (silu' stays within 1.1 and |silu(g)| within |g|; mag as in [`matmul`]).
async fn matmul_swiglu(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    // (f, cols, tokens): four-token tiles with and without a remainder.
    // 37 tokens of 40 gate rows: two tiles of tokens and three of rows,
    // each partial, where products are tiled (`Variants::matmul_tiled`).
    let cases: [(usize, usize, usize); 5] = [(64, 96, 1), (128, 64, 7), (64, 160, 4), (64, 64, 19), (40, 96, 37)];
    for (i, &ty) in WEIGHT_TYPES.iter().enumerate() {
        for (j, &(f, cols, tokens)) in cases.iter().enumerate() {
            let case = format!("{ty} stacked gate {f} up {f} x {cols}, tokens {tokens}");
            checks.push(
                check(ctx, Kernel::MatmulSwiglu, case, async {
                    let seed = 2700 + 10 * i as u64 + j as u64;
                    let (w, m) = random_stack(ctx, ty, &[f, f], cols, seed)?;
                    let x = random_vec(seed, tokens * cols, 1.0);
                    let (prod, mag) = product_and_magnitude(&m, &x);
                    let (mut want, mut want_mag) = (Vec::new(), Vec::new());
                    for (p, mg) in prod.iter().zip(&mag) {
                        for r in 0..f {
                            let (g, u) = (p[r], p[f + r]);
                            want.push(g / (1.0 + (-g).exp()) * u);
                            want_mag.push(1.1 * u.abs() * mg[r] + g.abs() * mg[f + r]);
                        }
                    }
                    let (x_buf, out) = (storage_from(ctx, "x", &x), storage_zeroed(ctx, "out", tokens * f)?);
                    let d = ops::matmul(ctx, &step(ctx, tokens, 0, 0), &w, &x_buf, MatmulOut::Swiglu { out: &out });
                    let got: Vec<f32> = dispatch(ctx, &[d], tokens, &out, tokens * f).await?;
                    Ok(compare(&got, &want, &want_mag, 1e-5))
                })
                .await?,
            );
        }
    }
    Ok(checks)
}

/// RoPE from an f32 cos/sin table (as the model builds it) against
/// `reference::rope` in f64: of queries in place, of keys into their cache
/// at pos0 + t (rounded as the cache holds them, see [`kv_magnitudes`]), or
/// both in one dispatch. Tolerance 1e-6 of |a| + |b| of the pair; the
/// queries' dims past rope_dim and the cache's rows outside the step keep
/// their bits, and the keys' dims past rope_dim reach the cache as they are.
async fn rope(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    let theta = 10_000f64;
    // (query heads, kv heads, head_dim, rope_dim, tokens, pos0); 0 heads: none
    // of them. The fifth and the last: partial rotary, dims 32.. unrotated.
    let cases: [(usize, usize, usize, usize, usize, usize); 7] = [
        (9, 0, 64, 64, 7, 0),
        (3, 0, 32, 32, 3, 70),
        (0, 3, 64, 64, 7, 130),
        (0, 5, 32, 32, 1, 0),
        (0, 3, 64, 32, 3, 41),
        (9, 3, 64, 64, 5, 6),
        (3, 1, 64, 32, 1, 41),
    ];
    for (seed, &(heads, kv_heads, hd, rope_dim, tokens, pos0)) in cases.iter().enumerate() {
        let case = format!("heads {heads} kv_heads {kv_heads} head_dim {hd} rope_dim {rope_dim} tokens {tokens} pos0 {pos0}");
        checks.push(
            check(ctx, Kernel::Rope, case, async {
                let pairs = rope_dim / 2;
                let context = pos0 + tokens + 1;
                let table_buf = storage_from(ctx, "table", &rope_cos_sin(context, rope_dim, theta, 1.0));
                // What RoPE makes of the tokens' rows of `heads` heads in x,
                // and their magnitudes (0 for dims past rope_dim, as they are).
                let rotated = |x: &[f32], heads: usize| {
                    let width = heads * hd;
                    let (mut want, mut mag) = (f64s(&x[..tokens * width]), vec![0.0; tokens * width]);
                    for t in 0..tokens {
                        let at = t * width;
                        reference::rope(&mut want[at..at + width], hd, rope_dim, (pos0 + t) as f64, theta);
                        for (h, i) in (0..heads).flat_map(|h| (0..pairs).map(move |i| (h, i))) {
                            let p = at + h * hd + 2 * i;
                            let m = (x[p].abs() + x[p + 1].abs()) as f64;
                            (mag[p], mag[p + 1]) = (m, m);
                        }
                    }
                    (want, mag)
                };
                let s = step(ctx, tokens, pos0, 0);
                // The queries, with a sentinel row after the tokens'.
                let q = random_vec(400 + seed as u64, (tokens + 1) * heads * hd, 2.0);
                let (mut want, mut mag) = rotated(&q, heads);
                want.extend(f64s(&q[tokens * heads * hd..]));
                mag.resize(want.len(), 0.0);
                let q_buf = storage_from(ctx, "q", &q);
                // The keys, into a cache of sentinels (as the cache holds them).
                let width = kv_heads * hd;
                let keys = random_vec(450 + seed as u64, tokens * width, 2.0);
                let cache_before = kv_rounded(ctx, &random_vec(470 + seed as u64, context * width, 2.0));
                let (keys_buf, cache) = (storage_from(ctx, "keys", &keys), kv_buffer_from(ctx, "k_cache", &cache_before));
                let (rotated_keys, keys_mag) = rotated(&keys, kv_heads);
                let kept_keys = kv_rounded(ctx, &keys); // dims past rope_dim
                let (mut cache_want, mut cache_mag) = (f64s(&cache_before), vec![0.0; cache_before.len()]);
                for i in 0..keys.len() {
                    let at = pos0 * width + i;
                    cache_want[at] = if keys_mag[i] > 0.0 { rotated_keys[i] } else { kept_keys[i] as f64 };
                    cache_mag[at] = keys_mag[i];
                }
                let queries = (heads > 0).then_some((&q_buf, heads));
                let to_cache = (kv_heads > 0).then_some(ops::KeysToCache { keys: &keys_buf, cache: &cache, heads: kv_heads });
                let d = ops::rope(ctx, &s, &table_buf, hd, rope_dim, queries, to_cache);
                let mut got: Vec<f32> = dispatch(ctx, &[d], tokens, &q_buf, q.len()).await?;
                got.extend(read_kv(ctx, &cache, cache_before.len()).await?);
                mag.extend(kv_magnitudes(ctx, &cache_want, &cache_mag, 1e-6));
                want.extend(cache_want);
                Ok(compare(&got, &want, &mag, 1e-6))
            })
            .await?,
        );
    }
    Ok(checks)
}

/// Causal GQA attention over a cache holding pos0 + tokens rows (two more
/// rows of NaN past them must never be read) against `reference::attention`.
/// Tolerance 1e-5 of max |V| (outputs are convex combinations of V rows).
async fn attention(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    // (heads, kv_heads, head_dim, pos0, tokens): > 64 keys cross online-softmax
    // chunks; 300 keys are many per thread when they are split between
    // threads; head_dim 256 (the largest) merges the threads' sums in two
    // rounds (16 threads); 6 and 8 query heads share a KV head in the next
    // two; head_dim 48 is not a multiple of 32 (the query shared in eights of
    // vec4s and the rest read apart) and 3-4 keys leave threads without any.
    // One token on GPUs splits the keys into runs (`Variants::attention_runs`,
    // 16): 6 keys leave runs without any; 1101 keys make runs of 69, more
    // than a workgroup's 64. Prompts in tiles of 8 queries (llvmpipe:
    // `Variants::prompt_attention_in_tiles`): 20 tokens from position 0 fill
    // two tiles and part of a third; 17 tokens after 37 at head_dim 128,
    // and 9 at head_dim 256, leave one query in the last tile.
    let cases = [
        (9, 3, 64, 0, 20),
        (4, 2, 128, 37, 17),
        (2, 1, 256, 5, 9),
        (9, 3, 64, 60, 7),
        (4, 4, 32, 130, 3),
        (9, 3, 64, 0, 1),
        (4, 4, 32, 0, 7),
        (4, 2, 128, 63, 2),
        (9, 3, 64, 300, 1),
        (2, 1, 256, 40, 2),
        (12, 2, 32, 70, 3),
        (8, 1, 64, 20, 2),
        (3, 1, 48, 2, 2),
        (9, 3, 64, 5, 1),
        (4, 2, 64, 1100, 1),
    ];
    for (n, &(heads, kv_heads, hd, pos0, tokens)) in cases.iter().enumerate() {
        let case = format!("heads {heads}/{kv_heads} head_dim {hd} pos0 {pos0} tokens {tokens}");
        checks.push(
            check(ctx, Kernel::Attention, case, async {
                let seed = 500 + 10 * n as u64;
                let (width, kv_width, keys) = (heads * hd, kv_heads * hd, pos0 + tokens);
                let q = random_vec(seed, tokens * width, 3.0); // scores of a few units: a peaked softmax
                // The caches as they hold them (f16 or f32), the reference from the same values.
                let mut k = kv_rounded(ctx, &random_vec(seed + 1, (keys + 2) * kv_width, 1.0));
                let mut v = kv_rounded(ctx, &random_vec(seed + 2, (keys + 2) * kv_width, 1.0));
                k[keys * kv_width..].fill(f32::NAN);
                v[keys * kv_width..].fill(f32::NAN);
                let q_buf = storage_from(ctx, "q", &q);
                let [k_buf, v_buf] = [&k, &v].map(|d| kv_buffer_from(ctx, "cache", d));
                let out = storage_zeroed(ctx, "out", tokens * width)?;
                let s = step(ctx, tokens, pos0, 0);
                let parts = ops::attention_parts(ctx, heads, hd)?;
                let dispatches = ops::attention(ctx, &s, &q_buf, &k_buf, &v_buf, &out, &parts, heads, kv_heads, hd);
                let got: Vec<f32> = dispatch(ctx, &dispatches, tokens, &out, tokens * width).await?;
                let k_rows: Vec<Vec<f64>> = k[..keys * kv_width].chunks(kv_width).map(f64s).collect();
                let v_rows: Vec<Vec<f64>> = v[..keys * kv_width].chunks(kv_width).map(f64s).collect();
                let want: Vec<f64> = q
                    .chunks(width)
                    .enumerate()
                    .flat_map(|(t, qt)| reference::attention(&f64s(qt), &k_rows, &v_rows, pos0 + t, heads, kv_heads, hd))
                    .collect();
                let v_max = v[..keys * kv_width].iter().fold(0f32, |a, x| a.max(x.abs())) as f64;
                Ok(compare(&got, &want, &vec![v_max; want.len()], 1e-5))
            })
            .await?,
        );
    }
    Ok(checks)
}

/// A decode step's attention split into runs of keys, then the output
/// projection that adds the runs up as it reads them, its product added to
/// the residual stream (`ops::attention_output_product`; SmolLM2's shape also
/// written as it is, where products do not add), for every weight
/// type, against `reference::attention` then the product in f64; none
/// where this context's variants do not add the runs up so
/// (`Variants::attention_in_product`). Tolerance 2e-5 of each row's
/// Σ blockmax|W|·max|V| (the attention's error, up to 1e-5 of max |V| per
/// value, and the product's, as in [`matmul`]), plus |out| for the add.
async fn attention_output_product(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    if !ctx.variants().attention_in_product() {
        return Ok(checks);
    }
    // (heads, kv_heads, head_dim, pos0, rows): SmolLM2-135M's shape after
    // 300 tokens; 6 keys leave runs without any; head_dim 256 (64 vec4s a
    // head); 15 heads of 64 near the workgroup memory's 1024 values and
    // 256 runs, over 1101 keys.
    let cases = [(9, 3, 64, 300, 576), (4, 2, 32, 5, 33), (2, 1, 256, 40, 65), (15, 5, 64, 1100, 97)];
    for (i, &ty) in WEIGHT_TYPES.iter().enumerate() {
        for (j, &(heads, kv_heads, hd, pos0, rows)) in cases.iter().enumerate() {
            let modes: &[bool] = if j == 0 { &[true, false] } else { &[true] };
            for &add in modes {
                let to = if add { "added to out" } else { "written" };
                let case = format!("{ty} heads {heads}/{kv_heads} head_dim {hd} pos0 {pos0} rows {rows}, {to}");
                checks.push(
                    check(ctx, Kernel::MatmulAttention, case, async {
                        let seed = 2700 + 10 * i as u64 + j as u64;
                        let (width, kv_width, keys) = (heads * hd, kv_heads * hd, pos0 + 1);
                        if !ops::fits_attention_in_product(ctx, width, hd) {
                            return Err(HearthError::Gpu(format!("{width} values in heads of {hd} do not fit the product's workgroup memory")));
                        }
                        let q = random_vec(seed, width, 3.0);
                        let k = kv_rounded(ctx, &random_vec(seed + 1, keys * kv_width, 1.0));
                        let v = kv_rounded(ctx, &random_vec(seed + 2, keys * kv_width, 1.0));
                        let (w, m) = random_matrix(ctx, ty, rows, width, seed + 3)?;
                        let q_buf = storage_from(ctx, "q", &q);
                        let [k_buf, v_buf] = [&k, &v].map(|d| kv_buffer_from(ctx, "cache", d));
                        let attn_out = storage_zeroed(ctx, "attention out", width)?;
                        let parts = ops::attention_parts(ctx, heads, hd)?;
                        // The residual stream, and two sentinel rows past it that must keep their bits.
                        let before = random_vec(seed + 4, 3 * rows, 10.0);
                        let out = storage_from(ctx, "out", &before);
                        let s = step(ctx, 1, pos0, 0);
                        let (mut dispatches, _) = ops::attend(ctx, &s, &q_buf, &k_buf, &v_buf, &attn_out, &parts, heads, kv_heads, hd);
                        let written = if add { MatmulOut::AddTo { x: &out } } else { MatmulOut::One { out: &out } };
                        dispatches.push(ops::attention_output_product(ctx, &s, &w, &parts, written, hd));
                        let got: Vec<f32> = dispatch(ctx, &dispatches, 1, &out, before.len()).await?;
                        let k_rows: Vec<Vec<f64>> = k.chunks(kv_width).map(f64s).collect();
                        let v_rows: Vec<Vec<f64>> = v.chunks(kv_width).map(f64s).collect();
                        let attn = reference::attention(&f64s(&q), &k_rows, &v_rows, pos0, heads, kv_heads, hd);
                        let v_max = v.iter().fold(0f32, |a, x| a.max(x.abs()));
                        let prod = m.matmul(&[attn]);
                        let (_, mag) = product_and_magnitude(&m, &vec![v_max; width]);
                        let (mut want, mut full_mag) = (f64s(&before), vec![0.0; before.len()]);
                        for (r, (p, row_mag)) in prod[0].iter().zip(&mag[0]).enumerate() {
                            want[r] = if add { want[r] + p } else { *p };
                            full_mag[r] = row_mag + if add { want[r].abs() } else { 0.0 };
                        }
                        Ok(compare(&got, &want, &full_mag, 2e-5))
                    })
                    .await?,
                );
            }
        }
    }
    Ok(checks)
}

/// The elementwise kernels over tokens × width, in buffers one row longer
/// than the step covers (that row must keep its bits). SwiGLU: tolerance
/// 1e-5 of |want| (WGSL exp); add: bit-exact (one f32 rounding, as in f64 → f32).
async fn elementwise(ctx: &GpuContext, kernel: Kernel) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    for (seed, &(tokens, width)) in [(1, 1), (3, 97), (7, 65), (3, 1536)].iter().enumerate() {
        checks.push(
            check(ctx, kernel, format!("{tokens}x{width}"), async {
                let n = (tokens + 1) * width;
                let a = random_vec(600 + seed as u64, n, 8.0);
                let b = random_vec(700 + seed as u64, n, 3.0);
                let s = step(ctx, tokens, 0, 0);
                let (x, y) = (storage_from(ctx, "a", &a), storage_from(ctx, "b", &b));
                let (d, mut want, mut mag, tol) = if kernel == Kernel::Swiglu {
                    let want = reference::swiglu(&f64s(&a), &f64s(&b));
                    let mag = abs(&want);
                    (ops::swiglu(ctx, &s, &x, &y, width), want, mag, 1e-5)
                } else {
                    let want: Vec<f64> = a.iter().zip(&b).map(|(p, q)| (p + q) as f64).collect();
                    (ops::add(ctx, &s, &x, &y, width), want, vec![0.0; n], 0.0)
                };
                let got: Vec<f32> = dispatch(ctx, &[d], tokens, &x, n).await?;
                let cut = tokens * width;
                want[cut..].copy_from_slice(&f64s(&a[cut..]));
                mag[cut..].fill(0.0);
                Ok(compare(&got, &want, &mag, tol))
            })
            .await?,
        );
    }
    Ok(checks)
}

/// Greedy argmax of the first n logits: exact index, lowest index on ties
/// (also across threads whose lanes order differently from the indices),
/// values past n ignored.
async fn argmax(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    let mut checks = Vec::new();
    // (n, indices set to the maximum 5.0; empty: all values equal)
    let cases: [(usize, &[usize]); 8] = [
        (1, &[0]),
        (255, &[]),
        (257, &[256]),
        (1000, &[300, 50, 306]), // 300 sits in lane 44, 50 in lane 50
        (1000, &[999, 600]),
        (513, &[0, 512]),
        (49_155, &[49_154]), // the last value, n not a multiple of 256
        (49_155, &[41_000, 40_000, 3, 7]),
    ];
    for (seed, &(n, ties)) in cases.iter().enumerate() {
        checks.push(
            check(ctx, Kernel::Argmax, format!("n {n} maxima at {ties:?}"), async {
                let mut logits = random_vec(800 + seed as u64, n + 5, 4.0);
                if ties.is_empty() {
                    logits[..n].fill(-1.5);
                }
                ties.iter().for_each(|&i| logits[i] = 5.0);
                logits[n..].fill(1e30); // past n: must not win
                let (buf, out) = (storage_from(ctx, "logits", &logits), storage_zeroed(ctx, "out", 1)?);
                let got: Vec<u32> = dispatch(ctx, &[ops::argmax(ctx, &buf, &out, n)], 1, &out, 1).await?;
                let want = crate::sampler::argmax(&logits[..n]) as usize;
                let planted = ties.iter().copied().min().unwrap_or(0);
                let got = got.first().map_or(u32::MAX as usize, |&g| g as usize);
                let max_error = (got as f64 - want as f64).abs();
                let (passed, detail) = if want != planted {
                    (false, format!("the CPU reference finds index {want}, not the planted maximum {planted}"))
                } else if got != want {
                    (false, format!("got index {got}, want {want}"))
                } else {
                    (true, format!("index {want}, exact"))
                };
                Ok(Outcome { max_error, tolerance: 0.0, passed, detail })
            })
            .await?,
        );
    }
    Ok(checks)
}

/// Logits like a language model's: a long tail, a few hundred likely
/// tokens, a handful very likely (token 17 most). (Also the CPU sampler's test input.)
pub(crate) fn model_like_logits(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|i| rng.random_range(-6.0f32..6.0) + if i % 97 == 3 { 9.0 } else { 0.0 } + if i == 17 { 6.0 } else { 0.0 }).collect()
}

/// The settings of `o` that are not the defaults, as `name value` pairs.
fn settings(o: &crate::sampler::SamplerOptions) -> String {
    let d = crate::sampler::SamplerOptions::default();
    let top_k = (o.top_k != d.top_k).then(|| format!("top_k {}", o.top_k));
    let floats = [
        ("temperature", o.temperature, d.temperature),
        ("top_p", o.top_p, d.top_p),
        ("min_p", o.min_p, d.min_p),
        ("repetition_penalty", o.repetition_penalty, d.repetition_penalty),
        ("presence_penalty", o.presence_penalty, d.presence_penalty),
        ("frequency_penalty", o.frequency_penalty, d.frequency_penalty),
    ];
    let floats = floats.into_iter().filter(|(_, v, default)| v != default).map(|(k, v, _)| format!("{k} {v}"));
    top_k.into_iter().chain(floats).collect::<Vec<_>>().join(" ")
}

/// Draws the sampling checks use: the ends of [0, 1) and between.
const DRAWS: [f64; 8] = [0.0, 0.03, 0.21, 0.5, 0.77, 0.93, 0.999, 0.999_999_9];

/// Sampling on the GPU against `Sampler` (the CPU's), from the same
/// penalties, settings and draw: the penalised logits within float
/// rounding, and the same token wherever the choice is not within 1e-4 of
/// a boundary (a draw, top-p or min-p nudged by that much would change it
/// on the CPU: float sums and exp differ there). The kernel may hand the
/// choice back (FALLBACK) only where it needs ranks past the 128th.
async fn sample(ctx: &GpuContext) -> Result<Vec<KernelCheck>> {
    use crate::sampler::{seen_counts, Sampler, SamplerOptions};
    let mut checks = Vec::new();
    let t = |temperature| SamplerOptions { temperature, ..Default::default() };
    // (n, logits: 0 model-like, 1 all equal, 2 two tied at the top; settings; seen tokens)
    let cases: Vec<(usize, u8, SamplerOptions, Vec<u32>)> = vec![
        (49_155, 0, t(1.0), vec![]),
        (49_155, 0, SamplerOptions { top_p: 0.95, ..t(0.8) }, vec![]),
        (49_155, 0, SamplerOptions { top_k: 40, top_p: 0.9, ..t(0.7) }, vec![]),
        (49_155, 0, SamplerOptions { min_p: 0.05, ..t(1.3) }, vec![]),
        (49_155, 0, SamplerOptions { top_p: 0.5, min_p: 0.2, ..t(0.5) }, vec![]),
        (49_155, 0, SamplerOptions { top_k: 3000, ..t(2.0) }, vec![]), // top-k past what it holds
        (49_155, 1, t(1.0), vec![]),                                    // all tied: everything in one bucket
        (1000, 2, SamplerOptions { top_p: 0.9, ..t(0.9) }, vec![]),
        (7, 0, SamplerOptions { top_k: 3, ..t(1.0) }, vec![]),
        // Penalties (a seen token past n is ignored), greedy and sampled.
        (49_155, 0, SamplerOptions { repetition_penalty: 1.3, ..t(0.0) }, vec![17, 17, 3, 100, 60_000]),
        (49_155, 0, SamplerOptions { presence_penalty: 0.5, frequency_penalty: 0.7, top_p: 0.9, ..t(0.7) }, vec![17, 17, 17, 3, 197, 197]),
        (49_155, 0, SamplerOptions { repetition_penalty: 1.5, presence_penalty: -0.3, min_p: 0.1, ..t(1.0) }, vec![17, 294, 5, 6]),
    ];
    for (seed, (n, kind, o, seen)) in cases.into_iter().enumerate() {
        checks.push(
            check(ctx, Kernel::Sample, format!("n {n} logits {} {} seen {seen:?}", ["model-like", "all equal", "two tied"][kind as usize], settings(&o)), async {
                let mut logits = model_like_logits(900 + seed as u64, n);
                if kind == 1 {
                    logits.fill(0.25);
                } else if kind == 2 {
                    logits[500] = 20.0;
                    logits[10] = 20.0;
                }
                let counts = seen_counts(&seen);
                let pairs: Vec<u32> = counts.iter().flat_map(|&(t, c)| [t, c]).collect();
                let sampler = Sampler::new(o.clone())?;
                let mut want_logits = logits.clone();
                sampler.penalize(&mut want_logits, &counts);
                let seen_buf = storage_from(ctx, "seen", if pairs.is_empty() { &[0u32, 0] } else { &pairs });
                let draws: Vec<Option<f64>> = if o.temperature == 0.0 { vec![None] } else { DRAWS.iter().map(|&u| Some(u)).collect() };
                let (mut worst, mut detail, mut agreed, mut near, mut handed_back) = (0f64, None, 0, 0, 0);
                for &draw in &draws {
                    let params = uniform_from(ctx, "params", &ops::SampleParams::new(n, counts.len(), &o, draw));
                    let (buf, out) = (storage_from(ctx, "logits", &logits), storage_zeroed(ctx, "out", 1)?);
                    let got: Vec<u32> = dispatch(ctx, &[ops::sample(ctx, &params, &buf, &seen_buf, &out)], 1, &out, 1).await?;
                    let got = got.first().copied().unwrap_or(u32::MAX);
                    let penalised: Vec<f32> = submit_and_read(ctx, ctx.device.create_command_encoder(&Default::default()), &buf, n).await?;
                    let off = penalised.iter().zip(&want_logits).map(|(&g, &w)| ((g - w).abs() / w.abs().max(1.0)) as f64).fold(0.0, f64::max);
                    worst = worst.max(off);
                    let want = sampler.choose(&want_logits, draw);
                    let nudged = |d: f64, dp: f32| {
                        let s = Sampler::new(SamplerOptions { top_p: (o.top_p + dp).min(1.0), min_p: (o.min_p + dp).clamp(0.0, 1.0), ..o.clone() }).unwrap();
                        s.choose(&want_logits, draw.map(|u| (u + d).clamp(0.0, 1.0 - f64::EPSILON)))
                    };
                    let stable = [(-1e-4, 0.0), (1e-4, 0.0), (0.0, -1e-4), (0.0, 1e-4)].iter().all(|&(d, dp)| nudged(d, dp) == want);
                    let rank = want_logits.iter().filter(|&&l| l > want_logits[want as usize]).count();
                    let needs_many = kind == 1 || (o.top_k > 128 && o.top_k < n) || rank >= 128;
                    if got == ops::SAMPLE_FALLBACK && needs_many {
                        handed_back += 1;
                    } else if got == want {
                        agreed += 1;
                    } else if !stable && got != ops::SAMPLE_FALLBACK {
                        near += 1;
                    } else {
                        detail.get_or_insert(format!("draw {draw:?}: got {got:#x}, want {want} (rank {rank})"));
                    }
                }
                let tolerance = 1e-6;
                if worst > tolerance {
                    detail.get_or_insert(format!("penalised logits off by {worst:e}"));
                }
                let passed = detail.is_none();
                let detail = detail.unwrap_or(format!("{agreed} draws agree, {near} near a boundary, {handed_back} handed back to the CPU"));
                Ok(Outcome { max_error: worst, tolerance, passed, detail })
            })
            .await?,
        );
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_passes_within_tolerance_and_reports_the_worst() {
        let o = compare(&[1.0, 2.0, 3.0], &[1.0, 2.0 + 1e-6, 3.0], &[1.0, 1.0, 0.0], 1e-5);
        assert!(o.passed, "{}", o.detail);
        assert!((o.max_error - 1e-6).abs() < 1e-12 && o.tolerance == 1e-5);
        assert_eq!(o.detail, "3 values within tolerance");
    }

    #[test]
    fn compare_names_the_first_failure_without_panicking() {
        // Index 1 is off, index 2 must be bit-exact and is not.
        let o = compare(&[1.0, 2.5, 3.0], &[1.0, 2.0, 3.0 + 1e-3], &[1.0, 1.0, 0.0], 1e-5);
        assert!(!o.passed);
        assert!(o.detail.starts_with("first failure at index 1: got 2.5e0, want 2e0"), "{}", o.detail);
        assert!(o.detail.ends_with("2 of 3 values off"), "{}", o.detail);
        assert_eq!(o.max_error, 0.5);
    }

    #[test]
    fn compare_fails_on_nan_and_on_lengths() {
        let o = compare(&[f32::NAN], &[0.0], &[1.0], 1.0);
        assert!(!o.passed && o.max_error.is_infinite(), "{}", o.detail);
        let o = compare(&[0.0], &[0.0, 1.0], &[1.0, 1.0], 1.0);
        assert!(!o.passed && o.detail.contains("got 1 values, want 2"), "{}", o.detail);
    }

    #[test]
    fn inputs_are_seeded() {
        assert_eq!(random_vec(3, 5, 1.0), random_vec(3, 5, 1.0));
        assert_ne!(random_vec(3, 5, 1.0), random_vec(4, 5, 1.0));
        assert!(random_vec(9, 1000, 2.0).iter().all(|v| (-2.0..2.0).contains(v)));
        let q = random_tensor(TensorType::Q4_1, 3, 64, 1);
        assert_eq!(q.len(), 3 * 2 * 20);
        assert_eq!(dequantize(TensorType::Q4_1, &q, 3 * 64).unwrap().len(), 3 * 64);
    }
}
