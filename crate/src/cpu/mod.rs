//! The CPU backend: the same layer program as the GPU (`graph`), run by SIMD
//! kernels (`simd`: wasm simd128, x86-64 SSE2, or plain Rust) over rayon's
//! thread pool (std threads natively; Web Workers over shared memory in the
//! browser's threaded build, one thread elsewhere in the browser).

mod kv_cache;
pub mod matrix;
mod model;
mod ops;
pub mod simd;
mod team;
mod team_size;

pub use matrix::{CpuMatrix, QuantRows};
pub use model::CpuModel;

use crate::error::{HearthError, Result};
use crate::weights::RawTensor;
use std::collections::HashMap;
use std::sync::Arc;

enum CpuTensor {
    Matrix(Arc<CpuMatrix>),
    Vector(Arc<Vec<f32>>),
}

/// A model's weights in memory for the CPU kernels, added one tensor at a
/// time in any order.
#[derive(Default)]
pub struct CpuWeights {
    tensors: HashMap<String, CpuTensor>,
}

impl CpuWeights {
    /// Adds one tensor: a matrix repacked for the kernels, a vector as f32.
    pub fn add(&mut self, name: &str, t: &RawTensor<'_>) -> Result<()> {
        let tensor = match t.shape.len() {
            2 => CpuTensor::Matrix(Arc::new(CpuMatrix::new(name, t)?)),
            1 => CpuTensor::Vector(Arc::new(
                crate::quant::dequantize(t.ty, t.bytes, t.elements()).map_err(|e| HearthError::Model(format!("{name}: {e}")))?,
            )),
            _ => return Err(HearthError::Model(format!("{name}: shape {:?} is neither a matrix nor a vector", t.shape))),
        };
        self.tensors.insert(name.to_string(), tensor);
        Ok(())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Bytes of all the weights held.
    pub fn size_bytes(&self) -> u64 {
        self.tensors
            .values()
            .map(|t| match t {
                CpuTensor::Matrix(m) => m.size_bytes(),
                CpuTensor::Vector(v) => v.len() as u64 * 4,
            })
            .sum()
    }

    /// The `rows × cols` matrix `name`.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Arc<CpuMatrix>> {
        match self.tensors.get(name) {
            Some(CpuTensor::Matrix(m)) if (m.rows, m.cols) == (rows, cols) => Ok(Arc::clone(m)),
            Some(CpuTensor::Matrix(m)) => Err(HearthError::Model(format!("{name} is {}×{}, expected {rows}×{cols}", m.rows, m.cols))),
            Some(CpuTensor::Vector(_)) => Err(HearthError::Model(format!("{name} is a vector, expected a {rows}×{cols} matrix"))),
            None => Err(HearthError::Model(format!("tensor {name} is missing"))),
        }
    }

    /// The vector `name` of `len` values.
    pub fn vector(&self, name: &str, len: usize) -> Result<Arc<Vec<f32>>> {
        match self.tensors.get(name) {
            Some(CpuTensor::Vector(v)) if v.len() == len => Ok(Arc::clone(v)),
            Some(CpuTensor::Vector(v)) => Err(HearthError::Model(format!("{name} has {} values, expected {len}", v.len()))),
            Some(CpuTensor::Matrix(_)) => Err(HearthError::Model(format!("{name} is a matrix, expected a vector of {len}"))),
            None => Err(HearthError::Model(format!("tensor {name} is missing"))),
        }
    }
}

/// How the CPU backend keeps its KV cache (`model::Backend::Cpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuOptions {
    /// f16 rather than f32 (exact): half the memory and half the
    /// attention's reads (see `kv_cache`).
    pub f16_kv_cache: bool,
}

/// The KV cache in f16, as llama.cpp (and so wllama) keep theirs by
/// default: at the default 2048 positions the SmolLM2-135M model holds
/// 163.6 MB of wasm memory rather than 210.8. Decode after 1900 tokens ran
/// 96-98 tok/s natively against 78-84 with f32 (F16C), and 40-48 in
/// Chromium against 47-57 (wasm has no f16 instructions); equal after 128.
/// The largest error of the fixture logits is 1.4e-2 against 1.2e-2 with
/// f32 (tests/model_fidelity.rs).
impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions { f16_kv_cache: true }
    }
}

/// `len` zeroed values, or a typed error where the heap cannot hold them
/// (`what` says what they were for).
fn zeroed<T: Copy + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| HearthError::OutOfMemory(format!("{} MiB for the CPU model's {what}", len.saturating_mul(std::mem::size_of::<T>()) >> 20)))?;
    v.resize(len, T::default());
    Ok(v)
}

/// Lets the browser's event loop run (a JS call to `interrupt()`, a message)
/// between tokens: the CPU backend otherwise computes a whole generation
/// without returning to it. A MessageChannel round trip is a task without
/// setTimeout's 4 ms clamp. Natively there is nothing to yield to.
pub async fn yield_to_event_loop() {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsValue;
        let Ok(channel) = web_sys::MessageChannel::new() else { return };
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            channel.port1().set_onmessage(Some(&resolve));
            if channel.port2().post_message(&JsValue::NULL).is_err() {
                let _ = resolve.call0(&JsValue::NULL);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        // `channel` lives until here so its ports cannot be collected first.
        channel.port1().set_onmessage(None);
    }
}
