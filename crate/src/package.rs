//! Web model packages on disk: writing one from any [`ConvertInput`], and
//! opening one natively (the CLI and tests), every file checked against the
//! sizes and sha256 digests its manifest lists.
//!
//! Layout: `manifest.json`, `tokenizer.json`, and shards
//! `model-00001-of-0000N.safetensors` of at most `shard_size` bytes each (a
//! single tensor larger than that gets a shard of its own).

use crate::chat::ChatTemplate;
use crate::convert::{ConvertInput, Quant};
use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::formats::manifest::{self, dtype_name, FileEntry, Manifest, TensorEntry, TokenizerEntry};
use crate::formats::shard::{self, ShardTensor};
use crate::quant::dequantize;
use crate::quantize::quantize;
use crate::tokenizer::Tokenizer;
use crate::weights::{RawTensor, TensorSource};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The default largest shard: small enough for any browser cache entry and
/// for bounded wasm memory while loading, big enough to keep requests few.
pub const DEFAULT_SHARD_SIZE: u64 = 32 << 20;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// How `write` stores the tensors.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Quantize float matrices (F32/F16/BF16) to this; None keeps them
    /// (BF16 widened to F32, which the GPU reads). Already-quantized tensors
    /// are always copied bit-exact.
    pub quant: Option<Quant>,
    pub shard_size: u64,
    /// The package's display name instead of the input's.
    pub name: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { quant: None, shard_size: DEFAULT_SHARD_SIZE, name: None }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> HearthError {
    HearthError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The type a tensor is written in.
fn output_type(ty: TensorType, shape: &[usize], quant: Option<Quant>) -> TensorType {
    let float = matches!(ty, TensorType::F32 | TensorType::F16 | TensorType::BF16);
    match (float, shape.len(), quant) {
        // Vectors (norm weights) are read as f32 by the model.
        (true, 1, _) => TensorType::F32,
        (true, 2, Some(q)) if shape[1].is_multiple_of(32) => q.tensor_type(),
        (true, _, _) if ty == TensorType::BF16 => TensorType::F32,
        _ => ty,
    }
}

/// Converts a tensor's bytes to `target` (through f32 when it changes).
fn convert_tensor(name: &str, ty: TensorType, shape: &[usize], bytes: Vec<u8>, target: TensorType) -> Result<Vec<u8>> {
    if ty == target {
        return Ok(bytes);
    }
    let n = shape.iter().product();
    let values = dequantize(ty, &bytes, n).map_err(|e| HearthError::Model(format!("{name}: {e}")))?;
    quantize(target, &values).map_err(|e| HearthError::Model(format!("{name}: {e}")))
}

/// Shards being filled, flushed to `model-NNNNN.partial` files and renamed
/// once their count is known.
struct ShardWriter<'a> {
    dir: &'a Path,
    limit: u64,
    pending: Vec<(String, TensorType, Vec<usize>, Vec<u8>)>,
    pending_bytes: u64,
    written: Vec<WrittenShard>,
}

/// A shard on disk under its temporary name.
struct WrittenShard {
    partial: PathBuf,
    bytes: u64,
    sha256: String,
    placements: Vec<shard::Placement>,
    types: Vec<(TensorType, Vec<usize>)>,
}

impl ShardWriter<'_> {
    fn add(&mut self, name: String, ty: TensorType, shape: Vec<usize>, bytes: Vec<u8>) -> Result<()> {
        if !self.pending.is_empty() && self.pending_bytes + bytes.len() as u64 > self.limit {
            self.flush()?;
        }
        self.pending_bytes += bytes.len() as u64;
        self.pending.push((name, ty, shape, bytes));
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(format!("model-{:05}.partial", self.written.len() + 1));
        let tensors: Vec<ShardTensor> =
            self.pending.iter().map(|(name, ty, shape, bytes)| ShardTensor { name, ty: *ty, shape, bytes }).collect();
        let (bytes, placements) = shard::write(&path.display().to_string(), &tensors)?;
        std::fs::write(&path, &bytes).map_err(|e| io_error(&path, e))?;
        let types = self.pending.drain(..).map(|(_, ty, shape, _)| (ty, shape)).collect();
        self.written.push(WrittenShard { partial: path, bytes: bytes.len() as u64, sha256: sha256_hex(&bytes), placements, types });
        self.pending_bytes = 0;
        Ok(())
    }

    /// Renames the shards to their final names; returns their entries and
    /// the tensor table.
    fn finish(mut self) -> Result<(Vec<FileEntry>, Vec<TensorEntry>)> {
        self.flush()?;
        let count = self.written.len();
        let (mut shards, mut tensors) = (Vec::new(), Vec::new());
        for (i, w) in self.written.into_iter().enumerate() {
            let file = format!("model-{:05}-of-{count:05}.safetensors", i + 1);
            let path = self.dir.join(&file);
            std::fs::rename(&w.partial, &path).map_err(|e| io_error(&path, e))?;
            shards.push(FileEntry { file: file.clone(), bytes: w.bytes, sha256: w.sha256 });
            for (p, (ty, shape)) in w.placements.into_iter().zip(w.types) {
                tensors.push(TensorEntry { name: p.name, dtype: dtype_name(ty), shape, shard: file.clone(), offset: p.offset, length: p.length });
            }
        }
        Ok((shards, tensors))
    }
}

/// Writes `input` as a package into `out_dir` (created if needed; files of
/// an earlier package there are replaced). `progress(done, total, name)` is
/// called after each tensor.
pub fn write(
    input: &dyn ConvertInput,
    out_dir: &Path,
    options: &WriteOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Manifest> {
    if options.shard_size == 0 {
        return Err(HearthError::InvalidArgument("the shard size must be at least 1 byte".into()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    remove_old_shards(out_dir)?;
    let meta = input.meta();
    let names = input.tensor_names();
    let mut writer = ShardWriter { dir: out_dir, limit: options.shard_size, pending: Vec::new(), pending_bytes: 0, written: Vec::new() };
    let mut matrix_types: HashMap<TensorType, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let t = input.tensor(name)?;
        let target = output_type(t.ty, &t.shape, options.quant);
        let bytes = convert_tensor(name, t.ty, &t.shape, t.bytes, target)?;
        if t.shape.len() == 2 {
            *matrix_types.entry(target).or_default() += t.shape.iter().product::<usize>();
        }
        writer.add(name.clone(), target, t.shape, bytes)?;
        progress(i + 1, names.len(), name);
    }
    let (shards, tensors) = writer.finish()?;

    let tokenizer_path = out_dir.join(TOKENIZER_FILE);
    std::fs::write(&tokenizer_path, &meta.tokenizer_json).map_err(|e| io_error(&tokenizer_path, e))?;
    let tokenizer = TokenizerEntry {
        file: TOKENIZER_FILE.into(),
        bytes: meta.tokenizer_json.len() as u64,
        sha256: sha256_hex(meta.tokenizer_json.as_bytes()),
        special: meta.special,
    };
    // The type holding the most matrix weights names the package's quantization.
    let quantization = matrix_types.into_iter().max_by_key(|&(_, n)| n).map_or("f32".into(), |(t, _)| dtype_name(t).to_lowercase());
    let total_bytes = shards.iter().map(|s| s.bytes).sum::<u64>() + tokenizer.bytes;
    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        name: options.name.clone().unwrap_or_else(|| meta.name.clone()),
        config: meta.config.clone(),
        quantization,
        tokenizer,
        chat_template: meta.chat_template.clone(),
        generation: meta.generation.clone(),
        tensors,
        shards,
        total_bytes,
    };
    manifest.validate()?;
    let path = out_dir.join(MANIFEST_FILE);
    std::fs::write(&path, manifest.to_json()?).map_err(|e| io_error(&path, e))?;
    Ok(manifest)
}

/// Shards of an earlier package in `dir`, which would otherwise linger
/// beside the new ones.
fn remove_old_shards(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("model-") && (name.ends_with(".safetensors") || name.ends_with(".partial")) {
            std::fs::remove_file(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
        }
    }
    Ok(())
}

/// A package read from a folder, every file verified.
pub struct Package {
    pub manifest: Manifest,
    pub dir: PathBuf,
    tokenizer_json: String,
    shards: HashMap<String, Vec<u8>>,
}

/// Reads `dir/file` and checks it against its manifest entry.
fn read_verified(dir: &Path, file: &str, bytes: u64, sha256: &str) -> Result<Vec<u8>> {
    let path = dir.join(file);
    let data = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
    let integrity = |message: String| HearthError::Integrity { file: path.display().to_string(), message };
    if data.len() as u64 != bytes {
        return Err(integrity(format!("{} bytes, the manifest lists {bytes}", data.len())));
    }
    let actual = sha256_hex(&data);
    if actual != sha256 {
        return Err(integrity(format!("sha256 is {actual}, the manifest lists {sha256}")));
    }
    Ok(data)
}

impl Package {
    /// True when `path` looks like a package folder (has a manifest.json).
    pub fn is_package(path: &Path) -> bool {
        path.is_dir() && path.join(MANIFEST_FILE).is_file()
    }

    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let json = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        let manifest = Manifest::parse(&json)?;
        let t = &manifest.tokenizer;
        let tokenizer = read_verified(dir, &t.file, t.bytes, &t.sha256)?;
        let tokenizer_json =
            String::from_utf8(tokenizer).map_err(|_| HearthError::Package(format!("{} is not UTF-8", t.file)))?;
        let mut shards = HashMap::new();
        for s in &manifest.shards {
            let bytes = read_verified(dir, &s.file, s.bytes, &s.sha256)?;
            shard::read(&manifest, &s.file, &bytes)?; // header and placements agree with the manifest
            shards.insert(s.file.clone(), bytes);
        }
        Ok(Package { manifest, dir: dir.to_path_buf(), tokenizer_json, shards })
    }

    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_json(&self.tokenizer_json, self.manifest.tokenizer.special)
    }

    pub fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        self.manifest.chat_template.as_deref().map(ChatTemplate::new).transpose()
    }
}

impl TensorSource for Package {
    fn tensor(&self, name: &str) -> Result<RawTensor<'_>> {
        let entry = self.manifest.tensor(name).ok_or_else(|| HearthError::Model(format!("tensor {name} is missing")))?;
        let shard = &self.shards[&entry.shard]; // every listed shard was read in `open`
        Ok(RawTensor {
            ty: manifest::parse_dtype(&entry.dtype)?,
            shape: entry.shape.clone(),
            // In range: `open` checked every placement against the shard.
            bytes: &shard[entry.offset as usize..(entry.offset + entry.length) as usize],
        })
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.manifest.tensor(name).is_some()
    }
}
