//! Weight matrices on the GPU in their quantized form.
//!
//! A tensor's ggml blocks are repacked at load into a struct-of-arrays layout
//! (all quant words, then all scales; see shaders/quant.wgsl) so every block
//! starts on a 4-byte boundary (ggml's Q8_0 and Q4_0 blocks, 34 and 18 bytes,
//! do not). The GPU holds the file's tensor bytes, give or take padding to a
//! whole word: nothing is expanded to f32.

use super::GpuContext;
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::weights::RawTensor;
use wgpu::util::DeviceExt;

/// A `rows × cols` weight matrix in GPU memory.
pub struct GpuMatrix {
    pub buffer: wgpu::Buffer,
    pub ty: TensorType,
    pub rows: usize,
    pub cols: usize,
    /// Word offset of the scales inside `buffer`.
    pub scale_base: u32,
}

impl GpuMatrix {
    pub fn upload(ctx: &GpuContext, name: &str, t: &RawTensor<'_>) -> Result<Self> {
        let (rows, cols) = match t.shape[..] {
            [rows, cols] => (rows, cols),
            [cols] => (1, cols),
            _ => return Err(HearthError::Model(format!("{name}: shape {:?} is not a matrix", t.shape))),
        };
        let (words, scale_base) = pack(t.ty, t.bytes, rows, cols).map_err(|e| HearthError::Model(format!("{name}: {e}")))?;
        let bytes = (words.len() * 4) as u64;
        if bytes > ctx.report.max_storage_buffer_binding_size {
            return Err(HearthError::Model(format!(
                "{name} needs a {bytes}-byte buffer; this GPU allows at most {}",
                ctx.report.max_storage_buffer_binding_size
            )));
        }
        let buffer = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::STORAGE,
        });
        Ok(GpuMatrix { buffer, ty: t.ty, rows, cols, scale_base })
    }

    pub fn size_bytes(&self) -> u64 {
        self.buffer.size()
    }
}

/// Repacks ggml blocks into the GPU layout. Returns the words and the word
/// offset where the scales begin.
pub fn pack(ty: TensorType, bytes: &[u8], rows: usize, cols: usize) -> std::result::Result<(Vec<u32>, u32), String> {
    if cols % 32 != 0 {
        return Err(format!("rows of {cols} values are not a multiple of 32"));
    }
    let (block, block_bytes) = ty.block_layout().ok_or_else(|| format!("tensor type {ty} is not supported on the GPU"))?;
    let n_blocks = rows * cols / 32;
    let expected = rows * cols / block as usize * block_bytes as usize;
    if bytes.len() != expected {
        return Err(format!("{} bytes, expected {expected} for {rows}×{cols} {ty}", bytes.len()));
    }
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let halves = |lo: &[u8], hi: &[u8]| u32::from(u16::from_le_bytes([lo[0], lo[1]])) | (u32::from(u16::from_le_bytes([hi[0], hi[1]])) << 16);
    let mut words = Vec::with_capacity(bytes.len() / 4 + 2);
    let scale_base;
    match ty {
        TensorType::F32 | TensorType::F16 => {
            words.extend(bytes.chunks_exact(4).map(word));
            scale_base = words.len();
        }
        TensorType::Q4_0 | TensorType::Q8_0 => {
            // [f16 d][quants]: quants of every block, then d's two per word.
            let blocks = || bytes.chunks_exact(block_bytes as usize);
            blocks().for_each(|b| words.extend(b[2..].chunks_exact(4).map(word)));
            scale_base = words.len();
            let ds: Vec<&[u8]> = blocks().map(|b| &b[..2]).collect();
            words.extend(ds.chunks(2).map(|p| halves(p[0], p.get(1).copied().unwrap_or(&[0, 0]))));
        }
        TensorType::Q4_1 => {
            // [f16 d][f16 m][16 bytes]: quants of every block, then (d, m) words.
            let blocks = || bytes.chunks_exact(block_bytes as usize);
            blocks().for_each(|b| words.extend(b[4..].chunks_exact(4).map(word)));
            scale_base = words.len();
            words.extend(blocks().map(|b| word(&b[..4])));
        }
        TensorType::BF16 | TensorType::Other(_) => return Err(format!("tensor type {ty} is not supported on the GPU")),
    }
    debug_assert!(scale_base == n_blocks * words_per_block(ty));
    Ok((words, scale_base as u32))
}

fn words_per_block(ty: TensorType) -> usize {
    match ty {
        TensorType::Q4_0 | TensorType::Q4_1 => 4,
        TensorType::Q8_0 => 8,
        TensorType::F16 => 16,
        _ => 32,
    }
}
