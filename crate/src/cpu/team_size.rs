//! How many threads a browser forward's team has (`team::Team::lead`).
//!
//! The pool has as many threads as the page asked for, by default
//! `navigator.hardwareConcurrency`, which can be more than the cores the
//! engine really gets: logical cores sharing a physical one, a browser that
//! reports more cores than it has (WebKitGTK said 4 on a 2-core machine,
//! where a team of 4 spinning threads decoded 34 tok/s and a team of 2 did
//! 72), a machine busy with other work. A spinning helper without a core of
//! its own only takes time from the ones that have one. So after a warm-up,
//! decode steps are timed with the pool's size and with halves of it, in
//! turns, and the fastest is kept; the trial is repeated now and then.

/// Single-token steps run with the whole pool before the first trial: the
/// browser is still compiling the engine's hot code then, on threads of its
/// own, which makes every team look slower the more threads it has.
const WARM_UP_STEPS: usize = 16;

/// Turns of every candidate timed before choosing.
const ROUNDS: usize = 4;

/// Steps after which the choice is tried again (the machine's load changes).
const STEPS_BETWEEN_TRIALS: usize = 1024;

/// Steps after which a smaller team than the pool is tried again, doubled
/// by each trial in a row that keeps it, up to `STEPS_BETWEEN_TRIALS`. A
/// trial early in an engine's life can catch the browser still optimising
/// the hot code on a core of its own: a benchmark run kept 1 of 2 threads
/// and decoded 77 tok/s instead of 93-115, and prefilled 512 tokens at 157
/// tok/s instead of 251-275, until its 1024 steps were up.
const FIRST_RECHECK_STEPS: usize = 64;

/// A smaller team is kept only when it was at least this much faster (its
/// median step at most this fraction of the larger team's): with equal
/// figures, the threads the page asked for win.
const SMALLER_TEAM_MARGIN: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Steps left before the first trial.
    WarmUp(usize),
    /// Steps timed so far in this trial.
    Trial(usize),
    /// Steps run with the team chosen since its trial.
    Settled(usize),
}

#[derive(Debug, Clone)]
pub struct TeamSize {
    /// Team sizes to try, the pool's first, then halves of it down to 1.
    candidates: Vec<usize>,
    /// Single-token step times per candidate in the current trial, in seconds.
    seconds: Vec<Vec<f64>>,
    phase: Phase,
    /// The last trial's choice.
    chosen: Option<usize>,
    /// Steps the last choice stands before the next trial.
    settle_for: usize,
}

impl TeamSize {
    /// Sizes for a pool of `pool` threads.
    pub fn new(pool: usize) -> Self {
        let mut candidates = vec![pool.max(1)];
        while let Some(&last) = candidates.last().filter(|&&n| n > 1) {
            candidates.push(last / 2);
        }
        let (phase, chosen) = if candidates.len() == 1 { (Phase::Settled(0), Some(candidates[0])) } else { (Phase::WarmUp(WARM_UP_STEPS), None) };
        TeamSize { seconds: vec![Vec::new(); candidates.len()], candidates, phase, chosen, settle_for: STEPS_BETWEEN_TRIALS }
    }

    /// The team for the next single-token step: during a trial, the
    /// candidate whose turn it is (the order reverses every round, so a
    /// trend, such as the browser optimizing the code, favours none).
    pub fn for_step(&self) -> usize {
        match self.phase {
            Phase::WarmUp(_) => self.candidates[0],
            Phase::Trial(turns) => {
                let n = self.candidates.len();
                let (round, k) = (turns / n, turns % n);
                self.candidates[if round.is_multiple_of(2) { k } else { n - 1 - k }]
            }
            Phase::Settled(_) => self.for_batch(),
        }
    }

    /// The team for a forward of several tokens (not timed: their lengths
    /// vary): the last choice, else the whole pool.
    pub fn for_batch(&self) -> usize {
        self.chosen.unwrap_or(self.candidates[0])
    }

    /// The team chosen, once the first trial is over.
    #[cfg(test)]
    pub fn chosen(&self) -> Option<usize> {
        self.chosen
    }

    /// Records a single-token step that took `seconds` with a team of
    /// `threads` (as `for_step` said).
    pub fn record(&mut self, threads: usize, seconds: f64) {
        self.phase = match self.phase {
            Phase::WarmUp(left) if left > 1 => Phase::WarmUp(left - 1),
            Phase::WarmUp(_) => Phase::Trial(0),
            Phase::Trial(turns) => {
                let Some(i) = self.candidates.iter().position(|&n| n == threads) else { return };
                self.seconds[i].push(seconds);
                if turns + 1 < ROUNDS * self.candidates.len() {
                    Phase::Trial(turns + 1)
                } else {
                    let chosen = self.fastest();
                    self.settle_for = if chosen == self.candidates[0] {
                        STEPS_BETWEEN_TRIALS
                    } else if self.chosen == Some(chosen) {
                        (self.settle_for * 2).min(STEPS_BETWEEN_TRIALS)
                    } else {
                        FIRST_RECHECK_STEPS
                    };
                    self.chosen = Some(chosen);
                    Phase::Settled(0)
                }
            }
            Phase::Settled(steps) if steps + 1 < self.settle_for || self.candidates.len() == 1 => Phase::Settled(steps + 1),
            Phase::Settled(_) => Phase::Trial(0),
        };
    }

    /// The candidate with the fastest median step (a smaller team only by
    /// the margin), from the trial's times, which it clears.
    fn fastest(&mut self) -> usize {
        let medians: Vec<f64> = self.seconds.iter_mut().map(|s| median(s)).collect();
        for s in &mut self.seconds {
            s.clear();
        }
        let mut best = 0;
        for i in 1..medians.len() {
            if medians[i] <= medians[best] * SMALLER_TEAM_MARGIN {
                best = i;
            }
        }
        self.candidates[best]
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the trial with step times given by `seconds(threads)`; returns the teams tried, in order, and the choice.
    fn trial(pool: usize, seconds: impl Fn(usize) -> f64) -> (Vec<usize>, usize) {
        let mut size = TeamSize::new(pool);
        let mut tried = Vec::new();
        while size.chosen().is_none() {
            let threads = size.for_step();
            assert_eq!(size.for_batch(), pool, "prefill keeps the pool's size during the trial");
            tried.push(threads);
            size.record(threads, seconds(threads));
        }
        assert_eq!(size.for_step(), size.chosen().unwrap());
        assert_eq!(size.for_batch(), size.chosen().unwrap());
        (tried, size.chosen().unwrap())
    }

    #[test]
    fn candidates_are_the_pool_and_its_halves_in_alternating_turns() {
        let (tried, _) = trial(4, |_| 1.0);
        assert_eq!(tried[..WARM_UP_STEPS], [4; WARM_UP_STEPS], "the warm-up runs on the whole pool");
        assert_eq!(tried[WARM_UP_STEPS..], [4, 2, 1, 1, 2, 4, 4, 2, 1, 1, 2, 4]);
        let (tried, _) = trial(3, |_| 1.0);
        assert_eq!(tried[WARM_UP_STEPS..], [3, 1, 1, 3, 3, 1, 1, 3]);
    }

    #[test]
    fn a_single_thread_needs_no_trial() {
        let size = TeamSize::new(1);
        assert_eq!((size.chosen(), size.for_step(), size.for_batch()), (Some(1), 1, 1));
    }

    #[test]
    fn the_fastest_team_is_kept() {
        // Two real cores reported as four: four spinning threads are slowest.
        assert_eq!(trial(4, |n| match n { 4 => 0.029, 2 => 0.014, _ => 0.020 }).1, 2);
        // Cores enough: the whole pool.
        assert_eq!(trial(8, |n| 0.08 / n as f64).1, 8);
    }

    #[test]
    fn a_smaller_team_must_be_clearly_faster() {
        assert_eq!(trial(2, |n| if n == 2 { 0.0100 } else { 0.0098 }).1, 2);
        assert_eq!(trial(2, |n| if n == 2 { 0.0100 } else { 0.0090 }).1, 1);
    }

    /// One slow step (a garbage collection, another tab) does not decide.
    #[test]
    fn an_outlier_step_does_not_decide() {
        let mut size = TeamSize::new(2);
        let mut steps = 0;
        while size.chosen().is_none() {
            let threads = size.for_step();
            let outlier = threads == 2 && steps == WARM_UP_STEPS;
            size.record(threads, if outlier { 1.0 } else if threads == 2 { 0.010 } else { 0.018 });
            steps += 1;
        }
        assert_eq!(size.chosen(), Some(2));
    }

    /// A smaller team chosen while the pool was slowed for a while (the
    /// browser optimising code on a core) gives way to the pool soon after;
    /// one that keeps winning is tried again less and less often.
    #[test]
    fn a_smaller_team_is_tried_again_soon() {
        let mut size = TeamSize::new(2);
        let mut choices = Vec::new();
        let mut back_at = None;
        for step in 0..4 * STEPS_BETWEEN_TRIALS {
            let slowed = step < WARM_UP_STEPS + 2 * ROUNDS; // the first trial's steps
            let threads = size.for_step();
            size.record(threads, if slowed == (threads == 2) { 0.020 } else { 0.010 });
            if choices.last() != size.chosen().as_ref() {
                choices.push(size.chosen().unwrap());
                if choices.len() == 2 {
                    back_at = Some(step);
                }
            }
        }
        assert_eq!(choices, [1, 2]);
        assert!(back_at.unwrap() <= WARM_UP_STEPS + 2 * ROUNDS + FIRST_RECHECK_STEPS + 2 * ROUNDS, "back to the pool at step {back_at:?}");

        // Always slower with the pool: trials after 64, 128, 256... steps.
        let mut size = TeamSize::new(2);
        let mut trials = Vec::new();
        for step in 0..4 * STEPS_BETWEEN_TRIALS {
            let threads = size.for_step();
            if matches!(size.phase, Phase::Trial(0)) {
                trials.push(step);
            }
            size.record(threads, if threads == 2 { 0.020 } else { 0.010 });
        }
        let gaps: Vec<usize> = trials.windows(2).map(|w| w[1] - w[0] - 2 * ROUNDS).collect();
        assert_eq!(gaps[..5], [FIRST_RECHECK_STEPS, 128, 256, 512, STEPS_BETWEEN_TRIALS]);
        assert_eq!(size.chosen(), Some(1));
    }

    /// The choice is tried again now and then, and follows a change in the
    /// machine's load; prefill keeps the last choice meanwhile.
    #[test]
    fn the_trial_is_repeated() {
        let mut size = TeamSize::new(2);
        let mut busy = false; // another program takes a core
        let mut choices = Vec::new();
        for step in 0..3 * STEPS_BETWEEN_TRIALS {
            if step == STEPS_BETWEEN_TRIALS + 100 {
                busy = true;
            }
            let threads = size.for_step();
            size.record(threads, if busy == (threads == 2) { 0.020 } else { 0.010 });
            if choices.last() != size.chosen().as_ref() {
                choices.push(size.chosen().unwrap());
            }
            if let Some(chosen) = size.chosen() {
                assert_eq!(size.for_batch(), chosen);
            }
        }
        assert_eq!(choices, [2, 1]);
    }
}
