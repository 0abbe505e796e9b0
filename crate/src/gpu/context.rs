//! The GPU context: adapter, device, queue and the pipelines built at start.

use super::kernels::Pipelines;
use crate::error::{HearthError, Result};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// A short description of the adapter, shown to users and logged by benchmarks.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub vendor: String,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    /// True for CPU implementations (lavapipe, SwiftShader, WARP).
    pub is_software: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub shader_f16: bool,
}

/// Device, queue and every compute pipeline, created once and shared.
///
/// Cloning is cheap (handles are reference-counted), which lets async wasm
/// exports own a context without borrowing.
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: Arc<AdapterReport>,
    pub pipelines: Arc<Pipelines>,
    /// The first GPU error no error scope caught (validation, out of memory),
    /// kept for the caller instead of wgpu's default of panicking.
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Finds the best adapter (a hardware one if any) and opens a device on it
    /// with the adapter's own limits, so large models get the buffers the
    /// hardware allows rather than WebGPU's conservative defaults.
    pub async fn new() -> Result<Self> {
        let backends = if cfg!(target_arch = "wasm32") {
            wgpu::Backends::BROWSER_WEBGPU
        } else {
            wgpu::Backends::PRIMARY
        };
        let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor {
            backends,
            ..Default::default()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
            })
            .await
            .map_err(|e| HearthError::NoAdapter(e.to_string()))?;

        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hearth"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| HearthError::DeviceRequest(e.to_string()))?;

        let report = AdapterReport {
            name: info.name.clone(),
            vendor: vendor_name(&info),
            device_type: format!("{:?}", info.device_type),
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            is_software: info.device_type == wgpu::DeviceType::Cpu
                || looks_like_software(&info.name),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
            max_buffer_size: limits.max_buffer_size,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
        };
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("GPU error: {e}");
            slot.lock().expect("error slot").get_or_insert_with(|| e.to_string());
        }));
        Ok(Self { device, queue, report: Arc::new(report), pipelines: Arc::new(Pipelines::default()), uncaptured })
    }

    /// The GPU error raised since the last call, if any, as a typed error.
    /// Checked after every read-back and at the end of a model load.
    pub fn take_error(&self) -> Result<()> {
        match self.uncaptured.lock().expect("error slot").take() {
            Some(message) => Err(HearthError::Gpu(message)),
            None => Ok(()),
        }
    }

    /// Blocking constructor for native callers (CLI, tests, benchmarks).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }
}

/// In browsers the adapter name is often empty; `vendor`/`architecture`
/// ("google" / "swiftshader") are what identifies it there.
fn vendor_name(info: &wgpu::AdapterInfo) -> String {
    match info.vendor {
        0x10de => "nvidia".into(),
        0x1002 => "amd".into(),
        0x8086 => "intel".into(),
        0x106b => "apple".into(),
        0x10005 => "mesa".into(),
        0x1ae0 => "google".into(),
        0 => String::new(),
        v => format!("0x{v:04x}"),
    }
}

fn looks_like_software(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["llvmpipe", "lavapipe", "swiftshader", "warp", "software"].iter().any(|s| name.contains(s))
}
