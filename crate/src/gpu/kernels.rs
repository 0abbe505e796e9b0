//! The WGSL kernel table: one file per kernel under `shaders/`, embedded at
//! compile time, compiled into a pipeline once when the context is created.

use std::collections::HashMap;

/// Every compute kernel the engine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    RmsNorm,
}

impl Kernel {
    pub const ALL: [Kernel; 1] = [Kernel::RmsNorm];

    fn label(self) -> &'static str {
        match self {
            Kernel::RmsNorm => "rms_norm",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Kernel::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl"),
        }
    }
}

/// Compiled pipelines, one per kernel, with layouts inferred from the WGSL.
pub struct Pipelines {
    by_kernel: HashMap<Kernel, wgpu::ComputePipeline>,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device) -> Self {
        let by_kernel = Kernel::ALL
            .iter()
            .map(|&kernel| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.label()),
                    source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.label()),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (kernel, pipeline)
            })
            .collect();
        Self { by_kernel }
    }

    pub fn get(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        &self.by_kernel[&kernel]
    }
}
