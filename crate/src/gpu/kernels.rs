//! The WGSL kernel table: one file per kernel under `shaders/`, embedded at
//! compile time. Every kernel is prefixed with `step.wgsl` (the shared
//! per-forward uniform); kernels that read weights also with `quant.wgsl`
//! (block decoding), specialised per weight type through the `QTYPE`
//! override, and the attention kernels with `attention_io.wgsl` (their
//! bindings). Pipelines are compiled on first request and then reused.

use crate::formats::gguf::TensorType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every compute kernel the engine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embed,
    RmsNorm,
    Matmul,
    /// The matmul over a layer's stacked Q, K and V projections, writing the
    /// queries and both caches (shaders/matmul.wgsl with `SPLIT`).
    MatmulQkv,
    /// The matmul over a layer's stacked FFN gate and up projections, with
    /// SwiGLU applied as it writes (shaders/matmul.wgsl with `SWIGLU`).
    MatmulSwiglu,
    /// A decode step's attention output projection reading the attention's
    /// runs of keys and adding them up itself, instead of after an
    /// `AttentionCombine` (shaders/matmul.wgsl with matmul_x_attention.wgsl;
    /// `Variants::attention_in_output_product`).
    MatmulAttention,
    Rope,
    Attention,
    /// A prompt chunk's attention in tiles of 8 queries of one head, each
    /// key and value row loaded once for all 8 (shaders/attention_cpu_tiles.wgsl;
    /// `Variants::prompt_attention_in_tiles`), specialised to the model's
    /// head size.
    AttentionTiles,
    /// Flash-decoding's second pass: a decode step's output from the runs
    /// of keys the GPUs' attention split (shaders/attention_combine.wgsl).
    AttentionCombine,
    Swiglu,
    Add,
    Argmax,
    /// Sampling with every sampler setting (shaders/sample.wgsl).
    Sample,
    /// The benchmark's streaming-read probe (shaders/read_bandwidth.wgsl).
    ReadBandwidth,
}

const STEP: &str = include_str!("../../../shaders/step.wgsl");
const QUANT: &str = include_str!("../../../shaders/quant.wgsl");
const ATTENTION_IO: &str = include_str!("../../../shaders/attention_io.wgsl");

impl Kernel {
    fn file(self) -> &'static str {
        match self {
            Kernel::Embed => include_str!("../../../shaders/embed.wgsl"),
            Kernel::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl"),
            Kernel::Matmul | Kernel::MatmulQkv | Kernel::MatmulSwiglu | Kernel::MatmulAttention => include_str!("../../../shaders/matmul.wgsl"),
            Kernel::Rope => include_str!("../../../shaders/rope.wgsl"),
            // (CPU-based adapters' variant is picked in `Kernel::source`.)
            Kernel::Attention => include_str!("../../../shaders/attention.wgsl"),
            Kernel::AttentionTiles => include_str!("../../../shaders/attention_cpu_tiles.wgsl"),
            Kernel::AttentionCombine => include_str!("../../../shaders/attention_combine.wgsl"),
            Kernel::Swiglu => include_str!("../../../shaders/swiglu.wgsl"),
            Kernel::Add => include_str!("../../../shaders/add.wgsl"),
            Kernel::Argmax => include_str!("../../../shaders/argmax.wgsl"),
            Kernel::Sample => include_str!("../../../shaders/sample.wgsl"),
            Kernel::ReadBandwidth => include_str!("../../../shaders/read_bandwidth.wgsl"),
        }
    }

    /// The matrix products (shaders/matmul.wgsl).
    pub fn is_matmul(self) -> bool {
        matches!(self, Kernel::Matmul | Kernel::MatmulQkv | Kernel::MatmulSwiglu | Kernel::MatmulAttention)
    }

    /// Kernels that decode quantized weights.
    pub fn reads_weights(self) -> bool {
        self == Kernel::Embed || self.is_matmul()
    }

    fn source(self, variants: Variants) -> String {
        // What the kernel file builds on, after the per-forward uniform.
        let prelude = match self {
            _ if self.reads_weights() => QUANT,
            Kernel::Attention | Kernel::AttentionTiles => ATTENTION_IO,
            _ => "",
        };
        let file = match self {
            Kernel::Attention if variants.cpu_attention => ATTENTION_CPU,
            _ => self.file(),
        };
        let shared = variants.subgroup_shared_loads;
        let matmul = self.is_matmul();
        let entry = match self {
            _ if matmul && variants.matmul_tiled => format!("{MATMUL_X_LOADS}\n{MATMUL_TILED}"),
            _ if matmul && variants.matmul_lanes() > 1 => {
                let sum = if variants.subgroup_reductions { MATMUL_LANES_SUBGROUP } else { MATMUL_LANES_WORKGROUP };
                format!("{MATMUL_X_LOADS}\n{MATMUL_LANES}\n{sum}")
            }
            _ if matmul && shared => MATMUL_X_SUBGROUP.to_string(),
            _ if matmul => format!("{MATMUL_X_LOADS}\n{MATMUL_THREADS}"),
            Kernel::Attention if variants.cpu_attention && shared => ATTENTION_CPU_SUBGROUP.to_string(),
            Kernel::Attention if variants.cpu_attention => ATTENTION_CPU_WORKGROUP.to_string(),
            _ => String::new(),
        };
        let rope = match self {
            _ if matmul && variants.rope_in_qkv() => MATMUL_ROPE,
            _ if matmul => MATMUL_NO_ROPE,
            _ => "",
        };
        let norm = match self {
            _ if matmul && variants.fuses_norm() => MATMUL_NORM,
            _ if matmul => MATMUL_NO_NORM,
            _ => "",
        };
        let x = match self {
            Kernel::MatmulAttention => MATMUL_X_ATTENTION,
            _ if matmul => MATMUL_X_STORAGE,
            _ => "",
        };
        let kv = if variants.f16_kv_cache { "enable f16;\nalias kv = f16;" } else { "alias kv = f32;" };
        format!("{kv}\n{STEP}\n{prelude}\n{file}\n{x}\n{rope}\n{norm}\n{entry}")
    }
}

// The attention of CPU-based adapters, then its kernel with the weights
// shared in the subgroup or in workgroup memory (`Variants::cpu_attention`).
const ATTENTION_CPU: &str = include_str!("../../../shaders/attention_cpu.wgsl");
const ATTENTION_CPU_SUBGROUP: &str = include_str!("../../../shaders/attention_cpu_subgroup.wgsl");
const ATTENTION_CPU_WORKGROUP: &str = include_str!("../../../shaders/attention_cpu_workgroup.wgsl");
// Entry points of the matmul, with the way their threads get x (see
// `Variants::subgroup_shared_loads`).
const MATMUL_X_LOADS: &str = include_str!("../../../shaders/matmul_x_loads.wgsl");
const MATMUL_X_SUBGROUP: &str = include_str!("../../../shaders/matmul_x_subgroup.wgsl");
const MATMUL_THREADS: &str = include_str!("../../../shaders/matmul_threads.wgsl");
// How the matmul reads x: from its binding, or added up from the
// attention's runs (`Kernel::MatmulAttention`).
const MATMUL_X_STORAGE: &str = include_str!("../../../shaders/matmul_x_storage.wgsl");
const MATMUL_X_ATTENTION: &str = include_str!("../../../shaders/matmul_x_attention.wgsl");
// RoPE in the QKV product's writes, or not (`Variants::rope_in_qkv`).
const MATMUL_ROPE: &str = include_str!("../../../shaders/matmul_rope.wgsl");
const MATMUL_NO_ROPE: &str = include_str!("../../../shaders/matmul_no_rope.wgsl");
// The RMSNorm and the residual add in the products, or not (`Variants::fuses_norm`).
const MATMUL_NORM: &str = include_str!("../../../shaders/matmul_norm.wgsl");
const MATMUL_NO_NORM: &str = include_str!("../../../shaders/matmul_no_norm.wgsl");
// The matmul with several threads per row (`Variants::matmul_lanes_per_row`)
// and the two ways its threads add their sums up.
const MATMUL_LANES: &str = include_str!("../../../shaders/matmul_lanes.wgsl");
const MATMUL_LANES_WORKGROUP: &str = include_str!("../../../shaders/matmul_lanes_workgroup.wgsl");
const MATMUL_LANES_SUBGROUP: &str = include_str!("../../../shaders/matmul_lanes_subgroup.wgsl");
// The matmul in tiles of rows × tokens (`Variants::matmul_tiled`).
const MATMUL_TILED: &str = include_str!("../../../shaders/matmul_tiled.wgsl");

/// Kernel choices made per adapter: the fastest design differs between GPUs
/// and CPU-based adapters (lavapipe, SwiftShader), where every lane's load
/// and every barrier is emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Variants {
    /// Output rows per matmul thread (shaders/matmul.wgsl `RPT`): 1 on GPUs,
    /// 4 on CPU-based adapters, where rows sharing the loads of x pays off.
    pub matmul_rows_per_thread: u32,
    /// The attention of CPU-based adapters (shaders/attention_cpu.wgsl:
    /// eight threads per head, with few barriers and no array indexed per
    /// thread, and with `subgroup_shared_loads` none at all) instead of
    /// the GPUs' (shaders/attention.wgsl, 64 threads per head).
    pub cpu_attention: bool,
    /// A layer's Q, K and V, and its FFN gate and up (with the SwiGLU),
    /// each multiplied by one dispatch over the matrices packed as one
    /// (`gpu::model::stacked_matrices`); on every adapter, as a dispatch
    /// has a cost of its own everywhere.
    pub stacked_matmuls: bool,
    /// Halves (weight scales, f16 weights) converted by `unpack2x16float`
    /// rather than bit by bit (shaders/quant.wgsl `HALF_UNPACK_EXACT`):
    /// where the adapter was found to keep subnormal halves exact
    /// (`GpuContext::new` probes it; WGSL lets implementations flush them).
    pub exact_half_unpack: bool,
    /// Values every thread of a subgroup reads (one token's x in the matmul
    /// with four rows per thread, the query in the CPU-based adapters'
    /// attention) loaded once, a vec4 per lane, and shared by
    /// subgroupBroadcast (shaders/matmul_x_subgroup.wgsl,
    /// attention_cpu_subgroup.wgsl, which shares its weights so too) instead
    /// of loaded by every thread: on llvmpipe, where every storage or
    /// workgroup-memory load is a loop over the lanes and a broadcast a
    /// register extract. Needs subgroups of at least 8 lanes
    /// (`GpuContext::new` sets it).
    pub subgroup_shared_loads: bool,
    /// The KV cache held in f16 (WGSL `kv`, see shaders/step.wgsl): half
    /// the memory of f32 and of the attention's reads, as llama.cpp keeps
    /// it; the keys are rotated in f32 and rounded once. Needs the device's
    /// shader-f16; `GpuContext::new` sets it on GPUs that have it (the
    /// fixtures' logits move by about 1e-2, against 5e-5 in f32).
    pub f16_kv_cache: bool,
    /// Threads sharing each row of a matmul (shaders/matmul_lanes.wgsl),
    /// a power of two up to 64; 1: a thread per row. On GPUs, where a
    /// thread per row leaves most of the GPU idle on small matrices (576
    /// rows: 576 threads): 16, or 32 where subgroups hold 32 lanes
    /// (`GpuContext::new`); on an H200 (Vulkan) decode ran 8-21 % faster
    /// with 16 than with 8, and 32 added up to 5 %. With four rows per thread
    /// (CPU-based adapters) it is not used.
    pub matmul_lanes_per_row: u32,
    /// Those threads' sums added by subgroup shuffles
    /// (matmul_lanes_subgroup.wgsl) rather than in workgroup memory: where
    /// the device has subgroups of at least `matmul_lanes_per_row` lanes.
    pub subgroup_reductions: bool,
    /// Tokens per workgroup of the matmul with several threads per row
    /// (shaders/matmul_lanes.wgsl `TOKEN_CHUNK`, a multiple of 4 up to 32,
    /// which matmul_norm.wgsl's workgroup memory holds): a
    /// prompt's tokens are split among workgroups as well as its rows, so
    /// that a prefill fills a large GPU. 8: on an H200, prefill ran 2.0x
    /// as fast as with all tokens in each workgroup (16: 1.9x, 64: 1.5x).
    pub matmul_token_chunk: u32,
    /// Runs of keys a decode step's attention splits each head's keys into
    /// on GPUs (flash-decoding: shaders/attention.wgsl's dispatch z, then
    /// attention_combine.wgsl adds the runs up); 1: none. 16 on GPUs: 9
    /// heads × 16 runs fill a large GPU, where 9 workgroups walking all
    /// the keys in turn left it idle. CPU-based adapters' attention
    /// (`cpu_attention`) does not split.
    pub attention_runs: u32,
    /// A prompt chunk's attention in tiles of 8 queries of a head
    /// (`Kernel::AttentionTiles`), on llvmpipe: there each lane's load is a
    /// loop over the lanes, and a prompt's attention was mostly its loads of
    /// keys and values, made once per query (half of a 512-token prefill);
    /// in tiles each row is loaded once for 8 queries. Where
    /// [`Variants::prompt_attention_in_tiles`] holds; decode steps keep the
    /// one-query kernel.
    pub attention_tiles: bool,
    /// A decode step's attention runs added up by the output projection
    /// that reads them (`Kernel::MatmulAttention`: each of its workgroups
    /// adds them up into workgroup memory) instead of by an
    /// `AttentionCombine` dispatch before it: one dispatch fewer per layer
    /// on GPUs, where a decode step is mostly dispatches one after another
    /// (about 10 µs each on an H200, whatever their work), against the
    /// runs read again by every workgroup of the product from cache (some
    /// 40 KB each for SmolLM2-135M; not yet measured on a GPU: README).
    /// Where [`Variants::attention_in_product`] holds.
    pub attention_in_output_product: bool,
    /// A layer's RMSNorms applied by the products that read their output
    /// (the stacked QKV, the stacked gate and up) and its residual adds
    /// done by the products before (the attention's output projection,
    /// the FFN's down), on GPUs (shaders/matmul_norm.wgsl): two dispatches
    /// fewer per layer, where a decode step is mostly dispatches one after
    /// another. CPU-based adapters keep them apart (the RMSNorm with the
    /// residual add, one dispatch).
    pub norm_in_matmul: bool,
    /// Threads per RMSNorm workgroup (shaders/rms_norm.wgsl `WG`, a power
    /// of two): 64 on GPUs; 8 on CPU-based adapters, one lavapipe SIMD batch,
    /// where the tree reduction's barriers then cost next to nothing
    /// (lavapipe decode 2-5 % faster, SwiftShader the same or faster).
    pub rms_norm_threads: u32,
    /// Tokens sampled on the GPU (shaders/sample.wgsl), so a sampled token
    /// reads back 4 bytes instead of the vocabulary's logits, on GPUs;
    /// CPU-based adapters read the logits (a copy in the same memory) and
    /// sample on the CPU, where one workgroup's three passes over the
    /// logits and its barriers cost more than the CPU's selection.
    pub gpu_sampling: bool,
    /// Prompt chunks of at least this many tokens go through a second
    /// layer program whose products are tiled (`matmul_tiled`); 0: never.
    /// GPUs: 16 (a decode step and short chunks keep matmul_lanes.wgsl).
    /// CPU-based adapters: 0 (their four rows by four tokens per thread
    /// already reuse each load; workgroup memory and barriers are what
    /// costs most there).
    pub tiled_prefill_from: u32,
    /// The matmul kernels of this pipeline set are the tiled ones
    /// (shaders/matmul_tiled.wgsl: tiles of 32 rows × 32 tokens, weights
    /// decoded and x loaded once per tile into workgroup memory): the set
    /// the model's prefill program is built with (`tiled_prefill_from`).
    pub matmul_tiled: bool,
    /// Greedy decode steps chained on the GPU (`GpuModel::submit_chained_greedy`:
    /// each step is queued before the previous token is read back, its
    /// input taken from where the previous step left it), so the GPU
    /// computes while the CPU reads back, handles the token and records the
    /// next step. On GPUs and in the browser; natively not on CPU-based
    /// adapters, where that CPU work competes with the adapter's own
    /// threads for the same cores (lavapipe decoded at 25.7-28.1 tok/s
    /// chained against 25.8-32.2 not, in alternating runs), while in
    /// Chromium, whose read-backs cross to the GPU process, SwiftShader
    /// decoded as fast or faster chained (5.58-5.83 tok/s against 5.20-5.80).
    pub chained_decode: bool,
}

impl Variants {
    /// The choices for a GPU (`software` false) or a CPU-based adapter.
    pub fn for_adapter(software: bool) -> Self {
        Variants {
            matmul_rows_per_thread: if software { 4 } else { 1 },
            cpu_attention: software,
            stacked_matmuls: true,
            exact_half_unpack: false,
            subgroup_shared_loads: false,
            f16_kv_cache: false,
            matmul_lanes_per_row: if software { 1 } else { 16 },
            subgroup_reductions: false,
            rms_norm_threads: if software { 8 } else { 64 },
            gpu_sampling: !software,
            matmul_token_chunk: 8,
            norm_in_matmul: !software,
            attention_runs: if software { 1 } else { 16 },
            attention_in_output_product: !software,
            attention_tiles: software,
            tiled_prefill_from: if software { 0 } else { 16 },
            matmul_tiled: false,
            // (The browser chains on any adapter: see the variant.)
            chained_decode: !software || cfg!(target_arch = "wasm32"),
        }
    }

    /// Threads per matmul row as the kernels use it (1 with four rows per thread).
    pub fn matmul_lanes(&self) -> u32 {
        if self.matmul_rows_per_thread == 4 {
            1
        } else {
            self.matmul_lanes_per_row.clamp(1, 64)
        }
    }

    /// RoPE applied by the QKV product as it writes the queries and the
    /// keys (straight into the cache), instead of by a dispatch of its own
    /// (shaders/matmul_rope.wgsl): with stacked matrices, where a thread
    /// holds both rows of each rotated pair: four rows per thread (CPU-based
    /// adapters, where a dispatch costs tens of microseconds), or several
    /// threads per row and two rows per group of them (GPUs, where a decode
    /// step of a small model is mostly dispatches one after another).
    pub fn rope_in_qkv(&self) -> bool {
        self.stacked_matmuls && (self.matmul_rows_per_thread == 4 || self.matmul_lanes() > 1)
    }

    /// Tokens per workgroup of the matmul with several threads per row, as
    /// the kernels use it (`matmul_token_chunk` in 4 ..= 32, a multiple of 4).
    pub fn token_chunk(&self) -> u32 {
        self.matmul_token_chunk.clamp(4, 32) / 4 * 4
    }

    /// The matmul's tiles (shaders/matmul_tiled.wgsl): output rows and
    /// tokens per workgroup.
    pub const TILE: u32 = 32;

    /// Whether products apply the RMSNorm and the residual add
    /// (`norm_in_matmul`): with several threads per row and the RoPE in the
    /// QKV product (whose binding comes before the gain's).
    pub fn fuses_norm(&self) -> bool {
        self.norm_in_matmul && self.matmul_lanes() > 1 && self.rope_in_qkv()
    }

    /// Whether a decode step's output projection adds the attention's runs
    /// up (`attention_in_output_product`): with the GPUs' attention split
    /// into runs and the products with several threads per row (whose entry
    /// point does it), not in the tiled ones (prompts only).
    pub fn attention_in_product(&self) -> bool {
        self.attention_in_output_product && !self.cpu_attention && self.attention_runs > 1 && self.matmul_lanes() > 1 && !self.matmul_tiled
    }

    /// Whether a prompt chunk's attention runs in tiles (`attention_tiles`):
    /// with the CPU-based adapters' attention and the subgroups whose
    /// broadcasts share each row among a tile's lanes (llvmpipe).
    pub fn prompt_attention_in_tiles(&self) -> bool {
        self.attention_tiles && self.cpu_attention && self.subgroup_shared_loads
    }

    /// Bytes per value of the KV cache.
    pub fn kv_bytes(&self) -> usize {
        if self.f16_kv_cache {
            2
        } else {
            4
        }
    }
}

/// A kernel, for those that read weights the weight type, and for those
/// specialised to a model's head size that size (else 0).
type PipelineKey = (Kernel, Option<TensorType>, u32);

/// Compiled pipelines, keyed by kernel, (for weight readers) weight type
/// and (for `Kernel::AttentionTiles`) head size, all of one set of [`Variants`].
pub struct Pipelines {
    cache: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    variants: Variants,
}

impl Pipelines {
    pub fn new(variants: Variants) -> Self {
        Pipelines { cache: Mutex::default(), variants }
    }

    pub fn variants(&self) -> Variants {
        self.variants
    }

    pub fn matmul_rows_per_thread(&self) -> u32 {
        self.variants.matmul_rows_per_thread.max(1)
    }

    /// Rows per thread of `kernel` (a matmul): the fused SwiGLU needs each
    /// thread to hold a gate row and its up row, and the QKV product with
    /// RoPE both rows of each rotated pair, so at least 2 (4 stays 4).
    pub fn rows_per_thread(&self, kernel: Kernel) -> u32 {
        match (kernel, self.matmul_rows_per_thread()) {
            (_, 4) => 4,
            (Kernel::MatmulSwiglu, _) => 2,
            (Kernel::MatmulQkv, _) if self.variants.rope_in_qkv() => 2,
            (_, rpt) => rpt,
        }
    }

    /// The pipeline for `kernel` (reading weights of type `weights`, if it
    /// reads any), compiled on first use.
    pub fn get(&self, device: &wgpu::Device, kernel: Kernel, weights: Option<TensorType>) -> Arc<wgpu::ComputePipeline> {
        self.get_for_head_dim(device, kernel, weights, 0)
    }

    /// As [`Pipelines::get`], for a model of heads of `head_dim` values
    /// (`Kernel::AttentionTiles` is compiled for one size: its loops unroll).
    pub fn get_for_head_dim(&self, device: &wgpu::Device, kernel: Kernel, weights: Option<TensorType>, head_dim: u32) -> Arc<wgpu::ComputePipeline> {
        let weights = weights.filter(|_| kernel.reads_weights());
        debug_assert!(kernel != Kernel::AttentionTiles || (head_dim > 0 && head_dim % 32 == 0), "AttentionTiles needs its head size");
        let head_dim = if kernel == Kernel::AttentionTiles { head_dim } else { 0 };
        let mut cache = self.cache.lock().expect("pipeline cache lock");
        cache
            .entry((kernel, weights, head_dim))
            .or_insert_with(|| {
                let label = format!("{kernel:?}{}", weights.map(|t| format!("<{t}>")).unwrap_or_default());
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(kernel.source(self.variants).into()),
                });
                let mut constants: Vec<(&str, f64)> = match weights {
                    Some(t) => vec![("QTYPE", t.ggml_id() as f64), ("HALF_UNPACK_EXACT", f64::from(self.variants.exact_half_unpack))],
                    None => Vec::new(),
                };
                if kernel == Kernel::AttentionTiles {
                    constants.push(("HD4", (head_dim / 4) as f64));
                }
                if kernel == Kernel::RmsNorm {
                    constants.push(("WG", self.variants.rms_norm_threads as f64));
                }
                if matches!(kernel, Kernel::AttentionCombine | Kernel::MatmulAttention) {
                    constants.push(("RUNS", self.variants.attention_runs as f64));
                }
                if kernel.is_matmul() {
                    constants.push(("RPT", self.rows_per_thread(kernel) as f64));
                    constants.push(("SPLIT", f64::from(kernel == Kernel::MatmulQkv)));
                    constants.push(("SWIGLU", f64::from(kernel == Kernel::MatmulSwiglu)));
                    if self.variants.matmul_lanes() > 1 && !self.variants.matmul_tiled {
                        constants.push(("LANES", self.variants.matmul_lanes() as f64));
                        constants.push(("TOKEN_CHUNK", self.variants.token_chunk() as f64));
                    }
                }
                Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        ..Default::default()
                    },
                    cache: None,
                }))
            })
            .clone()
    }
}
