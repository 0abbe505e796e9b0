//! Teacher-forced scoring: per-position log-probabilities and top-k
//! candidates, and perplexity with llama.cpp's `llama-perplexity` convention.

use crate::error::{HearthError, Result};
use crate::model::Model;
use serde::Serialize;

/// The prediction made after `ids[0..=i]`.
#[derive(Debug, Clone, Serialize)]
pub struct Position {
    /// The token that actually follows, `ids[i + 1]`.
    pub next_id: u32,
    /// Its log-probability under the model.
    pub logprob: f64,
    /// The most likely next tokens with their logits, best first.
    pub top: Vec<(u32, f32)>,
}

/// Log-probability of `id` under softmax(`logits`), computed in f64.
pub fn logprob(logits: &[f32], id: u32) -> f64 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
    logits[id as usize] as f64 - log_sum
}

/// The `k` largest logits with their ids, best first (lower id on ties).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, by_logit);
    }
    idx.truncate(k);
    idx.sort_by(by_logit);
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

/// Scores `ids` from an empty cache: one `Position` per token that has a successor.
pub async fn score(model: &mut Model, ids: &[u32], top: usize) -> Result<Vec<Position>> {
    if ids.len() < 2 {
        return Err(HearthError::InvalidArgument("scoring needs at least two tokens".into()));
    }
    model.truncate(0);
    let vocab = model.config().vocab_size;
    let logits = model.forward_all_logits(&ids[..ids.len() - 1]).await?;
    Ok(logits
        .chunks_exact(vocab)
        .zip(&ids[1..])
        .map(|(row, &next_id)| Position { next_id, logprob: logprob(row, next_id), top: top_k(row, top) })
        .collect())
}

/// Result of a perplexity run.
#[derive(Debug, Clone, Serialize)]
pub struct Perplexity {
    pub ppl: f64,
    /// Tokens in the text.
    pub tokens: usize,
    /// Predictions scored.
    pub scored: usize,
}

/// Perplexity as `llama-perplexity -c ctx` computes it: consecutive chunks of
/// `ctx` tokens, each from an empty cache; within a chunk the logits at
/// positions ctx/2 .. ctx-2 score the token after them. `on_chunk(done, total)`
/// reports progress.
pub async fn perplexity(model: &mut Model, tokens: &[u32], ctx: usize, on_chunk: &mut dyn FnMut(usize, usize)) -> Result<Perplexity> {
    if ctx < 4 || ctx > model.options().context {
        return Err(HearthError::InvalidArgument(format!(
            "ctx {ctx} must be at least 4 and at most the loaded context ({})",
            model.options().context
        )));
    }
    let chunks = tokens.len() / ctx;
    if chunks == 0 {
        return Err(HearthError::InvalidArgument(format!("the text has {} tokens, fewer than ctx = {ctx}", tokens.len())));
    }
    let vocab = model.config().vocab_size;
    let first = ctx / 2;
    let (mut nll, mut scored) = (0.0f64, 0usize);
    for (i, chunk) in tokens.chunks_exact(ctx).take(chunks).enumerate() {
        model.truncate(0);
        let logits = model.forward_all_logits(&chunk[..ctx - 1]).await?;
        for pos in first..ctx - 1 {
            nll -= logprob(&logits[pos * vocab..(pos + 1) * vocab], chunk[pos + 1]);
            scored += 1;
        }
        on_chunk(i + 1, chunks);
    }
    Ok(Perplexity { ppl: (nll / scored as f64).exp(), tokens: tokens.len(), scored })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprob_is_log_softmax() {
        let l = [0.0f32, (3f32).ln()]; // probabilities 1/4, 3/4
        assert!((logprob(&l, 0) - 0.25f64.ln()).abs() < 1e-7);
        assert!((logprob(&l, 1) - 0.75f64.ln()).abs() < 1e-7);
    }

    #[test]
    fn top_k_orders_by_logit_then_id() {
        let l = [1.0f32, 5.0, 3.0, 5.0, -2.0];
        assert_eq!(top_k(&l, 3), vec![(1, 5.0), (3, 5.0), (2, 3.0)]);
        assert_eq!(top_k(&l, 10).len(), 5);
    }
}
