//! The few 128-bit SIMD operations the CPU kernels need, with one meaning on
//! every target: wasm `simd128`, x86-64 SSE2 (part of the x86-64 baseline, so
//! no runtime detection), and plain Rust elsewhere. The heart is the pairwise
//! i16 multiply-add (`i32x4.dot_i16x8_s` in wasm, `pmaddwd` on x86): 4-bit or
//! 8-bit weights widened to i16, times activations in 16-bit fixed point.
//!
//! A weight block is 32 values in ggml's order; `unpack_*` widen it to four
//! `I16x8` of elements 0-7, 8-15, 16-23, 24-31.
//!
//! The kernels are generic over `Isa`: `Base` (the 128-bit code here, always
//! available) and, on x86-64 CPUs that have it, `Avx2` (256-bit, picked at
//! run time by `has_avx2`).

/// The operations of one block product, for one instruction set.
pub trait Isa {
    /// A block of 32 weights widened to i16.
    type Block: Copy;
    /// A vector of f32 partial sums.
    type Acc: Copy;
    /// Rows of weights a matrix product's tile takes at once (each block
    /// of activations is loaded once for them all): as many as the
    /// registers hold with four tokens' sums, 1 or 2 (`CpuMatrix::rows`
    /// takes no more). (Two rows in wasm, even for one token, decoded
    /// 10-20 % slower in Chromium: V8 has 16 registers and each row's
    /// block takes four.)
    const TILE_ROWS: usize;
    fn unpack_q4(qs: &[u8; 16]) -> Self::Block;
    fn unpack_q8(qs: &[i8; 32]) -> Self::Block;
    /// acc + scale · (w · x), the integer dot product exact.
    fn add_dot(acc: Self::Acc, w: &Self::Block, x: &[i16; 32], scale: f32) -> Self::Acc;
    fn zero() -> Self::Acc;
    fn hsum(acc: Self::Acc) -> f32;
}

/// The 128-bit code of this target (wasm simd128, SSE2 or scalar).
pub struct Base;

impl Isa for Base {
    type Block = [imp::I16x8; 4];
    type Acc = imp::F32x4;
    const TILE_ROWS: usize = 1;
    #[inline(always)]
    fn unpack_q4(qs: &[u8; 16]) -> Self::Block {
        imp::unpack_q4(qs)
    }
    #[inline(always)]
    fn unpack_q8(qs: &[i8; 32]) -> Self::Block {
        imp::unpack_q8(qs)
    }
    #[inline(always)]
    fn add_dot(acc: Self::Acc, w: &Self::Block, x: &[i16; 32], scale: f32) -> Self::Acc {
        imp::add_scaled(acc, imp::dot(w, x), scale)
    }
    #[inline(always)]
    fn zero() -> Self::Acc {
        imp::zero()
    }
    #[inline(always)]
    fn hsum(acc: Self::Acc) -> f32 {
        imp::hsum(acc)
    }
}

/// Whether this CPU runs the `Avx2` kernels (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Whether this CPU converts f16 to f32 eight at a time (F16C, with AVX; checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_f16c() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx") && is_x86_feature_detected!("f16c"))
}

/// The name of the instruction set the kernels use on this machine.
pub fn name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return "AVX2";
    }
    NAME
}

/// 256-bit x86 kernels. Only valid inside functions compiled with
/// `#[target_feature(enable = "avx2,fma")]` after `has_avx2()` said yes: the
/// methods are inlined there, where the intrinsics are allowed.
#[cfg(target_arch = "x86_64")]
pub struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    type Block = [core::arch::x86_64::__m256i; 2];
    type Acc = core::arch::x86_64::__m256;
    const TILE_ROWS: usize = 2;
    // SAFETY (every method): reached only through `has_avx2()`; loads read
    // exactly the arrays they are given.
    #[inline(always)]
    fn unpack_q4(qs: &[u8; 16]) -> Self::Block {
        use core::arch::x86_64::*;
        unsafe {
            let v = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
            let mask = _mm_set1_epi8(0x0f);
            let lo = _mm_and_si128(v, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
            [_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi)]
        }
    }
    #[inline(always)]
    fn unpack_q8(qs: &[i8; 32]) -> Self::Block {
        use core::arch::x86_64::*;
        unsafe {
            let a = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
            let b = _mm_loadu_si128(qs.as_ptr().add(16) as *const __m128i);
            [_mm256_cvtepi8_epi16(a), _mm256_cvtepi8_epi16(b)]
        }
    }
    #[inline(always)]
    fn add_dot(acc: Self::Acc, w: &Self::Block, x: &[i16; 32], scale: f32) -> Self::Acc {
        use core::arch::x86_64::*;
        unsafe {
            let p = x.as_ptr() as *const __m256i;
            let sum = _mm256_add_epi32(_mm256_madd_epi16(w[0], _mm256_loadu_si256(p)), _mm256_madd_epi16(w[1], _mm256_loadu_si256(p.add(1))));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(scale), acc)
        }
    }
    #[inline(always)]
    fn zero() -> Self::Acc {
        unsafe { core::arch::x86_64::_mm256_setzero_ps() }
    }
    #[inline(always)]
    fn hsum(acc: Self::Acc) -> f32 {
        let mut lanes = [0f32; 8];
        unsafe { core::arch::x86_64::_mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        lanes.iter().sum()
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;
    pub const NAME: &str = "wasm simd128";
    pub type I16x8 = v128;
    pub type I32x4 = v128;
    pub type F32x4 = v128;

    #[inline(always)]
    pub fn unpack_q4(qs: &[u8; 16]) -> [I16x8; 4] {
        // SAFETY: `qs` is 16 readable bytes; v128_load has no alignment requirement.
        let v = unsafe { v128_load(qs.as_ptr() as *const v128) };
        let lo = v128_and(v, u8x16_splat(0x0f));
        let hi = u8x16_shr(v, 4);
        [u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo), u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi)]
    }

    #[inline(always)]
    pub fn unpack_q8(qs: &[i8; 32]) -> [I16x8; 4] {
        // SAFETY: `qs` is 32 readable bytes.
        let (a, b) = unsafe { (v128_load(qs.as_ptr() as *const v128), v128_load(qs.as_ptr().add(16) as *const v128)) };
        [i16x8_extend_low_i8x16(a), i16x8_extend_high_i8x16(a), i16x8_extend_low_i8x16(b), i16x8_extend_high_i8x16(b)]
    }

    #[inline(always)]
    pub fn dot(w: &[I16x8; 4], x: &[i16; 32]) -> I32x4 {
        let p = x.as_ptr() as *const v128;
        // SAFETY: `x` is 64 readable bytes.
        let (x0, x1, x2, x3) = unsafe { (v128_load(p), v128_load(p.add(1)), v128_load(p.add(2)), v128_load(p.add(3))) };
        let a = i32x4_add(i32x4_dot_i16x8(w[0], x0), i32x4_dot_i16x8(w[1], x1));
        let b = i32x4_add(i32x4_dot_i16x8(w[2], x2), i32x4_dot_i16x8(w[3], x3));
        i32x4_add(a, b)
    }

    #[inline(always)]
    pub fn zero() -> F32x4 {
        f32x4_splat(0.0)
    }

    #[inline(always)]
    pub fn add_scaled(acc: F32x4, v: I32x4, scale: f32) -> F32x4 {
        f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(v), f32x4_splat(scale)))
    }

    #[inline(always)]
    pub fn hsum(v: F32x4) -> f32 {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::*;
    pub const NAME: &str = "SSE2";
    pub type I16x8 = __m128i;
    pub type I32x4 = __m128i;
    pub type F32x4 = __m128;

    // SAFETY (whole module): SSE2 is part of the x86-64 baseline, and every
    // load reads exactly the bytes of the array it is given (unaligned loads).

    #[inline(always)]
    pub fn unpack_q4(qs: &[u8; 16]) -> [I16x8; 4] {
        unsafe {
            let v = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
            let mask = _mm_set1_epi8(0x0f);
            let lo = _mm_and_si128(v, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
            let z = _mm_setzero_si128();
            [_mm_unpacklo_epi8(lo, z), _mm_unpackhi_epi8(lo, z), _mm_unpacklo_epi8(hi, z), _mm_unpackhi_epi8(hi, z)]
        }
    }

    #[inline(always)]
    pub fn unpack_q8(qs: &[i8; 32]) -> [I16x8; 4] {
        unsafe {
            let a = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
            let b = _mm_loadu_si128(qs.as_ptr().add(16) as *const __m128i);
            // Sign extension without SSE4.1: put each byte in a word's high half, shift down.
            let widen_lo = |v| _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
            let widen_hi = |v| _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
            [widen_lo(a), widen_hi(a), widen_lo(b), widen_hi(b)]
        }
    }

    #[inline(always)]
    pub fn dot(w: &[I16x8; 4], x: &[i16; 32]) -> I32x4 {
        unsafe {
            let p = x.as_ptr() as *const __m128i;
            let a = _mm_add_epi32(_mm_madd_epi16(w[0], _mm_loadu_si128(p)), _mm_madd_epi16(w[1], _mm_loadu_si128(p.add(1))));
            let b = _mm_add_epi32(_mm_madd_epi16(w[2], _mm_loadu_si128(p.add(2))), _mm_madd_epi16(w[3], _mm_loadu_si128(p.add(3))));
            _mm_add_epi32(a, b)
        }
    }

    #[inline(always)]
    pub fn zero() -> F32x4 {
        unsafe { _mm_setzero_ps() }
    }

    #[inline(always)]
    pub fn add_scaled(acc: F32x4, v: I32x4, scale: f32) -> F32x4 {
        unsafe { _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(v), _mm_set1_ps(scale))) }
    }

    #[inline(always)]
    pub fn hsum(v: F32x4) -> f32 {
        let mut lanes = [0f32; 4];
        unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), v) };
        (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    }
}

#[cfg(not(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64")))]
mod imp {
    pub const NAME: &str = "scalar";
    pub type I16x8 = [i16; 8];
    pub type I32x4 = [i32; 4];
    pub type F32x4 = [f32; 4];

    fn eights(v: [i16; 32]) -> [I16x8; 4] {
        std::array::from_fn(|k| std::array::from_fn(|i| v[8 * k + i]))
    }

    pub fn unpack_q4(qs: &[u8; 16]) -> [I16x8; 4] {
        eights(std::array::from_fn(|i| if i < 16 { (qs[i] & 0x0f) as i16 } else { (qs[i - 16] >> 4) as i16 }))
    }

    pub fn unpack_q8(qs: &[i8; 32]) -> [I16x8; 4] {
        eights(std::array::from_fn(|i| qs[i] as i16))
    }

    pub fn dot(w: &[I16x8; 4], x: &[i16; 32]) -> I32x4 {
        let mut out = [0i32; 4];
        for (k, wk) in w.iter().enumerate() {
            for (i, &wi) in wk.iter().enumerate() {
                out[i / 2] += wi as i32 * x[8 * k + i] as i32;
            }
        }
        out
    }

    pub fn zero() -> F32x4 {
        [0.0; 4]
    }

    pub fn add_scaled(acc: F32x4, v: I32x4, scale: f32) -> F32x4 {
        std::array::from_fn(|i| acc[i] + v[i] as f32 * scale)
    }

    pub fn hsum(v: F32x4) -> f32 {
        (v[0] + v[1]) + (v[2] + v[3])
    }
}

pub use imp::*;

/// Σ a·b in eight interleaved partial sums, which the compiler turns into
/// SIMD lanes on every target (8 inside an AVX2 function such as
/// `Head::attend_avx2` or `rows_avx2`, two simd128 vectors in wasm, SSE2
/// otherwise): a single running sum would have to stay scalar, as f32
/// addition is not associative.
#[inline(always)]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ a, in eight interleaved partial sums (as `dot_f32`).
#[inline(always)]
pub fn sum_f32(a: &[f32]) -> f32 {
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut acc = [0f32; 8];
    for x in chunks {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The largest of a (-∞ for none), in eight interleaved lanes: one running
/// maximum would be a chain of dependent comparisons.
#[inline(always)]
pub fn max_f32(a: &[f32]) -> f32 {
    let chunks = a.chunks_exact(8);
    let mut max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut acc = [f32::NEG_INFINITY; 8];
    for x in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(x[i]);
        }
    }
    for m in acc {
        max = max.max(m);
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four lanes' sum, through f32 (exact to f32's 24 bits per lane).
    fn assert_lanes_sum(v: I32x4, want: i64) {
        let got = hsum(add_scaled(zero(), v, 1.0)) as f64;
        assert!((got - want as f64).abs() <= want.abs() as f64 * 1e-6, "{got} != {want}");
    }

    #[test]
    fn q4_block_dot_matches_scalar() {
        let qs: [u8; 16] = std::array::from_fn(|i| (i as u8 * 37 + 11) ^ 0x5a);
        let x: [i16; 32] = std::array::from_fn(|i| (i as i16 - 16) * 1021);
        let want: i64 = (0..32)
            .map(|i| {
                let q = if i < 16 { qs[i] & 0x0f } else { qs[i - 16] >> 4 };
                q as i64 * x[i] as i64
            })
            .sum();
        assert_lanes_sum(dot(&unpack_q4(&qs), &x), want);
    }

    #[test]
    fn q8_block_dot_matches_scalar_with_extremes() {
        let qs: [i8; 32] = std::array::from_fn(|i| if i % 3 == 0 { -128 } else { (i as i8).wrapping_mul(9) });
        let x: [i16; 32] = std::array::from_fn(|i| if i % 2 == 0 { 32767 } else { -32767 });
        let want: i64 = (0..32).map(|i| qs[i] as i64 * x[i] as i64).sum();
        assert_lanes_sum(dot(&unpack_q8(&qs), &x), want);
    }

    #[test]
    fn float_sum_and_max_handle_tails() {
        for n in [0, 3, 11, 64, 101] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 - 9.5).collect();
            let want: f64 = a.iter().map(|&x| x as f64).sum();
            assert!((sum_f32(&a) as f64 - want).abs() <= 1e-4, "{n}");
            assert_eq!(max_f32(&a), a.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)), "{n}");
        }
    }

    #[test]
    fn float_dot_handles_tails() {
        for n in [3, 11, 64, 101] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let b: Vec<f32> = (0..n).map(|i| 3.0 - i as f32).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot_f32(&a, &b) as f64 - want).abs() <= want.abs() * 1e-6 + 1e-4, "{n}");
        }
    }
}
