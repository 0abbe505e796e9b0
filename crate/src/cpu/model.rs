//! The model on the CPU: `graph::layer_program` with its weight names
//! resolved at load, executed op by op over buffers made once.

use super::kv_cache::CacheRows;
use super::matrix::{matmul_many, CpuMatrix, QuantRows};
use super::ops::{self, Heads};
use super::team_size::TeamSize;
use super::{zeroed, CpuOptions, CpuWeights};
use crate::config::ModelConfig;
use crate::error::{HearthError, Result};
use crate::graph::{self, Act, Op, Rows};
use crate::model::{clamp_options, rope_table, validate_tokens, ModelOptions};
use std::sync::Arc;
use web_time::Instant;

/// An operation of the layer program with its weights in hand.
enum Run {
    Embed(Arc<CpuMatrix>),
    RmsNorm { x: Act, gain: Arc<Vec<f32>>, out: Act },
    /// Consecutive products of the same input (a layer's Q, K and V; its
    /// gate and up), in one parallel loop (`matrix::matmul_many`).
    Matmuls { x: Act, parts: Vec<(Arc<CpuMatrix>, Rows)> },
    Rope { x: Rows, heads: usize },
    Attention { layer: usize, q: Act, out: Act },
    Add { x: Act, y: Act },
    Swiglu { gate: Act, up: Act },
}

/// Buffers the program reads and writes, allocated at load.
struct Buffers {
    acts: Vec<Vec<f32>>, // indexed by `slot(act)`, max_batch rows each
    keys: Vec<CacheRows>, // per layer, context × kv_dim
    values: Vec<CacheRows>,
    /// The chunk's keys and values (max_batch × kv_dim) as the layer's
    /// products (and RoPE) give them, stored into its cache by its attention.
    new_keys: Vec<f32>,
    new_values: Vec<f32>,
    xq: QuantRows,
    scratch: Vec<f32>,
}

impl Buffers {
    /// The buffer `r` names: an activation, or the chunk's keys or values.
    fn rows_mut(&mut self, r: Rows) -> &mut Vec<f32> {
        match r {
            Rows::Act(a) => &mut self.acts[slot(a)],
            Rows::Keys(_) => &mut self.new_keys,
            Rows::Values(_) => &mut self.new_values,
        }
    }
}

/// The buffer index of `a`: its declaration order, which `Act::ALL` follows.
fn slot(a: Act) -> usize {
    a as usize
}

/// The transformer on the CPU with its KV cache.
pub struct CpuModel {
    pub config: ModelConfig,
    pub options: ModelOptions,
    program: Vec<Run>,
    out_norm: Arc<Vec<f32>>,
    output: Arc<CpuMatrix>,
    rope: Vec<[f32; 2]>,
    buf: Buffers,
    weight_bytes: u64,
    pos: usize,
    /// How many of the pool's threads a browser forward runs on.
    team: TeamSize,
}

impl CpuModel {
    pub fn load(config: ModelConfig, weights: &CpuWeights, options: ModelOptions, cpu: CpuOptions) -> Result<Self> {
        let c = &config;
        let options = clamp_options(c, options);
        let ModelOptions { context, max_batch } = options;
        let mut program = Vec::new();
        for op in graph::layer_program(c) {
            if let (Op::Matmul { w, rows, cols, x, out }, Some(Run::Matmuls { x: prev, parts })) = (&op, program.last_mut()) {
                if x == prev {
                    parts.push((weights.matrix(w, *rows, *cols)?, *out));
                    continue;
                }
            }
            program.push(match op {
                Op::Embed { table } => Run::Embed(weights.matrix(&table, c.vocab_size, c.dim)?),
                Op::RmsNorm { x, gain, out } => Run::RmsNorm { x, gain: weights.vector(&gain, c.dim)?, out },
                Op::Matmul { w, rows, cols, x, out } => Run::Matmuls { x, parts: vec![(weights.matrix(&w, rows, cols)?, out)] },
                Op::Rope { x, heads } => Run::Rope { x, heads },
                Op::Attention { layer, q, out } => Run::Attention { layer, q, out },
                Op::Add { x, y } => Run::Add { x, y },
                Op::Swiglu { gate, up } => Run::Swiglu { gate, up },
            });
        }
        // The scratch holds the head's logits or a run of products for every token.
        let products = program.iter().map(|r| match r {
            Run::Matmuls { parts, .. } => parts.iter().map(|(m, _)| m.rows).sum::<usize>() * max_batch,
            _ => 0,
        });
        let widest = products.fold(c.vocab_size, usize::max);
        let alloc = |n: usize| zeroed::<f32>(n, "buffers");
        let mut acts = Vec::new();
        for a in Act::ALL {
            acts.push(alloc(max_batch * a.width(c))?);
        }
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for _ in 0..c.n_layers {
            keys.push(CacheRows::new(context * c.kv_dim(), cpu.f16_kv_cache)?);
            values.push(CacheRows::new(context * c.kv_dim(), cpu.f16_kv_cache)?);
        }
        let (new_keys, new_values) = (alloc(max_batch * c.kv_dim())?, alloc(max_batch * c.kv_dim())?);
        let buf = Buffers { acts, keys, values, new_keys, new_values, xq: QuantRows::default(), scratch: alloc(widest)? };
        Ok(CpuModel {
            out_norm: weights.vector(graph::OUTPUT_NORM, c.dim)?,
            output: weights.matrix(graph::output_matrix(c), c.vocab_size, c.dim)?,
            rope: rope_table(c, context),
            program,
            buf,
            weight_bytes: weights.size_bytes(),
            pos: 0,
            team: TeamSize::new(rayon::current_num_threads()),
            config,
            options,
        })
    }

    /// Positions held in the KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forgets every position after the first `n`.
    pub fn truncate(&mut self, n: usize) {
        self.pos = self.pos.min(n);
    }

    /// Heap memory the model holds: weights, KV cache, buffers.
    pub fn memory_bytes(&self) -> u64 {
        let b = &self.buf;
        let floats: usize = b.acts.iter().chain([&b.new_keys, &b.new_values, &b.scratch]).map(Vec::len).sum();
        let cache: u64 = b.keys.iter().chain(&b.values).map(CacheRows::bytes).sum();
        self.weight_bytes + floats as u64 * 4 + cache
    }

    /// Bytes of weights (read once per decoded token).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Threads a forward computes on: in the browser, the team `TeamSize`
    /// chose (the pool's size until it has); natively, the whole pool.
    pub fn threads(&self) -> usize {
        if cfg!(target_arch = "wasm32") {
            self.team.for_batch()
        } else {
            rayon::current_num_threads()
        }
    }

    /// Runs `tokens` after the cached positions; returns the last token's logits.
    pub async fn forward_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        validate_tokens(tokens, self.pos, &self.config, &self.options)?;
        // Single-token steps (decode) are alike: they time the team sizes.
        let step = tokens.len() == 1;
        let threads = if step { self.team.for_step() } else { self.team.for_batch() };
        let start = Instant::now();
        let logits = on_the_pool(threads, || {
            let mut last = 0;
            for chunk in tokens.chunks(self.options.max_batch) {
                self.run_layers(chunk);
                last = chunk.len() - 1;
            }
            let d = self.config.dim;
            let x = &self.buf.acts[slot(Act::X)][last * d..(last + 1) * d];
            let mut h = vec![0.0; d];
            ops::rms_norm(x, &self.out_norm, self.config.rms_eps, &mut h);
            self.head(&h, 1)
        });
        if step {
            self.team.record(threads, start.elapsed().as_secs_f64());
        }
        Ok(logits)
    }

    /// Runs `tokens` after the cached positions; returns the most likely next token.
    pub async fn forward_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        let logits = self.forward_logits(tokens).await?;
        if logits.iter().any(|v| v.is_nan()) {
            return Err(HearthError::Model("the logits hold NaN: the weights or activations are broken".into()));
        }
        Ok(crate::sampler::argmax(&logits))
    }

    /// Runs `tokens` after the cached positions; returns every position's logits.
    pub async fn forward_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        validate_tokens(tokens, self.pos, &self.config, &self.options)?;
        let d = self.config.dim;
        let mut out = Vec::with_capacity(tokens.len() * self.config.vocab_size);
        on_the_pool(self.team.for_batch(), || {
            for chunk in tokens.chunks(self.options.max_batch) {
                self.run_layers(chunk);
                let n = chunk.len();
                let mut h = vec![0.0; n * d];
                ops::rms_norm(&self.buf.acts[slot(Act::X)][..n * d], &self.out_norm, self.config.rms_eps, &mut h);
                out.extend(self.head(&h, n));
            }
        });
        Ok(out)
    }

    /// Logits of `tokens` normed rows `h`.
    fn head(&mut self, h: &[f32], tokens: usize) -> Vec<f32> {
        let vocab = self.config.vocab_size;
        let b = &mut self.buf;
        if b.scratch.len() < tokens * vocab {
            b.scratch.resize(tokens * vocab, 0.0);
        }
        b.xq.quantize(h, tokens, self.config.dim);
        let mut logits = vec![0.0; tokens * vocab];
        self.output.matmul(h, &b.xq, tokens, &mut b.scratch, &mut logits);
        logits
    }

    /// The layer program over one chunk of at most max_batch tokens.
    fn run_layers(&mut self, ids: &[u32]) {
        let c = &self.config;
        let (n, pos0) = (ids.len(), self.pos);
        let b = &mut self.buf;
        let kvd = c.kv_dim();
        let heads = Heads { heads: c.n_heads, kv_heads: c.n_kv_heads, head_dim: c.head_dim };
        for op in &self.program {
            match op {
                Run::Embed(table) => {
                    let x = &mut b.acts[slot(Act::X)];
                    for (t, &id) in ids.iter().enumerate() {
                        table.row_into(id as usize, &mut x[t * c.dim..(t + 1) * c.dim]);
                    }
                }
                Run::RmsNorm { x, gain, out } => {
                    let mut o = std::mem::take(&mut b.acts[slot(*out)]);
                    ops::rms_norm(&b.acts[slot(*x)][..n * c.dim], gain, c.rms_eps, &mut o[..n * c.dim]);
                    b.acts[slot(*out)] = o;
                }
                Run::Matmuls { x, parts } => {
                    // The buffers written, taken out of their slots while the input is read.
                    let mut taken: Vec<Vec<f32>> = parts.iter().map(|(_, out)| std::mem::take(b.rows_mut(*out))).collect();
                    let cols = parts[0].0.cols;
                    let input = &b.acts[slot(*x)][..n * cols];
                    b.xq.quantize(input, n, cols);
                    let mut outs: Vec<&mut [f32]> = parts.iter().zip(taken.iter_mut()).map(|((w, _), buffer)| &mut buffer[..n * w.rows]).collect();
                    let matrices: Vec<&CpuMatrix> = parts.iter().map(|(w, _)| &**w).collect();
                    matmul_many(&matrices, input, &b.xq, n, &mut b.scratch, &mut outs);
                    drop(outs);
                    for ((_, out), buffer) in parts.iter().zip(taken) {
                        *b.rows_mut(*out) = buffer;
                    }
                }
                Run::Rope { x, heads } => {
                    let width = heads * c.head_dim;
                    let rows = &mut b.rows_mut(*x)[..n * width];
                    ops::rope(rows, pos0, *heads, c.head_dim, &self.rope, c.rope_dim / 2);
                }
                Run::Attention { layer, q, out } => {
                    b.keys[*layer].store(pos0 * kvd, &b.new_keys[..n * kvd]);
                    b.values[*layer].store(pos0 * kvd, &b.new_values[..n * kvd]);
                    let mut o = std::mem::take(&mut b.acts[slot(*out)]);
                    let positions = (pos0 + n) * kvd;
                    let qd = c.q_dim();
                    ops::attention(
                        &b.acts[slot(*q)][..n * qd],
                        b.keys[*layer].view(positions),
                        b.values[*layer].view(positions),
                        pos0,
                        &heads,
                        &mut o[..n * qd],
                    );
                    b.acts[slot(*out)] = o;
                }
                Run::Add { x, y } => {
                    let w = x.width(c) * n;
                    let mut o = std::mem::take(&mut b.acts[slot(*x)]);
                    ops::add(&mut o[..w], &b.acts[slot(*y)][..w]);
                    b.acts[slot(*x)] = o;
                }
                Run::Swiglu { gate, up } => {
                    let w = gate.width(c) * n;
                    let mut g = std::mem::take(&mut b.acts[slot(*gate)]);
                    ops::swiglu(&mut g[..w], &b.acts[slot(*up)][..w]);
                    b.acts[slot(*gate)] = g;
                }
            }
        }
        self.pos += n;
    }
}

/// Runs `f` on one of the pool's threads, so that its operations' parallel
/// loops start there: called from any other thread, each of the forward's
/// hundreds of loops would hand itself to the pool and block until it is
/// done, two thread switches a loop (natively they took about 40 % of a
/// decode step's CPU time, in the scheduler). In the browser `threads - 1`
/// of the pool's other threads also stay awake for the whole forward
/// (`team`); natively the whole pool takes part, through rayon.
fn on_the_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(target_arch = "wasm32")]
    return super::team::Team::lead(threads, f);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = threads;
        rayon::scope(|_| f())
    }
}
