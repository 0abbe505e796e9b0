//! The wasm-bindgen surface: the only file that knows about JavaScript.
//! Every export returns a `Result`, so a failure becomes a thrown JS `Error`
//! with the engine's message, never a panic across the boundary.

// The threaded build's `initThreadPool(n)`: starts the rayon pool's Web Workers.
// (Unused in Rust: the import links the crate, whose #[wasm_bindgen] export it is.)
#[cfg(feature = "threads")]
#[allow(unused_imports)]
pub use wasm_bindgen_rayon::init_thread_pool;

use crate::background::{Background, Lost};
use crate::chat::{ChatTemplate, Message};
use crate::engine::{Engine, GenerateRequest};
use crate::formats::manifest::Manifest;
use crate::formats::shard;
use crate::gpu::{self, GpuContext};
use crate::model::{Backend, BackendKind, KvCacheType, ModelOptions, Weights};
use crate::tokenizer::Tokenizer;
use crate::weights::model_tensor_names;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use crate::{reference, HearthError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// An `Error` named `HearthError` with a `code` property (`HearthError::code`),
/// so JS can tell an integrity failure from a full context without parsing text.
impl From<HearthError> for JsValue {
    fn from(e: HearthError) -> Self {
        coded_error(&e.to_string(), e.code())
    }
}

fn coded_error(message: &str, code: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    error.set_name("HearthError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&error, &JsValue::from_str("code"), &JsValue::from_str(code));
    error.into()
}

/// A WebGPU device with the engine's kernels compiled.
#[wasm_bindgen]
pub struct Gpu {
    ctx: GpuContext,
}

#[wasm_bindgen]
impl Gpu {
    /// Opens the best WebGPU adapter. Rejects with a readable message when the
    /// browser has no WebGPU or no adapter.
    pub async fn create() -> Result<Gpu, JsValue> {
        Ok(Gpu { ctx: GpuContext::new().await? })
    }

    /// The adapter: name, vendor, backend, whether it is software, limits,
    /// and the kernel variants picked for it (`kernel_variants`).
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.ctx.described())
    }

    /// RMSNorm of `x` (rows × w.length) on the GPU.
    #[wasm_bindgen(js_name = rmsNorm)]
    pub fn rms_norm(&self, x: Vec<f32>, w: Vec<f32>, eps: f32) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let out = gpu::rms_norm(&ctx, &x, &w, eps).await?;
            Ok(js_sys::Float32Array::from(out.as_slice()).into())
        })
    }

    /// The device's streaming-read bandwidth in bytes per second: a trivial
    /// kernel reads a `bytes`-byte buffer (median of `repeats` runs after a
    /// checked one); the benchmark's roofline denominator.
    #[wasm_bindgen(js_name = readBandwidth, unchecked_return_type = "Promise<number>")]
    pub fn read_bandwidth(&self, bytes: usize, repeats: usize) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            Ok(JsValue::from_f64(crate::bench::read_bandwidth(&ctx, bytes, repeats).await?))
        })
    }

    /// What one dispatch costs on this device whatever its work (as `hearth
    /// bench --profile` prints it): `count` dependent 4-value adds in one
    /// pass, the fastest of `repeats` runs after a checked one.
    /// Resolves to `{dispatches, wall_us, gpu_us}` (`gpu_us` null: WebGPU
    /// has no timestamps inside passes).
    #[wasm_bindgen(js_name = dispatchFloor, unchecked_return_type = "Promise<{dispatches: number, wall_us: number, gpu_us: number | null}>")]
    pub fn dispatch_floor(&self, count: usize, repeats: usize) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move { to_js(&crate::bench::dispatch_floor(&ctx, count, repeats).await?) })
    }

    /// Runs every kernel against the CPU reference on seeded inputs (the
    /// checks of `tests/gpu_kernels.rs`) and resolves to one entry per check.
    /// A mismatch is an entry with `passed: false` and the first failing index
    /// in `detail`; the promise rejects only on a GPU error. `max_error` is
    /// `null` where a value was NaN. With `as_gpu` true the kernels are
    /// compiled as a GPU would get them, whatever this adapter is (so a
    /// software adapter checks the GPU kernels too).
    #[wasm_bindgen(
        js_name = kernelSelfCheck,
        unchecked_return_type = "Promise<{kernel: string, case: string, max_error: number | null, tolerance: number, passed: boolean, detail: string, ms: number}[]>"
    )]
    pub fn kernel_self_check(&self, as_gpu: Option<bool>) -> js_sys::Promise {
        let ctx = if as_gpu == Some(true) { self.ctx.with_gpu_variants() } else { self.ctx.clone() };
        wasm_bindgen_futures::future_to_promise(async move { to_js(&gpu::selfcheck::run_all(&ctx).await?) })
    }
}

/// RMSNorm of `x` on the CPU (the oracle the GPU kernel is judged against).
#[wasm_bindgen(js_name = rmsNormReference)]
pub fn rms_norm_reference(x: Vec<f32>, w: Vec<f32>, eps: f32) -> Result<Vec<f32>, JsValue> {
    if w.is_empty() || x.len() % w.len() != 0 {
        return Err(HearthError::InvalidArgument("x must hold whole rows of w.length values".into()).into());
    }
    Ok(reference::rms_norm(&x, &w, eps))
}

/// Bytes of this wasm instance's linear memory (it only grows: a long
/// session whose figure stays flat allocates nothing it does not free).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    let buffer = wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer();
    js_sys::Reflect::get(&buffer, &JsValue::from_str("byteLength")).ok().and_then(|v| v.as_f64()).unwrap_or(0.0)
}

/// The engine's state behind the JS `Engine`: async exports clone the `Rc`
/// into their future, and the `RefCell` turns a second call while one runs
/// into a clear error instead of a panic.
type Shared = Rc<RefCell<Engine>>;

/// An `Error` with `message` (code `internal`: a failure outside the engine's own checks).
fn js_error(message: impl std::fmt::Display) -> JsValue {
    coded_error(&message.to_string(), "internal")
}

fn busy() -> JsValue {
    coded_error("the engine is busy: a generate() or forwardLogits() call is still running; await it first", "busy")
}

/// A plain JS value as JSON text (None for undefined / null).
fn json_of(what: &str, value: &JsValue) -> Result<Option<String>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let json = js_sys::JSON::stringify(value)
        .map_err(|e| js_error(format!("invalid argument: {what} is not plain data ({})", describe(&e))))?;
    Ok(json.as_string())
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

fn parse_json<T: DeserializeOwned>(what: &str, json: &str) -> Result<T, JsValue> {
    serde_json::from_str(json).map_err(|e| HearthError::InvalidArgument(format!("{what}: {e}")).into())
}

/// Serializes through JSON, so the JS side gets plain objects and arrays.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let json = serde_json::to_string(value).map_err(js_error)?;
    js_sys::JSON::parse(&json)
}

/// Names in `got` that `known` (a serialized default) lacks, as dotted paths.
/// `GenerateRequest` ignores unknown fields; from JS a misspelt option
/// (`maxTokens`) would otherwise be dropped without a word.
fn unknown_keys(got: &serde_json::Value, known: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let (Some(got), Some(known)) = (got.as_object(), known.as_object()) {
        for (key, value) in got {
            match known.get(key) {
                None => out.push(format!("{prefix}{key}")),
                Some(k) => unknown_keys(value, k, &format!("{prefix}{key}."), out),
            }
        }
    }
}

/// The generation request from its JS object (undefined: the defaults).
fn parse_request(value: &JsValue) -> Result<GenerateRequest, JsValue> {
    let Some(json) = json_of("the request", value)? else { return Ok(GenerateRequest::default()) };
    let raw: serde_json::Value = parse_json("request", &json)?;
    if !raw.is_object() {
        return Err(HearthError::InvalidArgument("the request must be an object like {max_tokens, sampler: {...}, stop, ignore_eos}".into()).into());
    }
    let known = serde_json::to_value(GenerateRequest::default()).map_err(js_error)?;
    let mut unknown = Vec::new();
    unknown_keys(&raw, &known, "", &mut unknown);
    if !unknown.is_empty() {
        let fields = known.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
        return Err(HearthError::InvalidArgument(format!(
            "unknown request field(s) {} (the fields are {fields}; sampler: temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty, seed)",
            unknown.join(", ")
        ))
        .into());
    }
    let request: GenerateRequest = serde_json::from_value(raw).map_err(|e| HearthError::InvalidArgument(format!("request: {e}")))?;
    request.validate()?;
    Ok(request)
}

/// `Engine.load`'s options.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoadOptions {
    context: Option<usize>,
    max_batch: Option<usize>,
    /// 'webgpu' (default) or 'cpu'.
    backend: Option<BackendKind>,
    /// 'auto' (default), 'f16' or 'f32'.
    kv_cache: Option<KvCacheType>,
    /// Greedy decode steps chained on the GPU (default: on; the CPU backend
    /// ignores it).
    chained_decode: Option<bool>,
}

impl LoadOptions {
    fn model_options(&self) -> Result<ModelOptions, HearthError> {
        let defaults = ModelOptions::default();
        let options = ModelOptions {
            context: self.context.unwrap_or(defaults.context),
            max_batch: self.max_batch.unwrap_or(defaults.max_batch),
        };
        if options.context == 0 || options.max_batch == 0 {
            return Err(HearthError::InvalidArgument("context and maxBatch must be at least 1".into()));
        }
        Ok(options)
    }
}

/// A loaded model (weights and KV cache on the GPU), its tokenizer and chat
/// template. In JS: `Engine`.
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    inner: Shared,
    backend: Backend,
    /// `Engine::interrupt_handle`, reachable while a generation holds the engine.
    interrupt: Arc<AtomicBool>,
}

impl WasmEngine {
    fn new(engine: Engine, backend: Backend) -> Self {
        let interrupt = engine.interrupt_handle();
        WasmEngine { inner: Rc::new(RefCell::new(engine)), backend, interrupt }
    }
}

/// The model sizes and the backend, opened (a WebGPU device for 'webgpu').
async fn load_options(options: &JsValue) -> Result<(ModelOptions, Backend), JsValue> {
    let options = match json_of("options", options)? {
        Some(json) => parse_json::<LoadOptions>("options", &json)?,
        None => LoadOptions::default(),
    };
    let model_options = options.model_options()?;
    let backend = match options.backend.unwrap_or(BackendKind::Gpu) {
        BackendKind::Gpu => Backend::Gpu(GpuContext::new().await?),
        BackendKind::Cpu => Backend::cpu(),
    };
    let backend = backend.with_kv_cache(options.kv_cache.unwrap_or_default())?.with_chained_decode(options.chained_decode);
    Ok((model_options, backend))
}

/// Loads a web model package shard by shard: `ModelLoader.create(manifest,
/// tokenizer)`, then `addShard(file, bytes)` for each shard as it arrives
/// (verified by the caller), then `finish()`. Each shard's tensors go to the
/// GPU at once, so wasm memory holds one shard at a time, never the model.
#[wasm_bindgen]
pub struct ModelLoader {
    backend: Backend,
    manifest: Manifest,
    /// Read on a pool thread while the shards go in (see `background`).
    tokenizer: Background<Result<Tokenizer, HearthError>>,
    template: Option<ChatTemplate>,
    options: ModelOptions,
    weights: Weights,
    /// The tensors the model reads; others in the package are skipped.
    needed: Vec<String>,
}

#[wasm_bindgen]
impl ModelLoader {
    /// Opens a WebGPU device, checks `manifest` (the text of manifest.json),
    /// `tokenizer` (the text of tokenizer.json) and the chat template, before
    /// any weight is fetched. The tokenizer is then read on a pool thread,
    /// if there is one, while the shards go in: a document that does not
    /// describe a tokenizer fails the next `addShard` or `finish`.
    pub async fn create(
        manifest: String,
        tokenizer: String,
        #[wasm_bindgen(unchecked_param_type = "{context?: number, maxBatch?: number, backend?: 'webgpu' | 'cpu', kvCache?: 'auto' | 'f16' | 'f32', chainedDecode?: boolean} | undefined")] options: JsValue,
    ) -> Result<ModelLoader, JsValue> {
        let manifest = Manifest::parse(&manifest)?;
        let needed = model_tensor_names(&manifest.config);
        if let Some(name) = needed.iter().find(|n| manifest.tensor(n).is_none()) {
            return Err(HearthError::Package(format!("the manifest lists no tensor {name}")).into());
        }
        Tokenizer::check_json(&tokenizer)?;
        let special = manifest.tokenizer.special;
        let tokenizer = Background::start(move || Tokenizer::from_checked_json(&tokenizer, special));
        let template = manifest.chat_template.as_deref().map(ChatTemplate::new).transpose()?;
        let (options, backend) = load_options(&options).await?;
        crate::plan::check(&backend, &manifest.config, options, &manifest)?;
        let weights = Weights::new(&backend, &manifest.config);
        Ok(ModelLoader { backend, manifest, tokenizer, template, options, weights, needed })
    }

    /// Uploads the tensors of shard `file` (its bytes, already checked
    /// against the manifest's sha256) to the GPU.
    #[wasm_bindgen(js_name = addShard)]
    pub fn add_shard(&mut self, file: &str, bytes: &[u8]) -> Result<(), JsValue> {
        if let Some(Err(e)) = self.tokenizer.take_if(Result::is_err) {
            return Err(e.into());
        }
        for (entry, tensor) in shard::read(&self.manifest, file, bytes)? {
            if self.needed.contains(&entry.name) {
                self.weights.add(&entry.name, &tensor)?;
            }
        }
        Ok(())
    }

    /// Names of the tensors not uploaded yet.
    #[wasm_bindgen(js_name = missingTensors)]
    pub fn missing_tensors(&self) -> Vec<String> {
        self.needed.iter().filter(|n| !self.weights.contains(n)).cloned().collect()
    }

    /// The engine, once every tensor is on the GPU.
    pub fn finish(self) -> Result<WasmEngine, JsValue> {
        let missing = self.missing_tensors();
        if !missing.is_empty() {
            return Err(HearthError::Package(format!("{} tensors never arrived, e.g. {}", missing.len(), missing[0])).into());
        }
        let tokenizer = self.tokenizer.take().map_err(|lost| {
            HearthError::Tokenizer(match lost {
                Lost::Panicked => "reading tokenizer.json failed (a panic: an engine bug, its message is in the console)".into(),
                Lost::Taken => "tokenizer.json did not load (the error was reported by addShard)".into(),
            })
        })??;
        let config = self.manifest.config.clone();
        let engine = Engine::new(config, &self.weights, tokenizer, self.template, self.options)?;
        Ok(WasmEngine::new(engine, self.backend))
    }
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// Opens a WebGPU device and loads a GGUF model held in `gguf` (a
    /// `Uint8Array` or an `ArrayBuffer`, copied at once; drop it afterwards:
    /// the weights live in GPU buffers). `options`: `{context?, maxBatch?}`
    /// (positions the KV cache holds, default 2048 capped at the model's
    /// context; tokens per forward pass, default 128).
    pub async fn load(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | ArrayBuffer")] gguf: JsValue,
        #[wasm_bindgen(unchecked_param_type = "{context?: number, maxBatch?: number, backend?: 'webgpu' | 'cpu', kvCache?: 'auto' | 'f16' | 'f32', chainedDecode?: boolean} | undefined")] options: JsValue,
    ) -> Result<WasmEngine, JsValue> {
        let bytes = if let Some(a) = gguf.dyn_ref::<js_sys::Uint8Array>() {
            a.to_vec()
        } else if let Some(b) = gguf.dyn_ref::<js_sys::ArrayBuffer>() {
            js_sys::Uint8Array::new(b).to_vec()
        } else {
            return Err(HearthError::InvalidArgument("the model must be a Uint8Array or an ArrayBuffer of a GGUF file".into()).into());
        };
        let (options, backend) = load_options(&options).await?;
        let engine = Engine::from_gguf(&backend, &bytes, options)?;
        drop(bytes);
        Ok(WasmEngine::new(engine, backend))
    }

    fn engine(&self) -> Result<std::cell::Ref<'_, Engine>, JsValue> {
        self.inner.try_borrow().map_err(|_| busy())
    }

    /// Token ids of `text` (no BOS added). With `parseSpecial`, control tokens
    /// written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str, #[wasm_bindgen(js_name = parseSpecial)] parse_special: bool) -> Result<Vec<u32>, JsValue> {
        Ok(self.engine()?.tokenizer.encode(text, parse_special)?)
    }

    /// Token ids of a prompt: special tokens parsed, BOS added when the model wants it.
    #[wasm_bindgen(js_name = encodePrompt)]
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        Ok(self.engine()?.encode_prompt(text)?)
    }

    /// Text of `ids` (special tokens included).
    pub fn decode(&self, ids: Vec<u32>) -> Result<String, JsValue> {
        Ok(self.engine()?.tokenizer.decode(&ids)?)
    }

    /// The prompt text of a conversation (`[{role, content}]`) through the
    /// model's chat template, ready for the assistant's turn.
    #[wasm_bindgen(js_name = renderChat)]
    pub fn render_chat(
        &self,
        #[wasm_bindgen(unchecked_param_type = "{role: string, content: string}[]")] messages: JsValue,
    ) -> Result<String, JsValue> {
        let json = json_of("messages", &messages)?
            .ok_or_else(|| js_error("invalid argument: messages must be an array of {role, content}"))?;
        let messages: Vec<Message> = parse_json("messages (an array of {role, content})", &json)?;
        Ok(self.engine()?.render_chat(&messages)?)
    }

    /// Runs `ids` after the positions the KV cache holds and resolves to the
    /// last token's logits (a `Float32Array` of the vocabulary's size). The
    /// ids join the cache: a later `generate()` whose prompt extends them
    /// computes only what is new (call `reset()` first to start over).
    #[wasm_bindgen(js_name = forwardLogits, unchecked_return_type = "Promise<Float32Array>")]
    #[allow(clippy::await_holding_refcell_ref)] // held on purpose: a second call meanwhile is refused as busy
    pub fn forward_logits(&self, ids: Vec<u32>) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let mut engine = inner.try_borrow_mut().map_err(|_| busy())?;
            let logits = engine.forward_logits(&ids).await?;
            Ok(js_sys::Float32Array::from(logits.as_slice()).into())
        })
    }

    /// Where a forward's time goes on this GPU, kernel by kernel (what
    /// `hearth bench --profile` prints natively): after a prompt of `cached`
    /// tokens, a forward of `tokens` tokens (1: a decode step) timed whole
    /// and each kernel's dispatches alone, `repeats` times in one submit
    /// each. Forgets the cached conversation (it resets before and after).
    /// Resolves to `{tokens, step_us, gpu_step_us, kernels: [{kernel,
    /// dispatches, us_per_token, gpu_us_in_pass}]}`, or null on the CPU backend.
    #[wasm_bindgen(js_name = profileStep)]
    #[allow(clippy::await_holding_refcell_ref)] // held on purpose: a second call meanwhile is refused as busy
    pub fn profile_step(&self, cached: usize, tokens: usize, repeats: usize) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let mut engine = inner.try_borrow_mut().map_err(|_| busy())?;
            to_js(&crate::bench::step_profile(&mut engine, cached, tokens, repeats).await?)
        })
    }

    /// Makes a running `generate()` end at its next token, with
    /// `finish_reason: 'abort'` (what it produced so far stays in the KV
    /// cache, so a follow-up that extends it is cheap). Does nothing when idle.
    pub fn interrupt(&self) {
        self.interrupt.store(true, Ordering::Relaxed);
    }

    /// Forgets the cached conversation (the KV cache starts over).
    pub fn reset(&self) -> Result<(), JsValue> {
        self.inner.try_borrow_mut().map_err(|_| busy())?.reset();
        Ok(())
    }

    /// Generates after `promptIds`. `request`: `{max_tokens, sampler:
    /// {temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
    /// frequency_penalty, seed}, stop,
    /// ignore_eos}` (every field optional). `onText(piece)` gets each piece of
    /// text as soon as it is final; the pieces concatenate to the result's
    /// `text`. Resolves to `{prompt_ids, ids, text, finish_reason,
    /// reused_tokens, timings}`. A prompt that extends the previous one only
    /// computes its new tokens. If `onText` throws, generation still runs to
    /// its end and the promise rejects with what it threw.
    #[wasm_bindgen(unchecked_return_type = "Promise<{prompt_ids: number[], ids: number[], text: string, finish_reason: 'stop' | 'length' | 'abort', reused_tokens: number, timings: {ttft_ms: number, prefill_tokens: number, prefill_tok_s: number, decode_tokens: number, decode_tok_s: number, threads: number}}>")]
    #[allow(clippy::await_holding_refcell_ref)] // held on purpose: a second call meanwhile is refused as busy
    pub fn generate(
        &self,
        #[wasm_bindgen(js_name = promptIds)] prompt_ids: Vec<u32>,
        #[wasm_bindgen(unchecked_param_type = "{max_tokens?: number, sampler?: {temperature?: number, top_k?: number, top_p?: number, min_p?: number, repetition_penalty?: number, presence_penalty?: number, frequency_penalty?: number, seed?: number}, stop?: string[], ignore_eos?: boolean} | undefined")]
        request: JsValue,
        #[wasm_bindgen(js_name = onText, unchecked_param_type = "((piece: string) => void) | null | undefined")] on_text: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let request = parse_request(&request);
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let request = request?;
            let mut engine = inner.try_borrow_mut().map_err(|_| busy())?;
            let mut thrown: Option<JsValue> = None;
            let mut emit = |piece: &str| {
                if piece.is_empty() || thrown.is_some() {
                    return;
                }
                if let Some(f) = &on_text {
                    if let Err(e) = f.call1(&JsValue::NULL, &JsValue::from_str(piece)) {
                        thrown = Some(e);
                    }
                }
            };
            let generation = engine.generate(&prompt_ids, &request, &mut emit).await?;
            drop(engine);
            if let Some(e) = thrown {
                return Err(e);
            }
            to_js(&generation)
        })
    }

    /// The model's shape and constants.
    pub fn config(&self) -> Result<JsValue, JsValue> {
        to_js(self.engine()?.config())
    }

    /// Positions the KV cache holds (the context the model was loaded with).
    #[wasm_bindgen(js_name = contextSize)]
    pub fn context_size(&self) -> Result<usize, JsValue> {
        Ok(self.engine()?.model.options().context)
    }

    /// GPU bytes of the weights alone (what a decode step reads per token).
    #[wasm_bindgen(js_name = weightBytes)]
    pub fn weight_bytes(&self) -> Result<f64, JsValue> {
        Ok(self.engine()?.model.weight_bytes() as f64)
    }

    /// Memory the model holds (weights, KV cache, activations), in bytes:
    /// GPU memory on WebGPU, wasm memory on the CPU backend.
    #[wasm_bindgen(js_name = gpuBytes)]
    pub fn gpu_bytes(&self) -> Result<f64, JsValue> {
        Ok(self.engine()?.model.memory_bytes() as f64)
    }

    /// The WebGPU adapter the engine runs on, with its kernel variants; on
    /// the CPU backend `{name, backend: 'cpu', threads, simd, kv_cache}`.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> Result<JsValue, JsValue> {
        match &self.backend {
            Backend::Gpu(ctx) => to_js(&ctx.described()),
            Backend::Cpu(cpu) => to_js(&serde_json::json!({
                "name": self.backend.describe(), "backend": "cpu",
                "threads": rayon::current_num_threads(), "simd": crate::cpu::simd::name(),
                "kv_cache": if cpu.f16_kv_cache { "f16" } else { "f32" },
            })),
        }
    }

    /// Which backend runs the model: 'webgpu' or 'cpu'.
    #[wasm_bindgen(unchecked_return_type = "'webgpu' | 'cpu'")]
    pub fn backend(&self) -> String {
        self.backend.kind().name().to_string()
    }

    /// Threads the CPU backend computes on: the pool's (1 without the
    /// threaded build), or fewer once the first decode steps found fewer
    /// faster (`cpu::team_size`); 0 on WebGPU.
    pub fn threads(&self) -> usize {
        match &self.backend {
            Backend::Gpu(_) => 0,
            Backend::Cpu(_) => self.engine().map_or_else(|_| rayon::current_num_threads(), |e| e.model.threads()),
        }
    }
}
