//! A small Hugging Face model written by the test (random weights, the real
//! file formats: config.json, tokenizer.json, tokenizer_config.json,
//! safetensors, sharded with an index) converts into a package that runs on
//! the GPU and matches the CPU oracle on the package's weights.

mod common;

use common::{gpu, temp_dir};
use hearth_llm::chat::Message;
use hearth_llm::convert::hf::{write_random_hf_model, HfInput};
use hearth_llm::convert::Quant;
use hearth_llm::engine::{Engine, GenerateRequest};
use hearth_llm::model::{Backend, ModelOptions};
use hearth_llm::package::{self, Package, WriteOptions};
use hearth_llm::reference::{CpuKvCache, CpuModel};
use pollster::block_on;
use safetensors::Dtype;

/// Converts a random model stored as `dtype` with `quant`; returns the
/// GPU's and the oracle's last-position logits for a chat prompt, and the
/// engine for further checks.
fn convert_and_compare(name: &str, dtype: Dtype, sharded: bool, quant: Option<Quant>) -> (f32, Package) {
    let dir = temp_dir(name);
    let hf = dir.join("hf");
    write_random_hf_model(&hf, dtype, sharded, 7).expect("write HF model");
    let input = HfInput::open(&hf).expect("open HF folder");
    let out = dir.join("package");
    let manifest = package::write(&input, &out, &WriteOptions { quant, shard_size: 64 << 10, ..Default::default() }, &mut |_, _, _| {}).expect("convert");
    assert!(manifest.shards.len() > 1, "64 KiB shards split the model");
    let package = Package::open(&out).expect("open package");

    let oracle = CpuModel::load(package.manifest.config.clone(), &package).expect("oracle");
    let Some(ctx) = gpu() else { return (0.0, package) };
    let mut engine = Engine::from_package(&Backend::Gpu(ctx), &package, ModelOptions { context: 64, max_batch: 8 }).expect("engine");
    let text = engine.render_chat(&[Message::new("user", "hello world, how are you?")]).expect("chat template");
    let prompt = engine.encode_prompt(&text).expect("encode");
    assert!(prompt.len() > 8, "the prompt spans several batches");
    let got = block_on(engine.forward_logits(&prompt)).expect("gpu forward");
    let want = oracle.forward(&prompt, &mut CpuKvCache::default()).expect("oracle forward").pop().unwrap();
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("{name}: max |gpu - oracle| = {err:.2e} (logits up to {scale:.2})");

    // Greedy generation runs and stops by itself or at the budget.
    engine.reset();
    let generation = block_on(engine.generate(&prompt, &GenerateRequest { max_tokens: 6, ..Default::default() }, &mut |_| {}))
        .expect("generate");
    assert!(!generation.ids.is_empty() || generation.finish_reason == hearth_llm::engine::FinishReason::Stop);
    std::fs::remove_dir_all(&dir).ok();
    (err, package)
}

#[test]
fn hf_f32_sharded_to_q8_0_matches_the_oracle() {
    let (err, package) = convert_and_compare("hf-q8", Dtype::F32, true, Some(Quant::Q8_0));
    assert_eq!(package.manifest.quantization, "q8_0");
    assert_eq!(package.manifest.generation.temperature, Some(0.7));
    assert!(err < 1e-4, "{err}");
}

#[test]
fn hf_bf16_to_q4_1_matches_the_oracle() {
    let (err, package) = convert_and_compare("hf-q4", Dtype::BF16, false, Some(Quant::Q4_1));
    assert_eq!(package.manifest.quantization, "q4_1");
    assert!(err < 1e-4, "{err}");
}

#[test]
fn hf_f16_kept_as_f16_matches_the_oracle() {
    let (err, package) = convert_and_compare("hf-f16", Dtype::F16, true, None);
    assert_eq!(package.manifest.quantization, "f16");
    assert!(err < 1e-4, "{err}");
}

#[test]
fn cli_converts_a_hf_folder_to_q8_0_by_default() {
    let dir = temp_dir("hf-cli");
    write_random_hf_model(&dir.join("hf"), Dtype::BF16, true, 3).expect("write HF model");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["convert", dir.join("hf").to_str().unwrap(), dir.join("pkg").to_str().unwrap()])
        .output()
        .expect("hearth runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let package = Package::open(&dir.join("pkg")).expect("open");
    assert_eq!(package.manifest.quantization, "q8_0");
    assert_eq!(package.manifest.tensor("blk.0.attn_q.weight").unwrap().dtype, "Q8_0");
    assert_eq!(package.manifest.tensor("blk.0.attn_norm.weight").unwrap().dtype, "F32");
    // Converting a folder into itself would overwrite what it reads.
    let hf = dir.join("hf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["convert", hf.to_str().unwrap(), hf.to_str().unwrap()])
        .output()
        .expect("hearth runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is the input folder"), "{stderr}");
    assert!(HfInput::open(&hf).is_ok(), "the input folder was left intact");
    // A folder that is not a model is refused with the file it lacks.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["convert", dir.to_str().unwrap(), dir.join("pkg2").to_str().unwrap()])
        .output()
        .expect("hearth runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("config.json"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
