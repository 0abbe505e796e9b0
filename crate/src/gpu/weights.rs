//! Weight matrices on the GPU in their quantized form.
//!
//! A tensor's ggml blocks are repacked at load into a struct-of-arrays layout
//! (all quant words, then all scales; see shaders/quant.wgsl) so every block
//! starts on a 4-byte boundary (ggml's Q8_0 and Q4_0 blocks, 34 and 18 bytes,
//! do not). The GPU holds the file's tensor bytes, give or take padding to a
//! whole word: nothing is expanded to f32. Matrices that one dispatch
//! computes together (a layer's Q, K and V; its FFN gate and up) are packed
//! as one, stacked, in one buffer.

use super::GpuContext;
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::weights::RawTensor;
use std::collections::HashMap;

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
    /// A new buffer holding `words` (`rows × cols` of type `ty`, packed).
    fn from_words(ctx: &GpuContext, name: &str, ty: TensorType, words: &[u32], scale_base: u32, rows: usize, cols: usize) -> Result<Self> {
        let size = (words.len() * 4) as u64;
        if size > ctx.report.max_storage_buffer_binding_size {
            return Err(HearthError::Model(format!(
                "{name} needs a {size}-byte buffer; this GPU allows at most {}",
                ctx.report.max_storage_buffer_binding_size
            )));
        }
        // write_buffer rather than create_buffer_init: on WebGPU the latter
        // keeps a second copy of the bytes in wasm memory while mapped.
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(words));
        Ok(GpuMatrix { buffer, ty, rows, cols, scale_base })
    }

    pub fn upload(ctx: &GpuContext, name: &str, t: &RawTensor<'_>) -> Result<Self> {
        let (rows, cols) = match t.shape[..] {
            [rows, cols] => (rows, cols),
            [cols] => (1, cols),
            _ => return Err(HearthError::Model(format!("{name}: shape {:?} is not a matrix", t.shape))),
        };
        let (words, scale_base) = pack(t.ty, t.bytes, rows, cols).map_err(|e| HearthError::Model(format!("{name}: {e}")))?;
        Self::from_words(ctx, name, t.ty, &words, scale_base, rows, cols)
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
/// words, then the scales (see [`RowAt`]). Returns the words and where the scales begin.
pub fn pack(ty: TensorType, bytes: &[u8], rows: usize, cols: usize) -> std::result::Result<(Vec<u32>, u32), String> {
    let packing = Packing::of(ty, rows, cols)?;
    let mut words = vec![0u32; packing.words];
    pack_rows(ty, bytes, rows, cols, &mut words, rows, 0)?;
    Ok((words, packing.scale_base as u32))
}

/// Packs `bytes` (`rows × cols` of type `ty`) as rows `row0 ..` of `words`,
/// the zeroed layout of a `layout_rows`-row matrix (a stack's parts go into
/// it one by one).
fn pack_rows(ty: TensorType, bytes: &[u8], rows: usize, cols: usize, words: &mut [u32], layout_rows: usize, row0: usize) -> std::result::Result<(), String> {
    let Packing { file_block, scale_bytes, words_per_block, scale_base, .. } = Packing::of(ty, layout_rows, cols)?;
    let blocks_per_row = cols / 32;
    let row_bytes = blocks_per_row * file_block;
    let expected = rows * row_bytes;
    if bytes.len() != expected || row0 + rows > layout_rows {
        return Err(format!("{} bytes, expected {expected} for {rows}×{cols} {ty}", bytes.len()));
    }
    for (i, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let at = RowAt::new(row0 + i, layout_rows, blocks_per_row, words_per_block);
        pack_row(row, &at, file_block, scale_bytes, words, scale_base);
    }
    Ok(())
}

/// Packs one row's blocks (`row`, the file's bytes) where `at` says, 16
/// bytes (one group, four words side by side in the layout) at a time.
/// A function of its own, called once per row, because a browser cannot
/// switch a running wasm call to optimised code: V8 optimises this one
/// after a few rows, where one call over a whole 30 MB embedding ran start
/// to end in its baseline code (about 100 ms of a warm load).
#[inline(never)]
fn pack_row(row: &[u8], at: &RowAt, file_block: usize, scale_bytes: usize, words: &mut [u32], scale_base: usize) {
    for (k, b) in row.chunks_exact(file_block).enumerate() {
        for (g, group) in b[scale_bytes..].chunks_exact(16).enumerate() {
            let first = at.group(k, g) * 4;
            for (word, bytes) in words[first..first + 4].iter_mut().zip(group.chunks_exact(4)) {
                *word = u32::from_le_bytes(bytes.try_into().unwrap());
            }
        }
        let s = at.scale(k);
        match scale_bytes {
            4 => words[scale_base + s] = u32::from_le_bytes(b[..4].try_into().unwrap()),
            2 => words[scale_base + s / 2] |= u32::from(u16::from_le_bytes([b[0], b[1]])) << (16 * (s % 2)),
            _ => {}
        }
    }
}

/// Rows `row0 .. row0 + rows` of `words` (the layout of a `layout_rows`-row
/// matrix) as a matrix of their own: its words and where its scales begin.
fn unpack_rows(ty: TensorType, words: &[u32], cols: usize, layout_rows: usize, row0: usize, rows: usize) -> std::result::Result<(Vec<u32>, u32), String> {
    let from = Packing::of(ty, layout_rows, cols)?;
    let to = Packing::of(ty, rows, cols)?;
    let mut out = vec![0u32; to.words];
    let blocks = cols / 32;
    for r in 0..rows {
        let (at, at_from) = (RowAt::new(r, rows, blocks, to.words_per_block), RowAt::new(row0 + r, layout_rows, blocks, to.words_per_block));
        for k in 0..blocks {
            for w in 0..to.words_per_block {
                out[at.word(k, w)] = words[at_from.word(k, w)];
            }
            let (s, s_from) = (at.scale(k), at_from.scale(k));
            match to.scale_bytes {
                4 => out[to.scale_base + s] = words[from.scale_base + s_from],
                2 => out[to.scale_base + s / 2] |= ((words[from.scale_base + s_from / 2] >> (16 * (s_from % 2))) & 0xffff) << (16 * (s % 2)),
                _ => {}
            }
        }
    }
    Ok((out, to.scale_base as u32))
}

/// Rows lie in groups of this many (shaders/quant.wgsl `ROW_GROUP`).
const ROW_GROUP: usize = 8;

/// Where a row lies in the layout (shaders/quant.wgsl `RowAt`): its row
/// group's rows are interleaved 16 bytes at a time, so a block's 16-byte
/// groups of neighbouring rows sit side by side and a row's next group lies
/// `step` (its group's row count) groups further on; the scales likewise,
/// one per block.
struct RowAt {
    /// The 16-byte group number of the row's first block's first group.
    quants: usize,
    /// The scale number of the row's first block.
    scales: usize,
    step: usize,
    /// 16-byte groups per block.
    per_block: usize,
}

impl RowAt {
    /// Row `r` of a `rows`-row matrix of `blocks` blocks per row, with
    /// `words_per_block` quant words per block.
    fn new(r: usize, rows: usize, blocks: usize, words_per_block: usize) -> Self {
        let (first, per_block) = (r - r % ROW_GROUP, words_per_block / 4);
        RowAt { quants: first * blocks * per_block + r - first, scales: first * blocks + r - first, step: ROW_GROUP.min(rows - first), per_block }
    }

    /// The index of quant word `w` of block `k`.
    fn word(&self, k: usize, w: usize) -> usize {
        self.group(k, w / 4) * 4 + w % 4
    }

    /// The number of block `k`'s 16-byte group `g` (its words are four from `group * 4`).
    fn group(&self, k: usize, g: usize) -> usize {
        self.quants + (k * self.per_block + g) * self.step
    }

    /// The index of block `k`'s scale among the matrix's scales.
    fn scale(&self, k: usize) -> usize {
        self.scales + k * self.step
    }
}

/// One uploaded tensor: a matrix in its quantized form, a part of a stack
/// (packed with the others: see [`GpuWeights::stacked`]), or a vector (norm
/// weights) widened to f32.
enum GpuTensor {
    Matrix(GpuMatrix),
    Stacked,
    Vector { buffer: wgpu::Buffer, len: usize },
}

impl GpuTensor {
    /// The bytes it adds to the total (a stacked matrix's are its stack's).
    fn own_bytes(&self) -> u64 {
        match self {
            GpuTensor::Matrix(matrix) => matrix.buffer.size(),
            GpuTensor::Stacked => 0,
            GpuTensor::Vector { buffer, .. } => buffer.size(),
        }
    }
}

/// Matrices of the same width packed as one (see [`GpuWeights::new`]): the
/// parts' names and rows; while parts arrive, the whole's layout on the CPU
/// (for the first part's type) with the parts packed into it so far; then the
/// whole on the GPU.
struct Stack {
    parts: Vec<(String, usize)>,
    cols: usize,
    arrived: Vec<bool>,
    filling: Option<(TensorType, Vec<u32>)>,
    packed: Option<GpuMatrix>,
}

impl Stack {
    fn rows(&self) -> usize {
        self.parts.iter().map(|(_, r)| r).sum()
    }

    fn rows_above(&self, part: usize) -> usize {
        self.parts[..part].iter().map(|(_, r)| r).sum()
    }
}

/// A model's weights on the GPU, uploaded one tensor at a time in any order
/// (a web package's shards arrive as they download) and then taken by the
/// model at load. Only one tensor's repacked bytes are on the CPU at a time,
/// but for the parts of a stack, which wait there, packed, until the stack is
/// whole (a layer's are next to each other in a file).
#[derive(Default)]
pub struct GpuWeights {
    tensors: HashMap<String, GpuTensor>,
    stacks: Vec<Stack>,
    /// Stack and part index of each stacked tensor's name.
    stacked: HashMap<String, (usize, usize)>,
    bytes: u64,
}

impl GpuWeights {
    /// Weights that pack each group of `stacks` (the parts' names and rows,
    /// all `cols` wide) as one matrix, the parts stacked in order, so that one
    /// dispatch multiplies them all ([`GpuWeights::stacked`]); a part is then
    /// not available alone. Parts of different weight types, or whose whole
    /// would pass the adapter's largest binding, are uploaded each on its own.
    pub fn new(stacks: Vec<(Vec<(String, usize)>, usize)>) -> Self {
        let mut weights = GpuWeights::default();
        for (parts, cols) in stacks {
            for (i, (name, _)) in parts.iter().enumerate() {
                weights.stacked.insert(name.clone(), (weights.stacks.len(), i));
            }
            let arrived = vec![false; parts.len()];
            weights.stacks.push(Stack { parts, cols, arrived, filling: None, packed: None });
        }
        weights
    }

    /// Uploads one tensor: a matrix (two dimensions) as stored, a vector as
    /// f32; a part of a stack once the stack is whole.
    pub fn add(&mut self, ctx: &GpuContext, name: &str, t: &RawTensor<'_>) -> Result<()> {
        if let Some(&(s, part)) = self.stacked.get(name) {
            let stack = &self.stacks[s];
            if stack.arrived[part] {
                return Err(HearthError::Model(format!("{name} is given twice")));
            }
            if t.shape[..] == [stack.parts[part].1, stack.cols] {
                if self.add_to_stack(ctx, s, part, t)? {
                    return Ok(());
                }
            } else {
                // Not the shape its stack needs: every part goes on its own,
                // so that the model's error names this one.
                self.unstack(ctx, s)?;
            }
        }
        let tensor = match t.shape.len() {
            2 => GpuTensor::Matrix(GpuMatrix::upload(ctx, name, t)?),
            1 => {
                let values = crate::quant::dequantize(t.ty, t.bytes, t.elements())
                    .map_err(|e| HearthError::Model(format!("{name}: {e}")))?;
                GpuTensor::Vector { buffer: super::storage_from(ctx, name, &values), len: values.len() }
            }
            _ => return Err(HearthError::Model(format!("{name}: shape {:?} is neither a matrix nor a vector", t.shape))),
        };
        self.insert(name, tensor);
        Ok(())
    }

    /// Gives up stack `s` (parts of different types, a part of the wrong
    /// shape, or a whole larger than a buffer binding may be): the parts
    /// packed so far are uploaded each on its own, as the rest will be.
    fn unstack(&mut self, ctx: &GpuContext, s: usize) -> Result<()> {
        let stack = &mut self.stacks[s];
        let filling = stack.filling.take();
        let (parts, cols, all_rows) = (stack.parts.clone(), stack.cols, stack.rows());
        let arrived = std::mem::take(&mut stack.arrived);
        let mut row0 = 0;
        for ((name, rows), arrived) in parts.iter().zip(arrived) {
            self.stacked.remove(name);
            if let (true, Some((ty, words))) = (arrived, &filling) {
                let model_error = |e: String| HearthError::Model(format!("{name}: {e}"));
                let (own, scale_base) = unpack_rows(*ty, words, cols, all_rows, row0, *rows).map_err(model_error)?;
                let matrix = GpuMatrix::from_words(ctx, name, *ty, &own, scale_base, *rows, cols)?;
                self.insert(name, GpuTensor::Matrix(matrix));
            }
            row0 += rows;
        }
        Ok(())
    }

    fn insert(&mut self, name: &str, tensor: GpuTensor) {
        self.bytes += tensor.own_bytes();
        if let Some(old) = self.tensors.insert(name.to_string(), tensor) {
            self.bytes -= old.own_bytes();
        }
    }

    /// Packs part `part` of stack `s` into the stack's layout on the CPU;
    /// once every part is in, uploads the whole. Returns false (and gives the
    /// stack up) where the part cannot go in: another weight type than the
    /// first part's, or a whole past the adapter's largest binding.
    fn add_to_stack(&mut self, ctx: &GpuContext, s: usize, part: usize, t: &RawTensor<'_>) -> Result<bool> {
        let limit = ctx.report.max_storage_buffer_binding_size;
        let stack = &mut self.stacks[s];
        let (all_rows, row0, cols) = (stack.rows(), stack.rows_above(part), stack.cols);
        let model_error = |e: String| HearthError::Model(format!("{}: {e}", stack.parts[part].0));
        if stack.filling.is_none() {
            let packing = Packing::of(t.ty, all_rows, cols).map_err(model_error)?;
            if packing.bytes() <= limit {
                stack.filling = Some((t.ty, vec![0; packing.words]));
            }
        }
        let Some((ty, words)) = stack.filling.as_mut().filter(|(ty, _)| *ty == t.ty) else {
            self.unstack(ctx, s)?;
            return Ok(false);
        };
        pack_rows(*ty, t.bytes, stack.parts[part].1, cols, words, all_rows, row0).map_err(model_error)?;
        stack.arrived[part] = true;
        if stack.arrived.iter().all(|&a| a) {
            let (ty, words) = stack.filling.take().expect("filled above");
            let label = stack.parts.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join("+");
            let scale_base = Packing::of(ty, all_rows, cols).map_err(model_error)?.scale_base as u32;
            let whole = GpuMatrix::from_words(ctx, &label, ty, &words, scale_base, all_rows, cols)?;
            self.bytes += whole.buffer.size();
            for (name, _) in self.stacks[s].parts.clone() {
                self.insert(&name, GpuTensor::Stacked);
            }
            self.stacks[s].packed = Some(whole);
        }
        Ok(true)
    }

    /// True once `name` has been added (a stack's part even while it waits for the others).
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
            || self.stacked.get(name).is_some_and(|&(s, part)| self.stacks[s].arrived[part])
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
            Some(GpuTensor::Stacked) => Err(HearthError::Model(format!("{name} is packed with other matrices: multiply it with them"))),
            Some(GpuTensor::Vector { .. }) => Err(HearthError::Model(format!("{name} is a vector, expected a {rows}×{cols} matrix"))),
            None => Err(HearthError::Model(format!("tensor {name} is missing"))),
        }
    }

    /// The matrices `names`, stacked in this order, as one matrix, when they
    /// were packed as one (else None: multiply them apart).
    pub fn stacked(&self, names: &[&str]) -> Option<GpuMatrix> {
        let (s, _) = *self.stacked.get(*names.first()?)?;
        let stack = &self.stacks[s];
        let whole = stack.packed.as_ref()?;
        // (Once packed, a stack's parts cannot be replaced: see `add`.)
        let in_order = stack.parts.len() == names.len() && stack.parts.iter().zip(names).all(|((part, _), name)| part == name);
        in_order.then(|| whole.clone())
    }

    /// The vector `name` of `len` values.
    pub fn vector(&self, name: &str, len: usize) -> Result<wgpu::Buffer> {
        match self.tensors.get(name) {
            Some(GpuTensor::Vector { buffer, len: n }) if *n == len => Ok(buffer.clone()),
            Some(GpuTensor::Vector { len: n, .. }) => Err(HearthError::Model(format!("{name} has {n} values, expected {len}"))),
            Some(GpuTensor::Matrix(_) | GpuTensor::Stacked) => Err(HearthError::Model(format!("{name} is a matrix, expected a vector of {len}"))),
            None => Err(HearthError::Model(format!("tensor {name} is missing"))),
        }
    }
}
