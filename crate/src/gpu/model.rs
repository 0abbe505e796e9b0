//! The model on the GPU: weights uploaded in their quantized form, every
//! buffer and dispatch made at load (one per operation of
//! `graph::layer_program`, or per run of operations that one dispatch does:
//! see `fused`), one submit per forward.

use crate::config::ModelConfig;
use crate::error::{HearthError, Result};
use crate::graph::{self, Act, Op, Rows};
use crate::gpu::ops::{InputNorm, KeysToCache, MatmulOut, QkvRope, SampleParams, SAMPLE_FALLBACK};
use crate::gpu::program::Tokens;
use crate::gpu::{self, ops, program, Dispatch, GpuContext, Kernel, Step, Variants};
use crate::gpu::weights::{GpuMatrix, GpuWeights};
use crate::model::{clamp_options, rope_table, validate_tokens, ModelOptions};
use crate::sampler::{seen_counts, Sampler};
use std::collections::HashMap;

/// Largest head size the attention kernels hold (shaders/attention_io.wgsl MAX_HEAD_DIM).
const MAX_HEAD_DIM: usize = 256;

/// The matrices the GPU model multiplies stacked, as `GpuWeights::new`
/// takes them: `graph::stacked_matrices` (none without
/// `Variants::stacked_matmuls`), but for the FFN's gate and up where the
/// fused SwiGLU cannot pair their rows in one thread (four rows per thread
/// pair gate row r with up row r + f only when f is even).
pub fn stacked_matrices(ctx: &GpuContext, c: &ModelConfig) -> Vec<(Vec<(String, usize)>, usize)> {
    if !ctx.variants().stacked_matmuls {
        return Vec::new();
    }
    let pairs = ctx.pipelines.rows_per_thread(Kernel::MatmulSwiglu) != 4 || c.ffn_dim.is_multiple_of(2);
    graph::stacked_matrices(c).into_iter().filter(|s| pairs || !s.gate_up).map(|s| (s.parts, s.cols)).collect()
}

/// The dispatches that do the first operations of `ops` (one, but for the
/// last case below), and how many operations they do, where one dispatch
/// does several:
///   - a layer's Q, K and V projections, stacked (`GpuWeights::stacked`), as
///     one matmul writing the queries, the keys and the value cache, and
///     where `Variants::rope_in_qkv` the RoPE of the queries and keys too;
///   - its FFN gate and up projections, stacked, and the SwiGLU of the two,
///     as one matmul that writes silu(gate) · up;
///   - the RoPE of its queries and of its keys;
///   - a residual add and the RMSNorm of its result;
///   - where `Variants::attention_in_product`, the sum of a decode step's
///     runs of keys, after the attention, by the output projection (three
///     dispatches for three operations, one of them for prompts only).
///
/// On CPU-based adapters every dispatch costs tens of microseconds, whatever
/// its work (lavapipe: about 45 µs), a tenth of a decode step all told.
/// Products are made with `mm` (the tiled ones for the prefill program),
/// everything else with `ctx`.
fn fused(ctx: &GpuContext, mm: &GpuContext, ops: &[Op], weights: &GpuWeights, b: &ProgramBuffers, c: &ModelConfig) -> Result<Option<(Vec<Dispatch>, usize)>> {
    let ProgramBuffers { step, acts, new_keys, keys, values, rope_table, attention_parts, .. } = *b;
    fn matmul(op: Option<&Op>) -> Option<(&str, Act, Rows)> {
        match op {
            Some(Op::Matmul { w, x, out, .. }) => Some((w.as_str(), *x, *out)),
            _ => None,
        }
    }
    // Where products take the RMSNorm and the residual add (GPUs): a norm
    // of x is applied by the stacked product after it, and a product whose
    // output is added to x adds it itself.
    let fuse_norm = ctx.variants().fuses_norm();
    if let (Some(Op::Attention { layer, q, out: a }), Some(Op::Matmul { w, rows, cols, x, out: Rows::Act(o) })) = (ops.first(), ops.get(1)) {
        if x == a && mm.variants().attention_in_product() && ops::fits_attention_in_product(mm, *cols, c.head_dim) {
            // A decode step's runs of keys added up by the output projection:
            // the attention, then that product (which also does the residual
            // add after it, where products do); a prompt's attention writes
            // its output, which the plain product multiplies.
            let (mut dispatches, _) = ops::attend(ctx, step, &acts[q], &keys[*layer], &values[*layer], &acts[a], attention_parts, c.n_heads, c.n_kv_heads, c.head_dim);
            let w = weights.matrix(w, *rows, *cols)?;
            let residual = match ops.get(2) {
                Some(Op::Add { x: residual, y }) if fuse_norm && y == o => Some(&acts[residual]),
                _ => None,
            };
            let out = || residual.map_or(MatmulOut::One { out: &acts[o] }, |x| MatmulOut::AddTo { x });
            let done = if residual.is_some() { 3 } else { 2 };
            let one = ops::attention_output_product(mm, step, &w, attention_parts, out(), c.head_dim);
            let several = ops::matmul(mm, step, &w, &acts[a], out()).only(Tokens::Several);
            dispatches.extend([one, several]);
            return Ok(Some((dispatches, done)));
        }
    }
    if let (true, Some(Op::Matmul { w, rows, cols, x, out: Rows::Act(o) }), Some(Op::Add { x: residual, y })) = (fuse_norm, ops.first(), ops.get(1)) {
        if y == o {
            let w = weights.matrix(w, *rows, *cols)?;
            return Ok(Some((vec![ops::matmul(mm, step, &w, &acts[x], MatmulOut::AddTo { x: &acts[residual] })], 2)));
        }
    }
    let (norm, ops) = match ops.first() {
        Some(Op::RmsNorm { x, gain, out }) if fuse_norm => (Some((*x, weights.vector(gain, c.dim)?, *out)), &ops[1..]),
        _ => (None, ops),
    };
    let (a, b, third) = (matmul(ops.first()), matmul(ops.get(1)), ops.get(2));
    // What a stacked product over `x` reads: x itself, or with the norm
    // before it, the norm's input and the norm (one operation more done).
    let input = |x: Act| match &norm {
        None => Some((&acts[&x], None, 0)),
        Some((raw, gain, out)) if *out == x => Some((&acts[raw], Some(InputNorm { gain, eps: c.rms_eps }), 1)),
        Some(_) => None,
    };
    if let (Some((wq, x, Rows::Act(q))), Some((wk, xk, Rows::Keys(l))), Some((wv, xv, Rows::Values(lv)))) = (a, b, matmul(third)) {
        if x == xk && x == xv && l == lv {
            if let (Some(w), Some((src, in_norm, normed))) = (weights.stacked(&[wq, wk, wv]), input(x)) {
                let (q_rows, kv_rows) = (q.width(c), c.kv_dim());
                if !ctx.variants().rope_in_qkv() {
                    let out = MatmulOut::Qkv { q: &acts[&q], q_rows, k: new_keys, v: &values[l], kv_rows, rope: None };
                    return Ok(Some((vec![ops::matmul(mm, step, &w, &acts[&x], out)], 3)));
                }
                // The RoPE of these queries and keys, applied as they are written.
                let ropes = matches!((ops.get(3), ops.get(4)),
                    (Some(Op::Rope { x: Rows::Act(rq), .. }), Some(Op::Rope { x: Rows::Keys(rl), .. })) if *rq == q && *rl == l);
                if !ropes {
                    return Err(HearthError::Model("the Q, K and V projections are not followed by the RoPE of the queries and keys".into()));
                }
                let rope = Some(QkvRope { table: rope_table, head_dim: c.head_dim, rope_dim: c.rope_dim });
                let out = MatmulOut::Qkv { q: &acts[&q], q_rows, k: &keys[l], v: &values[l], kv_rows, rope };
                return Ok(Some((vec![ops::matmul_normed(mm, step, &w, src, out, in_norm)], 5 + normed)));
            }
        }
    }
    if let (Some((wg, x, Rows::Act(gate))), Some((wu, xu, Rows::Act(up))), Some(Op::Swiglu { gate: g, up: u })) = (a, b, third) {
        if x == xu && (gate, up) == (*g, *u) {
            if let (Some(w), Some((src, in_norm, normed))) = (weights.stacked(&[wg, wu]), input(x)) {
                let out = MatmulOut::Swiglu { out: &acts[&gate] };
                return Ok(Some((vec![ops::matmul_normed(mm, step, &w, src, out, in_norm)], 3 + normed)));
            }
        }
    }
    if norm.is_some() {
        return Ok(None); // a norm before something else: a dispatch of its own
    }
    if let (Some(Op::Rope { x: Rows::Act(q), heads }), Some(Op::Rope { x: Rows::Keys(l), heads: kv_heads })) = (ops.first(), ops.get(1)) {
        let to_cache = KeysToCache { keys: new_keys, cache: &keys[*l], heads: *kv_heads };
        return Ok(Some((vec![ops::rope(ctx, step, rope_table, c.head_dim, c.rope_dim, Some((&acts[q], *heads)), Some(to_cache))], 2)));
    }
    if let (Some(Op::Add { x, y }), Some(Op::RmsNorm { x: normed, gain, out })) = (ops.first(), ops.get(1)) {
        if normed == x {
            let gain = weights.vector(gain, c.dim)?;
            return Ok(Some((vec![ops::rms_norm(ctx, step, &acts[x], Some(&acts[y]), &gain, &acts[out], c.dim, c.rms_eps)], 2)));
        }
    }
    Ok(None)
}

/// The buffers a layer program's dispatches bind, made once at load.
#[derive(Clone, Copy)]
struct ProgramBuffers<'a> {
    step: &'a wgpu::Buffer,
    ids: &'a wgpu::Buffer,
    acts: &'a HashMap<Act, wgpu::Buffer>,
    /// A layer's keys as its K projection writes them (f32), until RoPE
    /// rotates them into the cache (where the QKV product does not).
    new_keys: &'a wgpu::Buffer,
    keys: &'a [wgpu::Buffer],
    values: &'a [wgpu::Buffer],
    rope_table: &'a wgpu::Buffer,
    attention_parts: &'a wgpu::Buffer,
}

/// The dispatches of `program` (one per operation, or per run of them that
/// one dispatch does: see [`fused`]), the products made with `mm`.
fn layer_dispatches(ctx: &GpuContext, mm: &GpuContext, program: &[Op], weights: &GpuWeights, b: &ProgramBuffers, c: &ModelConfig) -> Result<Vec<Dispatch>> {
    let ProgramBuffers { step, ids, acts, new_keys, keys, values, rope_table, attention_parts } = *b;
    let d = c.dim;
    let mut layers = Vec::new();
    let mut i = 0;
    while i < program.len() {
        if let Some((dispatches, ops_done)) = fused(ctx, mm, &program[i..], weights, b, c)? {
            layers.extend(dispatches);
            i += ops_done;
            continue;
        }
        // Further dispatches some operations need (the attention's: see `ops::attention`).
        let mut more = Vec::new();
        layers.push(match &program[i] {
            Op::Embed { table } => ops::embed(ctx, step, &weights.matrix(table, c.vocab_size, d)?, ids, &acts[&Act::X]),
            Op::RmsNorm { x, gain, out } => ops::rms_norm(ctx, step, &acts[x], None, &weights.vector(gain, d)?, &acts[out], d, c.rms_eps),
            Op::Matmul { w, rows: r, cols, x, out } => {
                let out = match *out {
                    Rows::Act(a) => MatmulOut::One { out: &acts[&a] },
                    Rows::Keys(_) => MatmulOut::One { out: new_keys },
                    Rows::Values(l) => MatmulOut::Values { v: &values[l] },
                };
                ops::matmul(mm, step, &weights.matrix(w, *r, *cols)?, &acts[x], out)
            }
            Op::Rope { x: Rows::Act(q), heads } => ops::rope(ctx, step, rope_table, c.head_dim, c.rope_dim, Some((&acts[q], *heads)), None),
            Op::Rope { x: Rows::Keys(l), heads } => {
                let to_cache = KeysToCache { keys: new_keys, cache: &keys[*l], heads: *heads };
                ops::rope(ctx, step, rope_table, c.head_dim, c.rope_dim, None, Some(to_cache))
            }
            Op::Rope { x: Rows::Values(_), .. } => return Err(HearthError::Model("RoPE of the values: no layer program asks for it".into())),
            Op::Attention { layer, q, out } => {
                more = ops::attention(ctx, step, &acts[q], &keys[*layer], &values[*layer], &acts[out], attention_parts, c.n_heads, c.n_kv_heads, c.head_dim);
                more.remove(0)
            }
            Op::Add { x, y } => ops::add(ctx, step, &acts[x], &acts[y], x.width(c)),
            Op::Swiglu { gate, up } => ops::swiglu(ctx, step, &acts[gate], &acts[up], gate.width(c)),
        });
        layers.extend(more);
        i += 1;
    }
    Ok(layers)
}

/// One kernel's share of a forward (`GpuModel::profile_step`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTime {
    /// The kernel and the weight type it reads, e.g. `MatmulQkv<Q4_1>`.
    pub kernel: String,
    /// Its dispatches per step.
    pub dispatches: usize,
    /// Their time per forward, each timed alone, in microseconds.
    pub us_per_token: f64,
    /// Their time per forward inside the whole forward's one pass, from
    /// GPU timestamps written between dispatches (the median over repeats
    /// of each dispatch's, each from the end of the one before: its wait
    /// behind the barrier included), where the device has them
    /// (`GpuContext::has_timestamps_in_passes`).
    pub gpu_us_in_pass: Option<f64>,
}

/// A chained decode step in flight (`GpuModel::submit_chained_greedy`).
#[must_use = "read the step's token with GpuModel::read_chained"]
pub struct ChainedToken {
    slot: usize,
    submission: Option<wgpu::SubmissionIndex>,
}

/// What a forward ends with after the last token's logits.
#[derive(Clone, Copy)]
enum Pick {
    /// Nothing: the logits are read back.
    Logits,
    /// Their argmax (greedy decoding).
    Argmax,
    /// The sampled token (shaders/sample.wgsl).
    Sample,
}

/// The head that gives every position's logits, with its buffers.
struct AllLogits {
    logits: wgpu::Buffer,  // max_batch × vocab f32
    staging: wgpu::Buffer, // its mappable copy
    head: Vec<Dispatch>,
}

/// The transformer on the GPU with its KV cache.
pub struct GpuModel {
    pub config: ModelConfig,
    pub options: ModelOptions,
    ctx: GpuContext,
    /// The `Step` of the layer program and that of the head (last token only).
    step: wgpu::Buffer,
    step_last: wgpu::Buffer,
    ids: wgpu::Buffer,   // max_batch u32
    logits: wgpu::Buffer, // vocab f32, the last token's
    next_id: wgpu::Buffer, // 1 u32, the token picked from the logits
    /// The sampler's settings and draw (`SampleParams`), and the seen
    /// tokens with their counts (context × (id, count)), for `sample`.
    sample_params: wgpu::Buffer,
    seen: wgpu::Buffer,
    /// Mappable copies of `logits` and `next_id`, made once.
    logits_staging: wgpu::Buffer,
    next_id_staging: wgpu::Buffer,
    /// Two more of `next_id`, taken in turn by chained steps
    /// (`submit_chained_greedy`): one may wait to be read while the next
    /// step's copy is queued.
    chained_staging: [wgpu::Buffer; 2],
    next_chained: usize,
    layers: Vec<Dispatch>,
    /// The layer program with tiled products, for chunks of at least so
    /// many tokens (`Variants::tiled_prefill_from`).
    prefill: Option<(usize, Vec<Dispatch>)>,
    /// The last token's RMSNorm and output projection, into `logits`.
    head: Vec<Dispatch>,
    /// Picking the token from `logits` into `next_id`.
    argmax: Dispatch,
    sample: Dispatch,
    /// What the all-positions head needs; its logits buffer (max_batch ×
    /// vocab) is only allocated on first use (scoring, perplexity).
    x: wgpu::Buffer,
    h: wgpu::Buffer,
    out_norm: wgpu::Buffer,
    output: GpuMatrix,
    all_logits: Option<AllLogits>,
    gpu_bytes: u64,
    weight_bytes: u64,
    /// Positions held in the KV cache.
    pos: usize,
}

impl GpuModel {
    /// Builds the model over `weights` (every tensor of
    /// `weights::model_tensor_names(&config)`, uploaded).
    pub fn load(ctx: &GpuContext, config: ModelConfig, weights: &GpuWeights, options: ModelOptions) -> Result<Self> {
        let c = &config;
        if !c.head_dim.is_multiple_of(4) || c.head_dim > MAX_HEAD_DIM {
            return Err(HearthError::Model(format!(
                "head size {}: the GPU backend's attention takes multiples of 4 up to {MAX_HEAD_DIM} (the CPU backend takes any)",
                c.head_dim
            )));
        }
        let options = clamp_options(c, options);
        let ModelOptions { context, max_batch } = options;
        // Running totals of what is allocated, for the memory report.
        let gpu_bytes = std::cell::Cell::new(0u64);
        let scratch = |label: &str, len: usize| -> Result<wgpu::Buffer> {
            let b = gpu::storage_zeroed(ctx, label, len)?;
            gpu_bytes.set(gpu_bytes.get() + b.size());
            Ok(b)
        };
        let d = c.dim;
        let mut acts = HashMap::new();
        for act in Act::ALL {
            acts.insert(act, scratch(&format!("{act:?}"), max_batch * act.width(c))?);
        }
        let (x, h) = (acts[&Act::X].clone(), acts[&Act::H].clone());
        let h_last = scratch("h_last", d)?;
        let logits = scratch("logits", c.vocab_size)?;
        let next_id = scratch("next_id", 1)?;
        let seen = scratch("seen", 2 * context)?;
        let sample_params = gpu::uniform_from(ctx, "sample_params", &SampleParams::default());
        let ids = scratch("ids", max_batch)?;
        let rope_table = gpu::storage_from(ctx, "rope_table", &rope_table(c, context));
        gpu_bytes.set(gpu_bytes.get() + rope_table.size());
        let step = gpu::uniform_from(ctx, "step", &Step::default());
        let step_last = gpu::uniform_from(ctx, "step_last", &Step::default());
        // A layer's keys as its K projection writes them (f32), until RoPE
        // rotates them into the cache.
        let new_keys = scratch("new_keys", max_batch * c.kv_dim())?;
        // The caches (f32 or f16, `Variants::f16_kv_cache`), in 4-byte words.
        let cache_words = (context * c.kv_dim() * ctx.variants().kv_bytes()).div_ceil(4);
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for _ in 0..c.n_layers {
            keys.push(scratch("k_cache", cache_words)?);
            values.push(scratch("v_cache", cache_words)?);
        }
        let attention_parts = ops::attention_parts(ctx, c.n_heads, c.head_dim)?;
        gpu_bytes.set(gpu_bytes.get() + attention_parts.size());
        let program = graph::layer_program(c);
        let buffers = ProgramBuffers {
            step: &step,
            ids: &ids,
            acts: &acts,
            new_keys: &new_keys,
            keys: &keys,
            values: &values,
            rope_table: &rope_table,
            attention_parts: &attention_parts,
        };
        let layers = layer_dispatches(ctx, ctx, &program, weights, &buffers, c)?;
        // Long prompt chunks: the same program with tiled products.
        let tiled_from = ctx.variants().tiled_prefill_from as usize;
        let prefill = if tiled_from > 0 && max_batch >= tiled_from {
            let tiled = ctx.with_variants(Variants { matmul_tiled: true, ..ctx.variants() });
            Some((tiled_from, layer_dispatches(ctx, &tiled, &program, weights, &buffers, c)?))
        } else {
            None
        };
        let out_norm = weights.vector(graph::OUTPUT_NORM, d)?;
        let output = weights.matrix(graph::output_matrix(c), c.vocab_size, d)?;
        let head = vec![
            ops::rms_norm(ctx, &step_last, &x, None, &out_norm, &h_last, d, c.rms_eps),
            ops::matmul(ctx, &step_last, &output, &h_last, MatmulOut::One { out: &logits }),
        ];
        let argmax = ops::argmax(ctx, &logits, &next_id, c.vocab_size);
        let sample = ops::sample(ctx, &sample_params, &logits, &seen, &next_id);
        let logits_staging = gpu::staging::<f32>(ctx, "logits.staging", c.vocab_size);
        gpu_bytes.set(gpu_bytes.get() + logits_staging.size());
        ctx.take_error()?;
        Ok(GpuModel {
            config,
            options,
            ctx: ctx.clone(),
            step,
            step_last,
            ids,
            logits,
            logits_staging,
            next_id_staging: gpu::staging::<u32>(ctx, "next_id.staging", 1),
            chained_staging: [0, 1].map(|_| gpu::staging::<u32>(ctx, "next_id.chained", 1)),
            next_chained: 0,
            next_id,
            sample_params,
            seen,
            layers,
            prefill,
            head,
            argmax,
            sample,
            x,
            h,
            out_norm,
            output,
            all_logits: None,
            gpu_bytes: gpu_bytes.get() + weights.size_bytes(),
            weight_bytes: weights.size_bytes(),
            pos: 0,
        })
    }

    /// The GPU the model lives on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Positions held in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forgets every position after the first `n` (n = 0 starts over).
    pub fn truncate(&mut self, n: usize) {
        self.pos = self.pos.min(n);
    }

    /// GPU memory the model holds (weights, KV cache, activations), in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.gpu_bytes
    }

    /// Bytes of weights on the GPU (read once per decoded token).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Runs `tokens` after the cached positions and returns the last token's logits.
    pub async fn forward_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let (src, staging) = (self.logits.clone(), self.logits_staging.clone());
        self.forward(tokens, Pick::Logits, &src, &staging, self.config.vocab_size).await
    }

    /// Submits a greedy decode step on the token the last forward picked
    /// (greedy or sampled on the GPU), which stays on the GPU (`next_id`
    /// is copied into the step's input), and returns at once: the step's
    /// own pick is read by [`GpuModel::read_chained`]. So the CPU can handle
    /// one token (decode its text, check stop strings) while the GPU
    /// computes the next, and no read-back sits between two steps. At most
    /// two chained steps may wait to be read.
    pub fn submit_chained_greedy(&mut self) -> Result<ChainedToken> {
        self.validate(&[0])?;
        self.ctx.take_error()?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.next_id, 0, &self.ids, 0, 4);
        self.record_layers(&mut encoder, 1);
        program::encode(&mut encoder, self.head.iter().chain([&self.argmax]), 1);
        let slot = self.next_chained;
        self.next_chained = 1 - slot;
        let submission = gpu::submit_with_copy::<u32>(&self.ctx, encoder, &self.next_id, &self.chained_staging[slot], 1);
        Ok(ChainedToken { slot, submission })
    }

    /// The token a chained step picked, once it is done.
    pub async fn read_chained(&self, step: ChainedToken) -> Result<u32> {
        self.token(gpu::read_staging::<u32>(&self.ctx, &self.chained_staging[step.slot], 1, step.submission).await?[0])
    }

    /// `id` as argmax picked it: a token of the vocabulary, or garbage logits.
    fn token(&self, id: u32) -> Result<u32> {
        if id as usize >= self.config.vocab_size {
            return Err(garbage());
        }
        Ok(id)
    }

    /// Runs `tokens` after the cached positions and returns the id of the
    /// most likely next token (only 4 bytes are read back).
    pub async fn forward_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        let id = self.forward_picking(tokens, Pick::Argmax).await?;
        self.token(id)
    }

    /// Runs `tokens` after the cached positions and returns the next token
    /// as `sampler` picks it given the tokens `seen` so far, sampled on the
    /// GPU (only 4 bytes are read back). Where the GPU's sampler does not
    /// hold the ranks the choice needs (see shaders/sample.wgsl), the
    /// penalised logits are read back and the same draw chooses on the CPU.
    pub async fn forward_sample(&mut self, tokens: &[u32], sampler: &mut Sampler, seen: &[u32]) -> Result<u32> {
        let vocab = self.config.vocab_size;
        let counts = if sampler.penalizes() { seen_counts(seen) } else { Vec::new() };
        if counts.len() > self.options.context {
            return Err(HearthError::InvalidArgument(format!("{} distinct seen tokens: more than the context of {}", counts.len(), self.options.context)));
        }
        let draw = sampler.draw();
        let params = SampleParams::new(vocab, counts.len(), sampler.options(), draw);
        self.ctx.queue.write_buffer(&self.sample_params, 0, bytemuck::bytes_of(&params));
        if !counts.is_empty() {
            let pairs: Vec<u32> = counts.iter().flat_map(|&(t, n)| [t, n]).collect();
            self.ctx.queue.write_buffer(&self.seen, 0, bytemuck::cast_slice(&pairs));
        }
        match self.forward_picking(tokens, Pick::Sample).await? {
            id if (id as usize) < vocab => Ok(id),
            SAMPLE_FALLBACK => {
                let encoder = self.ctx.device.create_command_encoder(&Default::default());
                let logits = gpu::submit_and_read_via::<f32>(&self.ctx, encoder, &self.logits, &self.logits_staging, vocab).await?;
                Ok(sampler.choose(&logits, draw))
            }
            _ => Err(garbage()),
        }
    }

    /// Runs `tokens` and reads back the token `pick` puts in `next_id`.
    async fn forward_picking(&mut self, tokens: &[u32], pick: Pick) -> Result<u32> {
        let (src, staging) = (self.next_id.clone(), self.next_id_staging.clone());
        Ok(self.forward::<u32>(tokens, pick, &src, &staging, 1).await?[0])
    }

    /// Runs `tokens` after the cached positions and returns the logits of
    /// every one of them (`tokens.len() × vocab`, row-major): for scoring.
    pub async fn forward_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.validate(tokens)?;
        let vocab = self.config.vocab_size;
        if self.all_logits.is_none() {
            let c = &self.config;
            let logits = gpu::storage_zeroed(&self.ctx, "all_logits", self.options.max_batch * vocab)?;
            let head = vec![
                ops::rms_norm(&self.ctx, &self.step, &self.x, None, &self.out_norm, &self.h, c.dim, c.rms_eps),
                ops::matmul(&self.ctx, &self.step, &self.output, &self.h, MatmulOut::One { out: &logits }),
            ];
            let staging = gpu::staging::<f32>(&self.ctx, "all_logits.staging", self.options.max_batch * vocab);
            self.gpu_bytes += logits.size() + staging.size();
            self.all_logits = Some(AllLogits { logits, staging, head });
        }
        let mut out = Vec::with_capacity(tokens.len() * vocab);
        for chunk in tokens.chunks(self.options.max_batch) {
            let mut encoder = self.record(chunk);
            let all = self.all_logits.as_ref().expect("made above");
            program::encode(&mut encoder, &all.head, chunk.len() as u32);
            out.extend(gpu::submit_and_read_via::<f32>(&self.ctx, encoder, &all.logits, &all.staging, chunk.len() * vocab).await?);
        }
        Ok(out)
    }

    /// Runs `tokens` (in chunks of max_batch), then the last-token head and
    /// `pick`, and reads back `len` values of `result` through `staging`.
    async fn forward<T: bytemuck::Pod>(&mut self, tokens: &[u32], pick: Pick, result: &wgpu::Buffer, staging: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        self.validate(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.options.max_batch).collect();
        let (last, rest) = chunks.split_last().expect("validate() refuses an empty input");
        for chunk in rest {
            let encoder = self.record(chunk);
            self.ctx.queue.submit([encoder.finish()]);
        }
        let mut encoder = self.record(last);
        let pick = match pick {
            Pick::Logits => None,
            Pick::Argmax => Some(&self.argmax),
            Pick::Sample => Some(&self.sample),
        };
        program::encode(&mut encoder, self.head.iter().chain(pick), 1);
        gpu::submit_and_read_via(&self.ctx, encoder, result, staging, len).await
    }

    /// Writes the ids of one chunk, records the layer program for it and
    /// advances the position.
    fn record(&mut self, chunk: &[u32]) -> wgpu::CommandEncoder {
        self.ctx.queue.write_buffer(&self.ids, 0, bytemuck::cast_slice(chunk));
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.record_layers(&mut encoder, chunk.len());
        encoder
    }

    /// Writes the step uniforms for `tokens` tokens (whose ids are in
    /// `ids` when the commands run), records the layer program for them and
    /// advances the position. (Queue writes land before the next submit's
    /// commands and after every earlier submit's.)
    fn record_layers(&mut self, encoder: &mut wgpu::CommandEncoder, tokens: usize) {
        self.write_steps(tokens);
        program::encode(encoder, self.program_for(tokens), tokens as u32);
        self.pos += tokens;
    }

    /// Writes the `Step`s of a forward of `tokens` tokens after the cached
    /// positions: the layer program's and the head's (the last token only).
    fn write_steps(&self, tokens: usize) {
        let (n, pos0) = (tokens as u32, self.pos as u32);
        let queue = &self.ctx.queue;
        queue.write_buffer(&self.step, 0, bytemuck::bytes_of(&Step { tokens: n, pos0, row0: 0, _pad: 0 }));
        queue.write_buffer(&self.step_last, 0, bytemuck::bytes_of(&Step { tokens: 1, pos0: pos0 + n - 1, row0: n - 1, _pad: 0 }));
    }

    /// The layer program a chunk of `tokens` tokens runs.
    fn program_for(&self, tokens: usize) -> &[Dispatch] {
        match &self.prefill {
            Some((from, tiled)) if tokens >= *from => tiled,
            _ => &self.layers,
        }
    }

    /// Times one forward of `tokens` tokens after the cached positions
    /// (which must leave room for them; at most `max_batch`) kernel by
    /// kernel: each dispatch of the layer program such a chunk takes that
    /// has work in it (the tiled program for a long chunk:
    /// `Variants::tiled_prefill_from`), and for
    /// one token (a decode step) the head and the argmax too, alone,
    /// `repeats` times in one submit, then all of them the same way. Per
    /// kernel label (kernel and weight type), in program order: its
    /// dispatches and their time per forward; and the whole forward's time.
    /// The KV cache's positions are left as they were. More tokens than
    /// `max_batch`, none, or repeats outside 1..=MAX_PROFILE_REPEATS are an
    /// invalid argument.
    pub async fn profile_step(&self, tokens: usize, repeats: usize) -> Result<(Vec<KernelTime>, f64)> {
        let max_batch = self.options.max_batch;
        if tokens > max_batch || !(1..=MAX_PROFILE_REPEATS).contains(&repeats) {
            return Err(HearthError::InvalidArgument(format!(
                "a profiled forward takes at most {max_batch} tokens (the model's max_batch) and 1 to {MAX_PROFILE_REPEATS} repeats, not {tokens} and {repeats}"
            )));
        }
        let ids = vec![0u32; tokens];
        self.validate(&ids)?;
        let n = tokens as u32;
        self.write_steps(tokens);
        self.ctx.queue.write_buffer(&self.ids, 0, bytemuck::cast_slice(&ids));
        let head = if tokens == 1 { self.head.iter().chain([&self.argmax]).collect() } else { Vec::new() };
        // (Only what has work in such a forward: a decode step's dispatches
        // are not a prompt's; see `program::Tokens`.)
        let all: Vec<&Dispatch> = self.program_for(tokens).iter().chain(head).filter(|d| d.has_work(n)).collect();
        self.time_dispatches(&all, n, repeats).await?; // warm-up: every pipeline and buffer in use once
        let in_pass = if self.ctx.has_timestamps_in_passes() { Some(program::gpu_times_in_pass(&self.ctx, &all, n, repeats).await?) } else { None };
        let mut kernels: Vec<KernelTime> = Vec::new();
        for (i, d) in all.iter().enumerate() {
            let us = self.time_dispatches(&[*d], n, repeats).await?;
            let gpu_us = in_pass.as_ref().map(|t| t[i]);
            match kernels.iter_mut().find(|k| k.kernel == d.label) {
                Some(k) => {
                    k.dispatches += 1;
                    k.us_per_token += us;
                    k.gpu_us_in_pass = k.gpu_us_in_pass.zip(gpu_us).map(|(a, b)| a + b);
                }
                None => kernels.push(KernelTime { kernel: d.label.clone(), dispatches: 1, us_per_token: us, gpu_us_in_pass: gpu_us }),
            }
        }
        let step_us = self.time_dispatches(&all, n, repeats).await?;
        Ok((kernels, step_us))
    }

    /// Microseconds `dispatches` take for `tokens` tokens, recorded `repeats` times in one submit, per time.
    async fn time_dispatches(&self, dispatches: &[&Dispatch], tokens: u32, repeats: usize) -> Result<f64> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        for _ in 0..repeats.max(1) {
            program::encode(&mut encoder, dispatches.iter().copied(), tokens);
        }
        let start = web_time::Instant::now();
        gpu::submit_and_read_via::<u32>(&self.ctx, encoder, &self.next_id, &self.next_id_staging, 1).await?;
        Ok(start.elapsed().as_secs_f64() * 1e6 / repeats.max(1) as f64)
    }

    fn validate(&self, tokens: &[u32]) -> Result<()> {
        validate_tokens(tokens, self.pos, &self.config, &self.options)
    }
}

/// The most repeats [`GpuModel::profile_step`] takes (each kernel's are
/// recorded into one command buffer).
pub const MAX_PROFILE_REPEATS: usize = 1000;

fn garbage() -> HearthError {
    HearthError::Gpu("the logits hold no finite maximum (NaN): the GPU computed garbage".into())
}
