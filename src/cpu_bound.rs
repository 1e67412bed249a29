//! Work that runs a while without awaiting (evaluating a step's expressions,
//! inflating a plan) inside an async reconcile.
//!
//! Such work holds its runtime thread: a Promotion with expressions near their
//! budget, or a plan near its step limit, would keep every other Promotion
//! that waits for that thread from moving. On a multi-threaded runtime, as
//! `barge run` uses, the thread first hands its other tasks to the rest of
//! the pool.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, letting the runtime's other tasks go on meanwhile where it
/// can (a multi-threaded runtime); elsewhere it just runs it.
pub(crate) fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_bound;

    // One worker: the other task can only run if this one hands it over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn on_a_multi_threaded_runtime_other_tasks_run_while_the_work_runs() {
        // On the worker (a test's own body runs beside the pool, not in it).
        let on_worker = tokio::spawn(async {
            let (started, mut released) = tokio::sync::oneshot::channel::<()>();
            // A task that can only finish while the work below still runs.
            let other = tokio::spawn(async move {
                let _ = started.send(());
            });
            let seen = cpu_bound(|| {
                // Spins until the other task has run: only possible if this
                // worker's queue went to another thread. Gives up rather
                // than hang when it did not.
                let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while std::time::Instant::now() < give_up {
                    match released.try_recv() {
                        Ok(()) => return true,
                        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return false,
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                            std::thread::yield_now()
                        }
                    }
                }
                false
            });
            (seen, other.await.is_ok())
        });
        assert_eq!(on_worker.await.ok(), Some((true, true)));
    }

    #[tokio::test]
    async fn on_a_current_thread_runtime_the_work_just_runs() {
        assert_eq!(cpu_bound(|| 7), 7);
    }
}
