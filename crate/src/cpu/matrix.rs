//! Weight matrices on the CPU and the matrix product `out = x · Wᵀ`.
//!
//! 4-bit and 8-bit matrices keep their ggml quantized values, repacked so the
//! kernel streams them: the values of each 32-wide block contiguous, the f16
//! scales widened once to f32 in arrays of their own. Q4_0 becomes Q4_1 with
//! minimum -8·d (d·(q - 8) = d·q - 8·d). Other types are kept as f32.
//!
//! Activations are quantized per 32-wide block to 16-bit fixed point
//! (`QuantRows`): a block's largest magnitude maps to 32767, so each value
//! keeps about 15 bits (llama.cpp's CPU path keeps 8). Per block then:
//!   Σ w·x ≈ d·s·Σ q·xq  (+ m·Σ x for Q4_1)
//! with the integer sum done by i16 multiply-adds (see `simd`).

use super::simd::{self, Isa};
use super::{ops, team};
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::weights::RawTensor;
use half::f16;

pub const BLOCK: usize = 32;

/// A `rows × cols` weight matrix in the layout the CPU kernels read.
pub struct CpuMatrix {
    pub rows: usize,
    pub cols: usize,
    data: Data,
}

enum Data {
    /// 16 bytes of nibbles per block (ggml order), scale d and minimum m per block.
    Q4 { quants: Vec<[u8; 16]>, d: Vec<f32>, m: Vec<f32> },
    /// 32 signed values per block, scale d per block.
    Q8 { quants: Vec<[i8; 32]>, d: Vec<f32> },
    /// Plain values, row-major.
    F32(Vec<f32>),
}

/// The products of several matrices of the same width with the same input
/// (a layer's Q, K and V; its gate and up), `outs[i]` as `CpuMatrix::matmul`
/// writes matrix i's, in one parallel loop over bands of all their rows:
/// each parallel loop costs a wake-up of the pool's threads, which in the
/// browser (Web Workers waiting on shared memory) is dear. `scratch` holds
/// at least Σ rows × tokens values.
pub fn matmul_many(matrices: &[&CpuMatrix], x: &[f32], xq: &QuantRows, tokens: usize, scratch: &mut [f32], outs: &mut [&mut [f32]]) {
    let all_rows: usize = matrices.iter().map(|m| m.rows).sum();
    // Bands of rows: enough for every thread to get several (the last
    // ones finish unevenly), few enough to keep the per-task cost small.
    let band = all_rows.div_ceil(rayon::current_num_threads() * 4).clamp(8, 256);
    let mut tasks = Vec::new();
    let mut rest = &mut scratch[..all_rows * tokens];
    for m in matrices {
        let (mine, after) = rest.split_at_mut(m.rows * tokens);
        tasks.extend(mine.chunks_mut(band * tokens).enumerate().map(|(i, chunk)| (*m, i * band, chunk)));
        rest = after;
    }
    team::for_each(tasks, |(m, first, chunk)| {
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { m.rows_avx2(first, x, xq, chunk) };
            return;
        }
        m.rows::<simd::Base>(first, x, xq, chunk);
    });
    // scratch is [row][token] per matrix; the callers want [token][row].
    let mut offset = 0;
    for (m, out) in matrices.iter().zip(outs.iter_mut()) {
        let rows = m.rows;
        for t in 0..tokens {
            for (r, o) in out[t * rows..(t + 1) * rows].iter_mut().enumerate() {
                *o = scratch[offset + r * tokens + t];
            }
        }
        offset += rows * tokens;
    }
}

/// An empty Vec with room for `n` values, or a typed error when memory (in
/// wasm: the module's maximum) runs out, instead of an abort.
fn room<T>(name: &str, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        HearthError::OutOfMemory(format!("{name}: no room for {} MiB of weights on the CPU", (n * std::mem::size_of::<T>()) >> 20))
    })?;
    Ok(v)
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

// The repack goes a row per call: a browser cannot switch a running wasm
// call to optimised code, so one call over a whole matrix (the 30 MB
// embedding) would run start to end in its baseline code; a function called
// per row is optimised after a few rows (see gpu::weights::pack_row).

/// Appends a row of Q4_0 or Q4_1 blocks (`per_block` bytes each): quants,
/// scales and minimums (Q4_0's is -8 × scale).
#[inline(never)]
fn push_q4_row(row: &[u8], per_block: usize, q4_1: bool, quants: &mut Vec<[u8; 16]>, d: &mut Vec<f32>, m: &mut Vec<f32>) {
    for b in row.chunks_exact(per_block) {
        let scale = half_at(b, 0);
        let (min, qs) = if q4_1 { (half_at(b, 2), &b[4..20]) } else { (-8.0 * scale, &b[2..18]) };
        quants.push(qs.try_into().expect("16 bytes"));
        d.push(scale);
        m.push(min);
    }
}

/// Appends a row of Q8_0 blocks: quants and scales.
#[inline(never)]
fn push_q8_row(row: &[u8], quants: &mut Vec<[i8; 32]>, d: &mut Vec<f32>) {
    for b in row.chunks_exact(34) {
        d.push(half_at(b, 0));
        quants.push(std::array::from_fn(|i| b[2 + i] as i8));
    }
}

impl CpuMatrix {
    /// Repacks a 2-D tensor as stored.
    pub fn new(name: &str, t: &RawTensor<'_>) -> Result<Self> {
        let [rows, cols] = t.shape[..] else {
            return Err(HearthError::Model(format!("{name}: shape {:?} is not a matrix", t.shape)));
        };
        let bad = |e: String| HearthError::Model(format!("{name}: {e}"));
        let block_bytes = t.ty.block_layout().map(|(_, b)| b as usize);
        let expect = |per_block: usize| -> Result<()> {
            if cols % BLOCK != 0 || t.bytes.len() != rows * cols / BLOCK * per_block {
                return Err(bad(format!("{} bytes are not a {rows}×{cols} {} matrix", t.bytes.len(), t.ty)));
            }
            Ok(())
        };
        let data = match t.ty {
            TensorType::Q4_0 | TensorType::Q4_1 => {
                let per_block = block_bytes.expect("ggml block type");
                expect(per_block)?;
                let n = t.bytes.len() / per_block;
                let (mut quants, mut d, mut m) = (room(name, n)?, room(name, n)?, room(name, n)?);
                for row in t.bytes.chunks_exact((cols / BLOCK * per_block).max(1)) {
                    push_q4_row(row, per_block, t.ty == TensorType::Q4_1, &mut quants, &mut d, &mut m);
                }
                Data::Q4 { quants, d, m }
            }
            TensorType::Q8_0 => {
                expect(34)?;
                let n = t.bytes.len() / 34;
                let (mut quants, mut d) = (room(name, n)?, room(name, n)?);
                for row in t.bytes.chunks_exact((cols / BLOCK * 34).max(1)) {
                    push_q8_row(row, &mut quants, &mut d);
                }
                Data::Q8 { quants, d }
            }
            _ => Data::F32(crate::quant::dequantize(t.ty, t.bytes, rows * cols).map_err(|e| bad(e.to_string()))?),
        };
        Ok(CpuMatrix { rows, cols, data })
    }

    /// Bytes a `rows × cols` matrix of type `ty` will occupy (the memory plan).
    pub fn planned_bytes(ty: TensorType, rows: usize, cols: usize) -> u64 {
        let (values, blocks) = (rows as u64 * cols as u64, rows as u64 * cols as u64 / BLOCK as u64);
        match ty {
            TensorType::Q4_0 | TensorType::Q4_1 => blocks * (16 + 8),
            TensorType::Q8_0 => blocks * (32 + 4),
            _ => values * 4,
        }
    }

    /// Bytes the matrix occupies.
    pub fn size_bytes(&self) -> u64 {
        (match &self.data {
            Data::Q4 { quants, d, m } => quants.len() * 16 + (d.len() + m.len()) * 4,
            Data::Q8 { quants, d } => quants.len() * 32 + d.len() * 4,
            Data::F32(v) => v.len() * 4,
        }) as u64
    }

    /// Row `r` as f32 (the embedding lookup).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        match &self.data {
            Data::Q4 { quants, d, m } => {
                for b in 0..nb {
                    let i = r * nb + b;
                    for (j, &q) in quants[i].iter().enumerate() {
                        out[b * BLOCK + j] = d[i] * (q & 0x0f) as f32 + m[i];
                        out[b * BLOCK + j + 16] = d[i] * (q >> 4) as f32 + m[i];
                    }
                }
            }
            Data::Q8 { quants, d } => {
                for b in 0..nb {
                    let i = r * nb + b;
                    for (j, &q) in quants[i].iter().enumerate() {
                        out[b * BLOCK + j] = d[i] * q as f32;
                    }
                }
            }
            Data::F32(v) => out.copy_from_slice(&v[r * self.cols..(r + 1) * self.cols]),
        }
    }

    /// `out[t * rows + r] = x[t] · W[r]` for the `tokens` rows of `x` (each
    /// `cols` wide, also given quantized in `xq`), computed by the thread
    /// pool in bands of rows. `scratch` holds at least `rows × tokens` values.
    pub fn matmul(&self, x: &[f32], xq: &QuantRows, tokens: usize, scratch: &mut [f32], out: &mut [f32]) {
        matmul_many(&[self], x, xq, tokens, scratch, &mut [out]);
    }

    /// Rows `first..` of the product into `out` ([row][token], `tokens` per
    /// row), four tokens at a time so a block of weights is widened once for
    /// four dot products. The tokens are the outer loop: four tokens'
    /// activations stay in L1 while the band's rows stream past them.
    #[inline(always)]
    fn rows<I: Isa>(&self, first: usize, x: &[f32], xq: &QuantRows, out: &mut [f32]) {
        let tokens = xq.tokens;
        let rows = out.len() / tokens;
        let mut t = 0;
        while t < tokens {
            let n = (tokens - t).min(GROUP);
            let mut k = 0;
            while k < rows {
                // (Tiles of one or two rows: TILE_ROWS is 1 or 2.)
                let r = if I::TILE_ROWS >= 2 && rows - k >= 2 { 2 } else { 1 };
                match (r, n) {
                    (2, 4) => self.put_tile::<I, 2, 4>(first, k, t, x, xq, out),
                    (2, 3) => self.put_tile::<I, 2, 3>(first, k, t, x, xq, out),
                    (2, 2) => self.put_tile::<I, 2, 2>(first, k, t, x, xq, out),
                    (2, _) => self.put_tile::<I, 2, 1>(first, k, t, x, xq, out),
                    (_, 4) => self.put_tile::<I, 1, 4>(first, k, t, x, xq, out),
                    (_, 3) => self.put_tile::<I, 1, 3>(first, k, t, x, xq, out),
                    (_, 2) => self.put_tile::<I, 1, 2>(first, k, t, x, xq, out),
                    _ => self.put_tile::<I, 1, 1>(first, k, t, x, xq, out),
                }
                k += r;
            }
            t += n;
        }
    }

    /// Writes the tile of rows first + k.. and tokens t.. into `out` ([row][token]).
    /// In wasm each tile shape is a function of its own: the browser runs a
    /// function on baseline code until it has optimised it, and cannot swap
    /// the code of a call already running. Inlined into the band's loop, a
    /// new engine's first prompt ran its bands on baseline code; as calls,
    /// the tiles switch to optimised code a few tiles in (first token of a
    /// new page's chat reply, after the load: medians 219 → 186 ms over 10
    /// alternating starts; later prompts as fast as before).
    #[cfg_attr(not(target_arch = "wasm32"), inline(always))]
    #[cfg_attr(target_arch = "wasm32", inline(never))]
    #[allow(clippy::too_many_arguments)]
    fn put_tile<I: Isa, const R: usize, const N: usize>(&self, first: usize, k: usize, t: usize, x: &[f32], xq: &QuantRows, out: &mut [f32]) {
        let tokens = xq.tokens;
        let tile = self.tile::<I, R, N>(first + k, t, x, xq);
        for (i, row) in tile.iter().enumerate() {
            out[(k + i) * tokens + t..][..N].copy_from_slice(row);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, first: usize, x: &[f32], xq: &QuantRows, out: &mut [f32]) {
        self.rows::<simd::Avx2>(first, x, xq, out)
    }

    /// The products of R rows from r0 with N tokens from t0: each block of
    /// weights is widened once for N tokens, each block of activations
    /// loaded once for R rows.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // i and j index the tile, its weights and its tokens together
    fn tile<I: Isa, const R: usize, const N: usize>(&self, r0: usize, t0: usize, x: &[f32], xq: &QuantRows) -> [[f32; N]; R] {
        let nb = self.cols / BLOCK;
        let blocks = |i: usize| (r0 + i) * nb..(r0 + i) * nb + nb;
        let mut acc = [[I::zero(); N]; R];
        // The minimums' part of each product (Q4), or all of it (F32).
        let mut rest = [[0f32; N]; R];
        match &self.data {
            Data::Q4 { quants, d, m } => {
                let (mut qs, mut ds): ([&[[u8; 16]]; R], [&[f32]; R]) = ([&[]; R], [&[]; R]);
                for i in 0..R {
                    (qs[i], ds[i]) = (&quants[blocks(i)], &d[blocks(i)]);
                }
                let m_ahead = m[blocks(0)].as_ptr().wrapping_add(AHEAD);
                let (xs, ss) = xq.group::<N>(t0);
                for b in 0..nb {
                    // (The tile's rows are consecutive: the first row's stream covers the others'.)
                    prefetch(qs[0].as_ptr().wrapping_add(b + AHEAD) as *const u8);
                    prefetch(ds[0].as_ptr().wrapping_add(b + AHEAD) as *const u8);
                    prefetch(m_ahead.wrapping_add(b) as *const u8);
                    let mut w = [I::unpack_q4(&qs[0][b]); R];
                    for i in 1..R {
                        w[i] = I::unpack_q4(&qs[i][b]);
                    }
                    for j in 0..N {
                        for i in 0..R {
                            acc[i][j] = I::add_dot(acc[i][j], &w[i], &xs[b][j], ds[i][b] * ss[b][j]);
                        }
                    }
                }
                // Σ_b m_b · Σ x_b: one vector dot product per row and token.
                for i in 0..R {
                    for j in 0..N {
                        rest[i][j] = simd::dot_f32(&m[blocks(i)], xq.sums(t0 + j));
                    }
                }
            }
            // Q4's loop with Q8's blocks. (One generic loop for both, the
            // unpacking passed in, built 8-10 % slower on AVX2.)
            Data::Q8 { quants, d } => {
                let (mut qs, mut ds): ([&[[i8; 32]]; R], [&[f32]; R]) = ([&[]; R], [&[]; R]);
                for i in 0..R {
                    (qs[i], ds[i]) = (&quants[blocks(i)], &d[blocks(i)]);
                }
                let (xs, ss) = xq.group::<N>(t0);
                for b in 0..nb {
                    prefetch(qs[0].as_ptr().wrapping_add(b + AHEAD) as *const u8);
                    prefetch(ds[0].as_ptr().wrapping_add(b + AHEAD) as *const u8);
                    let mut w = [I::unpack_q8(&qs[0][b]); R];
                    for i in 1..R {
                        w[i] = I::unpack_q8(&qs[i][b]);
                    }
                    for j in 0..N {
                        for i in 0..R {
                            acc[i][j] = I::add_dot(acc[i][j], &w[i], &xs[b][j], ds[i][b] * ss[b][j]);
                        }
                    }
                }
            }
            Data::F32(v) => {
                for i in 0..R {
                    let w = &v[(r0 + i) * self.cols..(r0 + i + 1) * self.cols];
                    for j in 0..N {
                        let t = t0 + j;
                        rest[i][j] = simd::dot_f32(w, &x[t * self.cols..(t + 1) * self.cols]);
                    }
                }
            }
        }
        // (Loops, not array::from_fn: a closure is not compiled with the
        // caller's target features, so the intrinsics in it are not inlined.)
        for i in 0..R {
            for j in 0..N {
                rest[i][j] += I::hsum(acc[i][j]);
            }
        }
        rest
    }
}

/// How many blocks ahead of the kernel's reads the weights are prefetched.
const AHEAD: usize = 128;

/// Asks the cache to fetch the line at `p` (a hint: any address is allowed).
/// Even with the whole model in L3, hardware prefetch alone left the x86
/// kernels stalled on weight loads (decode 40 -> 58 tok/s on one thread).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Rows of activations in 16-bit fixed point per 32-wide block: values,
/// each block's scale and each block's exact f32 sum (for Q4_1's minimum).
/// Values and scales are kept in groups of four tokens (the product's tiles),
/// block by block ([group][block][token]): a tile reads one run of memory
/// per block, with no index to work out per token.
#[derive(Default)]
pub struct QuantRows {
    q: Vec<[i16; BLOCK]>,
    scale: Vec<f32>,
    sum: Vec<f32>, // [token][block]
    blocks_per_row: usize,
    tokens: usize,
}

/// Tokens per group of `QuantRows` (the last group holds the rest).
const GROUP: usize = 4;

impl QuantRows {
    /// Quantizes `tokens` rows of `cols` values from `x`, reusing the buffers.
    pub fn quantize(&mut self, x: &[f32], tokens: usize, cols: usize) {
        let nb = cols / BLOCK;
        self.blocks_per_row = nb;
        self.tokens = tokens;
        self.q.resize(tokens * nb, [0; BLOCK]);
        self.scale.resize(tokens * nb, 0.0);
        self.sum.resize(tokens * nb, 0.0);
        for (i, block) in x[..tokens * cols].chunks_exact(BLOCK).enumerate() {
            let (t, b) = (i / nb, i % nb);
            let first = t - t % GROUP;
            let at = first * nb + b * (tokens - first).min(GROUP) + t - first;
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
            for (q, &v) in self.q[at].iter_mut().zip(block) {
                *q = ops::round_small(v * inv) as i16;
            }
            self.scale[at] = amax / 32767.0;
            self.sum[i] = block.iter().sum();
        }
    }

    /// Token t's block sums.
    #[inline(always)]
    fn sums(&self, t: usize) -> &[f32] {
        &self.sum[t * self.blocks_per_row..][..self.blocks_per_row]
    }

    /// The N tokens from t0 (a group: t0 a multiple of four, N four or the
    /// rest): per block, their values and their scales.
    #[inline(always)]
    fn group<const N: usize>(&self, t0: usize) -> (&[[[i16; BLOCK]; N]], &[[f32; N]]) {
        debug_assert!(t0.is_multiple_of(GROUP) && N == (self.tokens - t0).min(GROUP));
        let nb = self.blocks_per_row;
        let (q, _) = self.q[t0 * nb..][..N * nb].as_chunks::<N>();
        let (s, _) = self.scale[t0 * nb..][..N * nb].as_chunks::<N>();
        (&q[..nb], &s[..nb])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize;

    /// Every storage type against the same product on dequantized weights in f64.
    #[test]
    fn matmul_matches_dequantized_product() {
        let (rows, cols, tokens) = (37, 96, 6);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 211) as f32 / 105.0 - 1.0).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 104729) % 173) as f32 / 50.0 - 1.7).collect();
        for ty in [TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0, TensorType::F16, TensorType::F32] {
            let bytes = quantize::quantize(ty, &values).expect("quantize");
            let t = RawTensor { ty, shape: vec![rows, cols], bytes: &bytes };
            let m = CpuMatrix::new("w", &t).expect("repack");
            let w = crate::quant::dequantize(ty, &bytes, rows * cols).unwrap();
            let mut xq = QuantRows::default();
            xq.quantize(&x, tokens, cols);
            let (mut scratch, mut out) = (vec![0.0; rows * tokens], vec![0.0; rows * tokens]);
            m.matmul(&x, &xq, tokens, &mut scratch, &mut out);
            for t in 0..tokens {
                for r in 0..rows {
                    let want: f64 = (0..cols).map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64).sum();
                    let got = out[t * rows + r] as f64;
                    assert!((got - want).abs() < 2e-3, "{ty} t{t} r{r}: {got} vs {want}");
                }
            }
            // The 128-bit kernels too (where AVX2 ran above), to the same sums.
            let mut base = vec![0.0; rows * tokens];
            m.rows::<simd::Base>(0, &x, &xq, &mut base);
            for t in 0..tokens {
                for r in 0..rows {
                    let (a, b) = (base[r * tokens + t], out[t * rows + r]);
                    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{ty} base kernel t{t} r{r}: {a} vs {b}");
                }
            }
            let mut row = vec![0.0; cols];
            m.row_into(5, &mut row);
            assert!(row.iter().zip(&w[5 * cols..6 * cols]).all(|(a, b)| (a - b).abs() < 1e-6), "{ty} row");
        }
    }
}
