//! The CPU oracle on the real default model against the exact float64
//! reference in ../shared/fixtures (an independent numpy implementation).
//! The oracle must agree with it to rounding: it is the yardstick the GPU
//! model is then held to.

mod common;

use common::{default_model_bytes, fixture, floats, ids};
use hearth_llm::config::ModelConfig;
use hearth_llm::formats::gguf::GgufFile;
use hearth_llm::sampler::argmax;
use hearth_llm::reference::{CpuKvCache, CpuModel};
use hearth_llm::weights::GgufSource;

#[test]
fn cpu_oracle_matches_exact_reference_logits_and_greedy_path() {
    let Some(bytes) = default_model_bytes() else { return };
    let gguf = GgufFile::parse(&bytes, Some(bytes.len() as u64)).expect("parse");
    let config = ModelConfig::from_gguf(&gguf).expect("config");
    let model = CpuModel::load(config, &GgufSource { gguf: &gguf, bytes: &bytes }).expect("load");

    let exact = fixture("smollm2_exact.json");
    for case in exact["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let want_last = floats(&case["last_logits"]);
        let mut cache = CpuKvCache::default();
        let logits = model.forward(&prompt, &mut cache).expect("forward");
        let last = logits.last().unwrap();
        let max_err = last.iter().zip(&want_last).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{id}: last-position logits max abs error {max_err:.2e}");
        // The fixture is rounded to 1e-5; f64 arithmetic leaves far less.
        assert!(max_err < 1e-4, "{id}: logits off by {max_err}");

        // Greedy: every token equals the exact path (the oracle's error is far
        // below the smallest margin, 0.026, so no position is ambiguous).
        let want = ids(&case["generated_ids"]);
        let mut next = argmax(last);
        for (step, &w) in want.iter().enumerate().take(16) {
            assert_eq!(next, w, "{id}: greedy token {step}");
            next = argmax(&model.forward(&[next], &mut cache).unwrap()[0]);
        }
    }
}
