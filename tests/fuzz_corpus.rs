//! The fuzz targets' inputs replayed in the normal test suite: every file of
//! `fuzz/corpus/<target>/` (the minimized corpus) and `fuzz/regressions/<target>/`
//! (inputs that once crashed), plus the seeds this file generates, through
//! the same functions the fuzz targets call (`hearth_llm::fuzzing`). Each must
//! finish without a panic within a time limit. Then explicit hostile inputs
//! whose typed error is checked.
//!
//! The seeds (small valid files and hand-written hostile ones) are written to
//! the corpus folders by the ignored test `write_seed_corpus`:
//! `cargo test --release --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_llm::config::ModelConfig;
use hearth_llm::formats::gguf::{GgufError, GgufFile};
use hearth_llm::formats::manifest::Manifest;
use hearth_llm::formats::shard;
use hearth_llm::fuzzing::{self, TARGETS};
use hearth_llm::tokenizer::{SpecialTokens, Tokenizer};
use hearth_llm::HearthError;

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

/// Longest an input may take: generous for inputs of a few kilobytes, so
/// that only a hang (or something close to one) fails.
fn time_limit() -> Duration {
    Duration::from_secs(if cfg!(debug_assertions) { 10 } else { 2 })
}

/// Runs `f(input)` on its own thread; an error names the panic or the hang.
fn run_one(f: fn(&[u8]), input: Vec<u8>) -> Result<Duration, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| f(&input));
        let _ = tx.send(outcome.map(|()| start.elapsed()).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into())
        }));
    });
    match rx.recv_timeout(time_limit()) {
        Ok(Ok(elapsed)) if elapsed <= time_limit() => Ok(elapsed),
        Ok(Ok(elapsed)) => Err(format!("took {elapsed:?}")),
        Ok(Err(panic)) => Err(format!("panicked: {panic}")),
        Err(_) => Err(format!("still running after {:?}", time_limit())),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn target(name: &str) -> fn(&[u8]) {
    TARGETS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no fuzz target {name}")).1
}

#[test]
fn every_corpus_and_regression_file_runs_without_a_panic_or_a_hang() {
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for &(name, f) in TARGETS {
        let corpus = files(&Path::new(FUZZ_DIR).join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ is empty or missing");
        let regressions = files(&Path::new(FUZZ_DIR).join("regressions").join(name));
        let mut slowest = Duration::ZERO;
        for path in corpus.iter().chain(&regressions) {
            let bytes = std::fs::read(path).unwrap();
            match run_one(f, bytes) {
                Ok(elapsed) => slowest = slowest.max(elapsed),
                Err(e) => failures.push(format!("{}: {e}", path.display())),
            }
        }
        counts.push(format!("{name}: {} corpus + {} regressions, slowest {slowest:?}", corpus.len(), regressions.len()));
    }
    println!("{}", counts.join("\n"));
    assert!(failures.is_empty(), "{} inputs failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_generated_seed_runs_without_a_panic_or_a_hang() {
    let mut failures = Vec::new();
    for (name, file, bytes) in seeds() {
        if let Err(e) = run_one(target(name), bytes) {
            failures.push(format!("{name}/{file}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-*`, the starting corpus
/// of `scripts/fuzz.sh` (which minimizes the corpus afterwards).
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    for (name, file, bytes) in seeds() {
        let dir = Path::new(FUZZ_DIR).join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{file}")), bytes).unwrap();
    }
}

// --- GGUF files, written independently of the reader ---------------------

/// A GGUF writer: metadata as (key, type, payload), tensors as (name, dims,
/// ggml type, data).
#[derive(Clone)]
struct Gguf {
    version: u32,
    kvs: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn gguf_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend(s.as_bytes());
    v
}

fn str_array(items: &[&str]) -> Vec<u8> {
    let mut p = 8u32.to_le_bytes().to_vec();
    p.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|s| p.extend(gguf_str(s)));
    p
}

fn i32_array(items: &[i32]) -> Vec<u8> {
    let mut p = 5u32.to_le_bytes().to_vec();
    p.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|v| p.extend(v.to_le_bytes()));
    p
}

impl Gguf {
    fn new() -> Self {
        Gguf { version: 3, kvs: vec![], tensors: vec![] }
    }
    fn kv(mut self, key: &str, ty: u32, payload: Vec<u8>) -> Self {
        self.kvs.retain(|(k, _, _)| k != key);
        self.kvs.push((key.into(), ty, payload));
        self
    }
    fn without(mut self, key: &str) -> Self {
        self.kvs.retain(|(k, _, _)| k != key);
        self
    }
    fn str(self, key: &str, v: &str) -> Self {
        self.kv(key, 8, gguf_str(v))
    }
    fn u32(self, key: &str, v: u32) -> Self {
        self.kv(key, 4, v.to_le_bytes().to_vec())
    }
    fn u64(self, key: &str, v: u64) -> Self {
        self.kv(key, 10, v.to_le_bytes().to_vec())
    }
    fn f32(self, key: &str, v: f32) -> Self {
        self.kv(key, 6, v.to_le_bytes().to_vec())
    }
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }
    /// The file, tensor data aligned to 32 bytes; `rel_offsets` replaces the
    /// offsets written in the tensor infos where given.
    fn build_with(&self, counts: Option<(u64, u64)>, rel_offsets: Option<&[u64]>) -> Vec<u8> {
        let align = |v: usize| v.div_ceil(32) * 32;
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        let (n_tensors, n_kvs) = counts.unwrap_or((self.tensors.len() as u64, self.kvs.len() as u64));
        out.extend(n_tensors.to_le_bytes());
        out.extend(n_kvs.to_le_bytes());
        for (k, ty, payload) in &self.kvs {
            out.extend(gguf_str(k));
            out.extend(ty.to_le_bytes());
            out.extend(payload);
        }
        let mut rel = 0;
        let mut offsets = vec![];
        for (i, (name, dims, ty, data)) in self.tensors.iter().enumerate() {
            out.extend(gguf_str(name));
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(rel_offsets.map_or(rel as u64, |o| o[i]).to_le_bytes());
            offsets.push(rel);
            rel = align(rel + data.len());
        }
        out.resize(align(out.len()), 0);
        let base = out.len();
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(base + off, 0);
            out.extend(data);
        }
        out
    }
    fn build(&self) -> Vec<u8> {
        self.build_with(None, None)
    }
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32 / 8.0).to_le_bytes()).collect()
}

const TOKENS: &[&str] = &[
    "a", "b", "e", "h", "l", "o", "Ġ", "w", "1", "2", "he", "ll", "hell", "hello", "Ġw", "12", "<|im_start|>",
    "<|im_end|>", "<tool>", "<|endoftext|>",
];
const TYPES: &[i32] = &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 4, 3];
const MERGES: &[&str] = &["h e", "l l", "he ll", "hell o", "Ġ w", "1 2"];
const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}\
                      {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A tiny Llama: the metadata a config needs, a 20-token byte-level BPE
/// vocabulary with merges and added tokens, a chat template and the model's
/// tensors (one layer of width 8).
fn tiny_llama() -> Gguf {
    let (dim, ffn, vocab) = (8u64, 16u64, TOKENS.len() as u64);
    let mut g = Gguf::new()
        .str("general.architecture", "llama")
        .str("general.name", "tiny")
        .u32("llama.block_count", 1)
        .u32("llama.context_length", 64)
        .u32("llama.embedding_length", dim as u32)
        .u32("llama.feed_forward_length", ffn as u32)
        .u32("llama.attention.head_count", 2)
        .u32("llama.attention.head_count_kv", 1)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .f32("llama.rope.freq_base", 10_000.0)
        .str("tokenizer.ggml.model", "gpt2")
        .str("tokenizer.ggml.pre", "smollm")
        .kv("tokenizer.ggml.tokens", 9, str_array(TOKENS))
        .kv("tokenizer.ggml.token_type", 9, i32_array(TYPES))
        .kv("tokenizer.ggml.merges", 9, str_array(MERGES))
        .u32("tokenizer.ggml.bos_token_id", 19)
        .u32("tokenizer.ggml.eos_token_id", 17)
        .kv("tokenizer.ggml.add_bos_token", 7, vec![0])
        .str("tokenizer.chat_template", CHATML)
        .tensor("token_embd.weight", &[dim, vocab], 0, f32_bytes((dim * vocab) as usize))
        .tensor("output_norm.weight", &[dim], 0, f32_bytes(dim as usize));
    for (name, dims) in [
        ("attn_norm", [dim, 1]),
        ("attn_q", [dim, dim]),
        ("attn_k", [dim, dim / 2]),
        ("attn_v", [dim, dim / 2]),
        ("attn_output", [dim, dim]),
        ("ffn_norm", [dim, 1]),
        ("ffn_gate", [dim, ffn]),
        ("ffn_up", [dim, ffn]),
        ("ffn_down", [ffn, dim]),
    ] {
        let dims: Vec<u64> = dims.into_iter().filter(|&d| d > 1).collect();
        let n = dims.iter().product::<u64>() as usize;
        g = g.tensor(&format!("blk.0.{name}.weight"), &dims, 0, f32_bytes(n));
    }
    g
}

/// The tiny Llama's tokenizer as a tokenizer.json document.
fn tiny_tokenizer_json() -> String {
    let bytes = tiny_llama().build();
    let gguf = GgufFile::parse(&bytes, Some(bytes.len() as u64)).unwrap();
    Tokenizer::from_gguf(&gguf).unwrap().to_json().unwrap()
}

// --- the seeds --------------------------------------------------------------

/// `bytes` with the first occurrence of `from` replaced by `to`.
fn replace_bytes(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the pattern occurs");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// Every seed: (target, file name, bytes). Valid small inputs first, then
/// hostile ones, each named for what it tries.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| out.push((target, name.to_string(), bytes));

    // GGUF: valid files.
    let llama = tiny_llama();
    add("gguf", "tiny-llama.gguf", llama.build());
    add("gguf", "tiny-llama-v2.gguf", Gguf { version: 2, ..llama.clone() }.build());
    add(
        "gguf",
        "tiny-mistral-llama3-pre.gguf",
        llama
            .clone()
            .str("general.architecture", "mistral")
            .kv("llama.context_length", 4, vec![0; 4])
            .u32("mistral.block_count", 1)
            .u32("mistral.context_length", 64)
            .u32("mistral.embedding_length", 8)
            .u32("mistral.feed_forward_length", 16)
            .u32("mistral.attention.head_count", 2)
            .f32("mistral.attention.layer_norm_rms_epsilon", 1e-6)
            .str("mistral.rope.scaling.type", "linear")
            .f32("mistral.rope.scaling.factor", 2.0)
            .str("tokenizer.ggml.pre", "llama-bpe")
            .build(),
    );
    add(
        "gguf",
        "quantized-tensors.gguf",
        Gguf::new()
            .u32("general.alignment", 64)
            .tensor("q4_0", &[32, 2], 2, vec![1; 36])
            .tensor("q4_1", &[32, 1], 3, vec![2; 20])
            .tensor("q8_0", &[64], 8, vec![3; 68])
            .tensor("f16", &[3], 1, vec![0x3c; 6])
            .tensor("bf16", &[2, 2], 30, vec![0x3f; 8])
            .tensor("q6_k", &[256], 14, vec![])
            .build(),
    );
    let mut every_type = Gguf::new();
    for (ty, payload) in [
        (0u32, vec![200]),
        (1, vec![0xff]),
        (2, 60000u16.to_le_bytes().to_vec()),
        (3, (-300i16).to_le_bytes().to_vec()),
        (4, 7u32.to_le_bytes().to_vec()),
        (5, (-5i32).to_le_bytes().to_vec()),
        (6, 1.5f32.to_le_bytes().to_vec()),
        (7, vec![1]),
        (8, gguf_str("héllo")),
        (9, i32_array(&[-1, 0, 7])),
        (10, u64::MAX.to_le_bytes().to_vec()),
        (11, i64::MIN.to_le_bytes().to_vec()),
        (12, 0.25f64.to_le_bytes().to_vec()),
    ] {
        every_type = every_type.kv(&format!("type{ty}"), ty, payload);
    }
    add("gguf", "every-value-type.gguf", every_type.build());

    // GGUF: hostile headers.
    let header = |tensors: u64, kvs: u64| {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(tensors.to_le_bytes());
        v.extend(kvs.to_le_bytes());
        v
    };
    add("gguf", "empty", vec![]);
    add("gguf", "magic-only", b"GGUF".to_vec());
    add("gguf", "version-1", { let mut v = header(0, 0); v[4] = 1; v });
    add("gguf", "2^62-tensors", header(1 << 62, 0));
    add("gguf", "2^62-kvs", header(0, 1 << 62));
    add("gguf", "max-counts", header(u64::MAX, u64::MAX));
    add("gguf", "key-length-max", { let mut v = header(0, 1); v.extend(u64::MAX.to_le_bytes()); v });
    add("gguf", "key-length-2^40", { let mut v = header(0, 1); v.extend((1u64 << 40).to_le_bytes()); v.extend(b"k"); v });
    let array = |elem: u32, len: u64| {
        let mut p = elem.to_le_bytes().to_vec();
        p.extend(len.to_le_bytes());
        p
    };
    add("gguf", "u8-array-2^62", Gguf::new().kv("a", 9, array(0, 1 << 62)).build());
    add("gguf", "string-array-max", Gguf::new().kv("a", 9, array(8, u64::MAX)).build());
    add("gguf", "string-in-array-length-max", Gguf::new().kv("a", 9, { let mut p = array(8, 1); p.extend(u64::MAX.to_le_bytes()); p }).build());
    let mut nested = Vec::new();
    for _ in 0..6 {
        nested.extend(array(9, 1));
    }
    nested.extend(array(4, 0));
    add("gguf", "arrays-nested-6-deep", Gguf::new().kv("a", 9, nested).build());
    add("gguf", "unknown-value-type", Gguf::new().kv("a", 13, vec![0; 8]).build());
    add("gguf", "bool-2", Gguf::new().kv("a", 7, vec![2]).build());
    add("gguf", "key-not-utf8", {
        let mut v = header(0, 1);
        v.extend(gguf_str("k"));
        *v.last_mut().unwrap() = 0xff;
        v.extend(0u32.to_le_bytes());
        v.push(0);
        v
    });
    add("gguf", "duplicate-key", { let mut g = Gguf::new().u32("a", 1); g.kvs.push(g.kvs[0].clone()); g.build() });
    add("gguf", "duplicate-tensor", Gguf::new().tensor("t", &[4], 0, vec![0; 16]).tensor("t", &[4], 0, vec![0; 16]).build());
    add("gguf", "tensor-0-dims", Gguf::new().tensor("t", &[], 0, vec![]).build());
    add("gguf", "tensor-5-dims", Gguf::new().tensor("t", &[1, 1, 1, 1, 1], 0, vec![0; 4]).build());
    add("gguf", "tensor-dims-2^40-squared", Gguf::new().tensor("t", &[1 << 40, 1 << 40], 0, vec![]).build());
    add("gguf", "tensor-dims-max-times-0", Gguf::new().tensor("t", &[u64::MAX, 0], 0, vec![]).build());
    add("gguf", "tensor-dims-0-times-2^63", Gguf::new().tensor("t", &[0, 1 << 63], 0, vec![]).build());
    add("gguf", "tensor-unknown-type-huge", Gguf::new().tensor("t", &[1 << 62], 99, vec![]).build());
    add("gguf", "tensor-q4-rows-33", Gguf::new().tensor("t", &[33], 2, vec![0; 18]).build());
    add("gguf", "tensor-offset-past-end", Gguf::new().tensor("t", &[4], 0, vec![0; 16]).build_with(None, Some(&[1 << 20])));
    add("gguf", "tensor-offset-overflows", Gguf::new().tensor("t", &[4], 0, vec![0; 16]).build_with(None, Some(&[u64::MAX - 31])));
    add("gguf", "tensor-offset-unaligned", Gguf::new().tensor("t", &[4], 0, vec![0; 16]).build_with(None, Some(&[3])));
    add("gguf", "tensor-cut-short", { let mut v = Gguf::new().tensor("t", &[64], 0, vec![0; 256]).build(); v.truncate(v.len() - 1); v });
    add("gguf", "alignment-0", Gguf::new().u32("general.alignment", 0).build());
    add("gguf", "alignment-3", Gguf::new().u32("general.alignment", 3).build());
    add("gguf", "alignment-2^40", Gguf::new().u64("general.alignment", 1 << 40).tensor("t", &[1], 0, vec![0; 4]).build());
    add("gguf", "alignment-string", Gguf::new().str("general.alignment", "32").build());
    // GGUF: hostile model metadata.
    add("gguf", "block-count-2^40", llama.clone().u64("llama.block_count", 1 << 40).build());
    add("gguf", "block-count-max", llama.clone().u64("llama.block_count", u64::MAX).build());
    add("gguf", "embedding-length-2^40", llama.clone().u64("llama.embedding_length", 1 << 40).build());
    add("gguf", "head-count-0", llama.clone().u32("llama.attention.head_count", 0).build());
    add("gguf", "head-count-kv-0", llama.clone().u32("llama.attention.head_count_kv", 0).build());
    add("gguf", "head-count-kv-3", llama.clone().u32("llama.attention.head_count_kv", 3).build());
    add("gguf", "key-length-odd", llama.clone().u32("llama.attention.key_length", 3).build());
    add("gguf", "key-length-2^40", llama.clone().u64("llama.attention.key_length", 1 << 40).build());
    add("gguf", "head-count-max", llama.clone().u64("llama.attention.head_count", u64::MAX).build());
    add("gguf", "context-length-0", llama.clone().u32("llama.context_length", 0).build());
    add("gguf", "context-length-max", llama.clone().u64("llama.context_length", u64::MAX).build());
    add("gguf", "vocab-size-2^40", llama.clone().u64("llama.vocab_size", 1 << 40).build());
    add("gguf", "rms-eps-nan", llama.clone().f32("llama.attention.layer_norm_rms_epsilon", f32::NAN).build());
    add("gguf", "rms-eps-negative", llama.clone().f32("llama.attention.layer_norm_rms_epsilon", -1.0).build());
    add("gguf", "rope-base-inf", llama.clone().f32("llama.rope.freq_base", f32::INFINITY).build());
    add("gguf", "rope-dim-odd", llama.clone().u32("llama.rope.dimension_count", 3).build());
    add(
        "gguf",
        "rope-scaling-factor-nan",
        llama.clone().str("llama.rope.scaling.type", "linear").f32("llama.rope.scaling.factor", f32::NAN).build(),
    );
    add("gguf", "rope-scaling-yarn", llama.clone().str("llama.rope.scaling.type", "yarn").build());
    add("gguf", "architecture-gemma3", llama.clone().str("general.architecture", "gemma3").build());
    add("gguf", "architecture-missing", llama.clone().without("general.architecture").build());
    add("gguf", "block-count-negative", llama.clone().kv("llama.block_count", 5, (-1i32).to_le_bytes().to_vec()).build());
    add("gguf", "block-count-float", llama.clone().f32("llama.block_count", 1.0).build());
    // GGUF: hostile vocabularies and templates.
    add("gguf", "tokens-missing", llama.clone().without("tokenizer.ggml.tokens").build());
    add("gguf", "tokens-not-strings", llama.clone().kv("tokenizer.ggml.tokens", 9, i32_array(&[1, 2])).build());
    add("gguf", "tokens-empty", llama.clone().kv("tokenizer.ggml.tokens", 9, str_array(&[])).without("tokenizer.ggml.token_type").build());
    add("gguf", "tokens-all-empty-strings", llama.clone().kv("tokenizer.ggml.tokens", 9, str_array(&[""; 20])).build());
    add("gguf", "tokens-duplicate", llama.clone().kv("tokenizer.ggml.tokens", 9, str_array(&["a"; 20])).build());
    add("gguf", "token-types-short", llama.clone().kv("tokenizer.ggml.token_type", 9, i32_array(&[1, 3])).build());
    add("gguf", "token-types-negative", llama.clone().kv("tokenizer.ggml.token_type", 9, i32_array(&[-3; 20])).build());
    add("gguf", "added-token-empty", {
        let mut tokens = TOKENS.to_vec();
        tokens[16] = "";
        llama.clone().kv("tokenizer.ggml.tokens", 9, str_array(&tokens)).build()
    });
    add("gguf", "merge-without-space", llama.clone().kv("tokenizer.ggml.merges", 9, str_array(&["hello"])).build());
    add("gguf", "merge-of-unknown-tokens", llama.clone().kv("tokenizer.ggml.merges", 9, str_array(&["x y", " ", "🎉 🎉"])).build());
    add("gguf", "merges-missing", llama.clone().without("tokenizer.ggml.merges").build());
    add("gguf", "eos-id-2^40", llama.clone().u64("tokenizer.ggml.eos_token_id", 1 << 40).build());
    add("gguf", "eos-id-negative", llama.clone().kv("tokenizer.ggml.eos_token_id", 5, (-1i32).to_le_bytes().to_vec()).build());
    add("gguf", "pre-tokenizer-unknown", llama.clone().str("tokenizer.ggml.pre", "qwen2").build());
    add("gguf", "tokenizer-model-llama", llama.clone().str("tokenizer.ggml.model", "llama").build());
    add("gguf", "chat-template-broken", llama.clone().str("tokenizer.chat_template", "{% for m in messages %}{{ m.").build());
    add("gguf", "chat-template-not-string", llama.clone().u32("tokenizer.chat_template", 1).build());
    add("gguf", "chat-template-raises", llama.clone().str("tokenizer.chat_template", "{{ raise_exception('no') }}").build());
    add(
        "gguf",
        "chat-template-deep-nesting",
        llama.clone().str("tokenizer.chat_template", &format!("{}1{}", "{{ (".repeat(300), ") }}".repeat(300))).build(),
    );
    add("gguf", "chat-template-big-range", llama.clone().str("tokenizer.chat_template", "{% for i in range(1000000000) %}x{% endfor %}").build());
    add("gguf", "chat-template-big-repeat", llama.clone().str("tokenizer.chat_template", "{{ 'x' * 1000000000000 }}").build());

    // Manifests: valid, then hostile.
    let (fixture, shard_bytes) = fuzzing::shard_fixture();
    let manifest_json = fixture.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&manifest_json).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = value.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    add("manifest", "valid.json", manifest_json.clone().into_bytes());
    add("manifest", "valid-no-template.json", edit(&|v| v["chat_template"] = serde_json::Value::Null));
    add("manifest", "empty", vec![]);
    add("manifest", "not-utf8", vec![0xff, 0xfe, b'{', b'}']);
    add("manifest", "nested-arrays-100k", "[".repeat(100_000).into_bytes());
    add("manifest", "nested-objects-10k", "{\"a\":".repeat(10_000).into_bytes());
    add("manifest", "format-wrong", edit(&|v| v["format"] = "gguf".into()));
    add("manifest", "format-version-2", edit(&|v| v["format_version"] = 2.into()));
    add("manifest", "unknown-field", edit(&|v| v["extra"] = 1.into()));
    add("manifest", "n-layers-1e15", edit(&|v| v["config"]["n_layers"] = 1_000_000_000_000_000u64.into()));
    add("manifest", "n-layers-negative", manifest_json.replace("\"n_layers\": 1", "\"n_layers\": -1").into_bytes());
    add("manifest", "dim-1e300", manifest_json.replace("\"dim\": 4", "\"dim\": 1e300").into_bytes());
    add("manifest", "rms-eps-1e300", manifest_json.replace("\"rms_eps\": 1e-5", "\"rms_eps\": 1e300").into_bytes());
    add("manifest", "rms-eps-huge", edit(&|v| v["config"]["rms_eps"] = 1e300.into()));
    add("manifest", "heads-0", edit(&|v| v["config"]["n_heads"] = 0.into()));
    add("manifest", "vocab-size-max", edit(&|v| v["config"]["vocab_size"] = u64::MAX.into()));
    add("manifest", "shape-overflow", edit(&|v| v["tensors"][0]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40, 0])));
    add("manifest", "shape-zero-hides-huge", edit(&|v| v["tensors"][0]["shape"] = serde_json::json!([0, 1u64 << 62, 1u64 << 62])));
    add("manifest", "shape-empty", edit(&|v| v["tensors"][0]["shape"] = serde_json::json!([])));
    add("manifest", "offset-max", edit(&|v| v["tensors"][0]["offset"] = u64::MAX.into()));
    add("manifest", "length-wrong", edit(&|v| v["tensors"][0]["length"] = 1.into()));
    add("manifest", "dtype-unknown", edit(&|v| v["tensors"][0]["dtype"] = "Q6_K".into()));
    add("manifest", "shard-unlisted", edit(&|v| v["tensors"][0]["shard"] = "other.safetensors".into()));
    add("manifest", "file-name-path", edit(&|v| v["shards"][0]["file"] = "../../etc/passwd".into()));
    add("manifest", "sha256-uppercase", edit(&|v| v["shards"][0]["sha256"] = "A".repeat(64).into()));
    add("manifest", "total-bytes-overflow", edit(&|v| {
        v["shards"][0]["bytes"] = u64::MAX.into();
        v["total_bytes"] = u64::MAX.into();
    }));
    add("manifest", "duplicate-tensor", edit(&|v| {
        let t = v["tensors"][0].clone();
        v["tensors"].as_array_mut().unwrap().push(t);
    }));
    add("manifest", "chat-template-broken", edit(&|v| v["chat_template"] = "{% if %}".into()));
    add("manifest", "special-id-max", edit(&|v| v["tokenizer"]["special"]["eos"] = u32::MAX.into()));
    add("manifest", "generation-nan-as-string", edit(&|v| v["generation"]["temperature"] = "NaN".into()));

    // Shards of the fixed manifest, then a manifest and a shard together.
    add("safetensors_shard", "valid.safetensors", shard_bytes.clone());
    add("safetensors_shard", "empty", vec![]);
    add("safetensors_shard", "header-length-max", u64::MAX.to_le_bytes().to_vec());
    add("safetensors_shard", "header-length-past-end", { let mut v = 1000u64.to_le_bytes().to_vec(); v.extend(b"{}"); v });
    add("safetensors_shard", "header-not-json", { let mut v = 4u64.to_le_bytes().to_vec(); v.extend(b"{{{{"); v });
    let header_only = |json: &str| {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend(json.as_bytes());
        v
    };
    add("safetensors_shard", "offsets-past-end", header_only(r#"{"token_embd.weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,1099511627776]}}"#));
    add("safetensors_shard", "offsets-reversed", header_only(r#"{"token_embd.weight":{"dtype":"F32","shape":[2,4],"data_offsets":[32,0]}}"#));
    add("safetensors_shard", "shape-overflow", header_only(r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#));
    add("safetensors_shard", "shape-negative", header_only(r#"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#));
    add("safetensors_shard", "nested-10k", header_only(&"[".repeat(10_000)));
    add("safetensors_shard", "wrong-dtype", replace_bytes(&shard_bytes, b"\"F16\"", b"\"I16\""));
    add("safetensors_shard", "shape-changed", replace_bytes(&shard_bytes, b"[2,4]", b"[4,2]"));
    let mut with_manifest = (manifest_json.len() as u32).to_le_bytes().to_vec();
    with_manifest.extend(manifest_json.as_bytes());
    with_manifest.extend(&shard_bytes);
    add("shard_with_manifest", "valid", with_manifest);
    add("shard_with_manifest", "length-max", u32::MAX.to_le_bytes().to_vec());
    let mut manifest_only = (manifest_json.len() as u32).to_le_bytes().to_vec();
    manifest_only.extend(manifest_json.as_bytes());
    add("shard_with_manifest", "manifest-no-shard", manifest_only);

    // tokenizer.json: valid, then hostile.
    let tokenizer = tiny_tokenizer_json();
    let doc: serde_json::Value = serde_json::from_str(&tokenizer).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = doc.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    add("tokenizer_json", "tiny-bpe.json", tokenizer.clone().into_bytes());
    add("tokenizer_json", "wordlevel.json", br#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"<unk>":0,"hello":1,"world":2},"unk_token":"<unk>"},"pre_tokenizer":{"type":"Whitespace"},"normalizer":{"type":"Lowercase"}}"#.to_vec());
    add("tokenizer_json", "unigram.json", br#"{"version":"1.0","model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["a",-1.0],["b",-2.0],["ab",-1.5]],"byte_fallback":false},"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]},"pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true},"decoder":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true}}"#.to_vec());
    add("tokenizer_json", "wordpiece.json", br###"{"version":"1.0","model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{"[UNK]":0,"he":1,"##llo":2}},"normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},"pre_tokenizer":{"type":"BertPreTokenizer"},"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[UNK]","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"[UNK]":{"id":"[UNK]","ids":[0],"tokens":["[UNK]"]}}}}"###.to_vec());
    add("tokenizer_json", "bpe-byte-fallback.json", br#"{"version":"1.0","model":{"type":"BPE","vocab":{"<unk>":0,"<0x48>":1,"e":2,"l":3},"merges":[],"byte_fallback":true,"fuse_unk":true,"unk_token":"<unk>"},"decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]}}"#.to_vec());
    add("tokenizer_json", "empty", vec![]);
    add("tokenizer_json", "not-utf8", vec![0xc3, 0x28]);
    add("tokenizer_json", "nested-arrays-100k", "[".repeat(100_000).into_bytes());
    add("tokenizer_json", "nested-sequence-normalizers", {
        let mut n = r#"{"type":"Lowercase"}"#.to_string();
        for _ in 0..200 {
            n = format!(r#"{{"type":"Sequence","normalizers":[{n}]}}"#);
        }
        format!(r#"{{"model":{{"type":"WordLevel","vocab":{{"a":0}},"unk_token":"a"}},"normalizer":{n}}}"#).into_bytes()
    });
    add("tokenizer_json", "padding-fixed-2^40", edit(&|v| {
        v["padding"] = serde_json::json!({"strategy":{"Fixed":1u64 << 40},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"a"})
    }));
    add("tokenizer_json", "padding-multiple-of-2^40", edit(&|v| {
        v["padding"] = serde_json::json!({"strategy":"BatchLongest","direction":"Left","pad_to_multiple_of":1u64 << 40,"pad_id":0,"pad_type_id":0,"pad_token":"a"})
    }));
    add("tokenizer_json", "truncation-stride-past-length", edit(&|v| {
        v["truncation"] = serde_json::json!({"direction":"Right","max_length":1,"strategy":"LongestFirst","stride":5})
    }));
    add("tokenizer_json", "precompiled-no-charsmap", edit(&|v| v["normalizer"] = serde_json::json!({"type":"Precompiled"})));
    add("tokenizer_json", "precompiled-charsmap-not-base64", edit(&|v| v["normalizer"] = serde_json::json!({"type":"Precompiled","precompiled_charsmap":"!!!"})));
    add("tokenizer_json", "precompiled-empty-trie", edit(&|v| v["normalizer"] = serde_json::json!({"type":"Precompiled","precompiled_charsmap":"AAAAAA=="})));
    add("tokenizer_json", "precompiled-trie-past-end", edit(&|v| v["normalizer"] = serde_json::json!({"type":"Precompiled","precompiled_charsmap":"/////wAAAAA="})));
    add("tokenizer_json", "precompiled-short-trie", edit(&|v| v["normalizer"] = serde_json::json!({"type":"Precompiled","precompiled_charsmap":"CAAAAAAEAAAAAAAA"})));
    add("tokenizer_json", "added-token-id-max", edit(&|v| {
        v["added_tokens"].as_array_mut().unwrap().push(serde_json::json!({"id":u32::MAX,"content":"<big>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}))
    }));
    add("tokenizer_json", "merges-unknown-tokens", edit(&|v| v["model"]["merges"] = serde_json::json!([["x", "y"]])));
    add("tokenizer_json", "vocab-id-max", edit(&|v| v["model"]["vocab"]["a"] = u32::MAX.into()));
    add("tokenizer_json", "split-regex-catastrophic", edit(&|v| {
        v["pre_tokenizer"] = serde_json::json!({"type":"Split","pattern":{"Regex":"(a*)*(?=b)"},"behavior":"Isolated","invert":false})
    }));
    add("tokenizer_json", "split-regex-invalid", edit(&|v| {
        v["pre_tokenizer"] = serde_json::json!({"type":"Split","pattern":{"Regex":"(("},"behavior":"Isolated","invert":false})
    }));
    add("tokenizer_json", "unigram-unk-id-past-vocab", br#"{"model":{"type":"Unigram","unk_id":9,"vocab":[["a",0.0]]}}"#.to_vec());
    add("tokenizer_json", "unigram-empty", br#"{"model":{"type":"Unigram","unk_id":null,"vocab":[]}}"#.to_vec());
    add("tokenizer_json", "wordpiece-no-unk", br#"{"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"a":0}}}"#.to_vec());
    out
}

// --- explicit hostile inputs and their typed errors -------------------------

/// Asserts `f` returns within a tenth of a second (no allocation of the size
/// the input claims, no loop over it).
fn quickly<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < Duration::from_millis(100), "took {:?}", start.elapsed());
    out
}

fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    quickly(|| GgufFile::parse(bytes, Some(bytes.len() as u64)))
}

fn malformed(result: Result<GgufFile, GgufError>, needle: &str) {
    match result {
        Err(GgufError::Malformed(m)) => assert!(m.contains(needle), "{m:?} does not say {needle:?}"),
        other => panic!("expected Malformed(..{needle}..), got {other:?}"),
    }
}

#[test]
fn gguf_lying_counts_and_sizes_are_malformed_not_allocated() {
    let header = |tensors: u64, kvs: u64| {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(tensors.to_le_bytes());
        v.extend(kvs.to_le_bytes());
        v
    };
    malformed(parse(&header(1 << 62, 0)), "cannot fit");
    malformed(parse(&header(0, 1 << 62)), "cannot fit");
    // Without the file's length the same header is a prefix too short to hold them.
    assert!(matches!(quickly(|| GgufFile::parse(&header(1 << 62, 0), None)), Err(GgufError::Truncated { .. })));
    let mut key_too_long = header(0, 1);
    key_too_long.extend(u64::MAX.to_le_bytes());
    malformed(parse(&key_too_long), "claims");
    assert!(matches!(quickly(|| GgufFile::parse(&key_too_long, None)), Err(GgufError::Truncated { needed: u64::MAX, .. })));
    let mut huge_array = 0u32.to_le_bytes().to_vec();
    huge_array.extend((1u64 << 62).to_le_bytes());
    malformed(parse(&Gguf::new().kv("a", 9, huge_array).build()), "claims");
    malformed(parse(&Gguf::new().tensor("t", &[1 << 40, 1 << 40], 0, vec![]).build()), "too many elements");
    // A zero dimension does not let a huge one through.
    malformed(parse(&Gguf::new().tensor("t", &[u64::MAX, 0], 0, vec![]).build()), "too many elements");
    let past_end = Gguf::new().tensor("t", &[4], 0, vec![0; 16]).build_with(None, Some(&[1 << 20]));
    malformed(parse(&past_end), "past the end");
    let overflowing = Gguf::new().tensor("t", &[4], 0, vec![0; 16]).build_with(None, Some(&[u64::MAX - 31]));
    malformed(parse(&overflowing), "overflows");
}

#[test]
fn gguf_tensor_bytes_of_a_prefix_parse_is_checked() {
    // Parsed as a prefix (no length), a tensor may lie past the bytes held.
    let bytes = Gguf::new().tensor("t", &[4], 0, vec![0; 16]).build_with(None, Some(&[1 << 40]));
    let gguf = GgufFile::parse(&bytes, None).unwrap();
    assert!(matches!(gguf.tensor_bytes(&bytes, &gguf.tensors[0]), Err(GgufError::Malformed(_))));
}

fn model_error(bytes: Vec<u8>, needle: &str) {
    let gguf = parse(&bytes).unwrap();
    match quickly(|| ModelConfig::from_gguf(&gguf)) {
        Err(HearthError::Model(m)) => assert!(m.contains(needle), "{m:?} does not say {needle:?}"),
        other => panic!("expected Model(..{needle}..), got {other:?}"),
    }
}

#[test]
fn gguf_model_sizes_beyond_the_limits_are_model_errors() {
    assert!(ModelConfig::from_gguf(&parse(&tiny_llama().build()).unwrap()).is_ok());
    model_error(tiny_llama().u64("llama.block_count", 1 << 40).build(), "block_count");
    model_error(tiny_llama().u64("llama.vocab_size", 1 << 40).build(), "vocab_size");
    model_error(tiny_llama().u64("llama.attention.key_length", 1 << 40).build(), "key_length");
    model_error(tiny_llama().u64("llama.context_length", u64::MAX).build(), "context_length");
    model_error(tiny_llama().f32("llama.attention.layer_norm_rms_epsilon", f32::NAN).build(), "epsilon");
    model_error(tiny_llama().f32("llama.rope.freq_base", f32::INFINITY).build(), "RoPE base");
}

fn package_error(json: &str, needle: &str) {
    match quickly(|| Manifest::parse(json)) {
        Err(HearthError::Package(m)) => assert!(m.contains(needle), "{m:?} does not say {needle:?}"),
        other => panic!("expected Package(..{needle}..), got {other:?}"),
    }
}

#[test]
fn manifest_hostile_values_are_package_errors() {
    let (fixture, _) = fuzzing::shard_fixture();
    let json = fixture.to_json().unwrap();
    assert_eq!(Manifest::parse(&json).unwrap(), fixture);
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["config"]["n_layers"] = 1_000_000_000_000_000u64.into();
    package_error(&v.to_string(), "block_count");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["config"]["rms_eps"] = 1e300.into(); // an f32 infinity
    package_error(&v.to_string(), "epsilon");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["tensors"][0]["shape"] = serde_json::json!([0, 1u64 << 62, 1u64 << 62]);
    package_error(&v.to_string(), "does not fit");
    package_error(&"[".repeat(100_000), "not JSON");
    package_error(&json.replace("\"n_layers\": 1", "\"n_layers\": -1"), "-1");
}

#[test]
fn shard_hostile_headers_are_package_errors() {
    let (mut m, bytes) = fuzzing::shard_fixture();
    assert_eq!(shard::read(&m, &m.shards[0].file.clone(), &bytes).unwrap().len(), 3);
    let file = m.shards[0].file.clone();
    for hostile in [u64::MAX.to_le_bytes().to_vec(), { let mut v = 1000u64.to_le_bytes().to_vec(); v.extend(b"{}"); v }] {
        m.shards[0].bytes = hostile.len() as u64;
        assert!(matches!(quickly(|| shard::read(&m, &file, &hostile)), Err(HearthError::Package(_))));
    }
}

fn tokenizer_error(json: &str, needle: &str) {
    match quickly(|| Tokenizer::from_json(json, SpecialTokens::default())) {
        Err(HearthError::Tokenizer(m)) => assert!(m.contains(needle), "{m:?} does not say {needle:?}"),
        Err(other) => panic!("expected Tokenizer(..{needle}..), got {other:?}"),
        Ok(_) => panic!("expected Tokenizer(..{needle}..), got a tokenizer"),
    }
}

#[test]
fn tokenizer_json_hostile_documents_are_tokenizer_errors_or_harmless() {
    let tokenizer = tiny_tokenizer_json();
    let mut doc: serde_json::Value = serde_json::from_str(&tokenizer).unwrap();
    // The `tokenizers` crate panics on these; the engine refuses them first.
    for charsmap in [None, Some("!!!"), Some("AAAAAA=="), Some("/////wAAAAA="), Some("CAAAAAAEAAAAAAAA")] {
        doc["normalizer"] = serde_json::json!({"type": "Precompiled"});
        if let Some(c) = charsmap {
            doc["normalizer"]["precompiled_charsmap"] = c.into();
        }
        tokenizer_error(&doc.to_string(), "Precompiled");
    }
    // Padding to 2^40 tokens does not apply: a prompt encodes to its tokens.
    doc["normalizer"] = serde_json::Value::Null;
    doc["padding"] = serde_json::json!({"strategy":{"Fixed":1u64 << 40},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"a"});
    let t = quickly(|| Tokenizer::from_json(&doc.to_string(), SpecialTokens::default())).unwrap();
    let ids = quickly(|| t.encode("hello", false)).unwrap();
    assert_eq!(ids, vec![t.token_id("hello").unwrap()]);
    tokenizer_error(&"[".repeat(100_000), "cannot load");
    // The `tokenizers` crate panics on a JSON syntax error inside "decoder"
    // (an `expect`); the engine checks the syntax first, strings included.
    let model = r#""model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}"#;
    tokenizer_error(&format!(r#"{{{model},"decoder":{{"{{"type":"Fuse"}}]}}}}"#), "cannot load");
    tokenizer_error(&format!(r#"{{{model},"decoder":{{"t\ud800x":1,"type":"Fuse"}}}}"#), "cannot load");
    // A post-processor's template naming a second sequence ($B) panics in
    // the `tokenizers` crate on encoding one sequence: it does not apply.
    let t = Tokenizer::from_json(
        &format!(r#"{{{model},"post_processor":{{"type":"TemplateProcessing","single":[{{"Sequence":{{"id":"B","type_id":0}}}}],"pair":[],"special_tokens":{{}}}}}}"#),
        SpecialTokens::default(),
    )
    .unwrap();
    assert_eq!(quickly(|| t.encode("a", false)).unwrap(), vec![0]);
    // An id past any vocabulary (writing it back would loop over 2^32 ids).
    doc["padding"] = serde_json::Value::Null;
    doc["model"]["vocab"]["a"] = u32::MAX.into();
    tokenizer_error(&doc.to_string(), "beyond the largest vocabulary");
    // Holes in the ids count: every id encode gives is below vocab_size.
    doc["model"]["vocab"]["a"] = 1000.into();
    let t = Tokenizer::from_json(&doc.to_string(), SpecialTokens::default()).unwrap();
    assert_eq!(t.vocab_size(), 1001);
    assert_eq!(t.encode("a", false).unwrap(), vec![1000]);
    // The `tokenizers` crate cuts the continuing-subword prefix off each
    // merge's second part unchecked: a shorter part is refused first, in
    // either merge form; a part the prefix can be cut off loads.
    doc["model"]["vocab"]["a"] = 0.into();
    for merges in [serde_json::json!([["h", "e"]]), serde_json::json!(["h e"])] {
        doc["model"]["merges"] = merges;
        doc["model"]["continuing_subword_prefix"] = "##".into();
        tokenizer_error(&doc.to_string(), "continuing-subword prefix");
        // The key written with an escape is the same key to the crate.
        let escaped = doc.to_string().replace(r#""continuing_subword_prefix""#, r#""continuing\u005fsubword_prefix""#);
        tokenizer_error(&escaped, "continuing-subword prefix");
        // So is a document read as a JSON tree (one naming "Precompiled").
        doc["model"]["vocab"]["Precompiled"] = 5.into();
        tokenizer_error(&doc.to_string(), "continuing-subword prefix");
        doc["model"]["vocab"].as_object_mut().unwrap().remove("Precompiled");
        doc["model"]["continuing_subword_prefix"] = serde_json::Value::Null;
        Tokenizer::from_json(&doc.to_string(), SpecialTokens::default()).unwrap();
    }
    // A Replace with an empty pattern inserts its content between every two
    // characters (three in a row took 4 GiB on a short prompt): refused; a
    // Replace of a real pattern loads and applies.
    let replace = |pattern: &str| serde_json::json!({"type": "Replace", "pattern": {"String": pattern}, "content": "he"});
    doc["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [replace(""), replace("")]});
    tokenizer_error(&doc.to_string(), "empty pattern");
    doc["normalizer"] = replace("q");
    let t = Tokenizer::from_json(&doc.to_string(), SpecialTokens::default()).unwrap();
    assert_eq!(t.encode("q", false).unwrap(), vec![t.token_id("he").unwrap()]);
    // The crate reads a Replace without its "type" too.
    doc["normalizer"] = serde_json::json!({"pattern": {"String": ""}, "content": "he"});
    tokenizer_error(&doc.to_string(), "empty pattern");
}
