//! A small runtime of the backend's own, so the async database clients can serve the engine's
//! synchronous state calls from any thread (a tokio worker included) without nesting runtimes.

use std::future::Future;

pub struct Rt {
    rt: Option<tokio::runtime::Runtime>,
}

impl Rt {
    pub fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flotilla-backend")
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    /// Runs `fut` on the backend runtime and waits for it (a plain blocking wait, not a nested
    /// `block_on`). None if the runtime is gone.
    pub fn run<F, T>(&self, fut: F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self.rt.as_ref()?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context panics; this never blocks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
