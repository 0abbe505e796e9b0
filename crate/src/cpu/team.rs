//! A forward pass's worker team, in the browser: for the whole forward the
//! pool's other threads spin between its parallel loops instead of going to
//! sleep after each one, as llama.cpp's thread pool does.
//!
//! A decode step is about 150 parallel loops of 10-50 µs each, with a little
//! serial work between them. rayon's idle workers go to sleep after 32 calls
//! to `yield_now`, which in wasm return at once, and waking a Web Worker
//! through shared memory costs about a loop's length: in Chromium the O and
//! down projections took 2.60 ms a token on one thread and 2.45 ms on two.
//! With the team they take 2.0 ms on two, and decode on two threads went from
//! a median of 96 to 109 tok/s (runs of the two builds alternating in one
//! browser session). Natively rayon's idle workers yield to the
//! kernel for a while before sleeping, and a spinning helper slowed decode
//! by 5-10 % there (`hearth bench --backend cpu`, alternating builds), so
//! native forwards do not lead a team and `for_each` uses rayon.
//!
//! The tasks of a loop are claimed one at a time from a shared counter by
//! the leading thread (the one running the forward) and whichever helpers
//! are spinning, so a helper that never gets a core only means less help:
//! the leader does whatever is left, and waits only for tasks a helper has
//! claimed.

use rayon::prelude::*;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One parallel loop: `task(i)` for every i below `tasks`.
struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
}

/// The most tasks a loop may have here (`claim` keeps counts in 16 bits);
/// longer loops go to rayon.
const MAX_TASKS: usize = 0xffff;

/// Spins a helper makes without finding work before it yields its core
/// (natively; in the browser yielding does nothing), so that more helpers
/// than free cores do not starve the leader.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

pub struct Team {
    /// The posted loop's generation (bits 32..64), its task count (16..32)
    /// and the next task to claim (0..16). A task is claimed by raising the
    /// last while the first two are unchanged.
    claim: AtomicU64,
    /// The posted loop, valid while any of its tasks is unfinished.
    job: AtomicPtr<Job<'static>>,
    /// Tasks of the posted loop finished.
    done: AtomicUsize,
    quit: AtomicBool,
}

thread_local! {
    /// The team this thread leads, while it runs a forward (`Team::lead`).
    static LEADING: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

fn pack(generation: u32, tasks: usize, next: usize) -> u64 {
    (generation as u64) << 32 | (tasks as u64) << 16 | next as u64
}

fn unpack(claim: u64) -> (u32, usize, usize) {
    ((claim >> 32) as u32, (claim >> 16) as usize & MAX_TASKS, claim as usize & MAX_TASKS)
}

impl Team {
    /// Runs `f` on one of rayon's pool threads with `size - 1` of the
    /// pool's other threads as its team (`team_size` picks the size):
    /// `for_each` called from `f` runs on all of them.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // native forwards use rayon (see above); the tests lead
    pub fn lead<R: Send>(size: usize, f: impl FnOnce() -> R + Send) -> R {
        let team = Team { claim: AtomicU64::new(0), job: AtomicPtr::new(std::ptr::null_mut()), done: AtomicUsize::new(0), quit: AtomicBool::new(false) };
        let helpers = size.min(rayon::current_num_threads()).saturating_sub(1);
        rayon::scope(|s| {
            for _ in 0..helpers {
                s.spawn(|_| team.help());
            }
            // Let the helpers go however `f` ends.
            struct Leading<'a>(&'a Team, *const Team);
            impl Drop for Leading<'_> {
                fn drop(&mut self) {
                    LEADING.set(self.1);
                    self.0.quit.store(true, Ordering::Release);
                }
            }
            let _leading = Leading(&team, LEADING.replace(&team));
            f()
        })
    }

    /// A helper's life: claim and run tasks until the leader is done.
    fn help(&self) {
        let mut idle = 0u32;
        while !self.quit.load(Ordering::Acquire) {
            let claim = self.claim.load(Ordering::Acquire);
            if self.try_run(claim) {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle.is_multiple_of(SPINS_BEFORE_YIELD) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Claims the next task after `claim` (the value just read) and runs
    /// it; false if none is left or another thread claimed it first.
    fn try_run(&self, claim: u64) -> bool {
        let (_, tasks, next) = unpack(claim);
        if next >= tasks || self.claim.compare_exchange_weak(claim, claim + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        // Counted as done even if the task panics, so the leader never waits forever.
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Release);
            }
        }
        let _done = Done(&self.done);
        // SAFETY: the job of a claimed task stays alive until the task is
        // done: the leader waits for it (see `run`).
        let job = unsafe { &*self.job.load(Ordering::Acquire) };
        (job.task)(next);
        true
    }

    /// Runs `task(i)` for i in 0..tasks on this team (from its leader).
    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let job = Job { task };
        let generation = unpack(self.claim.load(Ordering::Relaxed)).0.wrapping_add(1);
        self.done.store(0, Ordering::Relaxed);
        // SAFETY of the lifetime: `job` is only read by threads that
        // claimed one of its tasks, and `Close` waits for those to finish
        // before this frame ends, also when a task panics.
        self.job.store(&job as *const Job<'_> as *mut Job<'static>, Ordering::Release);
        self.claim.store(pack(generation, tasks, 0), Ordering::Release);
        struct Close<'a>(&'a Team, u32, usize);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                // No task is claimed after this; wait for those that were.
                let claimed = unpack(self.0.claim.swap(pack(self.1, self.2, self.2), Ordering::AcqRel)).2;
                while self.0.done.load(Ordering::Acquire) < claimed {
                    std::hint::spin_loop();
                }
            }
        }
        let _close = Close(self, generation, tasks);
        while self.try_run(self.claim.load(Ordering::Acquire)) || unpack(self.claim.load(Ordering::Acquire)).2 < tasks {}
    }
}

/// Runs `task(item)` for every item in parallel: on the team of the forward
/// this thread leads, if any (`Team::lead`), else on rayon's pool.
pub fn for_each<T: Send>(items: Vec<T>, task: impl Fn(T) + Sync) {
    let team = LEADING.get();
    if team.is_null() || items.len() > MAX_TASKS {
        items.into_par_iter().for_each(&task);
        return;
    }
    // Each item is taken once, by whichever thread claims its index.
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let run = |i: usize| {
        if let Some(item) = items[i].lock().unwrap_or_else(|e| e.into_inner()).take() {
            task(item);
        }
    };
    // SAFETY: a thread leads a team only inside `Team::lead`, which
    // outlives every call made from it.
    unsafe { &*team }.run(items.len(), &run);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task runs exactly once, loop after loop, with or without a team.
    #[test]
    fn every_task_runs_once() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let runs: Vec<AtomicUsize> = (0..5000).map(|_| AtomicUsize::new(0)).collect();
        pool.install(|| {
            Team::lead(3, || {
                for n in [0, 1, 7, 64, 5000] {
                    for_each((0..n).collect(), |i: usize| {
                        runs[i].fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
            for_each((0..3).collect(), |i: usize| {
                runs[i].fetch_add(1, Ordering::Relaxed);
            });
        });
        let want = |i: usize| [1, 7, 64, 5000].iter().filter(|&&n| i < n).count() + usize::from(i < 3);
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.load(Ordering::Relaxed), want(i), "task {i}");
        }
    }

    /// The helpers do take tasks: loops of 20 µs tasks, until one has run
    /// on another thread (at most 5 s: a spinning helper gets a core long before).
    #[test]
    fn helpers_take_part() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let helped = AtomicUsize::new(0);
        let start = std::time::Instant::now();
        pool.install(|| {
            Team::lead(2, || {
                let leader = std::thread::current().id();
                while helped.load(Ordering::Relaxed) == 0 && start.elapsed().as_secs() < 5 {
                    for_each(vec![(); 8], |_| {
                        let t = std::time::Instant::now();
                        while t.elapsed().as_micros() < 20 {}
                        if std::thread::current().id() != leader {
                            helped.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        });
        assert!(helped.load(Ordering::Relaxed) > 0, "no helper ran a task in 5 s");
    }

    /// A team smaller than the pool leaves the other threads out: a team
    /// of one runs every task on its leader.
    #[test]
    fn a_team_of_one_is_its_leader() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let elsewhere = AtomicUsize::new(0);
        pool.install(|| {
            Team::lead(1, || {
                let leader = std::thread::current().id();
                for _ in 0..200 {
                    for_each((0..16).collect(), |_: usize| {
                        if std::thread::current().id() != leader {
                            elsewhere.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        });
        assert_eq!(elsewhere.load(Ordering::Relaxed), 0);
    }

    /// A panicking task reaches the caller, after every claimed task is done.
    #[test]
    fn a_panic_in_a_task_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| Team::lead(2, || for_each((0..100).collect(), |i: usize| assert!(i != 50, "task 50 fails"))))
        }));
        assert!(result.is_err());
    }
}
