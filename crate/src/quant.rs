//! Weight storage formats: ggml's block quantizations and plain floats.
//!
//! CPU dequantization here is the reference the GPU kernels are tested
//! against; it reproduces ggml's arithmetic (f16 scales widened to f32, then
//! `d * q` or `d * q + m` in f32), so dequantized weights are bit-exact.

use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use half::f16;

/// Dequantizes `bytes` holding `n` values of type `ty` into f32.
pub fn dequantize(ty: TensorType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let (block, block_bytes) = ty
        .block_layout()
        .ok_or_else(|| HearthError::Model(format!("tensor type {ty} is not supported")))?;
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    if !n.is_multiple_of(block) || bytes.len() != n / block * block_bytes {
        return Err(HearthError::Model(format!(
            "{ty}: {} bytes cannot hold {n} values",
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(n);
    let half_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    match ty {
        TensorType::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()))),
        TensorType::F16 => out.extend(bytes.chunks_exact(2).map(|b| half_at(b, 0))),
        TensorType::BF16 => out.extend(
            bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        // Block of 32: f16 scale d, then 16 bytes of nibbles. Value j (< 16)
        // is the low nibble of byte j, value j + 16 its high nibble; q - 8.
        TensorType::Q4_0 => {
            for b in bytes.chunks_exact(block_bytes) {
                let d = half_at(b, 0);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| d * ((q & 0x0f) as i32 - 8) as f32));
                out.extend(qs.iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
            }
        }
        // Block of 32: f16 scale d, f16 minimum m, 16 bytes of nibbles: d * q + m.
        TensorType::Q4_1 => {
            for b in bytes.chunks_exact(block_bytes) {
                let (d, m) = (half_at(b, 0), half_at(b, 2));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| d * (q & 0x0f) as f32 + m));
                out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
            }
        }
        // Block of 32: f16 scale d, 32 signed bytes: d * q.
        TensorType::Q8_0 => {
            for b in bytes.chunks_exact(block_bytes) {
                let d = half_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
            }
        }
        TensorType::Other(_) => unreachable!("block_layout() is None for other types"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_1_block_layout_matches_ggml() {
        // d = 0.5, m = -1: value = 0.5 * q - 1. Byte j holds q_j (low) and q_{j+16} (high).
        let mut block = vec![];
        block.extend(f16_bytes(0.5));
        block.extend(f16_bytes(-1.0));
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let out = dequantize(TensorType::Q4_1, &block, 32).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * j as f32 - 1.0);
            assert_eq!(out[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q4_0_and_q8_0_blocks() {
        let mut q4 = f16_bytes(2.0).to_vec();
        q4.extend([0x8f_u8; 16]); // low nibble 15 -> 7, high nibble 8 -> 0
        let out = dequantize(TensorType::Q4_0, &q4, 32).unwrap();
        assert!(out[..16].iter().all(|&v| v == 14.0) && out[16..].iter().all(|&v| v == 0.0));
        let mut q8 = f16_bytes(0.25).to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let out = dequantize(TensorType::Q8_0, &q8, 32).unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| v == 0.25 * (i as f32 - 16.0)));
    }

    #[test]
    fn sizes_are_checked() {
        assert!(dequantize(TensorType::Q4_1, &[0; 19], 32).is_err());
        assert!(dequantize(TensorType::Q8_0, &[0; 34], 31).is_err());
        assert!(dequantize(TensorType::Other(12), &[0; 4], 1).is_err());
        assert_eq!(dequantize(TensorType::F32, &1.5f32.to_le_bytes(), 1).unwrap(), vec![1.5]);
    }
}
