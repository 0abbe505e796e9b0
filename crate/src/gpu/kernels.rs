//! The WGSL kernel table: one file per kernel under `shaders/`, embedded at
//! compile time. Every kernel is prefixed with `step.wgsl` (the shared
//! per-forward uniform); kernels that read weights also with `quant.wgsl`
//! (block decoding), specialised per weight type through the `QTYPE`
//! override. Pipelines are compiled on first request and then reused.

use crate::formats::gguf::TensorType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every compute kernel the engine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    Embed,
    RmsNorm,
    Matmul,
    Rope,
    Attention,
    Swiglu,
    Add,
    Argmax,
    /// The benchmark's streaming-read probe (shaders/read_bandwidth.wgsl).
    ReadBandwidth,
}

const STEP: &str = include_str!("../../../shaders/step.wgsl");
const QUANT: &str = include_str!("../../../shaders/quant.wgsl");

impl Kernel {
    fn file(self) -> &'static str {
        match self {
            Kernel::Embed => include_str!("../../../shaders/embed.wgsl"),
            Kernel::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl"),
            Kernel::Matmul => include_str!("../../../shaders/matmul.wgsl"),
            Kernel::Rope => include_str!("../../../shaders/rope.wgsl"),
            Kernel::Attention => include_str!("../../../shaders/attention.wgsl"),
            Kernel::Swiglu => include_str!("../../../shaders/swiglu.wgsl"),
            Kernel::Add => include_str!("../../../shaders/add.wgsl"),
            Kernel::Argmax => include_str!("../../../shaders/argmax.wgsl"),
            Kernel::ReadBandwidth => include_str!("../../../shaders/read_bandwidth.wgsl"),
        }
    }

    /// Kernels that decode quantized weights.
    pub fn reads_weights(self) -> bool {
        matches!(self, Kernel::Embed | Kernel::Matmul)
    }

    fn source(self) -> String {
        let quant = if self.reads_weights() { QUANT } else { "" };
        format!("{STEP}\n{quant}\n{}", self.file())
    }
}

/// Compiled pipelines, keyed by kernel and (for weight readers) weight type.
#[derive(Default)]
pub struct Pipelines {
    cache: Mutex<HashMap<(Kernel, Option<TensorType>), Arc<wgpu::ComputePipeline>>>,
    /// Output rows per matmul thread (shaders/matmul.wgsl `RPT`): 1 on GPUs,
    /// 4 on CPU-based adapters, where rows sharing the loads of x pays off.
    matmul_rows_per_thread: u32,
}

impl Pipelines {
    pub fn new(matmul_rows_per_thread: u32) -> Self {
        Pipelines { cache: Mutex::default(), matmul_rows_per_thread }
    }

    pub fn matmul_rows_per_thread(&self) -> u32 {
        self.matmul_rows_per_thread.max(1)
    }

    /// The pipeline for `kernel` (reading weights of type `weights`, if it
    /// reads any), compiled on first use.
    pub fn get(&self, device: &wgpu::Device, kernel: Kernel, weights: Option<TensorType>) -> Arc<wgpu::ComputePipeline> {
        let weights = weights.filter(|_| kernel.reads_weights());
        let mut cache = self.cache.lock().expect("pipeline cache lock");
        cache
            .entry((kernel, weights))
            .or_insert_with(|| {
                let label = format!("{kernel:?}{}", weights.map(|t| format!("<{t}>")).unwrap_or_default());
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                });
                let mut constants: Vec<(&str, f64)> =
                    weights.map(|t| vec![("QTYPE", t.ggml_id() as f64)]).unwrap_or_default();
                if kernel == Kernel::Matmul {
                    constants.push(("RPT", self.matmul_rows_per_thread() as f64));
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
