//! Shared helpers for the integration tests.
#![allow(dead_code)]

use hearth_llm::gpu::GpuContext;

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

/// The repository's root (where Cargo.toml is).
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// ../shared/fixtures beside the checkout (present in CI and dev sessions).
pub fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{ROOT}/../shared/fixtures/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The default model's bytes, or `None` (with a visible message) where it has
/// not been fetched; under CI=true its absence fails the test.
pub fn default_model_bytes() -> Option<Vec<u8>> {
    let path = format!("{ROOT}/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but the default model is missing ({path}: {e}); scripts/setup.sh fetches it")
        }
        Err(e) => {
            eprintln!("SKIPPED: default model not fetched ({path}: {e}); run scripts/setup.sh");
            None
        }
    }
}

/// A JSON array of integers as token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// A JSON array of numbers as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

/// A fresh, empty folder under the system temp dir, unique to this test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
