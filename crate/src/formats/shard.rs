//! Package shards: safetensors files holding a model's tensors as stored.
//!
//! Float tensors keep their safetensors dtype and shape, so any safetensors
//! reader can open a shard. ggml block types have no safetensors dtype: they
//! are stored as `U8` byte arrays, and the manifest (plus the shard's
//! `__metadata__`) gives their ggml type and shape.

use crate::error::{HearthError, Result};
use crate::formats::gguf::TensorType;
use crate::formats::manifest::{dtype_name, parse_dtype, Manifest, TensorEntry};
use crate::weights::RawTensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;

/// A tensor to write into a shard.
pub struct ShardTensor<'a> {
    pub name: &'a str,
    pub ty: TensorType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Where a tensor landed inside a shard file.
pub struct Placement {
    pub name: String,
    pub offset: u64,
    pub length: u64,
}

fn shard_error(file: &str, message: impl std::fmt::Display) -> HearthError {
    HearthError::Package(format!("{file}: {message}"))
}

/// The safetensors dtype and shape a tensor is stored under.
fn stored_as(ty: TensorType, shape: &[usize], len: usize) -> (Dtype, Vec<usize>) {
    match ty {
        TensorType::F32 => (Dtype::F32, shape.to_vec()),
        TensorType::F16 => (Dtype::F16, shape.to_vec()),
        TensorType::BF16 => (Dtype::BF16, shape.to_vec()),
        _ => (Dtype::U8, vec![len]),
    }
}

/// Serializes `tensors` as one safetensors file; returns its bytes and each
/// tensor's absolute byte range in it.
pub fn write(file: &str, tensors: &[ShardTensor<'_>]) -> Result<(Vec<u8>, Vec<Placement>)> {
    let mut views = Vec::with_capacity(tensors.len());
    let mut metadata = HashMap::from([("format".to_string(), "hearth-model-package".to_string())]);
    for t in tensors {
        let (dtype, shape) = stored_as(t.ty, t.shape, t.bytes.len());
        let view = TensorView::new(dtype, shape, t.bytes).map_err(|e| shard_error(file, format!("{}: {e}", t.name)))?;
        views.push((t.name.to_string(), view));
        metadata.insert(t.name.to_string(), format!("{} {:?}", dtype_name(t.ty), t.shape));
    }
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| shard_error(file, e))?;
    let (header, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| shard_error(file, e))?;
    let data_start = 8 + header as u64;
    let placements = tensors
        .iter()
        .map(|t| {
            let info = meta.info(t.name).ok_or_else(|| shard_error(file, format!("{} vanished", t.name)))?;
            let (start, end) = info.data_offsets;
            Ok(Placement { name: t.name.to_string(), offset: data_start + start as u64, length: (end - start) as u64 })
        })
        .collect::<Result<_>>()?;
    Ok((bytes, placements))
}

/// The tensors the manifest places in shard `file`, read from its bytes.
/// Each must sit exactly where the manifest says, with the stored dtype and
/// length its ggml type and shape imply.
pub fn read<'a>(manifest: &'a Manifest, file: &str, bytes: &'a [u8]) -> Result<Vec<(&'a TensorEntry, RawTensor<'a>)>> {
    let listed = manifest
        .shards
        .iter()
        .find(|s| s.file == file)
        .ok_or_else(|| shard_error(file, "the manifest lists no such shard"))?;
    if listed.bytes != bytes.len() as u64 {
        return Err(HearthError::Integrity {
            file: file.to_string(),
            message: format!("{} bytes, the manifest lists {}", bytes.len(), listed.bytes),
        });
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| shard_error(file, format!("not a safetensors file: {e}")))?;
    let base = bytes.as_ptr() as usize;
    manifest
        .tensors
        .iter()
        .filter(|t| t.shard == file)
        .map(|entry| {
            let view = st.tensor(&entry.name).map_err(|e| shard_error(file, format!("{}: {e}", entry.name)))?;
            let ty = parse_dtype(&entry.dtype)?;
            let data = view.data();
            // The view lies inside `bytes` (safetensors checked its range).
            let offset = (data.as_ptr() as usize).wrapping_sub(base) as u64;
            // A length past usize cannot match the view (checked below).
            let length = usize::try_from(entry.length).unwrap_or(usize::MAX);
            let (dtype, shape) = stored_as(ty, &entry.shape, length);
            if view.dtype() != dtype || view.shape() != shape.as_slice() || offset != entry.offset || data.len() as u64 != entry.length {
                return Err(shard_error(
                    file,
                    format!(
                        "{} is stored as {:?} {:?} at {offset}+{}; the manifest says {} {:?} at {}+{}",
                        entry.name,
                        view.dtype(),
                        view.shape(),
                        data.len(),
                        entry.dtype,
                        entry.shape,
                        entry.offset,
                        entry.length
                    ),
                ));
            }
            Ok((entry, RawTensor { ty, shape: entry.shape.clone(), bytes: data }))
        })
        .collect()
}
