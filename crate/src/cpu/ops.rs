//! The non-matrix operations of the layer program on the CPU, with the same
//! arithmetic as the WGSL kernels (f32 throughout).

use super::kv_cache::{Block, CacheView};
use super::{simd, team};

/// out[t] = x[t] / sqrt(mean(x[t]²) + eps) * gain, for each row of `gain.len()` values.
pub fn rms_norm(x: &[f32], gain: &[f32], eps: f32, out: &mut [f32]) {
    let cols = gain.len();
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean = xr.iter().map(|v| v * v).sum::<f32>() / cols as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(gain) {
            *o = v * scale * g;
        }
    }
}

/// Rotates the interleaved pairs of the first `pairs` pairs of every head of
/// each row; row t is at position `pos0 + t` (`table`: cos/sin per position
/// and pair, see `model::rope_table`).
pub fn rope(rows: &mut [f32], pos0: usize, heads: usize, head_dim: usize, table: &[[f32; 2]], pairs: usize) {
    for (t, row) in rows.chunks_exact_mut(heads * head_dim).enumerate() {
        let angles = &table[(pos0 + t) * pairs..(pos0 + t + 1) * pairs];
        for head in row.chunks_exact_mut(head_dim) {
            for (pair, &[cos, sin]) in head.chunks_exact_mut(2).zip(angles) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos - b * sin;
                pair[1] = a * sin + b * cos;
            }
        }
    }
}

/// The shape of grouped-query attention.
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Causal attention: for each token t (at position pos0 + t) and head h,
/// out = softmax(q · Kᵀ / √head_dim) · V over positions 0..=pos0 + t of the
/// caches (rows of kv_heads × head_dim, f32 or f16).
///
/// The rows are done in tasks of a few neighbouring tokens × the query
/// heads that share one KV head, each block of keys and values read once
/// for all of them while it is in L1: with one task per (token, head),
/// every row streamed its KV head's whole cache on its own (at a 2 000-token
/// prompt, 40 % of the prefill; after one, 60 % of a decode step). A decode
/// step has few rows, so its keys are split into runs too, a task each,
/// whose partial softmaxes are then added up (as the GPUs' flash-decoding).
pub fn attention(q: &[f32], keys: CacheView<'_>, values: CacheView<'_>, pos0: usize, shape: &Heads, out: &mut [f32]) {
    let Heads { heads, kv_heads, head_dim } = *shape;
    let (group, kv_dim) = (heads / kv_heads, kv_heads * head_dim);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let tokens = out.len() / (heads * head_dim);
    // Tokens per task: about ROWS_PER_TASK rows.
    let block = (ROWS_PER_TASK / group).max(1);
    let positions = pos0 + tokens;
    let runs = if tokens == 1 { positions.div_ceil(KEYS_PER_RUN).clamp(1, MAX_RUNS) } else { 1 };
    // (Whole blocks of keys, so that every run starts on a multiple of 8.)
    let run_keys = positions.div_ceil(runs).next_multiple_of(KEY_BLOCK);
    // Each row's partial softmax per run: (max score, Σ weights, Σ weights · values).
    let slot = head_dim + 2;
    let mut partials = vec![0f32; tokens * heads * runs * slot];
    // Task i: KV head (i / runs) % kv_heads.
    let mut tasks: Vec<Task<'_>> = (0..tokens.div_ceil(block) * kv_heads * runs)
        .map(|i| Task { keys, values, kv: (i / runs) % kv_heads * head_dim, kv_dim, rows: Vec::with_capacity(block * group) })
        .collect();
    for (i, partial) in partials.chunks_mut(slot).enumerate() {
        let (row, run) = (i / runs, i % runs);
        let (t, h) = (row / heads, row % heads);
        let first = run * run_keys;
        let end = (first + run_keys).min(pos0 + t + 1).max(first);
        let q = &q[row * head_dim..(row + 1) * head_dim];
        tasks[((t / block) * kv_heads + h / group) * runs + run].rows.push((Head { q, first, end, scale }, partial));
    }
    team::for_each(tasks, |mut task| {
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { attend_avx2(&mut task) };
            return;
        }
        attend::<false>(&mut task);
    });
    // out = Σ_runs e^(m - M) · sums / Σ_runs e^(m - M) · l, M the largest m.
    for (o, parts) in out.chunks_mut(head_dim).zip(partials.chunks(runs * slot)) {
        let max = parts.chunks(slot).fold(f32::NEG_INFINITY, |m, p| m.max(p[0]));
        o.fill(0.0);
        let mut denominator = 0.0;
        for p in parts.chunks(slot).filter(|p| p[1] > 0.0) {
            let w = exp(p[0] - max);
            denominator += p[1] * w;
            for (o, &sum) in o.iter_mut().zip(&p[2..]) {
                *o += w * sum;
            }
        }
        let inv = 1.0 / denominator;
        o.iter_mut().for_each(|o| *o *= inv);
    }
}

/// Rows of query (token, head) pairs per task of a prompt's attention.
const ROWS_PER_TASK: usize = 16;

/// Keys per block of `attend`: a block's keys and values (at head_dim 64,
/// 16 KiB each in f32) stay in L1 while every row of the task uses them.
const KEY_BLOCK: usize = 64;

/// A decode step's keys per run, about, and its most runs.
const KEYS_PER_RUN: usize = 128;
const MAX_RUNS: usize = 16;

/// Dimensions of the attention's output summed at once (`Head::add_values`
/// without AVX2): 32 f32 are eight wasm SIMD registers.
const VALUE_DIMS: usize = 32;

/// One (token, head) row of `attention` over one run of keys, and where
/// its partial softmax goes (max, Σ weights, then head_dim sums).
type Row<'a> = (Head<'a>, &'a mut [f32]);

/// Rows of `attention` that share one KV head and one run of keys, and that head's caches.
struct Task<'a> {
    keys: CacheView<'a>,
    values: CacheView<'a>,
    /// Offset of the KV head in a cache row of `kv_dim` values.
    kv: usize,
    kv_dim: usize,
    rows: Vec<Row<'a>>,
}

/// The attention of a task's rows (starting at the same `first`), in
/// blocks of keys: each row's maximum score, Σ e^(score - max) and
/// Σ e^(score - max) · value (AVX2: called by
/// `attend_avx2`, which has the CPU's word for it). Each row's arithmetic,
/// and its order, is the same whatever the rows around it. An f16 cache's
/// block is converted once for all the rows.
#[inline(always)]
fn attend<const AVX2: bool>(task: &mut Task<'_>) {
    let Task { keys, values, kv, kv_dim, ref mut rows } = *task;
    let Some((first, head_dim)) = rows.first().map(|(head, _)| (head.first, head.q.len())) else { return };
    let mut scratch = Vec::new();
    let stride = rows.iter().map(|(head, _)| head.end - first).max().unwrap_or(0);
    // Each row's scores (then softmax weights), `stride` apart.
    let mut scores = vec![0f32; rows.len() * stride];
    let blocks = || (first..first + stride).step_by(KEY_BLOCK).map(move |start| start..(start + KEY_BLOCK).min(first + stride));
    // The scores, a block of keys at a time for every row.
    for block in blocks() {
        let cached = keys.block(block.clone(), kv, head_dim, kv_dim, &mut scratch);
        for (r, (head, _)) in rows.iter().enumerate() {
            let positions = block.start..block.end.min(head.end);
            if !positions.is_empty() {
                head.score::<AVX2>(&cached, &mut scores[r * stride..], positions);
            }
        }
    }
    // Each row's softmax weights, unnormalised.
    for (r, (head, partial)) in rows.iter_mut().enumerate() {
        let row = &mut scores[r * stride..][..head.end - first];
        let max = simd::max_f32(row);
        for s in row.iter_mut() {
            *s = exp(*s - max);
        }
        partial[0] = max;
        partial[1] = simd::sum_f32(row);
        partial[2..].fill(0.0);
    }
    // The weighted values, a block of keys at a time for every row.
    for block in blocks() {
        let cached = values.block(block.clone(), kv, head_dim, kv_dim, &mut scratch);
        for (r, (head, partial)) in rows.iter_mut().enumerate() {
            let positions = block.start..block.end.min(head.end);
            if !positions.is_empty() {
                head.add_values::<AVX2>(&cached, &scores[r * stride..], positions, &mut partial[2..]);
            }
        }
    }
}

/// `attend` compiled for AVX2 and FMA (its loops widened to 8 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(task: &mut Task<'_>) {
    attend::<true>(task)
}

/// One (token, head) row of `attention`: its query and its run of keys.
struct Head<'a> {
    q: &'a [f32],
    /// The keys of this row's run: `first .. end` (a multiple of 8, and at
    /// most the position of the row's token + 1).
    first: usize,
    end: usize,
    scale: f32,
}

impl Head<'_> {
    /// scores[s - first] = q · key s · scale for the keys in `keys` (a
    /// block of `attend`: it starts at a multiple of 8). Keys in whole
    /// eights are scored eight at a time (AVX2), the rest one by one.
    #[inline(always)]
    fn score<const AVX2: bool>(&self, cached: &Block<'_>, scores: &mut [f32], keys: std::ops::Range<usize>) {
        #[allow(unused_mut)] // (only x86-64 scores some keys by eights)
        let mut rest = keys.start;
        #[cfg(target_arch = "x86_64")]
        if AVX2 && self.q.len().is_multiple_of(8) {
            let eights = keys.start..keys.start + (keys.end - keys.start) / 8 * 8;
            if !eights.is_empty() {
                // SAFETY: AVX2 is true only in attend_avx2, reached when the CPU has AVX2 and FMA.
                unsafe { self.scores_by_eights_avx2(cached, scores, eights.clone()) };
                rest = eights.end;
            }
        }
        // A plain loop, so that it is compiled with attend_avx2's features
        // (an iterator's `fold` is a function of its own, built for SSE2).
        for s in rest..keys.end {
            scores[s - self.first] = simd::dot_f32(self.q, cached.row(s)) * self.scale;
        }
    }

    /// sums += Σ weights[s - first] · value s over the keys in `keys`, VALUE_DIMS
    /// dimensions at a time: their sums are a fixed-size array, which stays
    /// in registers over the block's keys.
    #[inline(always)]
    fn add_values<const AVX2: bool>(&self, cached: &Block<'_>, weights: &[f32], keys: std::ops::Range<usize>, sums: &mut [f32]) {
        let d = self.q.len();
        #[cfg(target_arch = "x86_64")]
        if AVX2 && d.is_multiple_of(8) {
            // SAFETY: AVX2 is true only in attend_avx2, reached when the CPU has AVX2 and FMA.
            unsafe { self.add_values_avx2(cached, weights, keys, sums) };
            return;
        }
        let mut dims = sums.chunks_exact_mut(VALUE_DIMS);
        for (c, out) in (&mut dims).enumerate() {
            let mut acc: [f32; VALUE_DIMS] = out.try_into().expect("a chunk of VALUE_DIMS");
            for s in keys.clone() {
                let (p, v) = (weights[s - self.first], &cached.row(s)[c * VALUE_DIMS..][..VALUE_DIMS]);
                for k in 0..VALUE_DIMS {
                    acc[k] += p * v[k];
                }
            }
            out.copy_from_slice(&acc);
        }
        let tail = dims.into_remainder();
        let first = d - tail.len();
        for s in keys {
            for (o, &v) in tail.iter_mut().zip(&cached.row(s)[first..]) {
                *o += weights[s - self.first] * v;
            }
        }
    }

    /// `add_values` for a head size in whole eights, 64 dimensions (eight
    /// registers of sums, each added to once per key: enough independent
    /// chains to keep the FMA units busy) at a time, then the rest eight at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn add_values_avx2(&self, cached: &Block<'_>, weights: &[f32], keys: std::ops::Range<usize>, sums: &mut [f32]) {
        let d = self.q.len();
        let whole = d / 64 * 64;
        for dim0 in (0..whole).step_by(64) {
            self.add_values_ymm::<8>(cached, weights, keys.clone(), &mut sums[dim0..dim0 + 64], dim0);
        }
        for dim0 in (whole..d).step_by(8) {
            self.add_values_ymm::<1>(cached, weights, keys.clone(), &mut sums[dim0..dim0 + 8], dim0);
        }
    }

    /// sums (N · 8 values) += Σ weights[s - first] · value s's dimensions
    /// `dim0 ..` over `keys`, the sums kept in N registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn add_values_ymm<const N: usize>(&self, cached: &Block<'_>, weights: &[f32], keys: std::ops::Range<usize>, sums: &mut [f32], dim0: usize) {
        use core::arch::x86_64::*;
        assert!(sums.len() == 8 * N && dim0 + 8 * N <= self.q.len() && keys.start >= self.first && keys.end - self.first <= weights.len());
        // SAFETY (loads and stores): sums holds 8N values; each value row
        // (`cached.row(s)`, a checked slice) holds q.len() >= dim0 + 8N.
        let mut acc = [_mm256_setzero_ps(); N];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(sums.as_ptr().add(8 * j));
        }
        for s in keys {
            let p = _mm256_set1_ps(*weights.get_unchecked(s - self.first));
            let v = cached.row(s).as_ptr().add(dim0);
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(p, _mm256_loadu_ps(v.add(8 * j)), *a);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(sums.as_mut_ptr().add(8 * j), *a);
        }
    }

    /// The scores of `keys` (whole eights: both ends multiples of 8, the
    /// head size a multiple of 8), eight keys at a time: one register of
    /// partial sums per key, then one transposing reduction gives the eight
    /// scores as one vector (`dot_f32` ends each score with a horizontal
    /// sum of its own, seven dependent additions).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // k indexes the keys and their sums together
    unsafe fn scores_by_eights_avx2(&self, cached: &Block<'_>, scores: &mut [f32], keys: std::ops::Range<usize>) {
        use core::arch::x86_64::*;
        let d = self.q.len();
        // (For the stores: every eight lies in scores, from key `first` on.)
        assert!(keys.start >= self.first && keys.end - self.first <= scores.len() && (keys.end - keys.start).is_multiple_of(8));
        for e in keys.step_by(8) {
            let mut rows: [&[f32]; 8] = [&[]; 8];
            for k in 0..8 {
                rows[k] = cached.row(e + k);
            }
            let mut acc = [_mm256_setzero_ps(); 8];
            for c in (0..d).step_by(8) {
                // SAFETY (loads): c + 8 <= d, the length of q and of each key.
                let q = _mm256_loadu_ps(self.q.as_ptr().add(c));
                for k in 0..8 {
                    acc[k] = _mm256_fmadd_ps(q, _mm256_loadu_ps(rows[k].as_ptr().add(c)), acc[k]);
                }
            }
            // Sums of pairs, then of fours: lanes 0-3 of `first` hold keys
            // 0-3's sums of their lanes 0-3, its lanes 4-7 their sums of
            // lanes 4-7; `last` the same for keys 4-7.
            let pairs = [_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]), _mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7])];
            let (first, last) = (_mm256_hadd_ps(pairs[0], pairs[1]), _mm256_hadd_ps(pairs[2], pairs[3]));
            let low = _mm256_permute2f128_ps(first, last, 0x20);
            let high = _mm256_permute2f128_ps(first, last, 0x31);
            let sums = _mm256_mul_ps(_mm256_add_ps(low, high), _mm256_set1_ps(self.scale));
            // SAFETY: e - first + 8 <= scores.len(), asserted above (the loads' rows are checked slices).
            _mm256_storeu_ps(scores.as_mut_ptr().add(e - self.first), sums);
        }
    }
}

/// gate = silu(gate) * up.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

/// e^x within 2 ulp (Cephes' expf: x = n ln 2 + r, |r| ≤ ln 2 / 2, a
/// degree-7 polynomial for e^r, times 2^n), for x up to 88; below -87.3,
/// where e^x is subnormal, about 1e-38 instead (WGSL's exp may flush
/// those too). Straight-line f32 code that the compiler vectorises in the
/// loops above (wasm simd128, SSE2): libm's expf is a call per value, and
/// took a twentieth of a decode step in the browser.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Selects rather than f32::clamp, which kept the loops from vectorising in wasm.
    #[allow(clippy::manual_clamp)]
    let x = if x > 88.0 { 88.0 } else if x < -87.33 { -87.33 } else { x };
    // n = round(x / ln 2).
    let n = round_small(x * std::f32::consts::LOG2_E);
    // r = x - n ln 2, with ln 2 in two parts so that n ln 2 is exact enough.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    (p * r * r + r + 1.0) * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// x rounded to the nearest integer (ties to even) for |x| < 2^22: adding
/// and taking away 1.5 · 2^23 leaves no fraction bits. Unlike `f32::round`,
/// a libm call per value (natively and in wasm; SSE2 has no rounding
/// instruction), it vectorises: the activations' quantization took 3.5 %
/// of a 512-token prefill with it.
#[inline(always)]
pub(super) fn round_small(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (x + SHIFT) - SHIFT
}

/// x += y.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::super::kv_cache::CacheRows;
    use super::*;
    use crate::reference;

    #[test]
    fn exp_is_within_2_ulp_of_the_exact_value() {
        let mut worst = 0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0; // -87 ..= 88
            let want = (x as f64).exp();
            let ulp = (want as f32).abs() * f32::EPSILON; // the spacing at the result
            worst = worst.max((exp(x) as f64 - want).abs() / ulp as f64);
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 1.2e-38 && exp(-200.0) >= 0.0 && exp(200.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn attention_matches_the_oracle() {
        // A few positions, then several hundred (many blocks of keys, the
        // last one partial); decode steps, whose keys are split into runs
        // (2 runs; 9; 16 of 192 keys, the last five past the keys, empty);
        // prompts of several tasks per KV head (13 and 40 tokens), whose
        // rows see different numbers of keys; head sizes in whole eights
        // (the scores' SIMD lanes) and not.
        for (pos0, tokens) in [(3, 2), (549, 3), (130, 1), (1100, 1), (2048, 1), (0, 13), (61, 40)] {
            check_attention(pos0, tokens, Heads { heads: 6, kv_heads: 2, head_dim: 8 });
            check_attention(pos0, tokens, Heads { heads: 4, kv_heads: 1, head_dim: 20 });
            // Values summed 64 (AVX2) or 32 dimensions at a time, and the rest.
            check_attention(pos0, tokens, Heads { heads: 4, kv_heads: 2, head_dim: 72 });
            check_attention(pos0, tokens, Heads { heads: 9, kv_heads: 3, head_dim: 64 });
            // More query heads per KV head than rows per task (one token a task).
            check_attention(pos0, tokens, Heads { heads: 20, kv_heads: 1, head_dim: 16 });
        }
    }

    fn check_attention(pos0: usize, tokens: usize, shape: Heads) {
        for f16 in [false, true] {
            check_attention_with_cache(pos0, tokens, &shape, f16);
        }
    }

    /// Against the oracle over the values the cache holds (rounded to f16 in an f16 cache).
    fn check_attention_with_cache(pos0: usize, tokens: usize, shape: &Heads, f16: bool) {
        let (q_dim, kv_dim) = (shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim);
        let positions = pos0 + tokens;
        let val = |i: usize, k: usize| ((i * k) % 29) as f32 / 14.0 - 1.0;
        let q: Vec<f32> = (0..tokens * q_dim).map(|i| val(i, 7)).collect();
        let cache = |k: usize| {
            let mut rows = CacheRows::new(positions * kv_dim, f16).unwrap();
            rows.store(0, &(0..positions * kv_dim).map(|i| val(i, k)).collect::<Vec<f32>>());
            rows
        };
        let (keys, values) = (cache(11), cache(13));
        let mut out = vec![0.0; tokens * q_dim];
        attention(&q, keys.view(positions * kv_dim), values.view(positions * kv_dim), pos0, shape, &mut out);
        let rows = |c: &CacheRows| -> Vec<Vec<f64>> {
            let all: Vec<f64> = match c.view(positions * kv_dim) {
                CacheView::F32(v) => v.iter().map(|&x| x as f64).collect(),
                CacheView::F16(v) => v.iter().map(|&h| h.to_f64()).collect(),
            };
            all.chunks(kv_dim).map(<[f64]>::to_vec).collect()
        };
        let (keys, values) = (rows(&keys), rows(&values));
        for t in 0..tokens {
            let qt: Vec<f64> = q[t * q_dim..(t + 1) * q_dim].iter().map(|&x| x as f64).collect();
            let want = reference::attention(&qt, &keys, &values, pos0 + t, shape.heads, shape.kv_heads, shape.head_dim);
            for (a, b) in out[t * q_dim..(t + 1) * q_dim].iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "position {} (f16 cache: {f16}): {a} vs {b}", pos0 + t);
            }
        }
    }
}
