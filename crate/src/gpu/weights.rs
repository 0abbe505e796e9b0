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

/// A `rows × cols` weight matrix in GPU memory (cloning shares the buffer).
#[derive(Clone)]
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
        // write_buffer rather than create_buffer_init: on WebGPU the latter
        // keeps a second copy of the bytes in wasm memory while mapped.
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
        Ok(GpuMatrix { buffer, ty: t.ty, rows, cols, scale_base })
    }

    pub fn size_bytes(&self) -> u64 {
        self.buffer.size()
    }
}

/// How a `rows × cols` tensor of type `ty` lies in the GPU layout: the
/// file's bytes per 32-value block, how many of them are the scale, the quant
/// words per block, and the buffer's length in words with where the scales
/// begin. Also what the memory plan counts, so the two cannot disagree.
pub struct Packing {
    file_block: usize,
    scale_bytes: usize,
    words_per_block: usize,
    pub scale_base: usize,
    pub words: usize,
}

impl Packing {
    pub fn of(ty: TensorType, rows: usize, cols: usize) -> std::result::Result<Self, String> {
        if !cols.is_multiple_of(32) {
            return Err(format!("rows of {cols} values are not a multiple of 32"));
        }
        // Byte layout of one 32-value block in the file: where its scale bytes
        // and its quant bytes sit (F16/F32 rows are cut into 32-value blocks).
        let (file_block, scale_bytes): (usize, usize) = match ty {
            TensorType::Q4_0 | TensorType::Q8_0 => (ty.block_layout().map_or(0, |(_, b)| b as usize), 2),
            TensorType::Q4_1 => (ty.block_layout().map_or(0, |(_, b)| b as usize), 4),
            TensorType::F16 => (64, 0),
            TensorType::F32 => (128, 0),
            _ => return Err(format!("tensor type {ty} is not supported on the GPU")),
        };
        let words_per_block = (file_block - scale_bytes) / 4;
        let n_blocks = rows.checked_mul(cols / 32).ok_or("the tensor's size overflows")?;
        let scale_words = match ty {
            TensorType::Q4_1 => n_blocks,
            TensorType::Q4_0 | TensorType::Q8_0 => n_blocks.div_ceil(2),
            _ => 0,
        };
        let scale_base = n_blocks.checked_mul(words_per_block).ok_or("the tensor's size overflows")?;
        let words = scale_base.checked_add(scale_words).ok_or("the tensor's size overflows")?;
        Ok(Packing { file_block, scale_bytes, words_per_block, scale_base, words })
    }

    /// Bytes of the GPU buffer.
    pub fn bytes(&self) -> u64 {
        self.words as u64 * 4
    }
}

/// Repacks ggml blocks into the GPU layout (shaders/quant.wgsl): the quant
/// words (see [`quant_word_index`]), then the scales,
/// index `k * rows + r`. Returns the words and where the scales begin.
pub fn pack(ty: TensorType, bytes: &[u8], rows: usize, cols: usize) -> std::result::Result<(Vec<u32>, u32), String> {
    let Packing { file_block, scale_bytes, words_per_block, scale_base, words: len } = Packing::of(ty, rows, cols)?;
    let expected = rows * cols / 32 * file_block;
    if bytes.len() != expected {
        return Err(format!("{} bytes, expected {expected} for {rows}×{cols} {ty}", bytes.len()));
    }
    let blocks_per_row = cols / 32;
    let mut words = vec![0u32; len];
    for r in 0..rows {
        for k in 0..blocks_per_row {
            let b = &bytes[(r * blocks_per_row + k) * file_block..][..file_block];
            let quants = &b[scale_bytes..];
            for w in 0..words_per_block {
                words[quant_word_index(k, w, r, rows, words_per_block)] = u32::from_le_bytes(quants[4 * w..4 * w + 4].try_into().unwrap());
            }
            let s = k * rows + r; // scale index
            match scale_bytes {
                4 => words[scale_base + s] = u32::from_le_bytes(b[..4].try_into().unwrap()),
                2 => words[scale_base + s / 2] |= u32::from(u16::from_le_bytes([b[0], b[1]])) << (16 * (s % 2)),
                _ => {}
            }
        }
    }
    Ok((words, scale_base as u32))
}

/// Where word `w` of block `k` of row `r` lies (shaders/quant.wgsl `qword`):
/// a block's words go in groups of four (one `vec4<u32>`, 16 bytes), and
/// group `g` of block `k` of every row are side by side, so that threads on
/// neighbouring rows read neighbouring 16-byte words.
fn quant_word_index(k: usize, w: usize, r: usize, rows: usize, words_per_block: usize) -> usize {
    ((k * (words_per_block / 4) + w / 4) * rows + r) * 4 + w % 4
}

/// One uploaded tensor: a matrix in its quantized form, or a vector (norm
/// weights) widened to f32.
enum GpuTensor {
    Matrix(GpuMatrix),
    Vector { buffer: wgpu::Buffer, len: usize },
}

/// A model's weights on the GPU, uploaded one tensor at a time in any order
/// (a web package's shards arrive as they download) and then taken by the
/// model at load. Only one tensor's repacked bytes are on the CPU at a time.
#[derive(Default)]
pub struct GpuWeights {
    tensors: std::collections::HashMap<String, GpuTensor>,
    bytes: u64,
}

impl GpuWeights {
    /// Uploads every tensor in `names` from `src`.
    pub fn upload_all(ctx: &GpuContext, src: &dyn crate::weights::TensorSource, names: &[String]) -> Result<Self> {
        let mut weights = GpuWeights::default();
        for name in names {
            weights.add(ctx, name, &src.tensor(name)?)?;
        }
        Ok(weights)
    }

    /// Uploads one tensor: a matrix (two dimensions) as stored, a vector as f32.
    pub fn add(&mut self, ctx: &GpuContext, name: &str, t: &RawTensor<'_>) -> Result<()> {
        let tensor = match t.shape.len() {
            2 => GpuTensor::Matrix(GpuMatrix::upload(ctx, name, t)?),
            1 => {
                let values = crate::quant::dequantize(t.ty, t.bytes, t.elements())
                    .map_err(|e| HearthError::Model(format!("{name}: {e}")))?;
                GpuTensor::Vector { buffer: super::storage_from(ctx, name, &values), len: values.len() }
            }
            _ => return Err(HearthError::Model(format!("{name}: shape {:?} is neither a matrix nor a vector", t.shape))),
        };
        let size = match &tensor {
            GpuTensor::Matrix(m) => m.size_bytes(),
            GpuTensor::Vector { buffer, .. } => buffer.size(),
        };
        if let Some(old) = self.tensors.insert(name.to_string(), tensor) {
            self.bytes -= match old {
                GpuTensor::Matrix(m) => m.size_bytes(),
                GpuTensor::Vector { buffer, .. } => buffer.size(),
            };
        }
        self.bytes += size;
        Ok(())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// GPU bytes of the weights uploaded so far.
    pub fn size_bytes(&self) -> u64 {
        self.bytes
    }

    /// The `rows × cols` matrix `name`.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<GpuMatrix> {
        match self.tensors.get(name) {
            Some(GpuTensor::Matrix(m)) if (m.rows, m.cols) == (rows, cols) => Ok(m.clone()),
            Some(GpuTensor::Matrix(m)) => Err(HearthError::Model(format!("{name} is {}×{}, expected {rows}×{cols}", m.rows, m.cols))),
            Some(GpuTensor::Vector { .. }) => Err(HearthError::Model(format!("{name} is a vector, expected a {rows}×{cols} matrix"))),
            None => Err(HearthError::Model(format!("tensor {name} is missing"))),
        }
    }

    /// The vector `name` of `len` values.
    pub fn vector(&self, name: &str, len: usize) -> Result<wgpu::Buffer> {
        match self.tensors.get(name) {
            Some(GpuTensor::Vector { buffer, len: n }) if *n == len => Ok(buffer.clone()),
            Some(GpuTensor::Vector { len: n, .. }) => Err(HearthError::Model(format!("{name} has {n} values, expected {len}"))),
            Some(GpuTensor::Matrix(_)) => Err(HearthError::Model(format!("{name} is a matrix, expected a vector of {len}"))),
            None => Err(HearthError::Model(format!("tensor {name} is missing"))),
        }
    }
}
