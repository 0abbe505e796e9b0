//! Faults on the native engine (docs/reliability.md): a GPU device lost in
//! mid-generation, a model that cannot fit, and the memory plan every load
//! checks first agreeing with what the backends really allocate.

mod common;

use hearth_llm::engine::{Engine, GenerateRequest};
use hearth_llm::gpu::Variants;
use hearth_llm::formats::gguf::GgufFile;
use hearth_llm::model::{Backend, ModelOptions};
use hearth_llm::plan::{self, Limits, MemoryPlan};
use hearth_llm::config::ModelConfig;

fn greedy(max_tokens: usize) -> GenerateRequest {
    GenerateRequest { max_tokens, ignore_eos: true, ..Default::default() }
}

const PROMPT: &str = "Once upon a time";

/// With decode steps one at a time (CPU-based adapters) and chained (GPUs:
/// `Variants::chained_decode`, a step in flight when the device goes).
#[test]
fn a_device_lost_mid_generation_is_a_typed_error_and_a_new_engine_works() {
    for chained_decode in [false, true] {
        device_lost_mid_generation(chained_decode);
    }
}

fn device_lost_mid_generation(chained_decode: bool) {
    let (Some(ctx), Some(bytes)) = (common::gpu(), common::default_model_bytes()) else { return };
    let ctx = ctx.with_variants(Variants { chained_decode, ..ctx.variants() });
    let options = ModelOptions { context: 256, max_batch: 32 };
    let mut engine = Engine::from_gguf(&Backend::Gpu(ctx.clone()), &bytes, options).unwrap();
    let prompt = engine.encode_prompt(PROMPT).unwrap();
    let expected = pollster::block_on(engine.generate(&prompt, &greedy(6), &mut |_| {})).unwrap();

    // The device goes away while tokens stream: destroy it from the text callback.
    let device = ctx.device.clone();
    let mut pieces = 0;
    let lost = pollster::block_on(engine.generate(&prompt, &greedy(6), &mut |_| {
        pieces += 1;
        if pieces == 1 {
            device.destroy();
        }
    }));
    let err = lost.expect_err("generation on a destroyed device must fail");
    assert_eq!(err.code(), "device_lost", "{err}");
    assert!(err.to_string().contains("load the model again"), "{err}");
    // The engine keeps saying so (no hang, no panic) ...
    let again = pollster::block_on(engine.generate(&prompt, &greedy(2), &mut |_| {}));
    assert_eq!(again.expect_err("still lost").code(), "device_lost");
    drop(engine);

    // ... and an engine on a new device works as before.
    let Some(fresh) = common::gpu() else { return };
    let fresh = fresh.with_variants(Variants { chained_decode, ..fresh.variants() });
    let mut engine = Engine::from_gguf(&Backend::Gpu(fresh), &bytes, options).unwrap();
    let redo = pollster::block_on(engine.generate(&prompt, &greedy(6), &mut |_| {})).unwrap();
    assert_eq!(redo.ids, expected.ids);
}

/// The plan every load checks before allocating counts what the backends
/// then really allocate: the weights to the byte, the rest within 2 %.
#[test]
fn the_memory_plan_matches_what_each_backend_allocates() {
    let Some(bytes) = common::default_model_bytes() else { return };
    let gguf = GgufFile::parse(&bytes, Some(bytes.len() as u64)).unwrap();
    let config = ModelConfig::from_gguf(&gguf).unwrap();
    let options = ModelOptions { context: 1024, max_batch: 64 };
    let mut backends = vec![Backend::cpu()];
    // This adapter's variants, and those of GPUs (an f16 KV cache where it has shader-f16).
    backends.extend(common::gpu().into_iter().flat_map(|ctx| [Backend::Gpu(ctx.with_gpu_variants()), Backend::Gpu(ctx)]));
    for backend in backends {
        let plan = plan::check(&backend, &config, options, &gguf).unwrap();
        let engine = Engine::from_gguf(&backend, &bytes, options).unwrap();
        let (model, name) = (&engine.model, backend.kind().name());
        assert_eq!(plan.weights, model.weight_bytes(), "{name}");
        let (planned, real) = (plan.total() as f64, model.memory_bytes() as f64);
        assert!((planned - real).abs() / real < 0.02, "{name}: planned {planned} bytes, allocated {real}");
    }
}

/// A model asked for with more than the adapter allows per buffer is refused
/// before anything is allocated, saying what would fit.
#[test]
fn a_context_beyond_the_adapters_buffer_limit_is_refused_with_what_fits() {
    let (Some(ctx), Some(bytes)) = (common::gpu(), common::default_model_bytes()) else { return };
    let gguf = GgufFile::parse(&bytes, Some(bytes.len() as u64)).unwrap();
    let mut config = ModelConfig::from_gguf(&gguf).unwrap();
    // A context so long that one layer's keys outgrow the largest buffer
    // (f16 or f32 keys, as this adapter keeps them).
    let per_position = config.kv_dim() as u64 * if ctx.variants().f16_kv_cache { 2 } else { 4 };
    let backend = Backend::Gpu(ctx);
    let limits = Limits::of(&backend);
    let per_buffer = limits.per_buffer.expect("a GPU limits its buffers");
    config.context_length = usize::try_from(per_buffer / per_position * 2).unwrap();
    let options = ModelOptions { context: config.context_length, max_batch: 32 };
    let plan = MemoryPlan::new(backend.kind(), backend.kv_value_bytes(), &config, options, &gguf).unwrap();
    let err = plan.check(&config, limits).unwrap_err();
    assert_eq!(err.code(), "too_large");
    let fits = per_buffer / per_position;
    assert!(err.to_string().contains(&format!("a context of at most {fits}")), "{err}");
}
