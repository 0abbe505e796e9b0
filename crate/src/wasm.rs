//! The wasm-bindgen surface: the only file that knows about JavaScript.
//! Every export returns a `Result`, so a failure becomes a thrown JS `Error`
//! with the engine's message, never a panic across the boundary.

use crate::gpu::{self, GpuContext};
use crate::{reference, HearthError};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

impl From<HearthError> for JsValue {
    fn from(e: HearthError) -> Self {
        js_sys::Error::new(&e.to_string()).into()
    }
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

    /// The adapter: name, vendor, backend, whether it is software, limits.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> Result<JsValue, JsValue> {
        let json = serde_json::to_string(&*self.ctx.report).map_err(|e| JsValue::from_str(&e.to_string()))?;
        js_sys::JSON::parse(&json)
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
}

/// RMSNorm of `x` on the CPU (the oracle the GPU kernel is judged against).
#[wasm_bindgen(js_name = rmsNormReference)]
pub fn rms_norm_reference(x: Vec<f32>, w: Vec<f32>, eps: f32) -> Result<Vec<f32>, JsValue> {
    if w.is_empty() || x.len() % w.len() != 0 {
        return Err(HearthError::InvalidArgument("x must hold whole rows of w.length values".into()).into());
    }
    Ok(reference::rms_norm(&x, &w, eps))
}
