//! A job run on one of rayon's pool threads while the calling thread goes
//! on, its result taken later. The browser's model loader reads the
//! tokenizer this way while the shards go in: on a new page that read is
//! 200-400 ms of wasm the browser has not optimised yet, the three shards of
//! the default model about 150 ms, and both used to run one after the other
//! on the loading thread, ahead of the first token.
//!
//! Without a pool of two threads or more (the single-threaded wasm build,
//! `RAYON_NUM_THREADS=1`) the job runs at once, in `start`.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};

/// A job's result, once it is there.
pub struct Background<T> {
    slot: Arc<Slot<T>>,
}

/// Why a job has no result to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The job panicked (an engine bug; the panic's message went to the log).
    Panicked,
    /// `take_if` took the result already.
    Taken,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

enum State<T> {
    Running,
    Done(T),
    Lost(Lost),
}

thread_local! {
    /// What the panic hook does if this thread panics while it runs a job:
    /// mark the job's slot lost, so that its taker does not wait for good.
    /// (In wasm a panic aborts the thread without unwinding: no destructor
    /// would run.)
    static ON_PANIC: Cell<Option<Box<dyn FnOnce()>>> = const { Cell::new(None) };
}

impl<T: Send + 'static> Background<T> {
    /// Starts `job` on a pool thread (or runs it now, without a pool).
    pub fn start(job: impl FnOnce() -> T + Send + 'static) -> Self {
        let slot = Slot::running();
        if rayon::current_num_threads() < 2 {
            slot.settle(State::Done(job()));
            return Background { slot };
        }
        install_panic_hook();
        let running = Arc::clone(&slot);
        rayon::spawn(move || {
            let on_panic = Arc::clone(&running);
            ON_PANIC.set(Some(Box::new(move || on_panic.settle(State::Lost(Lost::Panicked)))));
            let value = job();
            ON_PANIC.set(None);
            running.settle(State::Done(value));
        });
        Background { slot }
    }

    /// The result, once the job has ended (this thread blocks meanwhile).
    pub fn take(self) -> Result<T, Lost> {
        let mut state = self.slot.lock();
        while matches!(*state, State::Running) {
            state = self.slot.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        match std::mem::replace(&mut *state, State::Lost(Lost::Taken)) {
            State::Done(value) => Ok(value),
            State::Lost(lost) => Err(lost),
            State::Running => unreachable!("waited above"),
        }
    }

    /// The result, without waiting, if the job has ended and `wanted` says
    /// yes to it (a later `take` then gives `Lost::Taken`).
    pub fn take_if(&self, wanted: impl FnOnce(&T) -> bool) -> Option<T> {
        let mut state = self.slot.lock();
        match &*state {
            State::Done(value) if wanted(value) => match std::mem::replace(&mut *state, State::Lost(Lost::Taken)) {
                State::Done(value) => Some(value),
                _ => unreachable!("matched above"),
            },
            _ => None,
        }
    }
}

impl<T> Slot<T> {
    fn running() -> Arc<Self> {
        Arc::new(Slot { state: Mutex::new(State::Running), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Poisoned only by a panic while held, and none can happen there.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The job's outcome: the first one set stays.
    fn settle(&self, outcome: State<T>) {
        let mut state = self.lock();
        if matches!(*state, State::Running) {
            *state = outcome;
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// Chains a hook that runs the panicking thread's `ON_PANIC` after the
/// hook that was there (which logs the panic).
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if let Some(mark_lost) = ON_PANIC.try_with(Cell::take).ok().flatten() {
                mark_lost();
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn in_pool_of<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    }

    #[test]
    fn the_job_runs_beside_the_caller_and_take_waits_for_it() {
        in_pool_of(2, || {
            let release = Arc::new(AtomicBool::new(false));
            let job_release = Arc::clone(&release);
            let caller = std::thread::current().id();
            // Waits for the caller's word, for 10 s at most: run in `start`,
            // it would be done before `start` returned, and the test fail.
            let job = Background::start(move || {
                for _ in 0..10_000 {
                    if job_release.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::current().id()
            });
            assert!(job.take_if(|_| true).is_none(), "still running: the caller went on");
            release.store(true, Ordering::Release);
            assert_ne!(job.take(), Ok(caller), "the job ran on another thread");
        });
    }

    #[test]
    fn without_a_pool_the_job_runs_in_start() {
        in_pool_of(1, || {
            let caller = std::thread::current().id();
            let job = Background::start(move || std::thread::current().id());
            assert_eq!(job.take_if(|_| true), Some(caller));
        });
    }

    #[test]
    fn take_if_takes_only_what_is_wanted() {
        in_pool_of(2, || {
            let job = Background::start(|| Err::<u32, String>("bad".into()));
            while matches!(*job.slot.lock(), State::Running) {
                std::thread::yield_now();
            }
            assert!(job.take_if(Result::is_ok).is_none());
            assert_eq!(job.take_if(Result::is_err), Some(Err("bad".into())));
            assert_eq!(job.take(), Err(Lost::Taken));
        });
    }

    #[test]
    fn a_job_that_panics_is_reported_lost_instead_of_waited_for() {
        // The hook's part, on a thread of its own: rayon aborts the process
        // on a panic in a spawned job, so a real job's panic cannot be
        // raised here; in wasm, where a panic aborts at once, the hook is
        // all that runs.
        let slot = Slot::<u32>::running();
        let job = Background { slot: Arc::clone(&slot) };
        let waiter = std::thread::spawn(move || job.take());
        install_panic_hook();
        let panicked = std::thread::spawn(move || {
            ON_PANIC.set(Some(Box::new(move || slot.settle(State::Lost(Lost::Panicked)))));
            std::panic::catch_unwind(|| panic!("a bug in the job (this panic is expected)")).is_err()
        });
        assert!(panicked.join().unwrap());
        assert_eq!(waiter.join().unwrap(), Err(Lost::Panicked));
    }
}
