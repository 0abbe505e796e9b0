//! Shared helpers for the integration tests.
#![allow(dead_code)]

use hearth_llm::gpu::GpuContext;
use rand::{rngs::SmallRng, Rng, SeedableRng};

/// The GPU context for a test, or `None` (with a visible message) where this
/// machine has no adapter. Under `CI=true` a missing adapter fails the test:
/// CI installs lavapipe precisely so that GPU tests never skip there.
pub fn gpu() -> Option<GpuContext> {
    match GpuContext::new_blocking() {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but no GPU adapter: {e} (install mesa-vulkan-drivers for lavapipe)")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter on this machine ({e})");
            None
        }
    }
}

/// Seeded uniform values in [-scale, scale).
pub fn random_vec(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Asserts `got` ≈ `want` element-wise within `abs + rel * |want|`, naming the
/// first index that is off.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    let mut max_err = 0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= abs + rel * w.abs(),
            "{what}: index {i}: got {g}, want {w} (error {err})"
        );
        max_err = max_err.max(err);
    }
    eprintln!("{what}: max abs error {max_err:e} over {} values", got.len());
}
