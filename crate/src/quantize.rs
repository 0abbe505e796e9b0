//! f32 weights to ggml's storage formats: the inverse of [`crate::quant`].
//!
//! `hearth convert` quantizes float checkpoints into the same block formats
//! GGUF files carry, so one set of GPU kernels serves both inputs. The
//! arithmetic is that of ggml's *reference* quantizers
//! (`quantize_row_q4_0_ref`, `quantize_row_q4_1_ref`, `quantize_row_q8_0_ref`
//! in ggml-quants.c), the ones llama.cpp uses for deterministic model files:
//! the same inputs give the same bytes as `llama-quantize` would write with
//! them, including ggml's quirks (Q4_0's scale comes from the value of
//! largest magnitude *with its sign*, so the opposite extreme is clipped to
//! 7 instead of 8 steps).
//!
//! Every scale is computed in f32 and only then stored as f16, as ggml does:
//! the codes are chosen with the unrounded scale.
//!
//! Unlike ggml, non-finite inputs and scales that f16 cannot hold are errors
//! rather than blocks that silently dequantize to inf or NaN.

use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use half::{bf16, f16};

/// Values per block of every block format here (ggml's QK4_0, QK4_1, QK8_0).
const BLOCK: usize = 32;

/// Stores `values` as `ty`: ggml's block layout for Q4_0, Q4_1 and Q8_0,
/// little-endian halves for F16 and BF16, the f32 bytes themselves for F32.
///
/// Block formats need a multiple of 32 values; the caller quantizes whole
/// rows, so a row length that is not a multiple is reported as such.
pub fn quantize(ty: TensorType, values: &[f32]) -> Result<Vec<u8>> {
    match ty {
        TensorType::F32 => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        TensorType::F16 => Ok(values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect()),
        TensorType::BF16 => Ok(values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect()),
        TensorType::Q4_0 => quantize_blocks(ty, values, 18, q4_0_block),
        TensorType::Q4_1 => quantize_blocks(ty, values, 20, q4_1_block),
        TensorType::Q8_0 => quantize_blocks(ty, values, 34, q8_0_block),
        TensorType::Other(_) => Err(HearthError::InvalidArgument(format!("cannot quantize to {ty}"))),
    }
}

/// Cuts `values` into blocks of 32 and writes each with `block`.
fn quantize_blocks(
    ty: TensorType,
    values: &[f32],
    block_bytes: usize,
    block: fn(&[f32], &mut Vec<u8>),
) -> Result<Vec<u8>> {
    if !values.len().is_multiple_of(BLOCK) {
        return Err(HearthError::InvalidArgument(format!(
            "{ty} stores blocks of {BLOCK} values; {} values are not a whole number of blocks",
            values.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(HearthError::InvalidArgument(format!("cannot quantize to {ty}: value {i} is {}", values[i])));
    }
    let mut out = Vec::with_capacity(values.len() / BLOCK * block_bytes);
    for (i, chunk) in values.chunks_exact(BLOCK).enumerate() {
        let start = out.len();
        block(chunk, &mut out);
        check_scales(ty, &out[start..], i)?;
    }
    Ok(out)
}

/// A block's f16 scale (and Q4_1's minimum) must be finite: values beyond
/// f16's range (about 65504 × the block's step) cannot be stored.
fn check_scales(ty: TensorType, block: &[u8], index: usize) -> Result<()> {
    let halves = if ty == TensorType::Q4_1 { 2 } else { 1 };
    for h in 0..halves {
        let v = f16::from_le_bytes([block[2 * h], block[2 * h + 1]]);
        if !v.is_finite() {
            return Err(HearthError::InvalidArgument(format!(
                "cannot quantize to {ty}: block {index} needs a scale beyond f16's range"
            )));
        }
    }
    Ok(())
}

/// Q4_0: `x ≈ d * (q - 8)`, q in 0..=15. The scale maps the value of largest
/// magnitude to -8 exactly (d = max / -8, keeping max's sign).
fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        // Strictly greater: the first of equal magnitudes wins, as in ggml.
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    // The C code casts to int8_t (truncation toward zero; the sum is >= 0.5)
    // and clips at 15: the value opposite `max` lands on 16.5.
    let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    pack_nibbles(x, code, out);
}

/// Q4_1: `x ≈ d * q + m`, q in 0..=15, m the block's minimum and d a
/// fifteenth of its range, codes rounded half up.
fn q4_1_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(f16::from_f32(min).to_le_bytes());
    let code = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    pack_nibbles(x, code, out);
}

/// Q8_0: `x ≈ d * q`, q in -127..=127, d = amax / 127, codes rounded half
/// away from zero (C's `roundf`, Rust's `f32::round`).
fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// ggml's nibble order: byte j holds value j in its low nibble and value
/// j + 16 in its high nibble.
fn pack_nibbles(x: &[f32], code: impl Fn(f32) -> u8, out: &mut Vec<u8>) {
    let (low, high) = x.split_at(BLOCK / 2);
    out.extend(low.iter().zip(high).map(|(&a, &b)| code(a) | (code(b) << 4)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;
    use rand::{Rng, SeedableRng};

    fn half(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    fn scale(block: &[u8], at: usize) -> f32 {
        f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
    }

    /// Blocks of uniform values at magnitudes from 1e-2 to 1e4 (scales stay
    /// normal f16 numbers), some shifted off zero (where Q4_1's minimum matters).
    fn random_values(seed: u64, blocks: usize) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..blocks)
            .flat_map(|b| {
                let magnitude = 10f32.powi(b as i32 % 7 - 2);
                let shift = if b % 3 == 0 { 2.0 * magnitude } else { 0.0 };
                (0..BLOCK).map(|_| shift + magnitude * (rng.random::<f32>() * 2.0 - 1.0)).collect::<Vec<_>>()
            })
            .collect()
    }

    fn round_trip(ty: TensorType, values: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let bytes = quantize(ty, values).unwrap();
        let back = dequantize(ty, &bytes, values.len()).unwrap();
        assert!(back.iter().all(|v| v.is_finite()), "{ty}: non-finite output");
        (bytes, back)
    }

    #[test]
    fn q4_0_hand_computed_block() {
        // amax 8 first reached by -8: d = -8 / -8 = 1. The +8 opposite it
        // lands on 16.5 and is clipped to 15 (value 7), as in ggml.
        let mut x = [0.0f32; 32];
        x[0] = -8.0;
        x[1] = 8.0;
        x[16] = 4.0;
        x[17] = -2.4; // -2.4 + 8.5 = 6.1 -> 6
        let bytes = quantize(TensorType::Q4_0, &x).unwrap();
        let mut expected = half(1.0).to_vec();
        expected.extend([0xC0, 0x6F]); // (0 | 12 << 4), (15 | 6 << 4)
        expected.extend([0x88; 14]); // zeros are code 8
        assert_eq!(bytes, expected);
        let back = dequantize(TensorType::Q4_0, &bytes, 32).unwrap();
        assert_eq!((back[0], back[1], back[16], back[17], back[2]), (-8.0, 7.0, 4.0, -2.0, 0.0));

        // A positive extreme gives a negative scale.
        let mut x = [0.0f32; 32];
        x[5] = 8.0;
        let bytes = quantize(TensorType::Q4_0, &x).unwrap();
        assert_eq!(bytes[..2], half(-1.0));
        assert_eq!(bytes[2 + 5], 0x80, "8 * -1 + 8.5 = 0.5 -> code 0");
    }

    #[test]
    fn q4_1_hand_computed_block() {
        // Values -1 + 0.5 * (j % 16): m = -1, d = 7.5 / 15 = 0.5, code j % 16.
        let x: Vec<f32> = (0..32).map(|j| -1.0 + 0.5 * (j % 16) as f32).collect();
        let bytes = quantize(TensorType::Q4_1, &x).unwrap();
        let mut expected = half(0.5).to_vec();
        expected.extend(half(-1.0));
        expected.extend((0..16u8).map(|j| j * 0x11));
        assert_eq!(bytes, expected);
        assert_eq!(dequantize(TensorType::Q4_1, &bytes, 32).unwrap(), x);
    }

    #[test]
    fn q8_0_hand_computed_block() {
        // amax 127: d = 1. Halves round away from zero.
        let mut x: Vec<f32> = (0..32).map(|j| j as f32 - 15.5).collect();
        x[0] = -127.0;
        let bytes = quantize(TensorType::Q8_0, &x).unwrap();
        assert_eq!(bytes[..2], half(1.0));
        let codes: Vec<i8> = bytes[2..].iter().map(|&b| b as i8).collect();
        assert_eq!(codes[..4], [-127, -15, -14, -13]);
        assert_eq!(codes[14..18], [-2, -1, 1, 2], "-1.5, -0.5, 0.5, 1.5");
        assert_eq!(codes[31], 16);
    }

    #[test]
    fn all_zero_blocks() {
        let zeros = [0.0f32; 64];
        // Q4_0's d = 0 / -8 is -0 in IEEE arithmetic, in C as in Rust: f16 0x8000.
        let q4_0_block = [[0x00, 0x80].as_slice(), &[0x88; 16]].concat();
        assert_eq!(quantize(TensorType::Q4_0, &zeros).unwrap(), q4_0_block.repeat(2));
        assert_eq!(quantize(TensorType::Q4_1, &zeros).unwrap(), vec![0; 40]);
        assert_eq!(quantize(TensorType::Q8_0, &zeros).unwrap(), vec![0; 68]);
        for ty in [TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0] {
            assert_eq!(round_trip(ty, &zeros).1, zeros, "{ty}");
        }
    }

    #[test]
    fn negative_extreme_blocks() {
        // A constant negative block is exact in every format.
        let x = [-1.0f32; 32];
        assert_eq!(round_trip(TensorType::Q4_0, &x).1, x, "d = 1/8, code 0");
        assert_eq!(round_trip(TensorType::Q4_1, &x).1, x, "d = 0, m = -1");
        let back = round_trip(TensorType::Q8_0, &x).1;
        assert!(back.iter().all(|&v| (v + 1.0).abs() < 1e-3));
        // One large negative outlier among small values: the outlier is
        // exact (up to f16) and the small values collapse toward zero.
        let mut x: Vec<f32> = (0..32).map(|j| 0.01 * j as f32).collect();
        x[7] = -1000.0;
        for ty in [TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0] {
            let (bytes, back) = round_trip(ty, &x);
            assert!((back[7] + 1000.0).abs() <= 1.0, "{ty}: {}", back[7]);
            let step = scale(&bytes, 0).abs();
            assert!(back.iter().zip(&x).all(|(b, v)| (b - v).abs() <= step), "{ty}");
        }
    }

    #[test]
    fn q4_0_round_trip_error_is_half_a_step_except_the_clipped_extreme() {
        let x = random_values(1, 90);
        let (bytes, back) = round_trip(TensorType::Q4_0, &x);
        for (b, block) in bytes.chunks_exact(18).enumerate() {
            let d = scale(block, 0);
            for j in 0..BLOCK {
                let (v, err) = (x[b * BLOCK + j], (back[b * BLOCK + j] - x[b * BLOCK + j]).abs());
                // Up to 8 steps of f16's rounding of d come on top of half a step.
                let clipped = v / d + 8.5 >= 16.0 - 1e-3;
                let bound = if clipped { 1.01 } else { 0.51 } * d.abs();
                assert!(err <= bound, "block {b} value {j}: {v} -> {}, d = {d}", back[b * BLOCK + j]);
            }
        }
    }

    #[test]
    fn q4_1_and_q8_0_round_trip_error_is_half_a_step() {
        let x = random_values(2, 90);
        let (bytes, back) = round_trip(TensorType::Q4_1, &x);
        for (b, block) in bytes.chunks_exact(20).enumerate() {
            let (d, m) = (scale(block, 0), scale(block, 2));
            // f16 rounding of d (up to 15 steps of it) and of m.
            let bound = 0.51 * d + m.abs() / 1024.0;
            for j in b * BLOCK..(b + 1) * BLOCK {
                assert!((back[j] - x[j]).abs() <= bound, "block {b}: {} -> {}", x[j], back[j]);
            }
        }
        let (bytes, back) = round_trip(TensorType::Q8_0, &x);
        for (b, block) in bytes.chunks_exact(34).enumerate() {
            // Up to 127 times f16's relative rounding (2^-11) of d.
            let bound = d_bound(scale(block, 0));
            for j in b * BLOCK..(b + 1) * BLOCK {
                assert!((back[j] - x[j]).abs() <= bound, "block {b}: {} -> {}", x[j], back[j]);
            }
        }
    }

    fn d_bound(d: f32) -> f32 {
        d * (0.5 + 127.0 / 2048.0) * 1.001
    }

    #[test]
    fn floats_are_stored_as_is_or_rounded_to_half() {
        let x = [1.0f32, -2.5, 1e-3, 70000.0, 0.1];
        assert_eq!(quantize(TensorType::F32, &x).unwrap(), x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
        let back = round_trip(TensorType::F16, &x[..3]).1;
        assert_eq!(back, x[..3].iter().map(|&v| f16::from_f32(v).to_f32()).collect::<Vec<_>>());
        let back = dequantize(TensorType::BF16, &quantize(TensorType::BF16, &x).unwrap(), 5).unwrap();
        assert_eq!(back, x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect::<Vec<_>>());
    }

    #[test]
    fn bad_lengths_and_values_are_errors() {
        for ty in [TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0] {
            let err = quantize(ty, &[0.0; 33]).unwrap_err();
            assert!(matches!(err, HearthError::InvalidArgument(_)) && err.to_string().contains("33"), "{err}");
            let mut x = [0.5f32; 32];
            x[3] = f32::NAN;
            assert!(matches!(quantize(ty, &x), Err(HearthError::InvalidArgument(_))), "{ty}: NaN");
            assert!(matches!(quantize(ty, &[1e9; 32]), Err(HearthError::InvalidArgument(_))), "{ty}: f16 overflow");
        }
        assert!(quantize(TensorType::Other(12), &[0.0; 32]).is_err());
        assert_eq!(quantize(TensorType::Q8_0, &[]).unwrap(), Vec::<u8>::new());
    }
}
