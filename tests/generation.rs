//! Greedy generation on the GPU chains its decode steps (each queued before
//! the previous token is read back: `GpuModel::submit_chained_greedy`).
//! Checked against the model driven one forward at a time, which reads
//! every token back before the next step: the same tokens, whichever way
//! generation ends (token budget, stop string, end of the context), and a
//! later turn that reuses the cache gives what a fresh engine gives.

mod common;

use hearth_llm::engine::{Engine, FinishReason, GenerateRequest};
use hearth_llm::gpu::Variants;
use hearth_llm::model::{Backend, ModelOptions};
use pollster::block_on;

const PROMPT: &str = "The three primary colours are";

fn greedy(max_tokens: usize) -> GenerateRequest {
    GenerateRequest { max_tokens, ignore_eos: true, ..Default::default() }
}

/// `n` greedy tokens after `prompt`, one forward and one read-back at a time.
fn step_by_step(engine: &mut Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    engine.reset();
    let mut ids = vec![block_on(engine.model.forward_greedy(prompt)).unwrap()];
    while ids.len() < n {
        let last = *ids.last().unwrap();
        ids.push(block_on(engine.model.forward_greedy(&[last])).unwrap());
    }
    engine.reset();
    ids
}

#[test]
fn chained_greedy_steps_generate_what_single_steps_do() {
    let (Some(ctx), Some(bytes)) = (common::gpu(), common::default_model_bytes()) else { return };
    // Chained as on a GPU, whatever this adapter is.
    let ctx = ctx.with_variants(Variants { chained_decode: true, ..ctx.variants() });
    let options = ModelOptions { context: 96, max_batch: 32 };
    let load = || Engine::from_gguf(&Backend::Gpu(ctx.clone()), &bytes, options).unwrap();
    let mut engine = load();
    let prompt = engine.encode_prompt(PROMPT).unwrap();
    let want = step_by_step(&mut engine, &prompt, 24);

    // The token budget.
    let g = block_on(engine.generate(&prompt, &greedy(24), &mut |_| {})).unwrap();
    assert_eq!((g.ids.as_slice(), g.finish_reason), (want.as_slice(), FinishReason::Length));

    // Stopped after 5 tokens, then the next turn extends the text: the
    // cache holds the prompt and 4 tokens (the fifth was never fed; the
    // step chained on it is forgotten), and the turn equals a fresh engine's.
    let short = block_on(engine.generate(&prompt, &greedy(5), &mut |_| {})).unwrap();
    assert_eq!(short.ids, want[..5]);
    assert_eq!(engine.model.position(), prompt.len() + 4, "the cache's positions are the tokens fed");
    let turn: Vec<u32> = prompt.iter().chain(&want[..5]).copied().collect();
    let next = block_on(engine.generate(&turn, &greedy(10), &mut |_| {})).unwrap();
    assert_eq!(next.reused_tokens, prompt.len() + 4);
    assert_eq!(next.ids, want[5..15]);

    // A stop string in the middle of the text: the text ends before it,
    // and the tokens generated are the reference's up to there.
    let text = engine.tokenizer.decode(&want).unwrap();
    let stop = text.split_whitespace().nth(6).expect("a long enough text").to_string();
    let request = GenerateRequest { stop: vec![stop.clone()], ..greedy(24) };
    let cut = block_on(engine.generate(&prompt, &request, &mut |_| {})).unwrap();
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    assert!(text.starts_with(&cut.text) && !cut.text.contains(&stop), "{:?} / {stop:?}", cut.text);
    assert_eq!(cut.ids, want[..cut.ids.len()]);
    let fresh_turn = |turn: &[u32]| block_on(load().generate(turn, &greedy(6), &mut |_| {})).unwrap().ids;
    let turn: Vec<u32> = prompt.iter().chain(&cut.ids).copied().collect();
    assert_eq!(block_on(engine.generate(&turn, &greedy(6), &mut |_| {})).unwrap().ids, fresh_turn(&turn));

    // The end of the context: generation stops there with the reference's tokens.
    let mut small = Engine::from_gguf(&Backend::Gpu(ctx.clone()), &bytes, ModelOptions { context: prompt.len() + 7, max_batch: 32 }).unwrap();
    let full = block_on(small.generate(&prompt, &greedy(100), &mut |_| {})).unwrap();
    assert_eq!(full.finish_reason, FinishReason::Length);
    assert_eq!(full.ids, want[..full.ids.len()]);
    assert_eq!(full.ids.len(), 7);
}
