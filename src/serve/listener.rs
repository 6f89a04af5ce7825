//! The API's connections: TLS when configured, a deadline for the request's headers (and the
//! TLS handshake), one request per connection, and limits so that unauthenticated callers cost
//! nothing lasting. A connection that has not sent its headers yet is *unproven*: at most
//! `unproven` of them are kept, and a new one pushes out the oldest — a flood of idle
//! connections can neither fill the server nor keep `/healthz` or an authorised call out.
//! Requests being served are bounded separately (`active`; over it, 503 at once).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to finish the TLS handshake and send the request's headers.
    pub header_timeout: Duration,
    /// Connections kept before they send their headers (the oldest goes first).
    pub unproven: usize,
    /// Requests served at once.
    pub active: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            unproven: 256,
            active: 64,
        }
    }
}

/// The unproven connections, oldest first.
#[derive(Default)]
struct Unproven {
    next: u64,
    queue: VecDeque<(u64, CancellationToken)>,
}

impl Unproven {
    /// Registers a new connection, pushing out the oldest when full.
    fn admit(&mut self, cap: usize) -> (u64, CancellationToken) {
        while self.queue.len() >= cap.max(1) {
            if let Some((_, oldest)) = self.queue.pop_front() {
                oldest.cancel();
            }
        }
        self.next += 1;
        let token = CancellationToken::new();
        self.queue.push_back((self.next, token.clone()));
        (self.next, token)
    }

    fn proven(&mut self, id: u64) {
        self.queue.retain(|(i, _)| *i != id);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight end
/// (at most `drain`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    drain: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let unproven = Arc::new(Mutex::new(Unproven::default()));
    let active = Arc::new(Semaphore::new(limits.active.max(1)));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                // Out of file descriptors and the like: wait a little, keep serving.
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    flotilla_provider_core::backoff::pause(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (id, cancel) = match unproven.lock() {
            Ok(mut u) => u.admit(limits.unproven),
            Err(_) => continue,
        };
        let conn = Connection {
            id,
            cancel,
            unproven: unproven.clone(),
            active: active.clone(),
            app: app.clone(),
            header_timeout: limits.header_timeout,
        };
        let acceptor = acceptor.clone();
        tracker.spawn(async move { conn.run(stream, acceptor).await });
    }
    tracker.close();
    let _ = tokio::time::timeout(drain, tracker.wait()).await;
}

struct Connection {
    id: u64,
    cancel: CancellationToken,
    unproven: Arc<Mutex<Unproven>>,
    active: Arc<Semaphore>,
    app: Router,
    header_timeout: Duration,
}

impl Connection {
    async fn run(self, stream: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let cancel = self.cancel.clone();
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.serve(stream, tls) => {}
        }
    }

    async fn serve(&self, stream: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        match tls {
            None => self.http(TokioIo::new(stream)).await,
            Some(acceptor) => {
                // A failed or slow handshake: nothing to answer.
                let shake = tokio::time::timeout(self.header_timeout, acceptor.accept(stream));
                if let Ok(Ok(s)) = shake.await {
                    self.http(TokioIo::new(s)).await
                }
            }
        }
    }

    async fn http<I>(&self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (id, unproven, active, app) = (
            self.id,
            self.unproven.clone(),
            self.active.clone(),
            self.app.clone(),
        );
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            // The headers are in: no longer a candidate for eviction.
            if let Ok(mut u) = unproven.lock() {
                u.proven(id);
            }
            let (active, app) = (active.clone(), app.clone());
            async move {
                use tower::ServiceExt;
                let Ok(_permit) = active.try_acquire() else {
                    return Ok::<_, std::convert::Infallible>(busy());
                };
                app.oneshot(req.map(axum::body::Body::new)).await
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .keep_alive(false)
            .serve_connection(io, svc)
            .await;
        if let Ok(mut u) = self.unproven.lock() {
            u.proven(self.id);
        }
    }
}

fn busy() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        axum::Json(serde_json::json!({"error": {"kind": "busy", "message": "too many requests at once; retry"}})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unproven_connection_goes_first() {
        let mut u = Unproven::default();
        let (a, ta) = u.admit(2);
        let (_b, tb) = u.admit(2);
        let (_c, tc) = u.admit(2);
        assert!(ta.is_cancelled() && !tb.is_cancelled() && !tc.is_cancelled());
        u.proven(a);
        assert_eq!(u.queue.len(), 2);
    }
}
