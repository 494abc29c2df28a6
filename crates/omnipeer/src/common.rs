//! Helpers more than one command family uses: signals, JSON lines, folders, progress bars
//! and an event printer.

use anyhow::Context;
use omnipeer_node::progress::Progress;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        // Cancel before logging: with stderr gone (a parent that died holding the pipe) a
        // log line can fail, and the node must still stop.
        t.cancel();
        tracing::info!("shutting down");
    });
    token
}

/// One result as a JSON object on its own line of stdout (`--json`).
pub fn print_json(v: serde_json::Value) {
    println!("{v}");
}

/// Creates a folder (and its parents) to write into.
pub fn ensure_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))
}

/// Runs a download to its end, drawing `bar` every 200 ms from `read()`: (bytes so far,
/// total). The bar starts once the total is known (non-zero).
pub async fn with_progress<T>(fut: impl Future<Output = T>, bar: &mut Progress, read: impl Fn() -> (u64, u64)) -> T {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut started = false;
    loop {
        tokio::select! {
            r = &mut fut => break r,
            _ = tick.tick() => {
                let (p, t) = read();
                if t > 0 && !started {
                    started = true;
                    bar.start(p, t);
                }
                if started { bar.set(p); }
            }
        }
    }
}

/// Events from a server (a `broadcast` receiver) or a client (an `mpsc` receiver).
pub trait Events: Send + 'static {
    type Event;
    /// The next event; `None` once the sender is gone.
    fn next(&mut self) -> impl Future<Output = Option<Self::Event>> + Send;
}

impl<E: Clone + Send + 'static> Events for broadcast::Receiver<E> {
    type Event = E;
    /// A printer that fell behind a burst says how many lines it missed and goes on
    /// (it used to stop for good, silently ending the server's output).
    async fn next(&mut self) -> Option<E> {
        loop {
            match self.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("{n} events were not printed (the terminal fell behind)")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl<E: Send + 'static> Events for mpsc::Receiver<E> {
    type Event = E;
    async fn next(&mut self) -> Option<E> {
        self.recv().await
    }
}

/// Prints what a server or client does (`print` on each event) until its events end.
pub fn spawn_printer<R: Events>(mut events: R, print: impl Fn(R::Event) + Send + 'static) {
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            print(ev);
        }
    });
}
