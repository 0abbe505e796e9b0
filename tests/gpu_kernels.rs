//! Every WGSL kernel against its CPU reference (crate::reference) on seeded
//! random inputs whose sizes are not multiples of the workgroup size.

mod common;

use common::{assert_close, gpu, random_vec};
use hearth_llm::{gpu as kernels, reference};
use pollster::block_on;

#[test]
fn rms_norm_matches_cpu_reference() {
    let Some(ctx) = gpu() else { return };
    eprintln!("adapter: {} ({})", ctx.report.name, ctx.report.backend);
    // (rows, cols): a single value, odd widths, the model's widths, a wide row.
    for (seed, &(rows, cols)) in [(1, 1), (3, 7), (5, 63), (17, 576), (4, 1536), (2, 4099)].iter().enumerate() {
        let x = random_vec(seed as u64, rows * cols, 4.0);
        let w = random_vec(100 + seed as u64, cols, 2.0);
        let got = block_on(kernels::rms_norm(&ctx, &x, &w, 1e-5)).expect("kernel runs");
        let want = reference::rms_norm(&x, &w, 1e-5);
        assert_close(&format!("rms_norm {rows}x{cols}"), &got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn rms_norm_rejects_ragged_input() {
    let Some(ctx) = gpu() else { return };
    let err = block_on(kernels::rms_norm(&ctx, &[1.0; 5], &[1.0; 2], 1e-5)).unwrap_err();
    assert!(err.to_string().contains("whole rows"), "{err}");
}
