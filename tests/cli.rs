//! The `hearth` binary as a user runs it, on the real default model, against
//! the exact reference (../shared/fixtures) and the CPU oracle.

mod common;

use common::{default_model_bytes, fixture, ids, ROOT};
use hearth_llm::config::ModelConfig;
use hearth_llm::formats::gguf::GgufFile;
use hearth_llm::reference::{CpuKvCache, CpuModel};
use hearth_llm::scoring::logprob;
use hearth_llm::weights::GgufSource;
use serde_json::Value;
use std::process::Command;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/SmolLM2-135M-Instruct.Q4_1.gguf");

fn hearth(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().expect("hearth runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = hearth(args);
    assert!(ok, "hearth {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn case(id: &str) -> Value {
    fixture("smollm2_exact.json")["cases"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone()
}

/// The reference's greedy ids up to its first position with a margin below 0.1.
fn unambiguous_prefix(case: &Value, n: usize) -> Vec<u32> {
    let margins = case["margins"].as_array().unwrap();
    let end = margins.iter().take(n).position(|m| m.as_f64().unwrap() < 0.1).unwrap_or(n);
    ids(&case["generated_ids"])[..end].to_vec()
}

/// `hearth info`: the adapter, and the kernel variants picked for it, which
/// follow from what it is and has.
#[test]
fn info_reports_the_adapter_and_its_kernel_variants() {
    if common::gpu().is_none() {
        return;
    }
    let info = json(&["info"]);
    let variants = &info["kernel_variants"];
    let software = info["is_software"].as_bool().unwrap();
    // The f16 KV cache only where there is shader-f16.
    let f16 = variants["f16_kv_cache"].as_bool().unwrap();
    assert!(!f16 || info["shader_f16"] == true, "{info}");
    if std::env::vars().any(|(k, _)| k.starts_with("HEARTH_")) {
        return; // the variants are overridden (see gpu::context)
    }
    assert_eq!(variants["matmul_rows_per_thread"], if software { 4 } else { 1 }, "{info}");
    assert_eq!(variants["cpu_attention"], software, "{info}");
    assert_eq!(f16, !software && info["shader_f16"] == true, "{info}");
}

#[test]
fn generate_chat_and_raw_follow_the_exact_greedy_path() {
    follow_the_exact_greedy_path("gpu");
}

#[test]
fn generate_on_the_cpu_backend_follows_the_exact_greedy_path() {
    follow_the_exact_greedy_path("cpu");
}

fn follow_the_exact_greedy_path(backend: &str) {
    if default_model_bytes().is_none() {
        return;
    }
    let chat = case("chat_capital");
    let out = json(&["generate", "-m", MODEL, "--backend", backend, "--chat", "-p", "What is the capital of France?", "--max-tokens", "12", "--ignore-eos", "--json"]);
    assert_eq!(ids(&out["prompt_ids"]), ids(&chat["prompt_ids"]), "chat prompt tokens");
    let want = unambiguous_prefix(&chat, 12);
    assert_eq!(ids(&out["ids"])[..want.len()], want[..]);

    let raw = case("raw_story");
    let out = json(&["generate", "-m", MODEL, "--backend", backend, "-p", raw["text"].as_str().unwrap(), "--max-tokens", "12", "--ignore-eos", "--json"]);
    assert_eq!(ids(&out["prompt_ids"]), ids(&raw["prompt_ids"]));
    let want = unambiguous_prefix(&raw, 12);
    assert_eq!(ids(&out["ids"])[..want.len()], want[..]);
    assert_eq!(out["finish_reason"], "length");
    assert!(out["timings"]["decode_tok_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn score_gives_reference_top1_and_consistent_logprobs() {
    if default_model_bytes().is_none() {
        return;
    }
    let raw = case("raw_code");
    let mut seq = ids(&raw["prompt_ids"]);
    let n_prompt = seq.len();
    seq.extend(&ids(&raw["generated_ids"])[..8]);
    let arg = seq.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let out = json(&["score", "-m", MODEL, "--ids", &arg, "--top", "3"]);
    let positions = out["positions"].as_array().unwrap();
    assert_eq!(positions.len(), seq.len() - 1);
    let margins = raw["margins"].as_array().unwrap();
    for (i, p) in positions.iter().enumerate() {
        assert_eq!(p["next_id"].as_u64().unwrap() as u32, seq[i + 1]);
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let logits: Vec<f64> = top.iter().map(|t| t[1].as_f64().unwrap()).collect();
        assert!(logits.windows(2).all(|w| w[0] >= w[1]), "top is sorted: {logits:?}");
        assert!(p["logprob"].as_f64().unwrap() <= 0.0);
        // Along the reference continuation the top-1 is the reference's token.
        if i + 1 >= n_prompt && margins[i + 1 - n_prompt].as_f64().unwrap() >= 0.1 {
            assert_eq!(top[0][0].as_u64().unwrap() as u32, seq[i + 1], "position {i}");
        }
    }
}

#[test]
fn perplexity_matches_the_cpu_oracle_on_short_chunks() {
    let Some(bytes) = default_model_bytes() else { return };
    let text_path = format!("{ROOT}/../shared/fixtures/ppl_text.txt");
    // The first 3 chunks of 48 tokens, scored by the CPU oracle in f64 with
    // the same convention (positions 24..46 of each chunk predict the next token).
    let (chunk, chunks) = (48usize, 3usize);
    let gguf = GgufFile::parse(&bytes, Some(bytes.len() as u64)).unwrap();
    let tokenizer = hearth_llm::tokenizer::Tokenizer::from_gguf(&gguf).unwrap();
    let text = std::fs::read_to_string(&text_path).unwrap();
    let tokens = tokenizer.encode(&text, true).unwrap();
    let model = CpuModel::load(ModelConfig::from_gguf(&gguf).unwrap(), &GgufSource { gguf: &gguf, bytes: &bytes }).unwrap();
    let (mut nll, mut scored) = (0.0, 0);
    for c in tokens.chunks_exact(chunk).take(chunks) {
        let logits = model.forward(&c[..chunk - 1], &mut CpuKvCache::default()).unwrap();
        for pos in chunk / 2..chunk - 1 {
            nll -= logprob(&logits[pos], c[pos + 1]);
            scored += 1;
        }
    }
    let want = (nll / scored as f64).exp();

    // A file holding exactly those chunks.
    let prefix = tokenizer.decode(&tokens[..chunk * chunks]).unwrap();
    let file = std::env::temp_dir().join(format!("hearth-ppl-{}.txt", std::process::id()));
    std::fs::write(&file, &prefix).unwrap();
    // The GPU computes in f32; the CPU backend's 16-bit activations cost a little more.
    for (backend, tolerance) in [("gpu", 1e-3), ("cpu", 3e-3)] {
        let out = json(&["perplexity", "-m", MODEL, "--backend", backend, "-f", file.to_str().unwrap(), "--chunk", &chunk.to_string(), "--json"]);
        assert_eq!(out["scored"].as_u64().unwrap() as usize, scored);
        let got = out["ppl"].as_f64().unwrap();
        eprintln!("perplexity: {backend} {got:.5}, oracle {want:.5}");
        assert!((got / want - 1.0).abs() < tolerance, "{backend} {got} vs oracle {want}");
    }
    std::fs::remove_file(&file).ok();
}

#[test]
fn bad_options_fail_before_loading_with_a_clear_message() {
    let (ok, _, stderr) = hearth(&["generate", "-m", "/nonexistent.gguf", "-p", "hi", "--temperature", "-1"]);
    assert!(!ok);
    assert!(stderr.contains("temperature must be >= 0"), "{stderr}");
    let (ok, _, stderr) = hearth(&["generate", "-m", "/nonexistent.gguf", "-p", "hi"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent.gguf"), "{stderr}");
    let garbage = std::env::temp_dir().join(format!("hearth-garbage-{}.gguf", std::process::id()));
    std::fs::write(&garbage, b"GGUF\x03\0\0\0garbage").unwrap();
    let (ok, _, stderr) = hearth(&["generate", "-m", garbage.to_str().unwrap(), "-p", "hi"]);
    std::fs::remove_file(&garbage).ok();
    assert!(!ok);
    assert!(stderr.contains("GGUF"), "{stderr}");
    let (ok, _, stderr) = hearth(&["generate", "-m", MODEL, "-p", "hi", "--kv-cache", "f8"]);
    assert!(!ok && stderr.contains("possible values: auto, f16, f32"), "{stderr}");
}

#[test]
fn chat_reuses_the_kv_cache_of_earlier_turns() {
    if default_model_bytes().is_none() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["chat", "-m", MODEL, "--max-tokens", "8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hearth chat runs");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"Hi! What is 2+2?\nAnd what is that multiplied by 3?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One status line per turn: "[N prompt tokens, R reused from the cache; ...]".
    let reused: Vec<(usize, usize)> = stderr
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("> ").unwrap_or(l).strip_prefix('[')?;
            let mut words = l.split(' ');
            let prompt = words.next()?.parse().ok()?;
            let reused = l.split(", ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((prompt, reused))
        })
        .collect();
    assert_eq!(reused.len(), 2, "{stderr}");
    assert_eq!(reused[0].1, 0);
    // The second turn's prompt starts with the whole first exchange.
    assert!(reused[1].1 >= reused[0].0, "second turn reused {} of {} tokens: {stderr}", reused[1].1, reused[1].0);
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    if default_model_bytes().is_none() {
        return;
    }
    let run = |seed: &str| {
        let out = json(&["generate", "-m", MODEL, "-p", "Once upon a time", "--temperature", "1.0", "--top-p", "0.95",
            "--seed", seed, "--max-tokens", "12", "--ignore-eos", "--json"]);
        ids(&out["ids"])
    };
    let a = run("7");
    assert_eq!(a, run("7"), "same seed, same tokens");
    assert_ne!(a, run("8"), "another seed, another sample");
}

#[test]
fn convert_writes_a_package_that_generates_like_the_gguf() {
    if default_model_bytes().is_none() {
        return;
    }
    let dir = common::temp_dir("cli-convert");
    let out_dir = dir.join("pkg");
    let (ok, stdout, stderr) = hearth(&["convert", MODEL, out_dir.to_str().unwrap(), "--shard-size", "16MiB"]);
    assert!(ok, "{stderr}");
    assert!(stdout.to_lowercase().contains("smollm2") && stdout.contains("(q4_1)") && stdout.contains("shards"), "{stdout}");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["shards"].as_array().unwrap().len() >= 5, "94 MB in 16 MiB shards");

    let args = |model: &str| {
        ["generate", "-m", model, "-p", "The three primary colors are", "--max-tokens", "8", "--json"].map(String::from)
    };
    let from_gguf = json(&args(MODEL).each_ref().map(String::as_str));
    let package_path = out_dir.to_str().unwrap().to_string();
    let from_package = json(&args(&package_path).each_ref().map(String::as_str));
    assert_eq!(from_package["ids"], from_gguf["ids"]);
    // The manifest's path works as well as the folder's.
    let manifest_path = out_dir.join("manifest.json").to_str().unwrap().to_string();
    assert_eq!(json(&args(&manifest_path).each_ref().map(String::as_str))["ids"], from_gguf["ids"]);

    for (bad, message) in [("0", "at least 1 byte"), ("12 parsecs", "unit")] {
        let (ok, _, stderr) = hearth(&["convert", MODEL, out_dir.to_str().unwrap(), "--shard-size", bad]);
        assert!(!ok && stderr.contains(message), "{bad}: {stderr}");
    }
    let (ok, _, stderr) = hearth(&["convert", MODEL, out_dir.to_str().unwrap(), "--quant", "q5_k"]);
    assert!(!ok && stderr.contains("q5_k"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
