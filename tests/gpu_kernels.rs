//! Every WGSL kernel against its CPU reference (crate::reference, crate::quant)
//! on seeded random inputs whose sizes are not multiples of the workgroup
//! size, driven exactly as the model drives them: buffers, a `Step` uniform,
//! a `Dispatch` from `gpu::ops`, `program::encode`, `submit_and_read`.
//!
//! Tolerances are relative to a stated magnitude per op (`check`): the error
//! may be at most `tol * mag[i]`; `mag = 0` demands bit-exact equality.

mod common;

use common::{assert_close, gpu, random_vec};
use half::f16;
use hearth_llm::formats::gguf::TensorType;
use hearth_llm::gpu::{self as kernels, ops, program, Dispatch, GpuContext, Step};
use hearth_llm::gpu::weights::GpuMatrix;
use hearth_llm::quant::dequantize;
use hearth_llm::reference::{self, Matrix};
use hearth_llm::weights::RawTensor;
use pollster::block_on;
use rand::{rngs::SmallRng, Rng, SeedableRng};

const TYPES: [TensorType; 5] = [TensorType::F32, TensorType::F16, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0];

/// Asserts `|got[i] - want[i]| <= tol * mag[i]` for every i, naming the first
/// index that is off; prints and returns the worst `error / mag` (the plain
/// error where mag is 0, which must then be 0 too).
fn check(what: &str, got: &[f32], want: &[f64], mag: &[f64], tol: f64) -> f64 {
    assert_eq!((got.len(), mag.len()), (want.len(), want.len()), "{what}: length differs");
    let mut worst = 0f64;
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * m,
            "{what}: first failure at index {i}: got {g:e}, want {w:e} (error {err:e} > {tol:e} × magnitude {m:e})"
        );
        if err > 0.0 {
            worst = worst.max(if m > 0.0 { err / m } else { err });
        }
    }
    eprintln!("{what}: max error {worst:.2e} × magnitude (tolerance {tol:.0e}) over {} values", got.len());
    worst
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn step(ctx: &GpuContext, tokens: usize, pos0: usize, row0: usize) -> wgpu::Buffer {
    kernels::uniform_from(ctx, "step", &Step { tokens: tokens as u32, pos0: pos0 as u32, row0: row0 as u32, _pad: 0 })
}

/// Records `dispatches` for `tokens` tokens, submits, reads back `len` values of `out`.
fn run<T: bytemuck::Pod>(ctx: &GpuContext, dispatches: &[Dispatch], tokens: usize, out: &wgpu::Buffer, len: usize) -> Vec<T> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    program::encode(&mut encoder, dispatches, tokens as u32);
    block_on(kernels::submit_and_read(ctx, encoder, out, len)).expect("kernel runs")
}

/// A random f16 in [-scale, scale), or one time in eight a random subnormal.
fn random_half(rng: &mut SmallRng, scale: f32) -> [u8; 2] {
    if rng.random_ratio(1, 8) {
        (rng.random_range(1u16..0x400) | if rng.random() { 0x8000 } else { 0 }).to_le_bytes()
    } else {
        f16::from_f32(rng.random_range(-scale..scale)).to_le_bytes()
    }
}

/// Raw ggml bytes of a random `rows × cols` tensor of type `ty`: random f16
/// scales (subnormals included) and random quant bytes.
fn random_tensor(ty: TensorType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
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
                _ => unreachable!(),
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
fn random_matrix(ctx: &GpuContext, ty: TensorType, rows: usize, cols: usize, seed: u64) -> (GpuMatrix, Matrix) {
    let bytes = random_tensor(ty, rows, cols, seed);
    let data = dequantize(ty, &bytes, rows * cols).expect("dequantize");
    let raw = RawTensor { ty, shape: vec![rows, cols], bytes: &bytes };
    (GpuMatrix::upload(ctx, "w", &raw).expect("upload"), Matrix { rows, cols, data })
}

/// For each value, the largest |value| of its 32-value block: the scale of
/// the block's quantization (d·8, |m|, ...), the natural magnitude of its error.
fn block_max(row: &[f32]) -> Vec<f64> {
    row.chunks(32).flat_map(|b| {
        let m = b.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        std::iter::repeat_n(m, b.len())
    }).collect()
}

#[test]
fn rms_norm_matches_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    eprintln!("adapter: {} ({})", ctx.report.name, ctx.report.backend);
    // (rows, cols): a single value, odd widths, the model's widths, a wide row.
    for (seed, &(rows, cols)) in [(1, 1), (3, 7), (5, 63), (17, 576), (4, 1536), (2, 4099)].iter().enumerate() {
        let x = random_vec(seed as u64, rows * cols, 4.0);
        let w = random_vec(100 + seed as u64, cols, 2.0);
        let got = block_on(kernels::rms_norm(&ctx, &x, &w, 1e-5)).expect("kernel runs");
        let want = reference::rms_norm(&x, &w, 1e-5);
        assert_close(&format!("rms_norm {rows}x{cols}"), &got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn rms_norm_rejects_ragged_input() {
    let Some(ctx) = gpu() else { return };
    let err = block_on(kernels::rms_norm(&ctx, &[1.0; 5], &[1.0; 2], 1e-5)).unwrap_err();
    assert!(err.to_string().contains("whole rows"), "{err}");
}

/// The model's last-token norm: rows row0 .. row0 + tokens of a larger x.
/// Tolerance 1e-5 relative to |want| (f32 sum of squares and inverseSqrt).
#[test]
fn rms_norm_from_row0() {
    let Some(ctx) = gpu() else { return };
    for (seed, &(rows, cols, row0, tokens)) in [(9, 576, 8, 1), (5, 97, 2, 3), (3, 1, 1, 2), (8, 160, 1, 7)].iter().enumerate() {
        let x = random_vec(200 + seed as u64, rows * cols, 3.0);
        let w = random_vec(300 + seed as u64, cols, 2.0);
        let (x_buf, w_buf) = (kernels::storage_from(&ctx, "x", &x), kernels::storage_from(&ctx, "w", &w));
        let out = kernels::storage_zeroed(&ctx, "out", tokens * cols).unwrap();
        let s = step(&ctx, tokens, 0, row0);
        let got: Vec<f32> = run(&ctx, &[ops::rms_norm(&ctx, &s, &x_buf, &w_buf, &out, cols, 1e-5)], tokens, &out, tokens * cols);
        let rows_in = &x[row0 * cols..(row0 + tokens) * cols];
        let want: Vec<f64> = rows_in.chunks(cols).flat_map(|r| reference::rms_norm_row(&f64s(r), &f64s(&w), 1e-5)).collect();
        check(&format!("rms_norm rows {row0}..{} of {rows}x{cols}", row0 + tokens), &got, &want, &abs(&want), 1e-5);
    }
}

/// Embedding rows decoded on the GPU against `quant::dequantize`. Tolerance
/// 2^-23 of the block's largest |value| (one rounding: d·q + m may be fused).
#[test]
fn embed_all_weight_types() {
    let Some(ctx) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(7);
    for (i, &ty) in TYPES.iter().enumerate() {
        for &(vocab, cols, tokens) in &[(97, 96, 1), (33, 160, 3), (65, 576, 7)] {
            let (w, m) = random_matrix(&ctx, ty, vocab, cols, 1000 + i as u64);
            let mut ids: Vec<u32> = (0..tokens).map(|_| rng.random_range(0..vocab as u32)).collect();
            if tokens > 1 {
                ids[0] = vocab as u32 - 1; // the last row, and a repeated id
                ids[1] = ids[tokens - 1];
            }
            let ids_buf = kernels::storage_from(&ctx, "ids", &ids);
            let out = kernels::storage_zeroed(&ctx, "out", tokens * cols).unwrap();
            let s = step(&ctx, tokens, 0, 0);
            let got: Vec<f32> = run(&ctx, &[ops::embed(&ctx, &s, &w, &ids_buf, &out)], tokens, &out, tokens * cols);
            let rows: Vec<&[f32]> = ids.iter().map(|&id| m.row(id as usize)).collect();
            let want: Vec<f64> = rows.iter().flat_map(|r| f64s(r)).collect();
            let mag: Vec<f64> = rows.iter().flat_map(|r| block_max(r)).collect();
            check(&format!("embed {ty} {vocab}x{cols} ids {ids:?}"), &got, &want, &mag, 2f64.powi(-23));
        }
    }
}

/// out = x · Wᵀ for every weight type against `reference::Matrix::matmul`
/// on the dequantized weights. Tolerance 1e-5 of Σ_c blockmax|W[r, c]|·|x[t, c]|
/// (f32 sums over up to 576 terms; Q4 kernels factor scales out of the sums).
/// With out_at_pos, rows pos0 .. pos0 + tokens of a larger buffer are written
/// and every other row must keep its bits.
#[test]
fn matmul_all_weight_types() {
    let Some(ctx) = gpu() else { return };
    let mut worst = 0f64;
    for (i, &ty) in TYPES.iter().enumerate() {
        // 7 = one pass of four tokens plus three one by one.
        let cases: [(usize, usize, usize, Option<usize>); 6] = [(1, 32, 1, None), (33, 96, 3, None), (97, 576, 7, None),
            (65, 160, 7, Some(5)), (33, 96, 4, Some(0)), (1, 64, 9, Some(2))];
        for (j, &(rows, cols, tokens, at_pos)) in cases.iter().enumerate() {
            let seed = 2000 + 10 * i as u64 + j as u64;
            let (w, m) = random_matrix(&ctx, ty, rows, cols, seed);
            let x = random_vec(seed, tokens * cols, 1.0);
            let xs: Vec<Vec<f64>> = x.chunks(cols).map(f64s).collect();
            let prod: Vec<f64> = m.matmul(&xs).concat();
            let mag: Vec<f64> = xs.iter().flat_map(|xt| {
                (0..rows).map(|r| block_max(m.row(r)).iter().zip(xt).map(|(a, b)| a * b.abs()).sum::<f64>()).collect::<Vec<_>>()
            }).collect();
            let pos0 = at_pos.unwrap_or(0);
            let total = if at_pos.is_some() { (pos0 + tokens + 2) * rows } else { tokens * rows };
            let before = random_vec(seed + 1, total, 100.0); // sentinel rows outside the written range
            let (x_buf, out) = (kernels::storage_from(&ctx, "x", &x), kernels::storage_from(&ctx, "out", &before));
            let s = step(&ctx, tokens, pos0, 0);
            let got: Vec<f32> = run(&ctx, &[ops::matmul(&ctx, &s, &w, &x_buf, &out, at_pos.is_some())], tokens, &out, total);
            let (mut want, mut full_mag) = (f64s(&before), vec![0.0; total]);
            let at = if at_pos.is_some() { pos0 * rows } else { 0 };
            want[at..at + tokens * rows].copy_from_slice(&prod);
            full_mag[at..at + tokens * rows].copy_from_slice(&mag);
            let what = format!("matmul {ty} {rows}x{cols} tokens {tokens} out_at_pos {at_pos:?}");
            worst = worst.max(check(&what, &got, &want, &full_mag, 1e-5));
        }
    }
    eprintln!("matmul: worst {worst:.2e}");
}

/// RoPE from an f32 cos/sin table (as the model builds it) against
/// `reference::rope` in f64. Tolerance 1e-6 of |a| + |b| of the pair; dims
/// past rope_dim and rows outside the step must keep their bits.
#[test]
fn rope_in_place_and_at_pos() {
    let Some(ctx) = gpu() else { return };
    let theta = 10_000f64;
    // (heads, head_dim, rope_dim, tokens, pos0, at_pos)
    let cases = [(9, 64, 64, 7, 0, false), (3, 32, 32, 3, 70, false), (3, 64, 64, 7, 130, true), (5, 32, 32, 1, 0, true),
        (3, 64, 32, 3, 41, true)]; // the last: partial rotary, dims 32.. untouched
    for (seed, &(heads, hd, rope_dim, tokens, pos0, at_pos)) in cases.iter().enumerate() {
        let pairs = rope_dim / 2;
        let context = pos0 + tokens + 2;
        let table: Vec<[f32; 2]> = (0..context)
            .flat_map(|p| (0..pairs).map(move |i| {
                let angle = p as f64 * theta.powf(-2.0 * i as f64 / rope_dim as f64);
                [angle.cos() as f32, angle.sin() as f32]
            }))
            .collect();
        let width = heads * hd;
        let row0 = if at_pos { pos0 } else { 0 };
        let total_rows = if at_pos { context } else { tokens };
        let x = random_vec(400 + seed as u64, total_rows * width, 2.0);
        let (table_buf, x_buf) = (kernels::storage_from(&ctx, "table", &table), kernels::storage_from(&ctx, "x", &x));
        let s = step(&ctx, tokens, pos0, 0);
        let d = ops::rope(&ctx, &s, &table_buf, &x_buf, heads, hd, rope_dim, at_pos);
        let got: Vec<f32> = run(&ctx, &[d], tokens, &x_buf, x.len());
        let mut want = f64s(&x);
        let mut mag = vec![0.0; x.len()];
        for t in 0..tokens {
            let at = (row0 + t) * width;
            reference::rope(&mut want[at..at + width], hd, rope_dim, (pos0 + t) as f64, theta);
            for (h, i) in (0..heads).flat_map(|h| (0..pairs).map(move |i| (h, i))) {
                let p = at + h * hd + 2 * i;
                let m = (x[p].abs() + x[p + 1].abs()) as f64;
                (mag[p], mag[p + 1]) = (m, m);
            }
        }
        let what = format!("rope heads {heads} head_dim {hd} rope_dim {rope_dim} tokens {tokens} pos0 {pos0} at_pos {at_pos}");
        check(&what, &got, &want, &mag, 1e-6);
    }
}

/// Causal GQA attention over a cache holding pos0 + tokens rows (two more
/// rows of NaN past them must never be read) against `reference::attention`.
/// Tolerance 1e-5 of max |V| (outputs are convex combinations of V rows).
#[test]
fn attention_causal_gqa_over_cache() {
    let Some(ctx) = gpu() else { return };
    // (heads, kv_heads, head_dim, pos0, tokens): > 64 keys cross online-softmax chunks.
    for (seed, &(heads, kv_heads, hd, pos0, tokens)) in
        [(9, 3, 64, 60, 7), (4, 4, 32, 130, 3), (9, 3, 64, 0, 1), (4, 4, 32, 0, 7), (4, 2, 128, 63, 2)].iter().enumerate()
    {
        let seed = 500 + 10 * seed as u64;
        let (width, kv_width, keys) = (heads * hd, kv_heads * hd, pos0 + tokens);
        let q = random_vec(seed, tokens * width, 3.0); // scores of a few units: a peaked softmax
        let mut k = random_vec(seed + 1, (keys + 2) * kv_width, 1.0);
        let mut v = random_vec(seed + 2, (keys + 2) * kv_width, 1.0);
        k[keys * kv_width..].fill(f32::NAN);
        v[keys * kv_width..].fill(f32::NAN);
        let bufs = [&q, &k, &v].map(|d| kernels::storage_from(&ctx, "attn", d));
        let out = kernels::storage_zeroed(&ctx, "out", tokens * width).unwrap();
        let s = step(&ctx, tokens, pos0, 0);
        let d = ops::attention(&ctx, &s, &bufs[0], &bufs[1], &bufs[2], &out, heads, kv_heads, hd);
        let got: Vec<f32> = run(&ctx, &[d], tokens, &out, tokens * width);
        let k_rows: Vec<Vec<f64>> = k[..keys * kv_width].chunks(kv_width).map(f64s).collect();
        let v_rows: Vec<Vec<f64>> = v[..keys * kv_width].chunks(kv_width).map(f64s).collect();
        let want: Vec<f64> = q.chunks(width).enumerate()
            .flat_map(|(t, qt)| reference::attention(&f64s(qt), &k_rows, &v_rows, pos0 + t, heads, kv_heads, hd))
            .collect();
        let v_max = v[..keys * kv_width].iter().fold(0f32, |a, x| a.max(x.abs())) as f64;
        let what = format!("attention heads {heads}/{kv_heads} head_dim {hd} pos0 {pos0} tokens {tokens}");
        check(&what, &got, &want, &vec![v_max; want.len()], 1e-5);
    }
}

/// The elementwise kernels over tokens × width, in buffers one row longer
/// than the step covers (that row must keep its bits). SwiGLU: tolerance
/// 1e-5 of |want| (WGSL exp); add: bit-exact (one f32 rounding, as in f64 → f32).
#[test]
fn swiglu_and_add_elementwise() {
    let Some(ctx) = gpu() else { return };
    for (seed, &(tokens, width)) in [(1, 1), (3, 97), (7, 65), (3, 1536)].iter().enumerate() {
        let n = (tokens + 1) * width;
        let a = random_vec(600 + seed as u64, n, 8.0);
        let b = random_vec(700 + seed as u64, n, 3.0);
        let s = step(&ctx, tokens, 0, 0);
        let cut = tokens * width;
        let untouched = |want: &mut Vec<f64>, mag: &mut Vec<f64>| {
            want[cut..].copy_from_slice(&f64s(&a[cut..]));
            mag[cut..].fill(0.0);
        };

        let (gate, up) = (kernels::storage_from(&ctx, "gate", &a), kernels::storage_from(&ctx, "up", &b));
        let got: Vec<f32> = run(&ctx, &[ops::swiglu(&ctx, &s, &gate, &up, width)], tokens, &gate, n);
        let mut want = reference::swiglu(&f64s(&a), &f64s(&b));
        let mut mag = abs(&want);
        untouched(&mut want, &mut mag);
        check(&format!("swiglu {tokens}x{width}"), &got, &want, &mag, 1e-5);

        let (x, y) = (kernels::storage_from(&ctx, "x", &a), kernels::storage_from(&ctx, "y", &b));
        let got: Vec<f32> = run(&ctx, &[ops::add(&ctx, &s, &x, &y, width)], tokens, &x, n);
        let mut want: Vec<f64> = a.iter().zip(&b).map(|(p, q)| (p + q) as f64).collect();
        let mut mag = vec![0.0; n];
        untouched(&mut want, &mut mag);
        check(&format!("add {tokens}x{width}"), &got, &want, &mag, 0.0);
    }
}

/// Greedy argmax of the first n logits: exact index, lowest index on ties
/// (also across threads whose lanes order differently from the indices),
/// values past n ignored.
#[test]
fn argmax_lowest_index_wins() {
    let Some(ctx) = gpu() else { return };
    // (n, indices set to the maximum 5.0; empty: all values equal)
    let cases: [(usize, &[usize]); 8] = [
        (1, &[0]),
        (255, &[]),
        (257, &[256]),
        (1000, &[300, 50, 306]),     // 300 sits in lane 44, 50 in lane 50
        (1000, &[999, 600]),
        (513, &[0, 512]),
        (49_155, &[49_154]),         // the last value, n not a multiple of 256
        (49_155, &[41_000, 40_000, 3, 7]),
    ];
    for (seed, &(n, ties)) in cases.iter().enumerate() {
        let mut logits = random_vec(800 + seed as u64, n + 5, 4.0);
        if ties.is_empty() {
            logits[..n].fill(-1.5);
        }
        ties.iter().for_each(|&i| logits[i] = 5.0);
        logits[n..].fill(1e30); // past n: must not win
        let (buf, out) = (kernels::storage_from(&ctx, "logits", &logits), kernels::storage_zeroed(&ctx, "out", 1).unwrap());
        let got: Vec<u32> = run(&ctx, &[ops::argmax(&ctx, &buf, &out, n)], 1, &out, 1);
        let want = common::argmax(&logits[..n]);
        assert_eq!(want, ties.iter().copied().min().unwrap_or(0), "reference argmax, n {n}");
        assert_eq!(got[0] as usize, want, "argmax n {n} ties {ties:?}: got {}, want {want}", got[0]);
        eprintln!("argmax n {n} ties {ties:?}: {want} (exact)");
    }
}
