//! One constructor per kernel: each makes the kernel's shape uniform and
//! returns a ready `Dispatch` (see shaders/*.wgsl for bindings and shapes).

use super::program::{self, Dispatch, Grid, Tokens};
use super::weights::GpuMatrix;
use super::{storage_zeroed, uniform_from, GpuContext, Kernel, Variants};
use crate::error::Result;

type Buf = wgpu::Buffer;

/// `kernel` (reading the weights `w`, if any) over `buffers`, labelled with
/// the kernel and the weight type (what `GpuModel::profile_step` reports).
fn dispatch(ctx: &GpuContext, kernel: Kernel, w: Option<&GpuMatrix>, buffers: &[&Buf], grid: Grid) -> Dispatch {
    let pipeline = ctx.pipelines.get(&ctx.device, kernel, w.map(|w| w.ty));
    // (The tiled products of a prefill program: `MatmulTiled<Q4_1>` etc.)
    let tiled = if ctx.variants().matmul_tiled && kernel.is_matmul() { "Tiled" } else { "" };
    let label = match w.filter(|_| kernel.reads_weights()) {
        Some(w) => format!("{kernel:?}{tiled}<{}>", w.ty),
        None => format!("{kernel:?}"),
    };
    Dispatch { label, ..Dispatch::new(ctx, pipeline, buffers, grid) }
}

fn shape<const N: usize>(ctx: &GpuContext, kernel: Kernel, words: [u32; N]) -> Buf {
    uniform_from(ctx, &format!("{kernel:?}.shape"), &words)
}

/// x (tokens × cols) = rows `ids` of the embedding matrix `w`.
pub fn embed(ctx: &GpuContext, step: &Buf, w: &GpuMatrix, ids: &Buf, out: &Buf) -> Dispatch {
    let s = shape(ctx, Kernel::Embed, [w.cols as u32, w.scale_base, w.rows as u32, 0]);
    let grid = Grid::Threads { per_token: w.cols as u32 / 32 };
    dispatch(ctx, Kernel::Embed, Some(w), &[&s, step, &w.buffer, ids, out], grid)
}

/// out (tokens × cols) = RMSNorm of rows `row0..` of x, times the gain `w`;
/// with `add`, after x += add (tokens × cols) in place.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(ctx: &GpuContext, step: &Buf, x: &Buf, add: Option<&Buf>, w: &Buf, out: &Buf, cols: usize, eps: f32) -> Dispatch {
    let s = shape(ctx, Kernel::RmsNorm, [cols as u32, eps.to_bits(), add.is_some() as u32, 0]);
    // Without `add` the kernel reads no y: bind the gain there.
    let y = add.unwrap_or(w);
    dispatch(ctx, Kernel::RmsNorm, None, &[&s, step, x, w, out, y], Grid::PerToken)
}

/// Where a matmul's rows go (shaders/matmul.wgsl).
pub enum MatmulOut<'a> {
    /// Every row to `out` (tokens × rows f32).
    One { out: &'a Buf },
    /// Every row to the value cache `v` (element type `kv`), token t's at
    /// row pos0 + t.
    Values { v: &'a Buf },
    /// A layer's stacked Q, K and V: the first `q_rows` rows to `q`, the
    /// next `kv_rows` to `k` and the rest to the value cache `v`, at row
    /// pos0 + t. Where `Variants::rope_in_qkv`, `k` is the key cache (keys
    /// at row pos0 + t, element type `kv`) and `rope` rotates the queries
    /// and keys as they are written; otherwise `k` takes the keys in f32
    /// (tokens × kv_rows) for `rope` to rotate into the cache, and `rope`
    /// is not used here.
    Qkv { q: &'a Buf, q_rows: usize, k: &'a Buf, v: &'a Buf, kv_rows: usize, rope: Option<QkvRope<'a>> },
    /// A layer's stacked FFN gate and up: silu(gate) · up to `out` (tokens × rows / 2).
    Swiglu { out: &'a Buf },
    /// Every row added to `x` (tokens × rows f32, the residual stream):
    /// the residual add done by the product. Only where
    /// `Variants::fuses_norm` (shaders/matmul_norm.wgsl).
    AddTo { x: &'a Buf },
}

/// The RMSNorm a product applies to its input as it reads it (where
/// `Variants::fuses_norm`): the norm's gain (cols f32) and epsilon.
#[derive(Clone, Copy)]
pub struct InputNorm<'a> {
    pub gain: &'a Buf,
    pub eps: f32,
}

/// RoPE as the QKV product applies it: the cos/sin `table` (as `rope`
/// takes it), the head size and the rotated dimensions per head.
#[derive(Clone, Copy)]
pub struct QkvRope<'a> {
    pub table: &'a Buf,
    pub head_dim: usize,
    pub rope_dim: usize,
}

/// x (tokens × cols) · Wᵀ (tokens × rows), written as `out` says.
pub fn matmul(ctx: &GpuContext, step: &Buf, w: &GpuMatrix, x: &Buf, out: MatmulOut<'_>) -> Dispatch {
    matmul_normed(ctx, step, w, x, out, None)
}

/// As [`matmul`], with each token's row of x put through the RMSNorm
/// `norm` first, by the product itself (only where `Variants::fuses_norm`).
pub fn matmul_normed(ctx: &GpuContext, step: &Buf, w: &GpuMatrix, x: &Buf, out: MatmulOut<'_>, norm: Option<InputNorm<'_>>) -> Dispatch {
    product(ctx, step, w, x, out, norm, None)
}

/// A decode step's attention output projection: the attention's runs
/// `parts` ([`attention`]'s, one token's, heads of `head_dim` values)
/// added up and multiplied by `w`, written as `out` says, in one dispatch
/// instead of [`attention`]'s second and [`matmul`]'s; it does nothing for
/// more tokens (their attention writes its output: multiply that by
/// [`matmul`] with `Dispatch::only(Tokens::Several)`). Only where
/// `Variants::attention_in_product` and [`fits_attention_in_product`].
pub fn attention_output_product(ctx: &GpuContext, step: &Buf, w: &GpuMatrix, parts: &Buf, out: MatmulOut<'_>, head_dim: usize) -> Dispatch {
    debug_assert!(ctx.variants().attention_in_product() && fits_attention_in_product(ctx, w.cols, head_dim));
    product(ctx, step, w, parts, out, None, Some(head_dim))
}

/// Whether attention output of `width` values in heads of `head_dim`
/// fits the workgroup memory of [`attention_output_product`]
/// (shaders/matmul_x_attention.wgsl: 1024 values, 256 runs in all).
pub fn fits_attention_in_product(ctx: &GpuContext, width: usize, head_dim: usize) -> bool {
    let runs = ctx.variants().attention_runs as usize;
    head_dim.is_multiple_of(4) && width.is_multiple_of(head_dim) && width <= 1024 && width / head_dim * runs <= 256
}

/// [`matmul_normed`], or with `attention_head_dim` [`attention_output_product`].
fn product(ctx: &GpuContext, step: &Buf, w: &GpuMatrix, x: &Buf, out: MatmulOut<'_>, norm: Option<InputNorm<'_>>, attention_head_dim: Option<usize>) -> Dispatch {
    let rows = w.rows as u32;
    let [spare1, spare2] = &*ctx.spare_outputs;
    let mut rope = None;
    let (kernel, split1, split2, outs) = match out {
        MatmulOut::One { out } | MatmulOut::AddTo { x: out } if attention_head_dim.is_some() => (Kernel::MatmulAttention, rows, rows, [out, spare1, spare2]),
        MatmulOut::One { out } => (Kernel::Matmul, rows, rows, [out, spare1, spare2]),
        MatmulOut::Values { v } => (Kernel::MatmulQkv, 0, 0, [spare1, spare2, v]),
        MatmulOut::Qkv { q, q_rows, k, v, kv_rows, rope: r } => {
            rope = r;
            (Kernel::MatmulQkv, q_rows as u32, (q_rows + kv_rows) as u32, [q, k, v])
        }
        MatmulOut::Swiglu { out } => (Kernel::MatmulSwiglu, rows, rows, [out, spare1, spare2]),
        MatmulOut::AddTo { x } => (Kernel::Matmul, rows, rows, [x, spare1, spare2]),
    };
    // shaders/matmul.wgsl `flags`: bit 0 adds to out, bit 1 normalises x.
    let flags = u32::from(matches!(out, MatmulOut::AddTo { .. })) | if norm.is_some() { 2 } else { 0 };
    let fused = ctx.variants().fuses_norm();
    debug_assert!(fused || flags == 0, "the residual add and the norm go into products only where Variants::fuses_norm");
    let eps = norm.map_or(0.0, |n| n.eps);
    let rope = rope.filter(|_| ctx.variants().rope_in_qkv());
    let (head_dim, rope_pairs) = match (rope, attention_head_dim) {
        (Some(r), _) => (r.head_dim as u32, (r.rope_dim / 2) as u32),
        // (matmul_x_attention.wgsl's heads)
        (None, Some(head_dim)) => (head_dim as u32, 0),
        (None, None) => (0, 0),
    };
    let s = shape(ctx, kernel, [rows, w.cols as u32, w.scale_base, split1, split2, head_dim, rope_pairs, flags, eps.to_bits(), 0, 0, 0]);
    let lanes = ctx.variants().matmul_lanes();
    let grid = if ctx.variants().matmul_tiled {
        // A workgroup per tile (shaders/matmul_tiled.wgsl; a SwiGLU's tile
        // holds half as many gate rows and their up rows).
        let tile = Variants::TILE;
        Grid::Rows { threads: rows.div_ceil(tile) * program::WG, token_chunk: Some(tile), tokens: Tokens::Any }
    } else {
        let threads = rows.div_ceil(ctx.pipelines.rows_per_thread(kernel)) * lanes;
        let tokens = if attention_head_dim.is_some() { Tokens::One } else { Tokens::Any };
        Grid::Rows { threads, token_chunk: (lanes > 1).then_some(ctx.variants().token_chunk()), tokens }
    };
    let [out, out_k, out_v] = outs;
    let mut buffers = vec![&s, step, &w.buffer, x, out, &w.buffer, out_k, out_v];
    if ctx.variants().rope_in_qkv() {
        // Every matmul kernel binds the table then (matmul_rope.wgsl); the
        // weights stand in where nothing is rotated (read-only, never read there).
        buffers.push(rope.map_or(&w.buffer, |r| r.table));
    }
    if fused {
        // Likewise the norm's gain (matmul_norm.wgsl; `Variants::fuses_norm`
        // implies `rope_in_qkv`, so it is binding 9).
        buffers.push(norm.map_or(&w.buffer, |n| n.gain));
    }
    dispatch(ctx, kernel, Some(w), &buffers, grid)
}

/// A layer's keys for RoPE: `keys` (tokens × heads × head_dim f32) rotated
/// into `cache` (element type `kv`), token t's at row pos0 + t.
pub struct KeysToCache<'a> {
    pub keys: &'a Buf,
    pub cache: &'a Buf,
    pub heads: usize,
}

/// RoPE, from the cos/sin `table`: of the queries `q` (tokens × heads ×
/// head_dim, `(buffer, heads)`) in place, and of the keys into their cache,
/// either or both in one dispatch.
pub fn rope(ctx: &GpuContext, step: &Buf, table: &Buf, head_dim: usize, rope_dim: usize, q: Option<(&Buf, usize)>, keys: Option<KeysToCache<'_>>) -> Dispatch {
    let pairs = (rope_dim / 2) as u32;
    let [spare1, spare2] = &*ctx.spare_outputs;
    let (q, heads) = q.unwrap_or((spare1, 0));
    let (k, cache, kv_heads) = keys.map_or((spare1, spare2, 0), |k| (k.keys, k.cache, k.heads));
    let s = shape(ctx, Kernel::Rope, [heads as u32, head_dim as u32, pairs, kv_heads as u32]);
    let grid = Grid::Threads { per_token: heads as u32 * pairs + (kv_heads * head_dim / 2) as u32 };
    dispatch(ctx, Kernel::Rope, None, &[&s, step, table, q, k, cache], grid)
}

/// out (tokens × heads × head_dim) = causal GQA attention of q over the
/// caches. On GPUs a decode step splits each head's keys into runs, which
/// leave their partial sums in `parts` (made by [`attention_parts`]), and
/// the second dispatch returned adds them up; CPU-based adapters' attention
/// leaves `parts` alone, and on llvmpipe has a second dispatch for prompts
/// (see [`attend`]).
#[allow(clippy::too_many_arguments)]
pub fn attention(ctx: &GpuContext, step: &Buf, q: &Buf, k_cache: &Buf, v_cache: &Buf, out: &Buf, parts: &Buf, heads: usize, kv_heads: usize, head_dim: usize) -> Vec<Dispatch> {
    let (mut dispatches, s) = attend(ctx, step, q, k_cache, v_cache, out, parts, heads, kv_heads, head_dim);
    let runs = ctx.variants().attention_runs;
    let grid = Grid::OneTokenHeads { heads: heads as u32 };
    dispatches.extend((!ctx.variants().cpu_attention && runs > 1).then(|| dispatch(ctx, Kernel::AttentionCombine, None, &[&s, parts, out], grid)));
    dispatches
}

/// [`attention`]'s first dispatches, and its shape uniform: a decode step's
/// runs left in `parts` for [`attention_output_product`] to add up. Where
/// `Variants::prompt_attention_in_tiles` (llvmpipe), two: the one-query
/// kernel for a decode step, the tiles for a prompt's chunk.
#[allow(clippy::too_many_arguments)]
pub fn attend(ctx: &GpuContext, step: &Buf, q: &Buf, k_cache: &Buf, v_cache: &Buf, out: &Buf, parts: &Buf, heads: usize, kv_heads: usize, head_dim: usize) -> (Vec<Dispatch>, Buf) {
    let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
    let s = shape(ctx, Kernel::Attention, [heads as u32, kv_heads as u32, head_dim as u32, scale.to_bits()]);
    let heads = heads as u32;
    let variants = ctx.variants();
    // (The tiles' lanes load a head's vec4s eight at a time.)
    let tiles = variants.prompt_attention_in_tiles() && head_dim % 32 == 0;
    let attend = if variants.cpu_attention {
        let tokens = if tiles { Tokens::One } else { Tokens::Any };
        dispatch(ctx, Kernel::Attention, None, &[&s, step, q, k_cache, v_cache, out], Grid::Attention { heads, runs: 1, tokens })
    } else {
        let runs = variants.attention_runs.max(1);
        dispatch(ctx, Kernel::Attention, None, &[&s, step, q, k_cache, v_cache, out, parts], Grid::Attention { heads, runs, tokens: Tokens::Any })
    };
    let mut dispatches = vec![attend];
    if tiles {
        let pipeline = ctx.pipelines.get_for_head_dim(&ctx.device, Kernel::AttentionTiles, None, head_dim as u32);
        let buffers = [&s, step, q, k_cache, v_cache, out];
        dispatches.push(Dispatch { label: format!("{:?}", Kernel::AttentionTiles), ..Dispatch::new(ctx, pipeline, &buffers, Grid::AttentionTiles { heads }) });
    }
    (dispatches, s)
}

/// The scratch buffer of [`attention`]'s runs: per head and run, a vec4 of
/// (maximum, denominator) and the head's unnormalised sums.
pub fn attention_parts(ctx: &GpuContext, heads: usize, head_dim: usize) -> Result<Buf> {
    let runs = ctx.variants().attention_runs.max(1) as usize;
    storage_zeroed(ctx, "attention_parts", heads * runs * (head_dim / 4 + 1) * 4)
}

/// gate = silu(gate) * up, elementwise over tokens × width.
pub fn swiglu(ctx: &GpuContext, step: &Buf, gate: &Buf, up: &Buf, width: usize) -> Dispatch {
    let s = shape(ctx, Kernel::Swiglu, [width as u32, 0, 0, 0]);
    dispatch(ctx, Kernel::Swiglu, None, &[&s, step, gate, up], Grid::Threads { per_token: width as u32 })
}

/// x += y, elementwise over tokens × width.
pub fn add(ctx: &GpuContext, step: &Buf, x: &Buf, y: &Buf, width: usize) -> Dispatch {
    let s = shape(ctx, Kernel::Add, [width as u32, 0, 0, 0]);
    dispatch(ctx, Kernel::Add, None, &[&s, step, x, y], Grid::Threads { per_token: width as u32 })
}

/// out[0] = index of the largest of the first `n` logits.
pub fn argmax(ctx: &GpuContext, logits: &Buf, out: &Buf, n: usize) -> Dispatch {
    let s = shape(ctx, Kernel::Argmax, [n as u32, 0, 0, 0]);
    dispatch(ctx, Kernel::Argmax, None, &[&s, logits, out], Grid::Single)
}

/// The settings and the draw of one sampled token, as shaders/sample.wgsl
/// takes them (its `Params`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SampleParams {
    pub n: u32,
    pub n_seen: u32,
    pub top_k: u32,
    _pad0: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub min_p: f32,
    pub u: f32,
    pub repetition: f32,
    pub presence: f32,
    pub frequency: f32,
    _pad1: f32,
}

impl SampleParams {
    /// For `n` logits, `n_seen` distinct seen tokens, the settings `o` and
    /// the draw `u` (`Sampler::draw`; none where the choice is greedy).
    pub fn new(n: usize, n_seen: usize, o: &crate::sampler::SamplerOptions, u: Option<f64>) -> Self {
        SampleParams {
            n: n as u32,
            n_seen: n_seen as u32,
            top_k: o.top_k.min(u32::MAX as usize) as u32,
            temperature: o.temperature,
            top_p: o.top_p,
            min_p: o.min_p,
            // Rounded down so that a draw just below 1 stays below 1.
            u: u.map_or(0.0, |u| (u as f32).min(1.0 - f32::EPSILON / 2.0)),
            repetition: o.repetition_penalty,
            presence: o.presence_penalty,
            frequency: o.frequency_penalty,
            ..Default::default()
        }
    }
}

/// out[0] = the token sampled from the first `params.n` logits (penalised
/// in place) with the settings and the draw in `params` (a uniform holding
/// `SampleParams`), the seen tokens' (id, count) pairs in `seen`; or
/// `SAMPLE_FALLBACK` (see shaders/sample.wgsl).
pub fn sample(ctx: &GpuContext, params: &Buf, logits: &Buf, seen: &Buf, out: &Buf) -> Dispatch {
    dispatch(ctx, Kernel::Sample, None, &[params, logits, seen, out], Grid::Single)
}

/// What shaders/sample.wgsl writes where the choice needs ranks it does not
/// hold: the host chooses from the penalised logits instead.
pub const SAMPLE_FALLBACK: u32 = 0xffff_fffe;

/// Reads all of `data` (`words` u32s, a multiple of 4) with `threads` threads,
/// one u32 each into `out` (the benchmark's bandwidth probe), in runs or
/// grid-stride (see shaders/read_bandwidth.wgsl and [`read_bandwidth_reads`]).
pub fn read_bandwidth(ctx: &GpuContext, step: &Buf, data: &Buf, out: &Buf, words: usize, threads: u32, runs: bool) -> Dispatch {
    let s = shape(ctx, Kernel::ReadBandwidth, [(words / 4) as u32, threads, runs as u32, 0]);
    let grid = Grid::Threads { per_token: threads };
    dispatch(ctx, Kernel::ReadBandwidth, None, &[&s, step, data, out], grid)
}

/// Threads per run of the bandwidth probe (shaders/read_bandwidth.wgsl RUN_GROUP).
const RUN_GROUP: usize = 8;

/// The vec4s thread `t` of the bandwidth probe reads (of `vec4s`, with
/// `threads` threads): what shaders/read_bandwidth.wgsl does, on the CPU.
pub fn read_bandwidth_reads(t: usize, threads: usize, vec4s: usize, runs: bool) -> std::iter::StepBy<std::ops::Range<usize>> {
    if !runs {
        return (t..vec4s).step_by(threads);
    }
    let group = t / RUN_GROUP;
    let run = vec4s.div_ceil(threads.div_ceil(RUN_GROUP));
    let start = (group * run).min(vec4s);
    let end = (start + run).min(vec4s);
    let lanes = RUN_GROUP.min(threads - group * RUN_GROUP);
    ((start + t % RUN_GROUP).min(end)..end).step_by(lanes)
}
