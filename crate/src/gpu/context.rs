//! The GPU context: adapter, device, queue and the pipelines built at start.

use super::kernels::{Pipelines, Variants};
use super::program::{self, Dispatch, Grid};
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
    /// The adapter's subgroup sizes (least, most) where the device has
    /// subgroups (native wgpu: `Features::SUBGROUP`; wgpu's WebGPU backend
    /// does not offer them yet).
    pub subgroup_sizes: Option<[u32; 2]>,
}

/// The features that let a pass write timestamps between its dispatches
/// (for profiles), asked for natively where the adapter has them; none in
/// the browser, where WebGPU offers timestamps only at a pass's ends.
fn timestamps_in_passes() -> wgpu::Features {
    if cfg!(target_arch = "wasm32") {
        wgpu::Features::empty()
    } else {
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
    }
}

impl AdapterReport {
    /// Whether the device has subgroups, none of fewer than `lanes` lanes.
    pub fn has_subgroups_of(&self, lanes: u32) -> bool {
        self.subgroup_sizes.is_some_and(|[least, _]| least >= lanes)
    }
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
    uncaptured: Arc<Mutex<Option<HearthError>>>,
    /// Why the device was lost, once it is (set by wgpu's callback).
    lost: Arc<Mutex<Option<String>>>,
    /// Two small buffers a kernel's unused outputs are bound to (distinct:
    /// WebGPU refuses one buffer bound twice for writing in a dispatch).
    pub spare_outputs: Arc<[wgpu::Buffer; 2]>,
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
                required_features: features & (wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16 | timestamps_in_passes()),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| HearthError::DeviceRequest(e.to_string()))?;

        // wgpu's WebGPU backend leaves the adapter's names empty: ask the browser.
        #[cfg(target_arch = "wasm32")]
        let (info, browser_vendor) = with_browser_names(info).await;
        #[cfg(not(target_arch = "wasm32"))]
        let browser_vendor = String::new();
        let vendor = Some(vendor_name(&info)).filter(|v| !v.is_empty()).unwrap_or(browser_vendor);
        let report = AdapterReport {
            name: info.name.clone(),
            vendor,
            device_type: format!("{:?}", info.device_type),
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            is_software: info.device_type == wgpu::DeviceType::Cpu
                || looks_like_software(&info.name),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as u64,
            max_buffer_size: limits.max_buffer_size,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroup_sizes: features
                .contains(wgpu::Features::SUBGROUP)
                .then_some([limits.min_subgroup_size, limits.max_subgroup_size]),
        };
        let uncaptured = Arc::new(Mutex::new(None::<HearthError>));
        let slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("GPU error: {e}");
            let typed = match &e {
                wgpu::Error::OutOfMemory { .. } => HearthError::OutOfMemory(format!("the GPU ran out of memory: {e}")),
                _ => HearthError::Gpu(e.to_string()),
            };
            lock(&slot).get_or_insert(typed);
        }));
        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_slot = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            log::error!("GPU device lost ({reason:?}): {message}");
            lock(&lost_slot).get_or_insert(format!("{reason:?}: {message}"));
        });
        let pipelines = Arc::new(Pipelines::new(variants(&report)));
        let spare = |label| {
            let usage = wgpu::BufferUsages::STORAGE;
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: 16, usage, mapped_at_creation: false })
        };
        let spare_outputs = Arc::new([spare("spare output 1"), spare("spare output 2")]);
        let ctx = Self { device, queue, report: Arc::new(report), pipelines, uncaptured, lost, spare_outputs };
        let exact_half_unpack = unpacks_subnormal_halves(&ctx).await && std::env::var("HEARTH_HALF_UNPACK").as_deref() != Ok("bits");
        Ok(ctx.with_variants(Variants { exact_half_unpack, ..ctx.variants() }))
    }

    /// The GPU error raised since the last call, if any, as a typed error
    /// (`DeviceLost` once the device is gone, whatever else was reported).
    /// Checked before every forward, after every read-back and at the end of
    /// a model load.
    pub fn take_error(&self) -> Result<()> {
        if let Some(why) = lock(&self.lost).clone() {
            return Err(HearthError::DeviceLost(why));
        }
        match lock(&self.uncaptured).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Why a GPU operation failed: `DeviceLost` if the device is gone,
    /// `fallback` otherwise. In the browser the device's `lost` promise may
    /// settle some time after the operation that failed because of it, so
    /// this waits for it (up to half a second) before deciding.
    pub async fn failure(&self, fallback: HearthError) -> HearthError {
        for _ in 0..if cfg!(target_arch = "wasm32") { 50 } else { 1 } {
            if let Err(e @ HearthError::DeviceLost(_)) = self.take_error() {
                return e;
            }
            sleep_ms(10).await;
        }
        fallback
    }

    /// Whether passes can write timestamps between dispatches (natively,
    /// where the adapter can: `hearth bench --profile`'s GPU times).
    pub fn has_timestamps_in_passes(&self) -> bool {
        let wanted = timestamps_in_passes();
        !wanted.is_empty() && self.device.features().contains(wanted)
    }

    /// The same device with kernels compiled as `variants`, so tests can
    /// check every variant on any adapter.
    pub fn with_variants(&self, variants: Variants) -> Self {
        GpuContext { pipelines: Arc::new(Pipelines::new(variants)), ..self.clone() }
    }

    /// The same device with its KV cache in f16 (`on`) or f32, whatever the
    /// adapter's default; f16 only where the device has shader-f16.
    pub fn with_f16_kv_cache(&self, on: bool) -> Result<Self> {
        if on && !self.report.shader_f16 {
            return Err(HearthError::InvalidArgument(format!(
                "an f16 KV cache needs shader-f16, which this adapter ({}) does not have; use f32 or auto",
                self.report.name
            )));
        }
        if self.variants().f16_kv_cache == on {
            return Ok(self.clone());
        }
        Ok(self.with_variants(Variants { f16_kv_cache: on, ..self.variants() }))
    }

    /// The same device with the kernel variants a GPU would get (see
    /// `Variants::for_adapter`; subgroup reductions and the f16 KV cache
    /// where this device has them), whatever this adapter is: so that a
    /// CPU-based adapter (lavapipe in CI, SwiftShader in the browser)
    /// checks the kernels GPUs run.
    pub fn with_gpu_variants(&self) -> Self {
        self.with_variants(Variants { exact_half_unpack: self.variants().exact_half_unpack, ..variants_as(&self.report, false) })
    }

    /// The adapter's report (`AdapterReport`) with the kernel variants
    /// picked for it as `kernel_variants`: what `hearth info` prints and
    /// the browser's `adapterInfo()` returns.
    pub fn described(&self) -> serde_json::Value {
        let mut report = serde_json::to_value(&*self.report).expect("the report serialises");
        report["kernel_variants"] = serde_json::to_value(self.variants()).expect("the variants serialise");
        report
    }

    /// The kernel variants this context compiles.
    pub fn variants(&self) -> Variants {
        self.pipelines.variants()
    }

    /// Blocking constructor for native callers (CLI, tests, benchmarks).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }
}

/// Lets the browser's event loop run for `ms` milliseconds (natively: nothing to wait for).
async fn sleep_ms(ms: i32) {
    #[cfg(target_arch = "wasm32")]
    {
        use js_sys::{Function, Promise, Reflect};
        use wasm_bindgen::{JsCast, JsValue};
        let global = js_sys::global();
        let Ok(set_timeout) = Reflect::get(&global, &JsValue::from_str("setTimeout")).and_then(|f| f.dyn_into::<Function>().map_err(JsValue::from)) else {
            return;
        };
        let promise = Promise::new(&mut |resolve, _| {
            let _ = set_timeout.call2(&global, &resolve, &JsValue::from(ms));
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = ms;
}

/// Whether `unpack2x16float` converts subnormal halves exactly on this
/// device (WGSL lets implementations flush them to zero, and weight scales
/// have them): a few, read from a buffer (so no compiler folds them), go
/// through it in one dispatch and are compared with `half`'s conversion.
/// Any failure counts as no.
async fn unpacks_subnormal_halves(ctx: &GpuContext) -> bool {
    const SOURCE: &str = "
@group(0) @binding(0) var<storage, read> words: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec2<f32>>;
@compute @workgroup_size(4)
fn main(@builtin(local_invocation_index) i: u32) {
    out[i] = unpack2x16float(words[i]);
}";
    // Subnormals of both signs, the smallest and largest, and two normals.
    let words: [u32; 4] = [0x8001_0001, 0x03ff_0200, 0x83ff_0155, 0x3c00_0400];
    let want: Vec<f32> = words.iter().flat_map(|w| [w & 0xffff, w >> 16]).map(|h| half::f16::from_bits(h as u16).to_f32()).collect();
    ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("half probe"), source: wgpu::ShaderSource::Wgsl(SOURCE.into()) });
    let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("half probe"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let input = super::storage_from(ctx, "half probe in", &words);
    let Ok(out) = super::storage_zeroed(ctx, "half probe out", want.len()) else { return false };
    let dispatch = Dispatch::new(ctx, Arc::new(pipeline), &[&input, &out], Grid::Single);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    program::encode(&mut encoder, &[dispatch], 1);
    let got = super::submit_and_read::<f32>(ctx, encoder, &out, want.len()).await;
    let invalid = ctx.device.pop_error_scope().await;
    invalid.is_none() && got.is_ok_and(|got| got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()))
}

/// A poisoned error slot still holds a valid `Option`: take it anyway.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// The kernel variants for this adapter (see `Variants`); natively the
/// environment variables HEARTH_MATMUL_RPT (1 or 4), HEARTH_MATMUL_LANES
/// (threads per matmul row, a power of two to 64), HEARTH_ATTENTION (`cpu`
/// or `gpu`: shaders/attention_cpu.wgsl or attention.wgsl), HEARTH_STACKED
/// (`0`: every matrix multiplied apart) and HEARTH_HALF_UNPACK (`bits`:
/// halves converted bit by bit even where unpack2x16float is exact) and
/// HEARTH_SUBGROUPS (`off`: every thread loads x and the query itself, and
/// the matmul's lanes add their sums in workgroup memory) and
/// HEARTH_SAMPLING (`gpu` or `cpu`: where sampled tokens are chosen),
/// HEARTH_ATTENTION_RUNS (1 to 256), HEARTH_TOKEN_CHUNK (a multiple of 4 to 32),
/// HEARTH_TILED_PREFILL (the fewest tokens of a tiled prefill; 0: none),
/// HEARTH_CHAINED_DECODE (`1` or `0`), HEARTH_ATTENTION_IN_PRODUCT (`1` or
/// `0`: a decode step's attention runs added up by a dispatch of their own),
/// HEARTH_ATTENTION_TILES (`1` or `0`: a prompt's attention a query at a
/// time) and HEARTH_NORM_IN_MATMUL (`0`: the RMSNorms and residual adds as
/// dispatches of their own) override them, to compare the variants.
/// (The KV cache's type is a load option: `Backend::with_kv_cache`.)
fn variants(report: &AdapterReport) -> Variants {
    let mut variants = variants_as(report, report.is_software);
    let subgroups = std::env::var("HEARTH_SUBGROUPS").as_deref() != Ok("off");
    variants.subgroup_shared_loads &= subgroups;
    if let Some(n @ (1 | 2 | 4 | 8 | 16 | 32 | 64)) = std::env::var("HEARTH_MATMUL_LANES").ok().and_then(|v| v.parse().ok()) {
        variants.matmul_lanes_per_row = n;
    }
    if let Some(n @ (1 | 4)) = std::env::var("HEARTH_MATMUL_RPT").ok().and_then(|v| v.parse().ok()) {
        variants.matmul_rows_per_thread = n;
    }
    if std::env::var("HEARTH_STACKED").as_deref() == Ok("0") {
        variants.stacked_matmuls = false;
    }
    match std::env::var("HEARTH_ATTENTION").as_deref() {
        Ok("cpu") => variants.cpu_attention = true,
        Ok("gpu") => variants.cpu_attention = false,
        _ => {}
    }
    if let Some(n @ 1..=256) = std::env::var("HEARTH_ATTENTION_RUNS").ok().and_then(|v| v.parse().ok()) {
        variants.attention_runs = n;
    }
    if let Some(n @ 4..=32) = std::env::var("HEARTH_TOKEN_CHUNK").ok().and_then(|v| v.parse::<u32>().ok()).filter(|n| n % 4 == 0) {
        variants.matmul_token_chunk = n;
    }
    match std::env::var("HEARTH_CHAINED_DECODE").as_deref() {
        Ok("1") => variants.chained_decode = true,
        Ok("0") => variants.chained_decode = false,
        _ => {}
    }
    if let Some(n) = std::env::var("HEARTH_TILED_PREFILL").ok().and_then(|v| v.parse().ok()) {
        variants.tiled_prefill_from = n;
    }
    match std::env::var("HEARTH_ATTENTION_IN_PRODUCT").as_deref() {
        Ok("1") => variants.attention_in_output_product = true,
        Ok("0") => variants.attention_in_output_product = false,
        _ => {}
    }
    match std::env::var("HEARTH_ATTENTION_TILES").as_deref() {
        Ok("1") => variants.attention_tiles = true,
        Ok("0") => variants.attention_tiles = false,
        _ => {}
    }
    if std::env::var("HEARTH_NORM_IN_MATMUL").as_deref() == Ok("0") {
        variants.norm_in_matmul = false;
    }
    match std::env::var("HEARTH_SAMPLING").as_deref() {
        Ok("gpu") => variants.gpu_sampling = true,
        Ok("cpu") => variants.gpu_sampling = false,
        _ => {}
    }
    variants.subgroup_reductions = subgroups && lanes_fit_subgroups(report, &variants);
    variants
}

/// The kernel variants for the adapter `report` describes, taken as a GPU
/// (`software` false) or a CPU-based adapter, from what it has (see `Variants`).
fn variants_as(report: &AdapterReport, software: bool) -> Variants {
    let mut variants = Variants::for_adapter(software);
    // A row's 32 threads add their sums within one subgroup where subgroups
    // hold 32 lanes (an H200 decoded up to 5 % faster than with 16, prefilled 4 %).
    if !software && report.has_subgroups_of(32) {
        variants.matmul_lanes_per_row = 32;
    }
    // Only llvmpipe gains from it (see the variant).
    variants.subgroup_shared_loads = software && report.driver == "llvmpipe" && report.has_subgroups_of(8);
    // On GPUs; CPU-based adapters convert halves lane by lane (lavapipe
    // decoded 5-10 % slower with it), so they keep the exact f32 cache.
    variants.f16_kv_cache = report.shader_f16 && !software;
    variants.subgroup_reductions = lanes_fit_subgroups(report, &variants);
    variants
}

/// Whether the matmul has several threads per row (GPUs) and they fit in one subgroup.
fn lanes_fit_subgroups(report: &AdapterReport, variants: &Variants) -> bool {
    let lanes = variants.matmul_lanes();
    lanes > 1 && report.has_subgroups_of(lanes)
}

/// `info` with the name the browser gives (`GPUAdapter.info`: architecture,
/// description, device), and the browser's vendor name, so software adapters
/// such as SwiftShader are recognised in the browser too. Any failure keeps
/// `info` as it is.
#[cfg(target_arch = "wasm32")]
async fn with_browser_names(mut info: wgpu::AdapterInfo) -> (wgpu::AdapterInfo, String) {
    use js_sys::Reflect;
    use wasm_bindgen::JsValue;
    let get = |v: &JsValue, k: &str| Reflect::get(v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let gpu = get(&get(&js_sys::global(), "navigator"), "gpu");
    let Ok(request) = Reflect::get(&gpu, &JsValue::from_str("requestAdapter")).and_then(|f| js_sys::Function::from(f).call0(&gpu)) else {
        return (info, String::new());
    };
    let Ok(adapter) = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(request)).await else {
        return (info, String::new());
    };
    let browser = get(&adapter, "info");
    let text = |k: &str| get(&browser, k).as_string().unwrap_or_default();
    let names: Vec<String> = ["architecture", "description", "device"].iter().map(|k| text(k)).filter(|s| !s.is_empty()).collect();
    if info.name.is_empty() && !names.is_empty() {
        info.name = names.join(" ");
    }
    if get(&browser, "isFallbackAdapter").as_bool() == Some(true) {
        info.device_type = wgpu::DeviceType::Cpu;
    }
    (info, text("vendor"))
}
