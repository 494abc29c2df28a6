//! The API's accept loop: HTTP/1.1 (hyper) with a deadline for each request head and a
//! cap on open connections, so idle sockets cannot pile up until the node runs out of file
//! descriptors (docs/api.md "Connections").

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default of `[api].header_timeout_secs`: how long a connection has to send a complete
/// request head, from its opening or, kept alive, from the end of the previous answer.
/// A client that sends nothing (or half a head) is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of `[api].max_connections`: connections open at once, WebSockets included.
/// One more is answered 503 and closed at once; those already open go on.
pub const MAX_CONNECTIONS: usize = 512;

/// How long the accept loop rests after an error such as "too many open files" before
/// trying again (instead of spinning on it).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How often at most the log says connections are being refused (a flood would
/// otherwise fill it).
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

/// What a connection beyond the cap gets before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\
Connection: close\r\n\r\n{\"error\":\"too many connections to the node's API\"}";

/// The limits of one API listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

/// A connection's place under the cap. Each request carries it (as an extension) so that
/// a WebSocket keeps it after hyper hands the socket over (`events` in `api`).
#[derive(Clone)]
pub struct ConnSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// Serve `app` on `listener` until `shutdown`; then stop accepting, let requests in flight
/// finish, and return.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = TaskTracker::new();
    let mut refused = 0u64;
    let mut refused_logged: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused) {
                        tracing::warn!("api: cannot accept a connection: {e}");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(stream);
            refused += 1;
            if refused_logged.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
                tracing::warn!(
                    "api: {} connections are open ([api].max_connections); refused {refused} more so far",
                    limits.max_connections
                );
                refused_logged = Some(Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        conns.spawn(connection(stream, app.clone(), ConnSlot(Arc::new(slot)), limits.header_timeout, shutdown.clone()));
    }
    conns.close();
    conns.wait().await;
    Ok(())
}

/// Answer 503 and close, without waiting: the write goes into the empty socket buffer or
/// not at all.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(FULL);
}

async fn connection(
    stream: TcpStream,
    app: Router,
    slot: ConnSlot,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let inner = TowerToHyperService::new(app);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(slot.clone());
        hyper::service::Service::call(&inner, req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = r {
        tracing::debug!("api connection: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_has_these_limits() {
        let c = crate::config::Config::default_config();
        assert_eq!(c.api.header_timeout_secs, HEADER_TIMEOUT.as_secs());
        assert_eq!(c.api.max_connections, MAX_CONNECTIONS);
        assert!(c.api.hosts.is_empty());
    }

    #[test]
    fn the_full_answer_is_well_formed() {
        let text = std::str::from_utf8(FULL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert!(serde_json::from_str::<serde_json::Value>(body).unwrap()["error"].is_string());
    }
}
