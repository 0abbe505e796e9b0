//! The CPU backend's KV cache: per layer, a row of kv_dim keys (or values)
//! per position, kept in f32 (exact) or in f16 (half the memory and half the
//! attention's reads, as llama.cpp keeps its cache by default). The
//! attention reads it a block of positions at a time as f32 (`Block`):
//! straight from an f32 cache, converted into a scratch buffer from f16.

use super::zeroed;
use crate::error::Result;
use half::f16;
use std::ops::Range;

/// One layer's keys or values.
pub enum CacheRows {
    F32(Vec<f32>),
    /// Rounded to nearest, saturated at ±65504 (`to_f16`).
    F16(Vec<f16>),
}

impl CacheRows {
    /// `len` zeroed values, in f16 if `f16`.
    pub fn new(len: usize, f16: bool) -> Result<Self> {
        Ok(if f16 { CacheRows::F16(zeroed(len, "KV cache")?) } else { CacheRows::F32(zeroed(len, "KV cache")?) })
    }

    pub fn bytes(&self) -> u64 {
        match self {
            CacheRows::F32(v) => v.len() as u64 * 4,
            CacheRows::F16(v) => v.len() as u64 * 2,
        }
    }

    /// Writes `rows` from value `at` on.
    pub fn store(&mut self, at: usize, rows: &[f32]) {
        match self {
            CacheRows::F32(v) => v[at..at + rows.len()].copy_from_slice(rows),
            CacheRows::F16(v) => to_f16_slice(rows, &mut v[at..at + rows.len()]),
        }
    }

    /// The first `len` values, for reading.
    pub fn view(&self, len: usize) -> CacheView<'_> {
        match self {
            CacheRows::F32(v) => CacheView::F32(&v[..len]),
            CacheRows::F16(v) => CacheView::F16(&v[..len]),
        }
    }
}

/// A layer's cached keys or values, read-only.
#[derive(Clone, Copy)]
pub enum CacheView<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// One KV head's rows (head_dim values each) over a block of positions, as f32.
pub struct Block<'a> {
    values: &'a [f32],
    /// The position of `values`' first row, the values from one row to the
    /// next, and where the head starts in a row.
    base: usize,
    stride: usize,
    offset: usize,
    head_dim: usize,
}

impl<'a> CacheView<'a> {
    /// The head starting at value `head` of each row of `kv_dim` values, at
    /// `positions`: an f16 cache is converted into `scratch`.
    pub fn block<'s>(self, positions: Range<usize>, head: usize, head_dim: usize, kv_dim: usize, scratch: &'s mut Vec<f32>) -> Block<'s>
    where
        'a: 's,
    {
        match self {
            CacheView::F32(values) => Block { values, base: 0, stride: kv_dim, offset: head, head_dim },
            CacheView::F16(halves) => {
                scratch.resize(positions.len() * head_dim, 0.0);
                rows_to_f32(&halves[positions.start * kv_dim + head..], kv_dim, scratch, head_dim);
                Block { values: scratch, base: positions.start, stride: head_dim, offset: 0, head_dim }
            }
        }
    }
}

impl<'a> Block<'a> {
    /// The head's values at position `s` (within the block's positions).
    #[inline(always)]
    pub fn row(&self, s: usize) -> &'a [f32] {
        &self.values[(s - self.base) * self.stride + self.offset..][..self.head_dim]
    }
}

/// f32 to f16 bits, rounded to nearest even; beyond f16's range, ±65504
/// rather than infinity (a key that large would otherwise turn every score
/// it meets into ±inf or NaN).
fn to_f16(x: f32) -> f16 {
    f16::from_f32(x.clamp(-65504.0, 65504.0))
}

/// out = `to_f16` of each value: eight at a time with F16C where the CPU
/// has it (`half`'s `from_f32` converts one value a call, and checks for
/// F16C on every call).
fn to_f16_slice(values: &[f32], out: &mut [f16]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_f16c() {
        // SAFETY: the CPU has AVX and F16C.
        return unsafe { to_f16_slice_f16c(values, out) };
    }
    for (h, &x) in out.iter_mut().zip(values) {
        *h = to_f16(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn to_f16_slice_f16c(values: &[f32], out: &mut [f16]) {
    use core::arch::x86_64::*;
    assert_eq!(values.len(), out.len());
    let whole = values.len() / 8 * 8;
    let (low, high) = (_mm256_set1_ps(-65504.0), _mm256_set1_ps(65504.0));
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 <= the length of both. (x second: maxps and minps
        // return their second operand where one is NaN, so NaN stays NaN, as `clamp` leaves it.)
        let x = _mm256_min_ps(high, _mm256_max_ps(low, _mm256_loadu_ps(values.as_ptr().add(i))));
        _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
    }
    for (h, &x) in out[whole..].iter_mut().zip(&values[whole..]) {
        *h = to_f16(x);
    }
}

/// Row r of `out` (rows of `len` values) = the `len` halves from `r *
/// stride` on, as f32: with F16C where the CPU has it, else by `to_f32`.
/// (A whole block in one call: a call a row, to `half`'s slice conversion,
/// cost more at long contexts than the f16 cache saved.)
fn rows_to_f32(halves: &[f16], stride: usize, out: &mut [f32], len: usize) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_f16c() {
        // SAFETY: the CPU has AVX and F16C.
        return unsafe { rows_to_f32_f16c(halves, stride, out, len) };
    }
    for (r, out) in out.chunks_exact_mut(len).enumerate() {
        let row = &halves[r * stride..][..len];
        // The values converted by eights (wasm's vectors), before the rest one by one.
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let whole = {
            let whole = len / 8 * 8;
            row_to_f32_simd128(&row[..whole], &mut out[..whole]);
            whole
        };
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let whole = 0;
        for (o, &h) in out[whole..].iter_mut().zip(&row[whole..]) {
            *o = to_f32(h);
        }
    }
}

/// `to_f32` eight halves at a time, in wasm's 128-bit vectors (`halves`: whole eights).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn row_to_f32_simd128(halves: &[f16], out: &mut [f32]) {
    use core::arch::wasm32::*;
    assert!(halves.len() % 8 == 0 && out.len() == halves.len());
    let exponent_bias = f32x4_splat(f32::from_bits(0x7780_0000)); // 2^112
    for (h, o) in halves.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
        // SAFETY: 8 halves are 16 bytes, 8 f32 two vectors (wasm loads and stores need no alignment).
        let eight = unsafe { v128_load(h.as_ptr().cast()) };
        for (i, h) in [u32x4_extend_low_u16x8(eight), u32x4_extend_high_u16x8(eight)].into_iter().enumerate() {
            let magnitude = f32x4_mul(v128_and(u32x4_shl(h, 13), u32x4_splat(0x7fff << 13)), exponent_bias);
            let sign = u32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
            let special = v128_and(u32x4_eq(v128_and(h, u32x4_splat(0x7c00)), u32x4_splat(0x7c00)), u32x4_splat(0x7f80_0000));
            // SAFETY: as above.
            unsafe { v128_store(o.as_mut_ptr().add(4 * i).cast(), v128_or(v128_or(magnitude, sign), special)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn rows_to_f32_f16c(halves: &[f16], stride: usize, out: &mut [f32], len: usize) {
    use core::arch::x86_64::*;
    for (r, out) in out.chunks_exact_mut(len).enumerate() {
        let row = &halves[r * stride..][..len];
        let whole = len / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: i + 8 <= len, the length of `row` and of `out`.
            let v = _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(i).cast()));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        }
        for (o, &h) in out[whole..].iter_mut().zip(&row[whole..]) {
            *o = to_f32(h);
        }
    }
}

/// f16 to f32, exactly, without branches, so that the conversion loop
/// vectorises (wasm simd128 has no f16 instructions, and `half`'s own
/// conversion branches): the exponent and mantissa shifted into f32's
/// places, then multiplied by 2^112 to move the exponent's bias (which
/// also makes subnormal halves right); infinities and NaN get f32's
/// all-ones exponent.
#[inline(always)]
fn to_f32(h: f16) -> f32 {
    let h = h.to_bits() as u32;
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    let special = if h & 0x7c00 == 0x7c00 { 0x7f80_0000 } else { 0 };
    f32::from_bits(magnitude.to_bits() | special | ((h & 0x8000) << 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_half_converts_as_the_half_crate_converts_it() {
        for h in (0..=u16::MAX).map(f16::from_bits) {
            let (ours, theirs) = (to_f32(h), h.to_f32());
            assert!(ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()), "{h:#06x}: {ours} vs {theirs}");
        }
    }

    #[test]
    fn stores_round_to_nearest_and_saturate() {
        let mut cache = CacheRows::new(6, true).unwrap();
        // Halfway between two halves (steps of 2^-10 above 1): to the even one.
        let (tie_down, tie_up) = (1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0);
        cache.store(0, &[tie_down, tie_up, 1.0e6, -1.0e6, -3.0e-6, 0.1]);
        let CacheView::F16(halves) = cache.view(6) else { panic!("an f16 cache") };
        let mut read = vec![0.0; 6];
        rows_to_f32(halves, 3, &mut read, 3);
        assert_eq!(read[..5], [1.0, 1.0 + 2.0 / 1024.0, 65504.0, -65504.0, f16::from_f32(-3.0e-6).to_f32()]);
        assert!((read[5] - 0.1).abs() < 1e-4);
        assert_eq!(cache.bytes(), 12);
    }

    /// Whole eights go through F16C on x86-64: each value as `to_f16` rounds it.
    #[test]
    fn stores_of_many_values_convert_each_as_one() {
        let mut values: Vec<f32> = (0..4099u32).map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761) >> 1) * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        values.extend([f32::NAN, 65520.0, 65519.0, 5.96e-8, 2.98e-8, 1.0 + 1.0 / 2048.0, f32::INFINITY, -0.0]);
        let mut cache = CacheRows::new(values.len(), true).unwrap();
        cache.store(0, &values);
        let CacheView::F16(halves) = cache.view(values.len()) else { panic!("an f16 cache") };
        for (&x, &h) in values.iter().zip(halves) {
            assert!(h.to_bits() == to_f16(x).to_bits() || (x.is_nan() && h.is_nan()), "{x:e}: {h} vs {}", to_f16(x));
        }
        let mut read = vec![0.0; values.len()];
        rows_to_f32(halves, values.len(), &mut read, values.len());
        assert!(read.iter().zip(halves).all(|(&r, h)| r.to_bits() == h.to_f32().to_bits() || r.is_nan()));
    }
}
