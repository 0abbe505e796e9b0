//! Turning logits into the next token: greedy, or sampled with temperature,
//! repetition penalty, top-k, top-p and min-p, from a seeded generator (the
//! same seed gives the same tokens on every target).

use crate::error::{HearthError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Sampling settings; the defaults are greedy decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerOptions {
    /// 0 picks the most likely token (greedy); higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0 = none).
    pub min_p: f32,
    /// Divides positive (multiplies negative) logits of tokens already seen (1 = off).
    pub repetition_penalty: f32,
    /// Subtracted once from the logit of every token already seen (OpenAI's; 0 = off).
    pub presence_penalty: f32,
    /// Subtracted from a token's logit per time it was seen (OpenAI's; 0 = off).
    pub frequency_penalty: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerOptions {
    /// Rejects settings that have no meaning, before anything runs.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(HearthError::InvalidArgument(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        Ok(())
    }

    /// True when the choice needs no logits on the CPU: the most likely token
    /// wins (the GPU's argmax is enough).
    pub fn is_greedy(&self) -> bool {
        (self.temperature == 0.0 || self.top_k == 1)
            && self.repetition_penalty == 1.0
            && self.presence_penalty == 0.0
            && self.frequency_penalty == 0.0
    }
}

/// A sampler with its random state.
pub struct Sampler {
    options: SamplerOptions,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(options: SamplerOptions) -> Result<Self> {
        options.validate()?;
        let rng = ChaCha8Rng::seed_from_u64(options.seed);
        Ok(Sampler { options, rng })
    }

    pub fn options(&self) -> &SamplerOptions {
        &self.options
    }

    /// Picks the next token from `logits`, given the tokens seen so far
    /// (for the penalties): the penalties, one draw, the choice.
    pub fn sample(&mut self, logits: &[f32], seen: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        if self.penalizes() {
            self.penalize(&mut logits, &seen_counts(seen));
        }
        let draw = self.draw();
        self.choose(&logits, draw)
    }

    /// Whether any penalty changes the logits of tokens already seen.
    pub fn penalizes(&self) -> bool {
        let o = &self.options;
        o.repetition_penalty != 1.0 || o.presence_penalty != 0.0 || o.frequency_penalty != 0.0
    }

    /// Applies the penalties to `logits`, given each token seen and how
    /// often (`seen_counts`): the repetition penalty, then the presence and
    /// frequency penalties. shaders/sample.wgsl does the same on the GPU.
    pub fn penalize(&self, logits: &mut [f32], counts: &[(u32, u32)]) {
        let o = &self.options;
        for &(t, n) in counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            if o.repetition_penalty != 1.0 {
                *l = if *l > 0.0 { *l / o.repetition_penalty } else { *l * o.repetition_penalty };
            }
            if o.presence_penalty != 0.0 || o.frequency_penalty != 0.0 {
                *l -= o.presence_penalty + o.frequency_penalty * n as f32;
            }
        }
    }

    /// The uniform draw in [0, 1) the next choice uses, from the seeded
    /// generator; none (and the generator untouched) where the choice is
    /// the most likely token.
    pub fn draw(&mut self) -> Option<f64> {
        let o = &self.options;
        if o.temperature == 0.0 || o.top_k == 1 {
            return None;
        }
        Some(self.rng.random::<f64>())
    }

    /// The token chosen from penalised `logits` with `draw` (from
    /// `Sampler::draw`): the most likely, or a sample from the candidates that top-k,
    /// min-p and top-p keep, walked in rank order until the draw's share of
    /// their mass is used up. shaders/sample.wgsl does the same on the GPU.
    pub fn choose(&self, logits: &[f32], draw: Option<f64>) -> u32 {
        let o = &self.options;
        let Some(u) = draw else { return argmax(logits) };
        let mut cand = Candidates::new(logits, o.temperature, o.top_k);
        // min-p: relative to the most likely token; top-p: cumulative mass.
        let threshold = o.min_p as f64 * cand.prob(0);
        let mut keep = if o.min_p > 0.0 { (0..cand.len()).take_while(|&i| cand.prob(i) >= threshold).count().max(1) } else { cand.len() };
        if o.top_p < 1.0 {
            let mut mass = 0.0;
            let reach = (0..cand.len()).position(|i| {
                mass += cand.prob(i);
                mass >= o.top_p as f64
            });
            keep = keep.min(reach.map_or(cand.len(), |i| i + 1));
        }
        let kept_mass = if keep == cand.len() { cand.mass_of_all() } else { (0..keep).map(|i| cand.prob(i)).sum() };
        let mut r = u * kept_mass;
        for i in 0..keep {
            let p = cand.prob(i);
            if r < p {
                return cand.id(i);
            }
            r -= p;
        }
        cand.id(keep - 1)
    }
}

/// Each distinct token of `seen` with how often it occurs, by token id.
pub fn seen_counts(seen: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted = seen.to_vec();
    sorted.sort_unstable();
    let mut counts: Vec<(u32, u32)> = Vec::new();
    for t in sorted {
        match counts.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => counts.push((t, 1)),
        }
    }
    counts
}

/// The sampling candidates (token id, logit / temperature), the top_k most
/// likely where top_k > 0, with their probabilities. They are ranked by
/// descending logit (ties: lower id first) only as far as the sampler asks
/// for them, a longer prefix each time (a sampler rarely looks past the first
/// few hundred of a vocabulary's tens of thousands), so sampling usually
/// costs a selection instead of a full sort.
struct Candidates {
    cand: Vec<(u32, f32)>,
    /// The probabilities of `cand[..probs.len()]`, the most likely
    /// candidates, ranked.
    probs: Vec<f64>,
    max: f32,
    /// Σ exp(l - max) over every candidate (in their order after the top-k selection).
    total: f64,
}

fn by_rank(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

impl Candidates {
    fn new(logits: &[f32], temperature: f32, top_k: usize) -> Self {
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / temperature)).collect();
        if top_k > 0 && top_k < cand.len() {
            cand.select_nth_unstable_by(top_k - 1, by_rank);
            cand.truncate(top_k);
        }
        let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
        let total = cand.iter().map(|&(_, l)| ((l - max) as f64).exp()).sum();
        Candidates { cand, probs: Vec::new(), max, total }
    }

    fn len(&self) -> usize {
        self.cand.len()
    }

    /// Ranks at least the first `n` candidates: four times as many as
    /// before and at least 256, or all of them once that is over half.
    fn rank(&mut self, n: usize) {
        let ranked = self.probs.len();
        if n <= ranked {
            return;
        }
        let mut n = n.max(4 * ranked).max(256);
        if n > self.cand.len() / 2 {
            n = self.cand.len();
        }
        let rest = &mut self.cand[ranked..];
        if n - ranked < rest.len() {
            rest.select_nth_unstable_by(n - ranked - 1, by_rank);
        }
        self.cand[ranked..n].sort_unstable_by(by_rank);
        let (max, total) = (self.max, self.total);
        self.probs.extend(self.cand[ranked..n].iter().map(|&(_, l)| ((l - max) as f64).exp() / total));
    }

    /// The probabilities of all candidates summed (about 1), in rank order
    /// where they are all ranked, else without ranking them.
    fn mass_of_all(&self) -> f64 {
        if self.probs.len() == self.cand.len() {
            return self.probs.iter().sum();
        }
        self.cand.iter().map(|&(_, l)| ((l - self.max) as f64).exp() / self.total).sum()
    }

    /// The id of the candidate of rank i.
    fn id(&mut self, i: usize) -> u32 {
        self.rank(i + 1);
        self.cand[i].0
    }

    /// The probability of the candidate of rank i.
    fn prob(&mut self, i: usize) -> f64 {
        self.rank(i + 1);
        self.probs[i]
    }
}

/// Index of the largest value (the lowest index on ties), as the GPU's argmax.
pub fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best }) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::selfcheck::model_like_logits;

    /// The sampler as it was first written: every candidate sorted, then
    /// cut (the reference the ranked-prefix sampler must agree with).
    fn reference_sample(o: &SamplerOptions, rng: &mut ChaCha8Rng, logits: &[f32]) -> u32 {
        if o.temperature == 0.0 || o.top_k == 1 {
            return argmax(logits);
        }
        // Candidates by descending logit (ties: lower id first).
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / o.temperature)).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if o.top_k > 0 {
            cand.truncate(o.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|&(_, l)| ((l - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        // min-p: relative to the most likely token; top-p: cumulative mass.
        let mut keep = probs.iter().take_while(|&&p| p >= o.min_p as f64 * probs[0]).count().max(1);
        if o.top_p < 1.0 {
            let mut mass = 0.0;
            let reach = probs.iter().position(|&p| {
                mass += p;
                mass >= o.top_p as f64
            });
            keep = keep.min(reach.map_or(probs.len(), |i| i + 1));
        }
        let kept_mass: f64 = probs[..keep].iter().sum();
        let mut r = rng.random::<f64>() * kept_mass;
        for (i, &p) in probs[..keep].iter().enumerate() {
            if r < p {
                return cand[i].0;
            }
            r -= p;
        }
        cand[keep - 1].0
    }

    #[test]
    fn ranking_only_a_prefix_picks_what_sorting_everything_picks() {
        let settings = [
            SamplerOptions { temperature: 1.0, ..Default::default() },
            SamplerOptions { temperature: 0.8, top_p: 0.95, ..Default::default() },
            SamplerOptions { temperature: 0.7, top_k: 40, top_p: 0.9, ..Default::default() },
            SamplerOptions { temperature: 1.3, min_p: 0.05, ..Default::default() },
            SamplerOptions { temperature: 2.0, top_k: 1000, ..Default::default() },
            SamplerOptions { temperature: 0.5, top_p: 0.5, min_p: 0.2, ..Default::default() },
        ];
        let mut draws = 0;
        for (n, case) in [(5, 0), (70, 1), (3000, 2), (49152, 3)] {
            let logits = model_like_logits(case, n);
            for o in &settings {
                for seed in 0..40 {
                    let o = SamplerOptions { seed, ..o.clone() };
                    let mut fast = Sampler::new(o.clone()).unwrap();
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    for _ in 0..3 {
                        assert_eq!(fast.sample(&logits, &[]), reference_sample(&o, &mut rng, &logits), "{o:?}, {n} logits");
                        draws += 1;
                    }
                }
            }
        }
        assert_eq!(draws, 4 * 6 * 40 * 3);
    }

    fn opts(temperature: f32) -> SamplerOptions {
        SamplerOptions { temperature, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_maximum_and_the_first_on_ties() {
        let mut s = Sampler::new(opts(0.0)).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_distribution_follows_softmax() {
        let logits = [0.0f32, (2f32).ln(), (3f32).ln()]; // probabilities 1/6, 2/6, 3/6
        let draw = |seed| {
            let mut s = Sampler::new(SamplerOptions { seed, ..opts(1.0) }).unwrap();
            (0..6000).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let counts = draw(7).iter().fold([0usize; 3], |mut c, &t| {
            c[t as usize] += 1;
            c
        });
        for (i, want) in [1000.0, 2000.0, 3000.0].iter().enumerate() {
            assert!((counts[i] as f64 - want).abs() < 150.0, "{counts:?}");
        }
    }

    #[test]
    fn top_k_top_p_min_p_cut_the_tail() {
        let logits = [3.0f32, 2.0, 1.0, 0.0, -1.0];
        let only = |o: SamplerOptions| {
            let mut s = Sampler::new(o).unwrap();
            let mut seen: Vec<u32> = (0..2000).map(|_| s.sample(&logits, &[])).collect();
            seen.sort();
            seen.dedup();
            seen
        };
        assert_eq!(only(SamplerOptions { top_k: 2, ..opts(1.0) }), vec![0, 1]);
        // p(0) = 0.636, p(0)+p(1) = 0.87: top_p 0.8 keeps two.
        assert_eq!(only(SamplerOptions { top_p: 0.8, ..opts(1.0) }), vec![0, 1]);
        // min_p 0.3: p(1)/p(0) = 0.37 stays, p(2)/p(0) = 0.135 goes.
        assert_eq!(only(SamplerOptions { min_p: 0.3, ..opts(1.0) }), vec![0, 1]);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplerOptions { repetition_penalty: 2.0, ..opts(0.0) }).unwrap();
        assert_eq!(s.sample(&[2.0, 1.5], &[0, 0]), 1); // 2.0 / 2 = 1.0 < 1.5
        assert_eq!(s.sample(&[-1.0, -1.5], &[0]), 1); // -1.0 * 2 = -2.0 < -1.5
    }

    #[test]
    fn presence_and_frequency_penalties_follow_openai() {
        let greedy = |o: SamplerOptions, logits: &[f32], seen: &[u32]| Sampler::new(o).unwrap().sample(logits, seen);
        // presence: once per seen token, however often.
        let presence = SamplerOptions { presence_penalty: 0.6, ..opts(0.0) };
        assert_eq!(greedy(presence.clone(), &[2.0, 1.5], &[0, 0, 0]), 1); // 2.0 - 0.6 = 1.4
        assert_eq!(greedy(presence, &[2.0, 1.5], &[1]), 0); // 1.5 - 0.6
        // frequency: per occurrence.
        let frequency = SamplerOptions { frequency_penalty: 0.2, ..opts(0.0) };
        assert_eq!(greedy(frequency.clone(), &[2.0, 1.5], &[0, 0]), 0); // 2.0 - 0.4 = 1.6
        assert_eq!(greedy(frequency, &[2.0, 1.5], &[0, 0, 0]), 1); // 2.0 - 0.6 = 1.4
        // Negative values promote.
        assert_eq!(greedy(SamplerOptions { presence_penalty: -1.0, ..opts(0.0) }, &[2.0, 1.5], &[1]), 1);
        assert!(!SamplerOptions { frequency_penalty: 0.1, ..opts(0.0) }.is_greedy());
    }

    #[test]
    fn invalid_settings_are_refused() {
        for o in [
            SamplerOptions { temperature: -0.1, ..opts(1.0) },
            SamplerOptions { top_p: 1.5, ..opts(1.0) },
            SamplerOptions { top_p: 0.0, ..opts(1.0) },
            SamplerOptions { min_p: -1.0, ..opts(1.0) },
            SamplerOptions { repetition_penalty: 0.0, ..opts(1.0) },
            SamplerOptions { temperature: f32::NAN, ..opts(1.0) },
            SamplerOptions { presence_penalty: 2.5, ..opts(1.0) },
            SamplerOptions { frequency_penalty: f32::NAN, ..opts(1.0) },
        ] {
            assert!(Sampler::new(o).is_err());
        }
    }
}
