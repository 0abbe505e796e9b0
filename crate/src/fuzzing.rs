//! Entry points of the fuzz targets (`fuzz/`), shared with their corpus
//! replay in the normal test suite (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes, runs one untrusted-input path of the
//! engine as far as it goes without a GPU and discards the result: an `Err`
//! is the expected outcome for malformed input; a panic, a hang or a huge
//! allocation is a bug. Where a path has a property worth checking (a
//! manifest written back reads back the same), the function asserts it.
#![doc(hidden)]

use std::sync::OnceLock;

use crate::chat::{ChatTemplate, Message};
use crate::config::{ModelConfig, RopeScaling};
use crate::convert::GenerationDefaults;
use crate::formats::gguf::{GgufFile, TensorType};
use crate::formats::manifest::{self, FileEntry, Manifest, TensorEntry, TokenizerEntry};
use crate::formats::shard::{self, ShardTensor};
use crate::tokenizer::{SpecialTokens, Tokenizer};
use crate::weights::{model_tensor_names, GgufSource, TensorSource};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target: its name (the folder of its corpus) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("gguf", gguf),
    ("manifest", manifest),
    ("safetensors_shard", safetensors_shard),
    ("shard_with_manifest", shard_with_manifest),
    ("tokenizer_json", tokenizer_json),
];

/// Text every loaded tokenizer encodes: words, digits, added and control
/// tokens, multi-byte characters, whitespace runs.
const TEXT: &str = "Hello, world! 12345 <|im_start|>user\nhéllo 🎉<tool>  \t\r\n x<|im_end|>";

/// Opening a GGUF file held in memory, as `Engine::from_gguf` does up to the
/// weights: the header, the model config, the tokenizer from the vocabulary,
/// the chat template, then every tensor the model reads looked up (its bytes
/// sliced, not uploaded). Each step runs even when an earlier one failed, so
/// the fuzzer reaches all of them. The header is also parsed as a prefix of
/// unknown length (the mode a loader reading the file in pieces uses).
pub fn gguf(bytes: &[u8]) {
    if let Ok(prefix) = GgufFile::parse(bytes, None) {
        for t in &prefix.tensors {
            let _ = prefix.tensor_bytes(bytes, t);
        }
    }
    let Ok(file) = GgufFile::parse(bytes, Some(bytes.len() as u64)) else { return };
    let config = ModelConfig::from_gguf(&file);
    let tokenizer = Tokenizer::from_gguf(&file);
    let template = ChatTemplate::from_gguf(&file);
    if let Ok(config) = &config {
        let source = GgufSource { gguf: &file, bytes };
        for name in model_tensor_names(config) {
            if source.has_tensor(&name) {
                if let Ok(t) = source.tensor(&name) {
                    let _ = t.elements();
                }
            }
        }
    }
    if let Ok(t) = &tokenizer {
        use_tokenizer(t);
    }
    if let Ok(template) = &template {
        render(template, tokenizer.as_ref().ok());
    }
}

/// A package's `manifest.json`, as the web loader opens it before any shard
/// arrives: parsed and checked, the tensors the model needs looked up, the
/// chat template compiled. A manifest that parses must write back to one
/// that parses to the same value.
pub fn manifest(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(m) = Manifest::parse(text) else { return };
    open_manifest(&m);
}

fn open_manifest(m: &Manifest) {
    let _ = model_tensor_names(&m.config).iter().all(|name| m.tensor(name).is_some());
    if let Some(source) = &m.chat_template {
        if let Ok(template) = ChatTemplate::new(source) {
            render(&template, None);
        }
    }
    let json = m.to_json().expect("a parsed manifest serializes");
    let back = Manifest::parse(&json).expect("a written manifest parses");
    assert_eq!(&back, m, "manifest round trip");
}

/// The bytes of a shard of the fixed manifest of [`shard_fixture`] (its size
/// set to theirs, so the safetensors header is what gets checked).
pub fn safetensors_shard(bytes: &[u8]) {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    let base = MANIFEST.get_or_init(|| shard_fixture().0);
    let mut m = base.clone();
    m.shards[0].bytes = bytes.len() as u64;
    read_shard(&m, bytes);
}

/// A manifest and a shard: a little-endian u32 gives the manifest's length,
/// its JSON follows, then the shard's bytes. The first shard the manifest
/// lists gets the shard's size (then the manifest must still validate).
pub fn shard_with_manifest(bytes: &[u8]) {
    let Some((len, rest)) = bytes.split_first_chunk::<4>() else { return };
    let len = u32::from_le_bytes(*len) as usize;
    let Some((json, shard_bytes)) = rest.split_at_checked(len) else { return };
    let Ok(json) = std::str::from_utf8(json) else { return };
    let Ok(mut m) = Manifest::parse(json) else { return };
    let Some(first) = m.shards.first_mut() else { return };
    let old = std::mem::replace(&mut first.bytes, shard_bytes.len() as u64);
    m.total_bytes = m.total_bytes.saturating_sub(old).saturating_add(shard_bytes.len() as u64);
    if m.validate().is_ok() {
        read_shard(&m, shard_bytes);
    }
}

fn read_shard(m: &Manifest, bytes: &[u8]) {
    let file = m.shards[0].file.clone();
    let Ok(tensors) = shard::read(m, &file, bytes) else { return };
    for (entry, tensor) in tensors {
        // What the loader relies on: the bytes are the manifest's range, of
        // the length its type and shape imply.
        let start = usize::try_from(entry.offset).expect("offset within the shard");
        assert_eq!(bytes.get(start..start + tensor.bytes.len()), Some(tensor.bytes));
        assert_eq!(manifest::tensor_bytes(tensor.ty, &tensor.shape), Some(tensor.bytes.len() as u64));
        let _ = tensor.elements();
    }
}

/// A package's `tokenizer.json`, loaded as the web loader and `Package`
/// load it, then used as generation uses it.
pub fn tokenizer_json(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let special = SpecialTokens { bos: Some(1), eos: Some(2), eot: None, pad: None, add_bos: true };
    if let Ok(t) = Tokenizer::from_json(text, special) {
        use_tokenizer(&t);
    }
}

/// What generation does with a tokenizer: encode a prompt with and without
/// special tokens, decode (all at once and streamed), look up special tokens.
fn use_tokenizer(t: &Tokenizer) {
    for parse_special in [true, false] {
        let Ok(ids) = t.encode(TEXT, parse_special) else { continue };
        let _ = t.decode(&ids);
        let mut stream = t.stream_decoder();
        for &id in &ids {
            let _ = stream.push(id);
        }
        let _ = stream.finish();
    }
    let _ = t.decode(&[0, 1, 2, u32::MAX]);
    for id in [t.bos_id(), t.eos_id(), t.eot_id(), t.pad_id()].into_iter().flatten() {
        let _ = t.token_str(id);
    }
    let _ = (t.vocab_size(), t.eog_ids(), t.token_id("<|im_end|>"));
}

/// Renders a short conversation, with the BOS and EOS texts the engine
/// passes (`Engine::render_chat`).
fn render(template: &ChatTemplate, tokenizer: Option<&Tokenizer>) {
    let token = |id: Option<u32>| id.and_then(|i| tokenizer?.token_str(i)).unwrap_or_default();
    let (bos, eos) = tokenizer.map_or_else(Default::default, |t| (token(t.bos_id()), token(t.eos_id())));
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi"),
        Message::new("assistant", "Hello!"),
        Message::new("user", "2+2?"),
    ];
    for add_generation_prompt in [true, false] {
        let _ = template.render(&messages, add_generation_prompt, &bos, &eos);
    }
}

/// A small valid package: its manifest and its one shard's bytes, holding
/// an F32 matrix, an F16 vector and a Q8_0 matrix (stored as U8 bytes).
pub fn shard_fixture() -> (Manifest, Vec<u8>) {
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let f16s: Vec<u8> = (0..4u16).flat_map(|i| (0x3c00 + i).to_le_bytes()).collect();
    let q8: Vec<u8> = (0..2 * 34).map(|i| i as u8).collect();
    let tensors = [
        ShardTensor { name: "token_embd.weight", ty: TensorType::F32, shape: &[2, 4], bytes: &f32s },
        ShardTensor { name: "output_norm.weight", ty: TensorType::F16, shape: &[4], bytes: &f16s },
        ShardTensor { name: "blk.0.attn_q.weight", ty: TensorType::Q8_0, shape: &[2, 32], bytes: &q8 },
    ];
    const SHARD: &str = "model-00001-of-00001.safetensors";
    let (bytes, placements) = shard::write(SHARD, &tensors).expect("the fixture shard is valid");
    let entries = tensors
        .iter()
        .zip(&placements)
        .map(|(t, p)| TensorEntry {
            name: t.name.into(),
            dtype: manifest::dtype_name(t.ty),
            shape: t.shape.to_vec(),
            shard: SHARD.into(),
            offset: p.offset,
            length: p.length,
        })
        .collect();
    let tokenizer_json = r#"{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}}"#;
    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        name: "fuzz-fixture".into(),
        config: ModelConfig {
            architecture: "llama".into(),
            n_layers: 1,
            dim: 4,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: 4,
            ffn_dim: 8,
            vocab_size: 2,
            context_length: 16,
            rms_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_dim: 4,
            rope_scaling: RopeScaling::None,
            tied_embeddings: true,
        },
        quantization: "q8_0".into(),
        tokenizer: TokenizerEntry {
            file: "tokenizer.json".into(),
            bytes: tokenizer_json.len() as u64,
            sha256: crate::package::sha256_hex(tokenizer_json.as_bytes()),
            special: SpecialTokens::default(),
        },
        chat_template: Some("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}".into()),
        generation: GenerationDefaults::default(),
        tensors: entries,
        shards: vec![FileEntry { file: SHARD.into(), bytes: bytes.len() as u64, sha256: crate::package::sha256_hex(&bytes) }],
        total_bytes: tokenizer_json.len() as u64 + bytes.len() as u64,
    };
    manifest.validate().expect("the fixture manifest is valid");
    (manifest, bytes)
}
