//! The model behind either backend: the GPU (WGSL on WebGPU/wgpu) or the CPU
//! (SIMD kernels over a thread pool). Both run `graph::layer_program`; this
//! file only chooses and forwards.

use crate::config::{ModelConfig, RopeScaling};
use crate::cpu::{CpuModel, CpuOptions, CpuWeights};
use crate::error::{HearthError, Result};
use crate::gpu::model::GpuModel;
use crate::gpu::weights::GpuWeights;
use crate::gpu::GpuContext;
use crate::weights::{RawTensor, TensorSource};
use serde::{Deserialize, Serialize};

/// Sizes chosen by the caller at load.
#[derive(Debug, Clone, Copy)]
pub struct ModelOptions {
    /// Positions the KV cache holds (at most the model's context length).
    pub context: usize,
    /// Tokens processed per forward; longer inputs are split into chunks.
    pub max_batch: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { context: 2048, max_batch: 128 }
    }
}

/// Which backend runs the model, by name (CLI flag, JS option, reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// WGSL compute shaders on WebGPU (wgpu natively).
    #[serde(rename = "webgpu", alias = "gpu")]
    Gpu,
    /// SIMD kernels on the CPU's threads.
    Cpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Gpu => "webgpu",
            BackendKind::Cpu => "cpu",
        }
    }
}

/// The KV cache's value type, a load option: `Auto` picks per backend: f16
/// on GPUs with shader-f16 and on the CPU backend, f32 on CPU-based
/// adapters (`Variants::f16_kv_cache`, `CpuOptions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum KvCacheType {
    #[default]
    Auto,
    /// Half the memory and the attention's reads; on a GPU, needs shader-f16.
    F16,
    /// Exact: every key and value as the projections computed it.
    F32,
}

/// Where a model's weights go and its forward passes run.
#[derive(Clone)]
pub enum Backend {
    Gpu(GpuContext),
    Cpu(CpuOptions),
}

impl Backend {
    /// The CPU backend with its default options (`KvCacheType::Auto`'s choice).
    pub fn cpu() -> Self {
        Backend::Cpu(CpuOptions::default())
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Gpu(_) => BackendKind::Gpu,
            Backend::Cpu(_) => BackendKind::Cpu,
        }
    }

    /// Bytes per value of the KV cache: 2 where it is kept in f16, else 4.
    pub fn kv_value_bytes(&self) -> u64 {
        match self {
            Backend::Gpu(ctx) => ctx.variants().kv_bytes() as u64,
            Backend::Cpu(cpu) => if cpu.f16_kv_cache { 2 } else { 4 },
        }
    }

    /// This backend with its KV cache of type `kv` (`Auto` keeps the
    /// backend's choice). An f16 cache on a GPU needs shader-f16: other GPUs
    /// refuse it with a typed error.
    pub fn with_kv_cache(self, kv: KvCacheType) -> Result<Self> {
        match (self, kv) {
            (backend, KvCacheType::Auto) => Ok(backend),
            (Backend::Gpu(ctx), kv) => Ok(Backend::Gpu(ctx.with_f16_kv_cache(kv == KvCacheType::F16)?)),
            (Backend::Cpu(_), kv) => Ok(Backend::Cpu(CpuOptions { f16_kv_cache: kv == KvCacheType::F16 })),
        }
    }

    /// This backend with greedy decode steps chained on the GPU or not
    /// (`Variants::chained_decode`; `None` keeps the default: on GPUs and in
    /// the browser). The CPU backend has no steps to chain and stays as it is.
    pub fn with_chained_decode(self, on: Option<bool>) -> Self {
        match (self, on) {
            (Backend::Gpu(ctx), Some(on)) => Backend::Gpu(ctx.with_variants(crate::gpu::Variants { chained_decode: on, ..ctx.variants() })),
            (backend, _) => backend,
        }
    }

    /// A short description: the GPU adapter, or the CPU and its threads.
    pub fn describe(&self) -> String {
        match self {
            Backend::Gpu(ctx) => ctx.report.name.clone(),
            Backend::Cpu(_) => format!("CPU, {} threads, {}", rayon::current_num_threads(), crate::cpu::simd::name()),
        }
    }
}

/// A model's weights loaded for one backend, one tensor at a time in any
/// order (a web package's shards arrive as they download).
pub enum Weights {
    Gpu(GpuContext, GpuWeights),
    Cpu(CpuOptions, CpuWeights),
}

impl Weights {
    pub fn new(backend: &Backend, config: &ModelConfig) -> Self {
        match backend {
            Backend::Gpu(ctx) => Weights::Gpu(ctx.clone(), GpuWeights::new(crate::gpu::model::stacked_matrices(ctx, config))),
            Backend::Cpu(cpu) => Weights::Cpu(*cpu, CpuWeights::default()),
        }
    }

    /// Loads every tensor of a model of `config` from `src`.
    pub fn load_all(backend: &Backend, config: &ModelConfig, src: &dyn TensorSource) -> Result<Self> {
        let mut weights = Weights::new(backend, config);
        for name in &crate::weights::model_tensor_names(config) {
            weights.add(name, &src.tensor(name)?)?;
        }
        Ok(weights)
    }

    pub fn add(&mut self, name: &str, t: &RawTensor<'_>) -> Result<()> {
        match self {
            Weights::Gpu(ctx, w) => {
                w.add(ctx, name, t)?;
                ctx.take_error()
            }
            Weights::Cpu(_, w) => w.add(name, t),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            Weights::Gpu(_, w) => w.contains(name),
            Weights::Cpu(_, w) => w.contains(name),
        }
    }
}

/// The transformer with its KV cache, on one backend.
#[allow(clippy::large_enum_variant)] // one per engine, never moved in a hot path
pub enum Model {
    Gpu(GpuModel),
    Cpu(CpuModel),
}

/// Forwards a call to whichever backend holds the model.
macro_rules! each {
    ($self:expr, $m:ident => $e:expr) => {
        match $self {
            Model::Gpu($m) => $e,
            Model::Cpu($m) => $e,
        }
    };
}

impl Model {
    pub fn load(config: ModelConfig, weights: &Weights, options: ModelOptions) -> Result<Self> {
        Ok(match weights {
            Weights::Gpu(ctx, w) => Model::Gpu(GpuModel::load(ctx, config, w, options)?),
            Weights::Cpu(cpu, w) => Model::Cpu(CpuModel::load(config, w, options, *cpu)?),
        })
    }

    pub fn kind(&self) -> BackendKind {
        match self {
            Model::Gpu(_) => BackendKind::Gpu,
            Model::Cpu(_) => BackendKind::Cpu,
        }
    }

    pub fn config(&self) -> &ModelConfig {
        each!(self, m => &m.config)
    }

    pub fn options(&self) -> ModelOptions {
        each!(self, m => m.options)
    }

    /// Positions held in the KV cache.
    pub fn position(&self) -> usize {
        each!(self, m => m.position())
    }

    /// Forgets every position after the first `n` (n = 0 starts over).
    pub fn truncate(&mut self, n: usize) {
        each!(self, m => m.truncate(n))
    }

    /// Memory the model holds (weights, KV cache, activations), in bytes: GPU
    /// memory on the GPU backend, heap memory on the CPU backend.
    pub fn memory_bytes(&self) -> u64 {
        each!(self, m => m.memory_bytes())
    }

    /// Bytes of weights (read once per decoded token).
    pub fn weight_bytes(&self) -> u64 {
        each!(self, m => m.weight_bytes())
    }

    /// CPU threads a forward computes on (0 on the GPU backend).
    pub fn threads(&self) -> usize {
        match self {
            Model::Gpu(_) => 0,
            Model::Cpu(m) => m.threads(),
        }
    }

    /// Runs `tokens` after the cached positions and returns the last token's logits.
    pub async fn forward_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        each!(self, m => m.forward_logits(tokens).await)
    }

    /// Between tokens: lets the browser handle its events on the CPU backend
    /// (the GPU backend already waits for the GPU there).
    pub async fn pause(&self) {
        if let Model::Cpu(_) = self {
            crate::cpu::yield_to_event_loop().await;
        }
    }

    /// Runs `tokens` after the cached positions and returns the most likely next token.
    pub async fn forward_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        each!(self, m => m.forward_greedy(tokens).await)
    }

    /// Runs `tokens` after the cached positions and returns the next token
    /// as `sampler` picks it given the tokens `seen` so far: on the GPU
    /// where `Variants::gpu_sampling`, otherwise from the logits read back.
    pub async fn forward_sample(&mut self, tokens: &[u32], sampler: &mut crate::sampler::Sampler, seen: &[u32]) -> Result<u32> {
        match self {
            Model::Gpu(m) if m.context().variants().gpu_sampling => m.forward_sample(tokens, sampler, seen).await,
            _ => {
                let logits = self.forward_logits(tokens).await?;
                Ok(sampler.sample(&logits, seen))
            }
        }
    }

    /// Runs `tokens` after the cached positions and returns every position's
    /// logits (`tokens.len() × vocab`, row-major).
    pub async fn forward_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        each!(self, m => m.forward_all_logits(tokens).await)
    }
}

/// Refuses an empty input, ids outside the vocabulary and inputs that would
/// overflow the KV cache after `pos` cached positions.
pub fn validate_tokens(tokens: &[u32], pos: usize, config: &ModelConfig, options: &ModelOptions) -> Result<()> {
    if tokens.is_empty() {
        return Err(HearthError::InvalidArgument("no tokens to process".into()));
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
        return Err(HearthError::InvalidArgument(format!(
            "token id {bad} is outside the vocabulary ({} tokens)",
            config.vocab_size
        )));
    }
    if pos + tokens.len() > options.context {
        return Err(HearthError::ContextFull { needed: pos + tokens.len(), context: options.context });
    }
    Ok(())
}

/// Clamps the caller's sizes to the model: context at most the model's, a
/// batch of at least 1 and at most the context.
pub fn clamp_options(config: &ModelConfig, options: ModelOptions) -> ModelOptions {
    let context = options.context.min(config.context_length);
    ModelOptions { context, max_batch: options.max_batch.clamp(1, context) }
}

/// The model's RoPE table: [`rope_cos_sin`] with its θ and position scaling.
pub fn rope_table(c: &ModelConfig, context: usize) -> Vec<[f32; 2]> {
    let scale = match c.rope_scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor } => 1.0 / factor as f64,
    };
    rope_cos_sin(context, c.rope_dim, c.rope_theta as f64, scale)
}

/// cos/sin of every (position, pair) angle for positions 0..context,
/// computed in f64: angle = pos · scale · θ^(-2i / rope_dim).
pub fn rope_cos_sin(context: usize, rope_dim: usize, theta: f64, scale: f64) -> Vec<[f32; 2]> {
    let pairs = rope_dim / 2;
    let mut table = Vec::with_capacity(context * pairs);
    for pos in 0..context {
        for i in 0..pairs {
            let angle = pos as f64 * scale * theta.powf(-2.0 * i as f64 / rope_dim as f64);
            table.push([angle.cos() as f32, angle.sin() as f32]);
        }
    }
    table
}
