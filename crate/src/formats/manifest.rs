//! `manifest.json` of a web model package: what the package holds and where.
//!
//! A package is a folder any static host can serve: this manifest, the
//! tokenizer (`tokenizer.json`) and safetensors shards. The manifest is the
//! source of truth: every tensor's type, shape, shard and byte range, and
//! every file's size and sha256, so a loader can fetch the shards in any
//! order, verify each on its own and stream its tensors to the GPU.

use crate::config::ModelConfig;
use crate::convert::GenerationDefaults;
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::tokenizer::SpecialTokens;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The `format` value of every package manifest.
pub const FORMAT: &str = "hearth-model-package";
/// The manifest layout this engine reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub name: String,
    pub config: ModelConfig,
    /// The type most weight matrices are stored in (`q4_1`, `f16`...), for display.
    pub quantization: String,
    pub tokenizer: TokenizerEntry,
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub generation: GenerationDefaults,
    pub tensors: Vec<TensorEntry>,
    pub shards: Vec<FileEntry>,
    /// Bytes of every file the package lists (shards and tokenizer).
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerEntry {
    /// A Hugging Face `tokenizer.json` beside the manifest.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub special: SpecialTokens,
}

/// One tensor: its ggml type, row-major shape and bytes inside a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub name: String,
    /// ggml type name: F32, F16, BF16, Q4_0, Q4_1, Q8_0.
    pub dtype: String,
    pub shape: Vec<usize>,
    pub shard: String,
    /// Absolute offset in the shard file (past the safetensors header).
    pub offset: u64,
    pub length: u64,
}

/// A file of the package with its size and sha256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

fn invalid(message: impl Into<String>) -> HearthError {
    HearthError::Package(format!("manifest: {}", message.into()))
}

/// ggml type names as the manifest spells them.
pub fn dtype_name(ty: TensorType) -> String {
    ty.to_string()
}

pub fn parse_dtype(name: &str) -> Result<TensorType> {
    [TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0]
        .into_iter()
        .find(|t| t.to_string().eq_ignore_ascii_case(name))
        .ok_or_else(|| invalid(format!("unknown tensor dtype {name:?}")))
}

/// A file name the package may reference: a plain name, no folders, so a
/// manifest can never point a loader outside its package.
fn check_file_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok { Ok(()) } else { Err(invalid(format!("file name {name:?} is not a plain file name"))) }
}

fn check_sha256(file: &str, hex: &str) -> Result<()> {
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(format!("{file}: sha256 {hex:?} is not 64 lowercase hex digits")))
    }
}

impl Manifest {
    /// Parses and checks a manifest: format and version, plain file names,
    /// every tensor inside a listed shard with a length its type and shape
    /// imply, no duplicate names.
    pub fn parse(json: &str) -> Result<Self> {
        let probe: serde_json::Value = serde_json::from_str(json).map_err(|e| invalid(format!("not JSON: {e}")))?;
        if probe.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
            return Err(invalid(format!("\"format\" must be {FORMAT:?}")));
        }
        match probe.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            other => return Err(invalid(format!("format_version {other:?} is not supported (this engine reads {FORMAT_VERSION})"))),
        }
        let manifest: Manifest = serde_json::from_value(probe).map_err(|e| invalid(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| invalid(e.to_string()))
    }

    pub fn validate(&self) -> Result<()> {
        self.config.validate().map_err(|e| invalid(format!("config: {e}")))?;
        check_file_name(&self.tokenizer.file)?;
        check_sha256(&self.tokenizer.file, &self.tokenizer.sha256)?;
        let mut shard_bytes = HashMap::new();
        for shard in &self.shards {
            check_file_name(&shard.file)?;
            check_sha256(&shard.file, &shard.sha256)?;
            if shard.file == self.tokenizer.file || shard_bytes.insert(shard.file.as_str(), shard.bytes).is_some() {
                return Err(invalid(format!("file {} is listed twice", shard.file)));
            }
        }
        let listed: u64 = self.shards.iter().map(|s| s.bytes).fold(self.tokenizer.bytes, u64::saturating_add);
        if listed != self.total_bytes {
            return Err(invalid(format!("total_bytes is {}, the files listed add up to {listed}", self.total_bytes)));
        }
        let mut names = HashSet::new();
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("tensor {} is listed twice", t.name)));
            }
            let ty = parse_dtype(&t.dtype)?;
            let want = tensor_bytes(ty, &t.shape).ok_or_else(|| invalid(format!("{}: shape {:?} does not fit type {}", t.name, t.shape, t.dtype)))?;
            if want != t.length {
                return Err(invalid(format!("{}: {} bytes listed, its type and shape need {want}", t.name, t.length)));
            }
            let size = *shard_bytes.get(t.shard.as_str()).ok_or_else(|| invalid(format!("{}: shard {} is not listed", t.name, t.shard)))?;
            if t.offset.checked_add(t.length).is_none_or(|end| end > size) {
                return Err(invalid(format!("{}: bytes {}+{} lie outside {} ({size} bytes)", t.name, t.offset, t.length, t.shard)));
            }
        }
        Ok(())
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Bytes of a tensor of `ty` and `shape`, or None when the shape does not
/// split into whole blocks or its element count overflows a `usize` (zero
/// dimensions counted as one, so that a zero cannot hide a huge dimension):
/// any product of a valid shape's dimensions is then safe, on wasm32 too.
pub fn tensor_bytes(ty: TensorType, shape: &[usize]) -> Option<u64> {
    let (block, block_bytes) = ty.block_layout()?;
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))?;
    let n = shape.iter().product::<usize>() as u64;
    let last = *shape.last()? as u64;
    if !last.is_multiple_of(block) {
        return None;
    }
    (n / block).checked_mul(block_bytes)
}
