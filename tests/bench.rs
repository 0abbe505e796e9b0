//! `hearth bench` as the benchmark scripts run it: one JSON object per
//! prompt length with the figures the performance issue asks for, and the
//! bandwidth probe's reads checked against the CPU.

mod common;

use common::{default_model_bytes, gpu};
use hearth_llm::engine::Engine;
use hearth_llm::error::HearthError;
use hearth_llm::model::{Backend, Model, ModelOptions};
use pollster::block_on;
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
        assert_eq!(r["sampler"]["temperature"], 0.0, "greedy unless asked: {r}");
        // Weights are 92 MiB; the GPU holds them plus a small KV cache and activations.
        let (gpu_bytes, weights) = (r["gpu_bytes"].as_u64().unwrap(), r["weight_bytes"].as_u64().unwrap());
        assert!(weights > 90 << 20 && gpu_bytes >= weights && gpu_bytes < weights + (32 << 20), "{gpu_bytes} vs {weights}");
        // A decode step reads every weight: it cannot beat the read bandwidth by much.
        assert!(r["roofline_fraction"].as_f64().unwrap() < 1.5, "{r}");
    }
}

/// With sampling options, the benchmark samples (and says how).
#[test]
fn bench_measures_sampled_decoding_when_asked() {
    if default_model_bytes().is_none() || gpu().is_none() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "-m", MODEL, "--prompt-tokens", "8", "--gen-tokens", "6", "--repeats", "1", "--json"])
        .args(["--temperature", "0.8", "--top-p", "0.95", "--repetition-penalty", "1.1", "--seed", "3"])
        .output()
        .expect("hearth runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(r["decode_tok_s"].as_f64().unwrap() > 0.0, "{r}");
    let s = &r["sampler"];
    assert!((s["temperature"].as_f64().unwrap() - 0.8).abs() < 1e-6 && (s["top_p"].as_f64().unwrap() - 0.95).abs() < 1e-6 && s["seed"] == 3, "{r}");
}

#[test]
fn bench_refuses_meaningless_settings() {
    for (args, message) in [(&["--gen-tokens", "1"][..], "--gen-tokens at least 2"), (&["--top-p", "0"][..], "top_p must be in (0, 1]")] {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["bench", "-m", MODEL])
            .args(args)
            .output()
            .expect("hearth runs");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn bandwidth_probe_reads_every_byte() {
    let Some(ctx) = gpu() else { return };
    // An odd size: the probe rounds down to whole 16-byte words and checks
    // each thread's XOR of what it read against the CPU before timing.
    let bytes_per_second = pollster::block_on(hearth_llm::bench::read_bandwidth(&ctx, (3 << 20) + 40, 2)).expect("probe");
    assert!(bytes_per_second > 1e6, "{bytes_per_second}");
}

/// The dispatch floor runs every one of its adds (the first submit's sum
/// is checked inside), times them, and refuses an empty pass.
#[test]
fn dispatch_floor_runs_every_add() {
    let Some(ctx) = gpu() else { return };
    let floor = block_on(hearth_llm::bench::dispatch_floor(&ctx, 37, 2)).expect("floor");
    assert_eq!(floor.dispatches, 37);
    assert!(floor.wall_us > 0.0, "{floor:?}");
    assert_eq!(floor.gpu_us.is_some_and(|us| us >= 0.0), ctx.has_timestamps_in_passes(), "{floor:?}");
    let refused = block_on(hearth_llm::bench::dispatch_floor(&ctx, 0, 2));
    assert!(matches!(refused, Err(hearth_llm::error::HearthError::InvalidArgument(_))), "{refused:?}");
}

/// `hearth bench --profile`: a decode step timed kernel by kernel names
/// every kernel of the step, as often as the model has it, and leaves the
/// model as it was: the next token is the one it would have been.
#[test]
fn decode_profile_times_every_kernel_and_changes_nothing() {
    let Some(ctx) = gpu() else { return };
    let Some((mut engine, first, want)) = after_a_prompt(Backend::Gpu(ctx.clone())) else { return };
    let Model::Gpu(model) = &engine.model else { unreachable!() };
    let (kernels, step_us) = block_on(model.profile_step(1, 2)).expect("profile");
    assert_eq!(engine.model.position(), 20, "the profile adds no position");
    assert_eq!(block_on(engine.model.forward_greedy(&[first])).unwrap(), want, "the profile leaves the KV cache as it was");

    let layers = engine.model.config().n_layers;
    let count = |name: &str| kernels.iter().find(|k| k.kernel == name).map_or(0, |k| k.dispatches);
    assert_eq!((count("Embed<Q8_0>"), count("Attention"), count("Argmax")), (1, layers, 1), "{kernels:?}");
    // Every weight matrix is multiplied once per step: 7 per layer and the head, stacked or not.
    let matmul_dispatches: usize = kernels.iter().filter(|k| k.kernel.starts_with("Matmul")).map(|k| k.dispatches).sum();
    assert!((2 * layers + 1..=7 * layers + 1).contains(&matmul_dispatches), "{kernels:?}");
    assert!(kernels.iter().all(|k| k.us_per_token > 0.0 && !k.kernel.is_empty()), "{kernels:?}");
    assert!(step_us > 0.0);
    // Each kernel's GPU time inside the pass, where the device writes timestamps between dispatches.
    let in_pass = kernels.iter().map(|k| k.gpu_us_in_pass.filter(|us| *us >= 0.0)).collect::<Option<Vec<f64>>>();
    assert_eq!(in_pass.is_some(), ctx.has_timestamps_in_passes(), "{kernels:?}");
}

/// Where llvmpipe shares loads in subgroups (`Variants::prompt_attention_in_tiles`),
/// a prompt chunk attends in tiles of 8 queries and a decode step a query
/// at a time; elsewhere both attend a query at a time.
#[test]
fn a_prompt_chunk_attends_in_tiles_where_llvmpipe_shares_loads() {
    let Some(ctx) = gpu() else { return };
    let Some((mut engine, first, want)) = after_a_prompt(Backend::Gpu(ctx.clone())) else { return };
    let Model::Gpu(model) = &engine.model else { unreachable!() };
    let layers = engine.model.config().n_layers;
    let tiles = ctx.variants().prompt_attention_in_tiles();
    eprintln!("prompt attention in tiles: {tiles}");
    for (tokens, tiled) in [(16, tiles), (1, false)] {
        let (kernels, _) = block_on(model.profile_step(tokens, 2)).expect("profile");
        let count = |name: &str| kernels.iter().find(|k| k.kernel == name).map_or(0, |k| k.dispatches);
        let want = if tiled { (0, layers) } else { (layers, 0) };
        assert_eq!((count("Attention"), count("AttentionTiles")), want, "{tokens} tokens: {kernels:?}");
    }
    assert_eq!(block_on(engine.model.forward_greedy(&[first])).unwrap(), want, "the profiles leave the KV cache as it was");
}

/// A profile of no tokens, of more than a chunk (`max_batch`), past the
/// context or with repeats out of range is a typed error that leaves the
/// model as it was.
#[test]
fn a_profile_of_a_bad_size_is_refused() {
    let Some(ctx) = gpu() else { return };
    let Some((mut engine, first, want)) = after_a_prompt(Backend::Gpu(ctx)) else { return };
    let Model::Gpu(model) = &engine.model else { unreachable!() };
    for (tokens, repeats) in [(0, 2), (17, 2), (1, 0), (1, hearth_llm::gpu::model::MAX_PROFILE_REPEATS + 1)] {
        match block_on(model.profile_step(tokens, repeats)) {
            Err(HearthError::InvalidArgument(m)) => assert!(m.contains("max_batch") || m.contains("no tokens"), "{m}"),
            other => panic!("{tokens} tokens, {repeats} repeats: {:?}", other.map(|(k, _)| k)),
        }
    }
    // 50 cached positions and 16 more exceed the 64-position context.
    assert!(matches!(block_on(hearth_llm::bench::step_profile(&mut engine, 50, 16, 2)), Err(HearthError::ContextFull { .. })));
    engine.reset();
    let prompt = hearth_llm::bench::prompt_ids(&engine, 20).unwrap();
    assert_eq!(block_on(engine.model.forward_greedy(&prompt)).unwrap(), first);
    assert_eq!(block_on(engine.model.forward_greedy(&[first])).unwrap(), want);
}

/// The engine on `backend` after a 20-token prompt, the token it picked
/// and the token after that (found once, then the cache is rebuilt to the
/// prompt's end): None without the model file.
fn after_a_prompt(backend: Backend) -> Option<(Engine, u32, u32)> {
    let bytes = default_model_bytes()?;
    let mut engine = Engine::from_gguf(&backend, &bytes, ModelOptions { context: 64, max_batch: 16 }).expect("load");
    let prompt = hearth_llm::bench::prompt_ids(&engine, 20).unwrap();
    let first = block_on(engine.model.forward_greedy(&prompt)).unwrap();
    let want = block_on(engine.model.forward_greedy(&[first])).unwrap();
    engine.reset();
    assert_eq!(block_on(engine.model.forward_greedy(&prompt)).unwrap(), first);
    Some((engine, first, want))
}

/// The profile of a prefill chunk: with the GPUs' variants a chunk of 16
/// tokens runs the tiled products (`Variants::tiled_prefill_from`) and not
/// the head, a decode step the other products; the model is left as it was.
#[test]
fn prefill_profile_times_the_tiled_program() {
    let Some(ctx) = gpu() else { return };
    let Some((mut engine, first, want)) = after_a_prompt(Backend::Gpu(ctx.with_gpu_variants())) else { return };
    let Model::Gpu(model) = &engine.model else { unreachable!() };
    let layers = engine.model.config().n_layers;
    let tiled = |kernels: &[hearth_llm::gpu::model::KernelTime]| -> usize {
        kernels.iter().filter(|k| k.kernel.contains("Tiled<")).map(|k| k.dispatches).sum()
    };
    let (prefill, _) = block_on(model.profile_step(16, 2)).expect("profile");
    // Every layer's four products, tiled; no head, no argmax.
    assert_eq!(tiled(&prefill), 4 * layers, "{prefill:?}");
    assert!(!prefill.iter().any(|k| k.kernel == "Argmax" || !k.kernel.contains("Tiled") && k.kernel.starts_with("Matmul")), "{prefill:?}");
    // A decode step's dispatches (the attention runs' sum) are not a chunk's.
    assert!(!prefill.iter().any(|k| k.kernel == "AttentionCombine" || k.kernel.starts_with("MatmulAttention")), "{prefill:?}");
    if ctx.has_timestamps_in_passes() {
        // Each dispatch's GPU time in the pass is its own: the embedding
        // (16 rows) takes next to none of it, the products most.
        let in_pass = |k: &hearth_llm::gpu::model::KernelTime| k.gpu_us_in_pass.expect("timestamps");
        let embed = prefill.iter().find(|k| k.kernel.starts_with("Embed")).map(in_pass).expect("the embedding");
        let products: f64 = prefill.iter().filter(|k| k.kernel.contains("Tiled<")).map(in_pass).sum();
        assert!(embed < 0.05 * products, "{prefill:?}");
    }
    let (decode, _) = block_on(model.profile_step(1, 2)).expect("profile");
    assert_eq!(tiled(&decode), 0, "{decode:?}");
    // The output projections add the attention's runs up themselves: one
    // dispatch per layer, and no combine of its own.
    let count = |name: &str| decode.iter().filter(|k| k.kernel.starts_with(name)).map(|k| k.dispatches).sum::<usize>();
    assert_eq!((count("MatmulAttention<"), count("AttentionCombine")), (layers, 0), "{decode:?}");
    assert_eq!(block_on(engine.model.forward_greedy(&[first])).unwrap(), want, "the profiles leave the KV cache as it was");
}
