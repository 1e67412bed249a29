//! A task that runs until it is told to stop: the controller a test, the
//! bench or the sandbox runs next to the control plane.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Completes once the [`StoppableTask`] it was given to is told to stop (or
/// dropped): the shutdown future of a long-running task.
pub struct StopSignal(oneshot::Receiver<()>);

impl Future for StopSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A spawned task given a [`StopSignal`].
pub struct StoppableTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl StoppableTask {
    /// Spawns `run(signal)`, which should end once `signal` completes.
    pub fn spawn<F>(run: impl FnOnce(StopSignal) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            stop,
            task: tokio::spawn(run(StopSignal(stopped))),
        }
    }

    /// Signals the task to stop and waits until it has ended.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Ends the task at once, as if its process were killed, and waits
    /// until it has.
    pub async fn kill(self) {
        let _ = self.stop.send(());
        self.task.abort();
        let _ = self.task.await;
    }
}
