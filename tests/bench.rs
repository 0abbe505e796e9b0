//! `hearth bench` as the benchmark scripts run it: one JSON object per
//! prompt length with the figures the performance issue asks for, and the
//! bandwidth probe's reads checked against the CPU.

mod common;

use common::{default_model_bytes, gpu};
use serde_json::Value;
use std::process::Command;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/SmolLM2-135M-Instruct.Q4_1.gguf");

#[test]
fn bench_prints_one_json_object_per_prompt_length() {
    if default_model_bytes().is_none() || gpu().is_none() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "-m", MODEL, "--prompt-tokens", "8,24", "--gen-tokens", "4", "--repeats", "1", "--json"])
        .output()
        .expect("hearth runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(rows.iter().map(|r| r["prompt_tokens"].as_u64().unwrap()).collect::<Vec<_>>(), [8, 24]);
    for r in &rows {
        for key in ["load_ms", "ttft_ms", "prefill_tok_s", "decode_tok_s", "read_bandwidth_gb_s", "roofline_fraction"] {
            let v = r[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {r}"));
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
        assert!(r["adapter"].is_string() && r["gen_tokens"] == 4);
        // Weights are 92 MiB; the GPU holds them plus a small KV cache and activations.
        let (gpu_bytes, weights) = (r["gpu_bytes"].as_u64().unwrap(), r["weight_bytes"].as_u64().unwrap());
        assert!(weights > 90 << 20 && gpu_bytes >= weights && gpu_bytes < weights + (32 << 20), "{gpu_bytes} vs {weights}");
        // A decode step reads every weight: it cannot beat the read bandwidth by much.
        assert!(r["roofline_fraction"].as_f64().unwrap() < 1.5, "{r}");
    }
}

#[test]
fn bench_refuses_meaningless_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "-m", MODEL, "--gen-tokens", "1"])
        .output()
        .expect("hearth runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gen-tokens at least 2"));
}

#[test]
fn bandwidth_probe_reads_every_byte() {
    let Some(ctx) = gpu() else { return };
    // An odd size: the probe rounds down to whole 16-byte words and checks
    // each thread's XOR of what it read against the CPU before timing.
    let bytes_per_second = pollster::block_on(hearth_llm::bench::read_bandwidth(&ctx, (3 << 20) + 40, 2)).expect("probe");
    assert!(bytes_per_second > 1e6, "{bytes_per_second}");
}
