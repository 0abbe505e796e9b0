//! The memory plan: what loading a model will allocate on a backend, worked
//! out from the tensor table (a GGUF header, a package manifest) and checked
//! against the backend's limits before anything is downloaded or allocated.
//! A model that cannot fit is refused with the numbers and what would fit.

use crate::config::ModelConfig;
use crate::cpu::matrix::CpuMatrix;
use crate::error::{HearthError, Result};
use crate::formats::gguf::{GgufFile, TensorType};
use crate::formats::manifest::{self, Manifest};
use crate::gpu::weights::Packing;
use crate::graph::Act;
use crate::model::{clamp_options, Backend, BackendKind, ModelOptions};
use crate::weights::model_tensor_names;

/// Where a model's tensor table comes from: its type and row-major shape by name.
pub trait TensorTable {
    fn layout(&self, name: &str) -> Result<(TensorType, Vec<usize>)>;
}

impl TensorTable for GgufFile {
    fn layout(&self, name: &str) -> Result<(TensorType, Vec<usize>)> {
        let info = self.tensor(name).ok_or_else(|| HearthError::Model(format!("tensor {name} is missing")))?;
        let shape = info.dims.iter().rev().map(|&d| usize::try_from(d)).collect::<std::result::Result<_, _>>();
        Ok((info.ty, shape.map_err(|_| HearthError::Model(format!("{name}: its shape does not fit in memory")))?))
    }
}

impl TensorTable for Manifest {
    fn layout(&self, name: &str) -> Result<(TensorType, Vec<usize>)> {
        let entry = self.tensor(name).ok_or_else(|| HearthError::Package(format!("the manifest lists no tensor {name}")))?;
        Ok((manifest::parse_dtype(&entry.dtype)?, entry.shape.clone()))
    }
}

/// What a backend can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest single buffer (a GPU binding), if limited.
    pub per_buffer: Option<u64>,
    /// All the model's memory together (the wasm address space), if known.
    pub total: Option<u64>,
}

impl Limits {
    pub fn of(backend: &Backend) -> Self {
        match backend {
            Backend::Gpu(ctx) => Limits {
                per_buffer: Some(ctx.report.max_storage_buffer_binding_size.min(ctx.report.max_buffer_size)),
                // WebGPU does not say how much memory the GPU has: running
                // out is caught when it happens (an out_of_memory error).
                total: None,
            },
            Backend::Cpu(_) => Limits { per_buffer: None, total: wasm_address_space() },
        }
    }
}

/// The most memory the wasm build can address (scripts/lib.sh: the threaded
/// build's shared memory is capped at 2 GiB; wasm32 addresses 4 GiB), less
/// room for the tokenizer, the shard being loaded and the JS glue.
fn wasm_address_space() -> Option<u64> {
    const HEADROOM: u64 = 256 << 20;
    if cfg!(target_arch = "wasm32") {
        Some(if cfg!(feature = "threads") { 2 << 30 } else { 4 << 30 } - HEADROOM)
    } else {
        None
    }
}

/// The bytes a model will take on a backend, by kind.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    pub weights: u64,
    pub kv_cache: u64,
    /// Activations of one batch and the logits.
    pub activations: u64,
    /// The largest weight tensor and its bytes.
    pub largest: (String, u64),
    pub options: ModelOptions,
    /// KV cache bytes per position (all layers' keys and values).
    pub kv_per_position: u64,
}

impl MemoryPlan {
    /// The plan on a backend of `kind` whose KV cache holds `kv_value_bytes`
    /// bytes per value (`Backend::kv_value_bytes`).
    pub fn new(kind: BackendKind, kv_value_bytes: u64, config: &ModelConfig, options: ModelOptions, table: &dyn TensorTable) -> Result<Self> {
        let options = clamp_options(config, options);
        let mut weights = 0u64;
        let mut largest = (String::new(), 0u64);
        for name in model_tensor_names(config) {
            let (ty, shape) = table.layout(&name)?;
            let bytes = tensor_bytes(kind, ty, &shape).map_err(|e| HearthError::Model(format!("{name}: {e}")))?;
            weights = weights.saturating_add(bytes);
            if bytes > largest.1 {
                largest = (name, bytes);
            }
        }
        let widths: u64 = Act::ALL.iter().map(|a| a.width(config) as u64).sum();
        let kv_per_position = 2 * config.n_layers as u64 * config.kv_dim() as u64 * kv_value_bytes;
        Ok(MemoryPlan {
            weights,
            kv_cache: kv_per_position.saturating_mul(options.context as u64),
            activations: (options.max_batch as u64 * widths + 2 * config.vocab_size as u64) * 4,
            largest,
            options,
            kv_per_position,
        })
    }

    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.kv_cache).saturating_add(self.activations)
    }

    /// Refuses a plan the limits cannot hold, saying by how much and what would fit.
    pub fn check(&self, config: &ModelConfig, limits: Limits) -> Result<()> {
        let needs = format!(
            "{} (weights {}, KV cache {} for {} positions, activations {})",
            size(self.total()),
            size(self.weights),
            size(self.kv_cache),
            self.options.context,
            size(self.activations)
        );
        let per_position = self.kv_per_position;
        if let Some(limit) = limits.per_buffer {
            let (name, bytes) = &self.largest;
            if *bytes > limit {
                return Err(HearthError::TooLarge(format!(
                    "{name} needs a buffer of {}, and this GPU allows at most {} per buffer; the model needs {needs}. \
                     No context size helps: run it on the CPU backend or choose a model whose largest tensor is at most {}",
                    size(*bytes),
                    size(limit),
                    size(limit)
                )));
            }
            let per_layer = self.kv_cache / (2 * config.n_layers as u64).max(1);
            if per_layer > limit {
                let fits = limit / (per_position / (2 * config.n_layers as u64).max(1)).max(1);
                return Err(HearthError::TooLarge(format!(
                    "a layer's KV cache for {} positions needs a buffer of {}, and this GPU allows at most {} per buffer; \
                     load it with a context of at most {fits}",
                    self.options.context,
                    size(per_layer),
                    size(limit)
                )));
            }
        }
        if let Some(limit) = limits.total {
            if self.total() > limit {
                let room = limit.saturating_sub(self.weights + self.activations);
                let fits = room / per_position.max(1);
                let advice = if fits >= 1 {
                    format!("load it with a context of at most {fits}")
                } else {
                    "its weights alone do not fit: use the WebGPU backend or a smaller model".into()
                };
                return Err(HearthError::TooLarge(format!(
                    "the model needs {needs}, and the CPU backend here can hold at most {}; {advice}",
                    size(limit)
                )));
            }
        }
        Ok(())
    }
}

/// The check every load makes first: the plan for `backend`, refused if it
/// cannot fit.
pub fn check(backend: &Backend, config: &ModelConfig, options: ModelOptions, table: &dyn TensorTable) -> Result<MemoryPlan> {
    let plan = MemoryPlan::new(backend.kind(), backend.kv_value_bytes(), config, options, table)?;
    plan.check(config, Limits::of(backend))?;
    Ok(plan)
}

/// Bytes one weight tensor takes on a backend (matrices in their repacked
/// form, vectors widened to f32).
fn tensor_bytes(kind: BackendKind, ty: TensorType, shape: &[usize]) -> std::result::Result<u64, String> {
    match (kind, shape) {
        (_, [len]) => Ok(*len as u64 * 4),
        (BackendKind::Gpu, [rows, cols]) => Ok(Packing::of(ty, *rows, *cols)?.bytes()),
        (BackendKind::Cpu, [rows, cols]) => Ok(CpuMatrix::planned_bytes(ty, *rows, *cols)),
        _ => Err(format!("shape {shape:?} is neither a matrix nor a vector")),
    }
}

/// Bytes in words: "1.5 GiB", "96.0 MiB".
fn size(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    match bytes as f64 {
        b if b >= GIB => format!("{:.1} GiB", b / GIB),
        b => format!("{:.1} MiB", b / MIB),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeScaling;

    /// A Llama shape with a given vocabulary, every matrix Q4_1.
    struct Table(ModelConfig);

    impl TensorTable for Table {
        fn layout(&self, name: &str) -> Result<(TensorType, Vec<usize>)> {
            let c = &self.0;
            let shape = match name {
                "token_embd.weight" | "output.weight" => vec![c.vocab_size, c.dim],
                n if n.ends_with("norm.weight") => vec![c.dim],
                n if n.contains("attn_q") || n.contains("attn_output") => vec![c.dim, c.dim],
                n if n.contains("attn_k") || n.contains("attn_v") => vec![c.kv_dim(), c.dim],
                n if n.contains("ffn_down") => vec![c.dim, c.ffn_dim],
                _ => vec![c.ffn_dim, c.dim],
            };
            Ok((TensorType::Q4_1, shape))
        }
    }

    fn config(vocab: usize, dim: usize) -> ModelConfig {
        ModelConfig {
            dim,
            n_layers: 4,
            n_heads: dim / 64,
            n_kv_heads: dim / 64,
            head_dim: 64,
            rope_dim: 64,
            ffn_dim: 4 * dim,
            vocab_size: vocab,
            context_length: 1 << 20,
            architecture: "llama".into(),
            rms_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: RopeScaling::None,
            tied_embeddings: true,
        }
    }

    fn plan(kind: BackendKind, c: &ModelConfig, context: usize) -> MemoryPlan {
        MemoryPlan::new(kind, 4, c, ModelOptions { context, max_batch: 128 }, &Table(c.clone())).unwrap()
    }

    #[test]
    fn counts_weights_kv_and_activations() {
        let c = config(10_000, 256);
        let p = plan(BackendKind::Gpu, &c, 512);
        // Q4_1 on the GPU: 20 bytes per 32 values; the embedding is the largest.
        assert_eq!(p.largest, ("token_embd.weight".to_string(), 10_000 * 256 / 32 * 20));
        assert_eq!(p.kv_cache, 2 * 4 * 256 * 4 * 512);
        let f16 = MemoryPlan::new(BackendKind::Gpu, 2, &c, ModelOptions { context: 512, max_batch: 128 }, &Table(c.clone())).unwrap();
        assert_eq!(f16.kv_cache, p.kv_cache / 2, "an f16 KV cache takes half");
        let cpu = plan(BackendKind::Cpu, &c, 512);
        assert_eq!(cpu.largest.1, 10_000 * 256 / 32 * 24); // f32 scale and minimum per block
        assert!(p.check(&c, Limits { per_buffer: Some(1 << 30), total: None }).is_ok());
    }

    #[test]
    fn a_tensor_over_the_buffer_limit_is_refused_with_the_numbers() {
        let c = config(200_000, 8192); // a 977 MiB embedding
        let err = plan(BackendKind::Gpu, &c, 4096).check(&c, Limits { per_buffer: Some(512 << 20), total: None }).unwrap_err();
        assert_eq!(err.code(), "too_large");
        let text = err.to_string();
        assert!(text.contains("token_embd.weight needs a buffer of 976.6 MiB") && text.contains("512.0 MiB per buffer"), "{text}");
    }

    #[test]
    fn a_kv_cache_over_the_buffer_limit_says_which_context_fits() {
        let c = config(1000, 4096);
        // 16 KiB per position per layer (keys or values): 64 MiB fits 4096 positions.
        let err = plan(BackendKind::Gpu, &c, 100_000).check(&c, Limits { per_buffer: Some(64 << 20), total: None }).unwrap_err();
        assert!(err.to_string().contains("a context of at most 4096"), "{err}");
        let ok = plan(BackendKind::Gpu, &c, 4096).check(&c, Limits { per_buffer: Some(64 << 20), total: None });
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn the_cpu_total_says_which_context_fits_or_that_the_weights_do_not() {
        let c = config(32_000, 2048);
        let p = plan(BackendKind::Cpu, &c, 1 << 20);
        let limit = p.weights + p.activations + 1000 * 2 * 4 * 2048 * 4;
        let err = p.check(&c, Limits { per_buffer: None, total: Some(limit) }).unwrap_err();
        assert!(err.to_string().contains("a context of at most 1000"), "{err}");
        let err = p.check(&c, Limits { per_buffer: None, total: Some(p.weights / 2) }).unwrap_err();
        assert!(err.to_string().contains("its weights alone do not fit"), "{err}");
    }
}
