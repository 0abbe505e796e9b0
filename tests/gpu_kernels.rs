//! Every WGSL kernel against its CPU reference, through the library's
//! self-check (`hearth_llm::gpu::selfcheck`): the same checks, inputs and
//! tolerances run in the browser (`Gpu.kernelSelfCheck()`, see
//! tests/browser/kernels.test.mjs). Cases, inputs and tolerances are
//! documented there; here each kernel's checks must all pass.

mod common;

use common::gpu;
use hearth_llm::gpu::selfcheck::{self, KernelCheck};
use hearth_llm::gpu::{self as kernels, GpuContext, Kernel, Variants};
use pollster::block_on;

/// Runs `kernel`'s checks, prints each one's max error and asserts they all passed.
fn all_pass(ctx: &GpuContext, kernel: Kernel) -> Vec<KernelCheck> {
    let checks = block_on(selfcheck::run(ctx, kernel)).expect("the GPU runs every check");
    assert!(!checks.is_empty(), "{kernel:?}: no checks");
    for c in &checks {
        eprintln!(
            "{} {} {}: max error {:.2e} (tolerance {:.2e}), {:.1} ms: {}",
            if c.passed { "ok  " } else { "FAIL" },
            c.kernel,
            c.case,
            c.max_error,
            c.tolerance,
            c.ms,
            c.detail
        );
    }
    let failed: Vec<String> = checks.iter().filter(|c| !c.passed).map(|c| format!("{} {}: {}", c.kernel, c.case, c.detail)).collect();
    assert!(failed.is_empty(), "{} of {} checks failed:\n{}", failed.len(), checks.len(), failed.join("\n"));
    checks
}

#[test]
fn rms_norm_matches_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    eprintln!("adapter: {} ({})", ctx.report.name, ctx.report.backend);
    // Workgroups of 8 threads (CPU-based adapters) and of 64 (GPUs).
    for rms_norm_threads in [8, 64] {
        let checks = all_pass(&ctx.with_variants(Variants { rms_norm_threads, ..ctx.variants() }), Kernel::RmsNorm);
        // Both entry points: the one-shot helper and the model's row0 dispatch.
        assert!(checks.iter().any(|c| c.case.contains("one-shot")) && checks.iter().any(|c| c.case.starts_with("rows ")));
    }
}

#[test]
fn rms_norm_rejects_ragged_input() {
    let Some(ctx) = gpu() else { return };
    let err = block_on(kernels::rms_norm(&ctx, &[1.0; 5], &[1.0; 2], 1e-5)).unwrap_err();
    assert!(err.to_string().contains("whole rows"), "{err}");
}

#[test]
fn embed_all_weight_types() {
    let Some(ctx) = gpu() else { return };
    let checks = all_pass(&ctx, Kernel::Embed);
    for ty in selfcheck::WEIGHT_TYPES {
        assert!(checks.iter().any(|c| c.case.starts_with(&format!("{ty} "))), "embed: no {ty} check");
    }
}

#[test]
fn matmul_all_weight_types() {
    let Some(ctx) = gpu() else { return };
    // Both variants on this adapter: one row per thread (GPUs) and four
    // (CPU-based adapters), whichever the adapter picks by default.
    for rows_per_thread in [1, 4] {
        let ctx = ctx.with_variants(Variants { matmul_rows_per_thread: rows_per_thread, ..ctx.variants() });
        let checks = all_pass(&ctx, Kernel::Matmul);
        for ty in selfcheck::WEIGHT_TYPES {
            let of_type = |tokens: &str| checks.iter().any(|c| c.case.starts_with(&format!("{ty} ")) && c.case.ends_with(tokens));
            assert!(of_type("tokens 1") && of_type("tokens 7"), "matmul: {ty} lacks one token or several");
        }
        let worst = checks.iter().map(|c| c.max_error).fold(0f64, f64::max);
        eprintln!("matmul, {rows_per_thread} rows per thread: worst {worst:.2e}");
    }
}

/// The weight readers with halves (scales, f16 weights) converted bit by
/// bit, as on adapters whose unpack2x16float flushes subnormals, and (where
/// this adapter keeps them: the probe says so) by unpack2x16float; the
/// checks' scales include subnormals.
#[test]
fn weight_readers_with_either_half_conversion() {
    let Some(ctx) = gpu() else { return };
    let probed = ctx.variants().exact_half_unpack;
    eprintln!("this adapter's unpack2x16float keeps subnormals: {probed}");
    for exact_half_unpack in [false, probed] {
        let ctx = ctx.with_variants(Variants { exact_half_unpack, ..ctx.variants() });
        for kernel in [Kernel::Matmul, Kernel::MatmulQkv, Kernel::MatmulSwiglu, Kernel::Embed] {
            all_pass(&ctx, kernel);
        }
    }
}

#[test]
fn matmul_of_stacked_qkv_and_of_stacked_gate_and_up_with_swiglu() {
    let Some(ctx) = gpu() else { return };
    // Both variants: with four rows per thread a thread of the SwiGLU kernel
    // holds two gate rows and their up rows; otherwise (GPUs) it takes two,
    // a gate row and then its up row.
    for rows_per_thread in [1, 4] {
        let ctx = ctx.with_variants(Variants { matmul_rows_per_thread: rows_per_thread, ..ctx.variants() });
        for kernel in [Kernel::MatmulQkv, Kernel::MatmulSwiglu] {
            let checks = all_pass(&ctx, kernel);
            assert!(selfcheck::WEIGHT_TYPES.iter().all(|ty| checks.iter().any(|c| c.case.starts_with(&format!("{ty} ")))));
        }
    }
}

#[test]
fn rope_of_queries_in_place_and_of_keys_into_their_cache() {
    let Some(ctx) = gpu() else { return };
    let checks = all_pass(&ctx, Kernel::Rope);
    assert!(checks.iter().any(|c| c.case.contains("heads 9 kv_heads 3")), "queries and keys in one dispatch");
}

/// The kernels that touch the KV cache (the V projection, RoPE into the
/// key cache, attention) with the cache in f32 and, where this adapter has
/// shader-f16 (lavapipe has), in f16, as the model would use them.
#[test]
fn kv_cache_kernels_in_f32_and_in_f16() {
    let Some(ctx) = gpu() else { return };
    eprintln!("shader-f16: {}, the KV cache in f16 by default: {}", ctx.report.shader_f16, ctx.variants().f16_kv_cache);
    for f16_kv_cache in [false, ctx.report.shader_f16] {
        let ctx = ctx.with_variants(Variants { f16_kv_cache, ..ctx.variants() });
        for cpu_attention in [false, true] {
            let ctx = ctx.with_variants(Variants { cpu_attention, attention_runs: 16, ..ctx.variants() });
            for kernel in [Kernel::MatmulQkv, Kernel::Rope, Kernel::Attention] {
                all_pass(&ctx, kernel);
            }
        }
    }
}

#[test]
fn attention_causal_gqa_over_cache() {
    let Some(ctx) = gpu() else { return };
    // Both variants on this adapter: the GPUs' (a decode step's keys in one
    // run, or split into 16 runs and added up by a second dispatch) and the
    // CPU-based adapters' (with the weights in workgroup memory, or in the
    // subgroup where llvmpipe shares loads so, and there a prompt's queries
    // in tiles of 8 or one at a time).
    for attention_runs in [1, 16] {
        all_pass(&ctx.with_variants(Variants { cpu_attention: false, attention_runs, ..ctx.variants() }), Kernel::Attention);
    }
    for attention_tiles in [true, false] {
        all_pass(&ctx.with_variants(Variants { cpu_attention: true, attention_tiles, ..ctx.variants() }), Kernel::Attention);
    }
}

/// A decode step's attention output projection adding up the attention's
/// runs of keys itself (`Variants::attention_in_product`, the GPUs'
/// variants), with subgroup reductions and with workgroup ones, in every
/// weight type, the KV cache in f32 and (where the adapter has shader-f16)
/// in f16. Not with the tiled products, which never take a single token.
#[test]
fn attention_runs_added_up_by_the_output_projection() {
    let Some(ctx) = gpu() else { return };
    let gpu_like = ctx.with_gpu_variants();
    assert!(gpu_like.variants().attention_in_product());
    let has = |on: bool| [false, true].into_iter().filter(move |&v| !v || on);
    for subgroup_reductions in has(gpu_like.variants().subgroup_reductions) {
        for f16_kv_cache in has(ctx.report.shader_f16) {
            let ctx = gpu_like.with_variants(Variants { subgroup_reductions, f16_kv_cache, ..gpu_like.variants() });
            let checks = all_pass(&ctx, Kernel::MatmulAttention);
            assert!(selfcheck::WEIGHT_TYPES.iter().all(|ty| checks.iter().any(|c| c.case.starts_with(&format!("{ty} ")))));
        }
    }
    let tiled = gpu_like.with_variants(Variants { matmul_tiled: true, ..gpu_like.variants() });
    assert!(!tiled.variants().attention_in_product());
    let apart = gpu_like.with_variants(Variants { attention_in_output_product: false, ..gpu_like.variants() });
    assert!(!apart.variants().attention_in_product());
}

#[test]
fn swiglu_and_add_elementwise() {
    let Some(ctx) = gpu() else { return };
    all_pass(&ctx, Kernel::Swiglu);
    let add = all_pass(&ctx, Kernel::Add);
    assert!(add.iter().all(|c| c.tolerance == 0.0 && c.max_error == 0.0), "add is bit-exact");
}

#[test]
fn argmax_lowest_index_wins() {
    let Some(ctx) = gpu() else { return };
    all_pass(&ctx, Kernel::Argmax);
}

/// Sampling on the GPU picks what the CPU's sampler picks from the same
/// draw; most draws are decided there, and the cases that need more ranks
/// than it holds (all logits equal, top-k 3000) are handed back.
#[test]
fn sampling_on_the_gpu_picks_the_cpu_samplers_token() {
    let Some(ctx) = gpu() else { return };
    let checks = all_pass(&ctx, Kernel::Sample);
    let count = |c: &KernelCheck, what: &str| -> usize {
        let words: Vec<&str> = c.detail.split([' ', ',']).collect();
        words.windows(2).find(|w| w[1] == what).map_or(0, |w| w[0].parse().unwrap())
    };
    let agreed: usize = checks.iter().map(|c| count(c, "draws")).sum();
    let near: usize = checks.iter().map(|c| count(c, "near")).sum();
    let handed_back: Vec<&str> = checks.iter().filter(|c| count(c, "handed") > 0).map(|c| c.case.as_str()).collect();
    eprintln!("{agreed} draws agree, {near} near a boundary; handed back in {handed_back:?}");
    assert!(agreed >= 60 && near <= 2, "{agreed} agree, {near} near a boundary");
    assert!(handed_back.iter().any(|c| c.contains("all equal")) && handed_back.iter().any(|c| c.contains("top_k 3000")), "{handed_back:?}");
}

#[test]
fn read_bandwidth_probe_reads_every_word() {
    let Some(ctx) = gpu() else { return };
    all_pass(&ctx, Kernel::ReadBandwidth);
}

/// `run_all` covers every kernel the context's variants use (the output
/// projection that adds up the attention's runs only where it does so:
/// `Variants::attention_in_product`), and reports a failing comparison as
/// a failed check rather than a panic (checked here on the shape of its output).
#[test]
fn run_all_covers_every_kernel() {
    let Some(ctx) = gpu() else { return };
    let checks = block_on(selfcheck::run_all(&ctx)).expect("the GPU runs every check");
    let used = |k: &Kernel| *k != Kernel::MatmulAttention || ctx.variants().attention_in_product();
    for kernel in selfcheck::KERNELS.into_iter().filter(used) {
        let name = selfcheck::kernel_name(kernel);
        assert!(checks.iter().any(|c| c.kernel == name), "no check of {name}");
    }
    let json = serde_json::to_value(&checks).unwrap();
    let first = &json[0];
    for key in ["kernel", "case", "max_error", "tolerance", "passed", "detail", "ms"] {
        assert!(first.get(key).is_some(), "KernelCheck serializes without {key}: {first}");
    }
    eprintln!("{} checks, {} passed", checks.len(), checks.iter().filter(|c| c.passed).count());
    assert!(checks.iter().all(|c| c.passed));
}

#[test]
fn a_gpu_validation_error_is_a_typed_error_and_the_device_stays_usable() {
    let Some(ctx) = gpu() else { return };
    // A uniform buffer bound where the kernel wants storage: wgpu's default
    // would panic; the engine reports it from the next read-back instead.
    let step = kernels::uniform_from(&ctx, "step", &kernels::Step { tokens: 1, ..Default::default() });
    let not_storage = kernels::uniform_from(&ctx, "x", &[0f32; 4]);
    let y = kernels::storage_from(&ctx, "y", &[1f32; 4]);
    let bad = kernels::ops::add(&ctx, &step, &not_storage, &y, 4);
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    kernels::program::encode(&mut encoder, std::slice::from_ref(&bad), 1);
    let err = block_on(kernels::submit_and_read::<f32>(&ctx, encoder, &y, 4)).unwrap_err();
    assert!(matches!(err, hearth_llm::HearthError::Gpu(_)), "{err}");
    assert!(err.to_string().contains("STORAGE"), "{err}");
    // The error was taken; the next operation succeeds.
    let out = block_on(kernels::rms_norm(&ctx, &[3.0, 4.0], &[1.0, 1.0], 0.0)).unwrap();
    assert!((out[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
}

#[test]
fn stacks_pack_parts_of_one_type_as_one_matrix_and_mixed_types_apart() {
    use hearth_llm::formats::gguf::TensorType;
    use hearth_llm::gpu::weights::GpuWeights;
    use hearth_llm::weights::RawTensor;
    let Some(ctx) = gpu() else { return };
    let stack = |names: &[&str]| (names.iter().map(|n| (n.to_string(), 64)).collect::<Vec<_>>(), 32);
    let wide = (vec![("c".to_string(), 64), ("d".to_string(), 64)], 64);
    let mut weights = GpuWeights::new(vec![stack(&["a", "b"]), wide, stack(&["e", "f"])]);
    let q4 = vec![0u8; 64 * 20]; // 64 rows of one Q4_1 block
    let tensor = |ty, bytes| RawTensor { ty, shape: vec![64, 32], bytes };
    weights.add(&ctx, "a", &tensor(TensorType::Q4_1, &q4)).unwrap();
    // A part waits for the rest of its stack: counted as added, not yet usable.
    assert!(weights.contains("a") && !weights.contains("b"));
    assert!(weights.stacked(&["a", "b"]).is_none());
    weights.add(&ctx, "b", &tensor(TensorType::Q4_1, &q4)).unwrap();
    let ab = weights.stacked(&["a", "b"]).expect("a and b packed as one");
    assert_eq!((ab.rows, ab.cols, ab.ty), (128, 32, TensorType::Q4_1));
    let e = weights.matrix("a", 64, 32).err().expect("a part is only multiplied with its stack");
    assert!(e.to_string().contains("packed with other matrices"), "{e}");
    assert!(weights.stacked(&["b", "a"]).is_none(), "only in the stack's order");
    // Parts of different types go apart, each usable alone: c, packed into
    // the stack's layout when it came, is taken out of it again and
    // multiplies as if uploaded on its own (Q4_0: two scales to a word).
    let q4_0: Vec<u8> = (0..64 * 2 * 18).map(|i| (i * 37 % 251) as u8 & if i % 18 == 1 { 0x3b } else { 0xff }).collect();
    let wide_tensor = |ty, bytes| RawTensor { ty, shape: vec![64, 64], bytes };
    weights.add(&ctx, "c", &wide_tensor(TensorType::Q4_0, &q4_0)).unwrap();
    let wide_f32s = vec![0u8; 64 * 64 * 4];
    weights.add(&ctx, "d", &wide_tensor(TensorType::F32, &wide_f32s)).unwrap();
    assert!(weights.stacked(&["c", "d"]).is_none());
    assert_eq!(weights.matrix("d", 64, 64).unwrap().ty, TensorType::F32);
    let product = |m: &hearth_llm::gpu::weights::GpuMatrix| {
        let x = kernels::storage_from(&ctx, "x", &(0..64).map(|i| i as f32 / 7.0 - 4.0).collect::<Vec<f32>>());
        let out = kernels::storage_zeroed(&ctx, "out", 64).unwrap();
        let step = kernels::uniform_from(&ctx, "step", &kernels::Step { tokens: 1, ..Default::default() });
        let d = kernels::ops::matmul(&ctx, &step, m, &x, kernels::ops::MatmulOut::One { out: &out });
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        kernels::program::encode(&mut encoder, &[d], 1);
        block_on(kernels::submit_and_read::<f32>(&ctx, encoder, &out, 64)).unwrap()
    };
    let alone = hearth_llm::gpu::weights::GpuMatrix::upload(&ctx, "c alone", &wide_tensor(TensorType::Q4_0, &q4_0)).unwrap();
    let want = product(&alone);
    assert!(want.iter().any(|v| *v != 0.0));
    assert_eq!(product(&weights.matrix("c", 64, 64).unwrap()), want);
    // Bytes: the stack's buffer once, then c and d each.
    let expected = ab.buffer.size() + weights.matrix("c", 64, 64).unwrap().buffer.size() + weights.matrix("d", 64, 64).unwrap().buffer.size();
    assert_eq!(weights.size_bytes(), expected);
    // A part of the wrong shape: the stack is given up, so the error names that part.
    weights.add(&ctx, "e", &tensor(TensorType::Q4_1, &q4)).unwrap();
    weights.add(&ctx, "f", &RawTensor { ty: TensorType::Q4_1, shape: vec![32, 32], bytes: &q4[..32 * 20] }).unwrap();
    assert!(weights.stacked(&["e", "f"]).is_none());
    assert!(weights.matrix("e", 64, 32).is_ok());
    assert!(weights.matrix("f", 64, 32).err().unwrap().to_string().contains("is 32×32, expected 64×32"));
    // A stacked part given again.
    assert!(weights.add(&ctx, "a", &tensor(TensorType::Q4_1, &q4)).err().unwrap().to_string().contains("given twice"));
    ctx.take_error().expect("no GPU error");
}

/// The four-rows-per-thread matmuls (CPU-based adapters) and the CPU-based
/// adapters' attention with x and the query loaded by every thread and,
/// where this adapter's subgroups have at least 8 lanes, shared through
/// subgroupBroadcast (as on llvmpipe by default).
#[test]
fn matmul_and_attention_with_loads_shared_through_subgroups_or_not() {
    let Some(ctx) = gpu() else { return };
    let subgroups = ctx.report.has_subgroups_of(8);
    eprintln!("subgroups of 8 or more lanes: {subgroups} ({:?})", ctx.report.subgroup_sizes);
    for subgroup_shared_loads in [false, subgroups] {
        let variants = Variants { matmul_rows_per_thread: 4, cpu_attention: true, subgroup_shared_loads, ..ctx.variants() };
        let ctx = ctx.with_variants(variants);
        for kernel in [Kernel::Matmul, Kernel::MatmulQkv, Kernel::MatmulSwiglu, Kernel::Attention] {
            all_pass(&ctx, kernel);
        }
    }
}

/// The matmuls with several threads per row (GPUs: 8 by default), their
/// sums added in workgroup memory and, where this adapter's subgroups are
/// wide enough (lavapipe: 8 lanes), by subgroup shuffles; 64 lanes are a
/// whole workgroup per row, 2 more rows than blocks in some checks.
#[test]
fn matmul_with_lanes_per_row_summed_in_workgroup_memory_or_subgroups() {
    let Some(ctx) = gpu() else { return };
    for lanes in [2, 8, 64] {
        for subgroup_reductions in [false, ctx.report.has_subgroups_of(lanes)] {
            // (With the RMSNorm and the residual add in the products, as on GPUs.)
            let variants = Variants { matmul_rows_per_thread: 1, matmul_lanes_per_row: lanes, subgroup_reductions, norm_in_matmul: true, ..ctx.variants() };
            let ctx = ctx.with_variants(variants);
            eprintln!("{lanes} lanes per row, subgroup reductions: {subgroup_reductions}");
            for kernel in [Kernel::Matmul, Kernel::MatmulQkv, Kernel::MatmulSwiglu] {
                all_pass(&ctx, kernel);
            }
        }
    }
}

/// The tiled products of the GPUs' prefill program (shaders/matmul_tiled.wgsl:
/// tiles of 32 rows × 32 tokens, SwiGLU tiles of 16 gate rows and their up
/// rows, the QKV product's RoPE, the norms and residual adds in the
/// products) in every mode and weight type, with the GPUs' variants.
#[test]
fn tiled_products_in_every_mode() {
    let Some(ctx) = gpu() else { return };
    let gpu_like = ctx.with_gpu_variants();
    let tiled = gpu_like.with_variants(Variants { matmul_tiled: true, ..gpu_like.variants() });
    assert!(tiled.variants().fuses_norm() && tiled.variants().rope_in_qkv());
    for kernel in [Kernel::Matmul, Kernel::MatmulQkv, Kernel::MatmulSwiglu] {
        let checks = all_pass(&tiled, kernel);
        assert!(selfcheck::WEIGHT_TYPES.iter().all(|ty| checks.iter().any(|c| c.case.starts_with(&format!("{ty} ")))));
    }
}
