//! `hearth convert`: a GGUF file or a Hugging Face model folder in, a web
//! model package (manifest.json + safetensors shards + tokenizer.json) out.
//!
//! Every input is read through [`ConvertInput`]: the model's metadata plus
//! its tensors under their GGUF names, in GGUF conventions (Q/K rows in the
//! interleaved RoPE order, row-major `[rows, cols]` shapes). The package
//! writer (`package::write`) then quantizes float matrices when asked, and
//! cuts the tensors into shards.

pub mod gguf;
pub mod hf;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::formats::gguf::TensorType;
use crate::tokenizer::SpecialTokens;
use serde::{Deserialize, Serialize};

/// Everything a package holds besides the tensors.
#[derive(Debug, Clone)]
pub struct ModelMeta {
    /// A human name for the model (`general.name`, the folder name).
    pub name: String,
    pub config: ModelConfig,
    /// A Hugging Face `tokenizer.json` document.
    pub tokenizer_json: String,
    pub special: SpecialTokens,
    pub chat_template: Option<String>,
    /// Sampling defaults the model's authors recommend (generation_config.json).
    pub generation: GenerationDefaults,
}

/// Recommended sampling settings; absent fields mean the engine's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
}

/// One tensor read from the input, owned.
#[derive(Debug, Clone)]
pub struct OwnedTensor {
    pub ty: TensorType,
    /// Row-major: `[rows, cols]` for a matrix, `[n]` for a vector.
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// A model to convert.
pub trait ConvertInput {
    fn meta(&self) -> &ModelMeta;
    /// GGUF names of the tensors the model needs, in the order to write them.
    fn tensor_names(&self) -> Vec<String>;
    /// A tensor by GGUF name, in GGUF conventions. Its type is what the input
    /// stores (F32/F16/BF16 floats, or already-quantized ggml blocks).
    fn tensor(&self, name: &str) -> Result<OwnedTensor>;
}

/// The weight formats a package can be quantized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    Q4_0,
    Q4_1,
    Q8_0,
    F16,
}

impl Quant {
    pub fn tensor_type(self) -> TensorType {
        match self {
            Quant::Q4_0 => TensorType::Q4_0,
            Quant::Q4_1 => TensorType::Q4_1,
            Quant::Q8_0 => TensorType::Q8_0,
            Quant::F16 => TensorType::F16,
        }
    }
}

impl std::str::FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q4_0" => Ok(Quant::Q4_0),
            "q4_1" => Ok(Quant::Q4_1),
            "q8_0" => Ok(Quant::Q8_0),
            "f16" => Ok(Quant::F16),
            other => Err(format!("unknown quantization {other:?} (q4_0, q4_1, q8_0, f16)")),
        }
    }
}
