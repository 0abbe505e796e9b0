//! Web model packages: the default GGUF converted to a package gives
//! bit-exact weights and the same greedy ids on the GPU; a damaged package
//! (flipped byte, truncated or missing shard, lying manifest) is refused with
//! an error naming the file.

mod common;

use common::{default_model_bytes, gpu, temp_dir};
use hearth_llm::convert::gguf::GgufInput;
use hearth_llm::convert::{ConvertInput, Quant};
use hearth_llm::engine::{Engine, GenerateRequest};
use hearth_llm::formats::manifest::Manifest;
use hearth_llm::model::{Backend, ModelOptions};
use hearth_llm::package::{self, Package, WriteOptions};
use hearth_llm::weights::TensorSource;
use hearth_llm::HearthError;
use pollster::block_on;
use std::path::Path;

fn convert(input: &GgufInput, dir: &Path, options: WriteOptions) -> Manifest {
    package::write(input, dir, &options, &mut |_, _, _| {}).expect("convert")
}

#[test]
fn converted_gguf_is_bit_exact_and_generates_the_same_ids() {
    let Some(bytes) = default_model_bytes() else { return };
    let input = GgufInput::from_bytes(bytes.clone(), "default").expect("gguf input");
    let dir = temp_dir("roundtrip");
    let manifest = convert(&input, &dir, WriteOptions::default());
    assert!(manifest.shards.len() >= 3, "94 MB in shards of at most 32 MiB");
    for s in &manifest.shards {
        assert!(s.bytes <= package::DEFAULT_SHARD_SIZE, "{} is {} bytes", s.file, s.bytes);
    }
    assert_eq!(manifest.quantization, "q4_1");

    let package = Package::open(&dir).expect("open");
    for name in input.tensor_names() {
        let want = input.tensor(&name).unwrap();
        let got = package.tensor(&name).unwrap();
        assert_eq!((got.ty, &got.shape), (want.ty, &want.shape), "{name}");
        assert!(got.bytes == want.bytes.as_slice(), "{name}: bytes differ");
    }
    assert_eq!(package.tokenizer().unwrap().encode("Hello, world! 123", false).unwrap(),
        hearth_llm::tokenizer::Tokenizer::from_gguf(&hearth_llm::formats::gguf::GgufFile::parse(&bytes, None).unwrap())
            .unwrap().encode("Hello, world! 123", false).unwrap());

    let Some(ctx) = gpu() else { return };
    let options = ModelOptions { context: 128, max_batch: 32 };
    let request = GenerateRequest { max_tokens: 12, ..Default::default() };
    let run = |mut engine: Engine| {
        let text = engine.render_chat(&[hearth_llm::chat::Message::new("user", "What is the capital of France?")]).unwrap();
        let prompt = engine.encode_prompt(&text).unwrap();
        block_on(engine.generate(&prompt, &request, &mut |_| {})).unwrap().ids
    };
    let from_gguf = run(Engine::from_gguf(&Backend::Gpu(ctx.clone()), &bytes, options).unwrap());
    let from_package = run(Engine::from_package(&Backend::Gpu(ctx.clone()), &package, options).unwrap());
    assert!(!from_gguf.is_empty());
    assert_eq!(from_package, from_gguf);
}

#[test]
fn small_shards_and_requantization() {
    let Some(bytes) = default_model_bytes() else { return };
    let input = GgufInput::from_bytes(bytes, "default").expect("gguf input");
    let dir = temp_dir("small-shards");
    // 8 MiB shards: the 17.7 MB embedding gets a shard of its own.
    let manifest = convert(&input, &dir, WriteOptions { quant: Some(Quant::Q8_0), shard_size: 8 << 20, name: Some("renamed".into()) });
    assert_eq!(manifest.name, "renamed");
    let embd = manifest.tensor("token_embd.weight").unwrap();
    assert!(manifest.tensors.iter().filter(|t| t.shard == embd.shard).count() == 1);
    // Already-quantized tensors are copied, never re-quantized; norms stay f32.
    assert_eq!(embd.dtype, input.tensor("token_embd.weight").unwrap().ty.to_string());
    assert_eq!(manifest.tensor("blk.0.attn_q.weight").unwrap().dtype, "Q4_1");
    assert_eq!(manifest.tensor("blk.0.attn_norm.weight").unwrap().dtype, "F32");
    for s in manifest.shards.iter().filter(|s| s.file != embd.shard) {
        assert!(s.bytes <= 8 << 20, "{} is {} bytes", s.file, s.bytes);
    }
    Package::open(&dir).expect("opens");
}

fn damaged(name: &str, damage: impl FnOnce(&Path, &Manifest)) -> HearthError {
    let Some(bytes) = default_model_bytes() else { panic!("no model") };
    let input = GgufInput::from_bytes(bytes, "default").unwrap();
    let dir = temp_dir(name);
    let manifest = convert(&input, &dir, WriteOptions::default());
    damage(&dir, &manifest);
    match Package::open(&dir) {
        Ok(_) => panic!("{name}: a damaged package opened"),
        Err(e) => e,
    }
}

#[test]
fn damaged_packages_are_refused_naming_the_file() {
    if default_model_bytes().is_none() {
        return;
    }
    let flipped = damaged("flipped", |dir, m| {
        let path = dir.join(&m.shards[1].file);
        let mut b = std::fs::read(&path).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0x01;
        std::fs::write(path, b).unwrap();
    });
    assert!(matches!(&flipped, HearthError::Integrity { file, message } if file.ends_with("model-00002-of-00003.safetensors") && message.contains("sha256")), "{flipped}");

    let truncated = damaged("truncated", |dir, m| {
        let path = dir.join(&m.shards[0].file);
        let b = std::fs::read(&path).unwrap();
        std::fs::write(path, &b[..b.len() - 100]).unwrap();
    });
    assert!(matches!(&truncated, HearthError::Integrity { message, .. } if message.contains("bytes")), "{truncated}");

    let missing = damaged("missing", |dir, m| std::fs::remove_file(dir.join(&m.shards[2].file)).unwrap());
    assert!(matches!(&missing, HearthError::Io { path, .. } if path.ends_with("model-00003-of-00003.safetensors")), "{missing}");

    let lying = damaged("lying", |dir, m| {
        let mut m = m.clone();
        m.tensors[0].offset += 32; // still inside the shard, but not where the tensor is
        std::fs::write(dir.join("manifest.json"), m.to_json().unwrap()).unwrap();
    });
    assert!(matches!(&lying, HearthError::Package(msg) if msg.contains("token_embd.weight")), "{lying}");
}

#[test]
fn malformed_manifests_are_refused() {
    let Some(bytes) = default_model_bytes() else { return };
    let input = GgufInput::from_bytes(bytes, "default").unwrap();
    let dir = temp_dir("manifest");
    let good = convert(&input, &dir, WriteOptions::default()).to_json().unwrap();
    assert!(Manifest::parse(&good).is_ok());
    let edit = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        Manifest::parse(&good.replacen(from, to, 1)).unwrap_err().to_string()
    };
    assert!(edit("\"format_version\": 1", "\"format_version\": 9").contains("format_version"));
    assert!(edit("\"format\": \"hearth-model-package\"", "\"format\": \"other\"").contains("format"));
    assert!(edit("\"file\": \"model-00001-of-00003.safetensors\"", "\"file\": \"../etc/passwd\"").contains("plain file name"));
    assert!(edit("\"dtype\": \"Q4_1\"", "\"dtype\": \"Q5_K\"").contains("Q5_K"));
    assert!(edit("\"shape\": [\n        49152,", "\"shape\": [\n        49153,").contains("token_embd.weight"));
    assert!(edit("\"name\":", "\"nmae\":").contains("nmae"));
    assert!(Manifest::parse("{").is_err());
    assert!(Manifest::parse("[]").is_err());
}
