//! hearth-llm: Transformer inference through WGSL compute shaders on WebGPU.
//!
//! The same code runs natively (wgpu on Vulkan/Metal/DX12) and in the browser
//! (wasm32 + WebGPU). `reference` holds the CPU oracle every GPU kernel is
//! tested against; `gpu` holds the device context and the kernel launchers.

pub mod background;
pub mod bench;
pub mod chat;
pub mod config;
pub mod convert;
pub mod engine;
pub mod error;
pub mod formats;
pub mod fuzzing;
pub mod gpu;
pub mod graph;
pub mod cpu;
pub mod model;
pub mod package;
pub mod plan;
pub mod quant;
pub mod quantize;
pub mod reference;
pub mod sampler;
pub mod scoring;
pub mod tokenizer;
pub mod weights;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use error::{HearthError, Result};
