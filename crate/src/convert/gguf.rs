//! GGUF input of `hearth convert`: the tensors are copied as stored (no
//! re-quantization, so the package's weights are bit-exact), the tokenizer
//! becomes a `tokenizer.json` and the chat template is carried over.

use super::{ConvertInput, GenerationDefaults, ModelMeta, OwnedTensor};
use crate::config::ModelConfig;
use crate::error::{HearthError, Result};
use crate::formats::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use crate::weights::{model_tensor_names, GgufSource, TensorSource};
use std::path::Path;

pub struct GgufInput {
    bytes: Vec<u8>,
    gguf: GgufFile,
    meta: ModelMeta,
}

impl GgufInput {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| HearthError::Io { path: path.display().to_string(), message: e.to_string() })?;
        Self::from_bytes(bytes, &path.file_stem().unwrap_or_default().to_string_lossy())
    }

    /// `fallback_name` names the model when the file's `general.name` is absent.
    pub fn from_bytes(bytes: Vec<u8>, fallback_name: &str) -> Result<Self> {
        let gguf = GgufFile::parse(&bytes, Some(bytes.len() as u64))?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let chat_template = match gguf.get("tokenizer.chat_template") {
            None => None,
            Some(v) => Some(
                v.as_str().ok_or_else(|| HearthError::ChatTemplate("tokenizer.chat_template is not a string".into()))?.to_string(),
            ),
        };
        let name = gguf.get("general.name").and_then(|v| v.as_str()).unwrap_or(fallback_name).to_string();
        let meta = ModelMeta {
            name,
            config: ModelConfig::from_gguf(&gguf)?,
            tokenizer_json: tokenizer.to_json()?,
            special: tokenizer.special_tokens(),
            chat_template,
            generation: GenerationDefaults::default(),
        };
        Ok(GgufInput { bytes, gguf, meta })
    }
}

impl ConvertInput for GgufInput {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn tensor_names(&self) -> Vec<String> {
        model_tensor_names(&self.meta.config)
    }

    fn tensor(&self, name: &str) -> Result<OwnedTensor> {
        let source = GgufSource { gguf: &self.gguf, bytes: &self.bytes };
        let t = source.tensor(name)?;
        Ok(OwnedTensor { ty: t.ty, shape: t.shape, bytes: t.bytes.to_vec() })
    }
}
