//! GGUF reader (versions 2 and 3): metadata, tensor infos and data offsets.
//!
//! A parser over bytes, no I/O: `GgufFile::parse` reads the header from a
//! prefix of the file (or the whole file) and never trusts a length or offset
//! it reads. Every count is checked against the bytes left before anything is
//! allocated, so a malformed or hostile file gives an error, never a panic, a
//! huge allocation or a hang. A prefix that ends inside the header gives
//! `GgufError::Truncated { needed }` so a loader can read more and retry.

use std::collections::BTreeMap;
use std::fmt;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays accepted (real files use 1).
const MAX_ARRAY_DEPTH: u32 = 4;
/// Most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;
/// Most metadata values (keys' values and array elements, all together) a
/// header may hold. Each takes up to a byte in the file but 32 in memory, so
/// a budget keeps a hostile file from turning its size into 32 times as much
/// memory; real files hold under two million (vocabularies of 260k tokens,
/// with their types, scores and merges).
const MAX_METADATA_VALUES: u64 = 1 << 24;

/// Why a GGUF file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic {0:?})")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("GGUF header is cut short: {needed} bytes are needed, {have} are present")]
    Truncated { needed: u64, have: u64 },
    #[error("malformed GGUF: {0}")]
    Malformed(String),
}

type Result<T> = std::result::Result<T, GgufError>;

/// A metadata value, with every type GGUF defines.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I64(v) => Some(v),
            _ => self.as_u64().map(|v| v as i64).or(match *self {
                Value::I8(v) => Some(v as i64),
                Value::I16(v) => Some(v as i64),
                Value::I32(v) => Some(v as i64),
                _ => None,
            }),
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// Tensor element types (ggml's `ggml_type` numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    BF16,
    /// Any other ggml type: readable in the header, refused by the loader.
    Other(u32),
}

impl TensorType {
    pub fn from_ggml(id: u32) -> Self {
        match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            8 => TensorType::Q8_0,
            30 => TensorType::BF16,
            other => TensorType::Other(other),
        }
    }

    pub fn ggml_id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q4_1 => 3,
            TensorType::Q8_0 => 8,
            TensorType::BF16 => 30,
            TensorType::Other(id) => id,
        }
    }

    /// (elements per block, bytes per block), or None for unsupported types.
    pub fn block_layout(self) -> Option<(u64, u64)> {
        match self {
            TensorType::F32 => Some((1, 4)),
            TensorType::F16 | TensorType::BF16 => Some((1, 2)),
            TensorType::Q4_0 => Some((32, 18)),
            TensorType::Q4_1 => Some((32, 20)),
            TensorType::Q8_0 => Some((32, 34)),
            TensorType::Other(_) => None,
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorType::Other(id) => write!(f, "ggml type {id}"),
            t => write!(f, "{t:?}"),
        }
    }
}

/// One tensor's description. `dims` are GGUF's order: `dims[0]` is the
/// contiguous (row) length, so a `[cols, rows]` tensor is `rows × cols`.
/// The parser guarantees that the product of the non-zero dimensions (so
/// each of them) fits in an `i64` and a `usize` (32 bits on wasm32).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Byte length of the data (0 for unsupported types, whose size is unknown).
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset where tensor data begins.
    pub data_offset: u64,
    pub alignment: u64,
}

impl GgufFile {
    /// Parses the header from `bytes`, a prefix of the file or all of it.
    ///
    /// `file_len`, when known, bounds every tensor's data range: a tensor
    /// that reaches past the end of the file is an error here, not later.
    pub fn parse(bytes: &[u8], file_len: Option<u64>) -> Result<Self> {
        match Self::parse_inner(bytes, file_len) {
            // With the whole file in hand, running out of bytes is no reason
            // to read more: the header itself is broken.
            Err(GgufError::Truncated { needed, .. })
                if file_len.is_some_and(|len| needed > len || bytes.len() as u64 >= len) =>
            {
                Err(GgufError::Malformed(format!("the header claims {needed} bytes but the file ends first")))
            }
            other => other,
        }
    }

    fn parse_inner(bytes: &[u8], file_len: Option<u64>) -> Result<Self> {
        let mut r = Reader { bytes, pos: 0, values_left: MAX_METADATA_VALUES };
        let magic: [u8; 4] = r.take(4)?.try_into().expect("4 bytes");
        if &magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32()?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = r.u64()?;
        let kv_count = r.u64()?;

        // Each key/value takes at least 12 bytes (8 for the key's length, 4
        // for the type) and each tensor info at least 24: refuse counts the
        // file could not possibly hold. Reservations are capped either way,
        // so a prefix with lying counts runs out of bytes, not of memory.
        if let Some(len) = file_len {
            if kv_count > len / 12 || tensor_count > len / 24 {
                return Err(GgufError::Malformed(format!(
                    "{kv_count} metadata entries and {tensor_count} tensors cannot fit in {len} bytes"
                )));
            }
        }

        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string()?;
            let ty = r.u32()?;
            let value = r.value(ty, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Malformed(format!("metadata key {key:?} appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => return Err(GgufError::Malformed(format!("general.alignment {v:?} is not a power of two"))),
            },
        };

        let mut infos = Vec::with_capacity(tensor_count.min(4096) as usize);
        for _ in 0..tensor_count {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Malformed(format!("tensor {name:?} has {n_dims} dimensions")));
            }
            let dims = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
            let ty = TensorType::from_ggml(r.u32()?);
            let rel_offset = r.u64()?;
            infos.push((name, dims, ty, rel_offset));
        }
        let data_offset = align_up(r.pos as u64, alignment)
            .ok_or_else(|| GgufError::Malformed("data offset overflows".into()))?;

        let mut tensors = Vec::with_capacity(infos.len());
        let mut names = std::collections::HashSet::new();
        for (name, dims, ty, rel_offset) in infos {
            if !names.insert(name.clone()) {
                return Err(GgufError::Malformed(format!("tensor {name:?} appears twice")));
            }
            let size = tensor_size(&name, &dims, ty)?;
            if rel_offset % alignment != 0 {
                return Err(GgufError::Malformed(format!(
                    "tensor {name:?} offset {rel_offset} is not aligned to {alignment}"
                )));
            }
            let offset = data_offset
                .checked_add(rel_offset)
                .ok_or_else(|| GgufError::Malformed(format!("tensor {name:?} offset overflows")))?;
            let end = offset
                .checked_add(size)
                .ok_or_else(|| GgufError::Malformed(format!("tensor {name:?} size overflows")))?;
            if let Some(len) = file_len {
                if end > len {
                    return Err(GgufError::Malformed(format!(
                        "tensor {name:?} ends at byte {end}, past the end of the file ({len} bytes)"
                    )));
                }
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }
        Ok(GgufFile { version, metadata, tensors, data_offset, alignment })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The bytes of `tensor` inside `file` (the whole file's bytes).
    pub fn tensor_bytes<'a>(&self, file: &'a [u8], tensor: &TensorInfo) -> Result<&'a [u8]> {
        let range = tensor.offset.checked_add(tensor.size).and_then(|end| {
            Some(usize::try_from(tensor.offset).ok()?..usize::try_from(end).ok()?)
        });
        range.and_then(|range| file.get(range)).ok_or_else(|| {
            GgufError::Malformed(format!("tensor {:?} lies past the end of the data", tensor.name))
        })
    }

    /// A string array from the metadata (e.g. `tokenizer.ggml.tokens`).
    pub fn string_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?.as_array()?.iter().map(Value::as_str).collect()
    }

    /// Describes a metadata value's type, for error messages.
    pub fn type_of(&self, key: &str) -> Option<&'static str> {
        self.get(key).map(Value::type_name)
    }
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? / a * a)
}

fn tensor_size(name: &str, dims: &[u64], ty: TensorType) -> Result<u64> {
    // As ggml: the element count must fit in an i64 (and here in a usize).
    // Zero dimensions count as one, so that a zero cannot hide a huge one.
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1)))
        .filter(|&n| n <= i64::MAX as u64 && usize::try_from(n).is_ok())
        .map(|_| dims.iter().product::<u64>())
        .ok_or_else(|| GgufError::Malformed(format!("tensor {name:?} has too many elements: {dims:?}")))?;
    let Some((block, block_bytes)) = ty.block_layout() else { return Ok(0) };
    if !dims[0].is_multiple_of(block) {
        return Err(GgufError::Malformed(format!(
            "tensor {name:?} of type {ty} has rows of {} values, not a multiple of {block}",
            dims[0]
        )));
    }
    (elements / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| GgufError::Malformed(format!("tensor {name:?} byte size overflows")))
}

/// A cursor over the header bytes; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Metadata values that may still be read (see [`MAX_METADATA_VALUES`]).
    values_left: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let have = (self.bytes.len() - self.pos) as u64;
        if n > have {
            return Err(GgufError::Truncated { needed: (self.pos as u64).saturating_add(n), have: self.bytes.len() as u64 });
        }
        let out = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N as u64)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Malformed(format!("string at byte {} is not UTF-8", self.pos as u64 - len)))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        self.values_left = self.values_left.checked_sub(1).ok_or_else(|| {
            GgufError::Malformed(format!("the header holds more than {MAX_METADATA_VALUES} metadata values"))
        })?;
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array()?)),
            1 => Value::I8(i8::from_le_bytes(self.array()?)),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(GgufError::Malformed(format!("bool value {b}"))),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Malformed("arrays nested too deeply".into()));
                }
                let elem_ty = self.u32()?;
                let len = self.u64()?;
                // Every element takes at least one byte: a length beyond the
                // bytes left is a lie (or a prefix too short to hold it).
                let left = (self.bytes.len() - self.pos) as u64;
                if len > left {
                    return Err(GgufError::Truncated {
                        needed: (self.pos as u64).saturating_add(len),
                        have: self.bytes.len() as u64,
                    });
                }
                if len > self.values_left {
                    return Err(GgufError::Malformed(format!(
                        "an array of {len} values: the header holds more than {MAX_METADATA_VALUES} metadata values"
                    )));
                }
                let mut items = Vec::with_capacity(len.min(1 << 16) as usize);
                for _ in 0..len {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(GgufError::Malformed(format!("unknown metadata value type {other}"))),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes GGUF bytes: the tests' independent encoder of the format.
    pub(crate) struct Writer {
        pub version: u32,
        pub kvs: Vec<(String, u32, Vec<u8>)>,
        pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
        pub alignment: u64,
    }

    fn gguf_str(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    }

    impl Writer {
        pub fn new(version: u32) -> Self {
            Writer { version, kvs: vec![], tensors: vec![], alignment: 32 }
        }
        pub fn kv(mut self, key: &str, ty: u32, payload: Vec<u8>) -> Self {
            self.kvs.push((key.into(), ty, payload));
            self
        }
        pub fn kv_str(self, key: &str, v: &str) -> Self {
            self.kv(key, 8, gguf_str(v))
        }
        pub fn kv_u32(self, key: &str, v: u32) -> Self {
            self.kv(key, 4, v.to_le_bytes().to_vec())
        }
        pub fn kv_f32(self, key: &str, v: f32) -> Self {
            self.kv(key, 6, v.to_le_bytes().to_vec())
        }
        pub fn kv_str_array(self, key: &str, items: &[&str]) -> Self {
            let mut p = 8u32.to_le_bytes().to_vec();
            p.extend((items.len() as u64).to_le_bytes());
            items.iter().for_each(|s| p.extend(gguf_str(s)));
            self.kv(key, 9, p)
        }
        pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
            self.tensors.push((name.into(), dims.to_vec(), ty, data));
            self
        }
        pub fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend((self.tensors.len() as u64).to_le_bytes());
            out.extend((self.kvs.len() as u64).to_le_bytes());
            for (k, ty, payload) in &self.kvs {
                out.extend(gguf_str(k));
                out.extend(ty.to_le_bytes());
                out.extend(payload);
            }
            let mut rel = 0u64;
            let mut offsets = vec![];
            for (name, dims, ty, data) in &self.tensors {
                out.extend(gguf_str(name));
                out.extend((dims.len() as u32).to_le_bytes());
                dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
                out.extend(ty.to_le_bytes());
                out.extend(rel.to_le_bytes());
                offsets.push(rel);
                rel = align_up(rel + data.len() as u64, self.alignment).unwrap();
            }
            out.resize(align_up(out.len() as u64, self.alignment).unwrap() as usize, 0);
            let base = out.len();
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                out.resize(base + off as usize, 0);
                out.extend(data);
            }
            out
        }
    }

    fn every_type_file(version: u32) -> Vec<u8> {
        let mut arr = 5u32.to_le_bytes().to_vec(); // array of i32
        arr.extend(3u64.to_le_bytes());
        [-1i32, 0, 7].iter().for_each(|v| arr.extend(v.to_le_bytes()));
        Writer::new(version)
            .kv("u8", 0, vec![200])
            .kv("i8", 1, vec![0xff])
            .kv("u16", 2, 60000u16.to_le_bytes().to_vec())
            .kv("i16", 3, (-300i16).to_le_bytes().to_vec())
            .kv_u32("u32", 4_000_000_000)
            .kv("i32", 5, (-5i32).to_le_bytes().to_vec())
            .kv_f32("f32", 1.5)
            .kv("bool", 7, vec![1])
            .kv_str("string", "héllo")
            .kv("array", 9, arr)
            .kv("u64", 10, u64::MAX.to_le_bytes().to_vec())
            .kv("i64", 11, i64::MIN.to_le_bytes().to_vec())
            .kv("f64", 12, 0.25f64.to_le_bytes().to_vec())
            .kv_str_array("strings", &["a", "", "<|im_end|>"])
            .tensor("w", &[32, 3], 3, vec![7; 60])
            .tensor("b", &[5], 0, vec![1; 20])
            .build()
    }

    #[test]
    fn reads_every_value_type_in_v2_and_v3() {
        for version in [2, 3] {
            let bytes = every_type_file(version);
            let f = GgufFile::parse(&bytes, Some(bytes.len() as u64)).unwrap();
            assert_eq!(f.version, version);
            assert_eq!(f.get("u8"), Some(&Value::U8(200)));
            assert_eq!(f.get("i8"), Some(&Value::I8(-1)));
            assert_eq!(f.get("u16"), Some(&Value::U16(60000)));
            assert_eq!(f.get("i16"), Some(&Value::I16(-300)));
            assert_eq!(f.get("u32").unwrap().as_u64(), Some(4_000_000_000));
            assert_eq!(f.get("i32").unwrap().as_i64(), Some(-5));
            assert_eq!(f.get("f32").unwrap().as_f64(), Some(1.5));
            assert_eq!(f.get("bool").unwrap().as_bool(), Some(true));
            assert_eq!(f.get("string").unwrap().as_str(), Some("héllo"));
            assert_eq!(f.get("array"), Some(&Value::Array(vec![Value::I32(-1), Value::I32(0), Value::I32(7)])));
            assert_eq!(f.get("u64").unwrap().as_u64(), Some(u64::MAX));
            assert_eq!(f.get("i64").unwrap().as_i64(), Some(i64::MIN));
            assert_eq!(f.get("f64").unwrap().as_f64(), Some(0.25));
            assert_eq!(f.string_array("strings").unwrap(), vec!["a", "", "<|im_end|>"]);
            let w = f.tensor("w").unwrap();
            assert_eq!((w.ty, w.dims.clone(), w.size), (TensorType::Q4_1, vec![32, 3], 60));
            assert_eq!(f.tensor_bytes(&bytes, w).unwrap(), &[7; 60][..]);
            let b = f.tensor("b").unwrap();
            assert_eq!(b.offset % 32, 0);
            assert_eq!(f.tensor_bytes(&bytes, b).unwrap(), &[1; 20][..]);
        }
    }

    #[test]
    fn every_prefix_is_truncated_or_rejected_never_a_panic() {
        let bytes = every_type_file(3);
        let header_end = GgufFile::parse(&bytes, None).unwrap().data_offset as usize;
        for cut in 0..header_end {
            match GgufFile::parse(&bytes[..cut], None) {
                Err(GgufError::Truncated { .. }) => {}
                // Only the alignment padding after the last tensor info may be missing.
                Ok(f) => assert!(cut as u64 >= f.data_offset - f.alignment, "parsed at cut {cut}"),
                Err(e) => panic!("cut {cut}: {e}"),
            }
            // With the real length known, a short file is malformed, not truncated.
            assert!(!matches!(
                GgufFile::parse(&bytes[..cut], Some(cut as u64)),
                Err(GgufError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn rejects_bad_magic_version_and_lying_counts() {
        let good = every_type_file(3);
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(GgufFile::parse(&bad, None), Err(GgufError::BadMagic(_))));
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(GgufFile::parse(&bad, None).unwrap_err(), GgufError::UnsupportedVersion(1));
        // A tensor count of 2^60 must be refused before any allocation.
        let mut bad = good.clone();
        bad[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(GgufFile::parse(&bad, Some(bad.len() as u64)), Err(GgufError::Malformed(_))));
        // A string length of u64::MAX.
        let mut bad = good.clone();
        bad[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(GgufFile::parse(&bad, Some(bad.len() as u64)).is_err());
    }

    #[test]
    fn rejects_tensors_past_the_end_or_with_odd_shapes() {
        let bytes = every_type_file(3);
        // The file minus its last byte: tensor "b" now ends past the end.
        let err = GgufFile::parse(&bytes, Some(bytes.len() as u64 - 1)).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        let odd = Writer::new(3).tensor("q", &[33, 1], 3, vec![0; 20]).build();
        let err = GgufFile::parse(&odd, None).unwrap_err();
        assert!(err.to_string().contains("multiple of 32"), "{err}");
        let huge = Writer::new(3).tensor("h", &[u64::MAX, 2], 0, vec![]).build();
        assert!(GgufFile::parse(&huge, None).unwrap_err().to_string().contains("too many elements"));
    }

    #[test]
    fn deep_nesting_and_unknown_types_are_errors() {
        let mut nested = Vec::new();
        for _ in 0..8 {
            nested.extend(9u32.to_le_bytes());
            nested.extend(1u64.to_le_bytes());
        }
        nested.extend(4u32.to_le_bytes());
        nested.extend(0u64.to_le_bytes());
        let f = Writer::new(3).kv("deep", 9, nested).build();
        assert!(GgufFile::parse(&f, None).unwrap_err().to_string().contains("nested"));
        let f = Writer::new(3).kv("x", 99, vec![0; 8]).build();
        assert!(GgufFile::parse(&f, None).unwrap_err().to_string().contains("unknown metadata value type 99"));
    }
}
