//! Where the model's tensors come from. The CPU oracle and the GPU model load
//! weights through `TensorSource`, so a GGUF file and (later) a web package of
//! safetensors shards feed the same model code.

use crate::error::{HearthError, Result};
use crate::formats::gguf::{GgufFile, TensorType};

/// One tensor's raw bytes in its stored format. `shape` is row-major
/// (`[rows, cols]` for a matrix: the last dimension is contiguous).
pub struct RawTensor<'a> {
    pub ty: TensorType,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

impl RawTensor<'_> {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Anything that can hand out a model's tensors by GGUF name.
pub trait TensorSource {
    fn tensor(&self, name: &str) -> Result<RawTensor<'_>>;
    fn has_tensor(&self, name: &str) -> bool;
}

/// A GGUF file held in memory.
pub struct GgufSource<'a> {
    pub gguf: &'a GgufFile,
    pub bytes: &'a [u8],
}

impl TensorSource for GgufSource<'_> {
    fn tensor(&self, name: &str) -> Result<RawTensor<'_>> {
        let info = self
            .gguf
            .tensor(name)
            .ok_or_else(|| HearthError::Model(format!("tensor {name} is missing")))?;
        Ok(RawTensor {
            ty: info.ty,
            // GGUF lists the contiguous dimension first.
            shape: info.dims.iter().rev().map(|&d| d as usize).collect(),
            bytes: self.gguf.tensor_bytes(self.bytes, info)?,
        })
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.gguf.tensor(name).is_some()
    }
}

/// GGUF names of one transformer block's tensors.
pub fn layer_tensor(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}.weight")
}

/// Every tensor a Llama-family model of `config` reads, by GGUF name, in
/// file order (embedding, blocks, head).
pub fn model_tensor_names(config: &crate::config::ModelConfig) -> Vec<String> {
    const BLOCK: [&str; 9] =
        ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];
    let mut names = vec!["token_embd.weight".to_string()];
    for l in 0..config.n_layers {
        names.extend(BLOCK.iter().map(|n| layer_tensor(l, n)));
    }
    names.push("output_norm.weight".into());
    if !config.tied_embeddings {
        names.push("output.weight".into());
    }
    names
}
