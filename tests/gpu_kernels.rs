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
    let checks = all_pass(&ctx, Kernel::RmsNorm);
    // Both entry points: the one-shot helper and the model's row0 dispatch.
    assert!(checks.iter().any(|c| c.case.contains("one-shot")) && checks.iter().any(|c| c.case.starts_with("rows ")));
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
            let of_type = |mode: &str| checks.iter().any(|c| c.case.starts_with(&format!("{ty} ")) && c.case.contains(mode));
            assert!(of_type("out_at_pos None") && of_type("out_at_pos Some"), "matmul: {ty} lacks a mode");
        }
        let worst = checks.iter().map(|c| c.max_error).fold(0f64, f64::max);
        eprintln!("matmul, {rows_per_thread} rows per thread: worst {worst:.2e}");
    }
}

#[test]
fn rope_in_place_and_at_pos() {
    let Some(ctx) = gpu() else { return };
    all_pass(&ctx, Kernel::Rope);
}

#[test]
fn attention_causal_gqa_over_cache() {
    let Some(ctx) = gpu() else { return };
    // Both variants on this adapter: threads sharing each key (GPUs) and
    // keys split between threads (CPU-based adapters).
    for split_keys_attention in [false, true] {
        all_pass(&ctx.with_variants(Variants { split_keys_attention, ..ctx.variants() }), Kernel::Attention);
    }
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

#[test]
fn read_bandwidth_probe_reads_every_word() {
    let Some(ctx) = gpu() else { return };
    all_pass(&ctx, Kernel::ReadBandwidth);
}

/// `run_all` covers every kernel, and reports a failing comparison as a
/// failed check rather than a panic (checked here on the shape of its output).
#[test]
fn run_all_covers_every_kernel() {
    let Some(ctx) = gpu() else { return };
    let checks = block_on(selfcheck::run_all(&ctx)).expect("the GPU runs every check");
    for kernel in selfcheck::KERNELS {
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
