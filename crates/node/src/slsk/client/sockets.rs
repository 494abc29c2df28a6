//! The socket tasks of a Soulseek session: each socket the machine owns has a small task
//! that writes what the pump hands it and reads one chunk per permission from the pump,
//! so that when the machine hands an `F` connection over no byte of it is left behind in
//! a channel.

use omnipeer_slsk::session::ConnId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Bytes per read on server and `P` connections (every idle connection holds one buffer:
/// kept small; a big message just takes more reads).
const READ_CHUNK: usize = 16 * 1024;

/// What a socket task reports to the pump.
pub(super) enum Input {
    /// Bytes read (the task reads again only when the pump says [`ConnCmd::Read`]).
    Bytes(ConnId, Vec<u8>),
    /// The peer closed, or the socket failed.
    Closed(ConnId),
    /// A dial ended: the socket, or nothing.
    Dialed(ConnId, Option<TcpStream>),
}

/// What the pump tells a socket task.
pub(super) enum ConnCmd {
    Write(Vec<u8>),
    /// Read one more chunk.
    Read,
    /// Close after what was written.
    Close,
    /// Give the socket back (after what was written): the machine handed it over.
    Handoff(oneshot::Sender<TcpStream>),
}

/// Sleep until `at`, or forever without one.
pub(super) async fn sleep_until_some(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// One socket: writes what the pump sends (without blocking its reads), reads one chunk
/// per [`ConnCmd::Read`], and closes or hands the socket back when told, after the writes.
pub(super) async fn conn_task(
    conn: ConnId,
    stream: TcpStream,
    mut cmds: mpsc::UnboundedReceiver<ConnCmd>,
    input: mpsc::UnboundedSender<Input>,
    shutdown: CancellationToken,
) {
    enum End {
        Close,
        Handoff(oneshot::Sender<TcpStream>),
    }
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    let mut reading = true;
    let mut end: Option<End> = None;
    loop {
        if pending.is_empty() {
            match end.take() {
                Some(End::Close) => {
                    let mut s = stream;
                    let _ = s.shutdown().await;
                    return;
                }
                Some(End::Handoff(tx)) => {
                    let _ = tx.send(stream);
                    return;
                }
                None => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = stream.readable(), if reading && end.is_none() => {
                if r.is_err() {
                    let _ = input.send(Input::Closed(conn));
                    return;
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => {
                        let _ = input.send(Input::Closed(conn));
                        return;
                    }
                    Ok(n) => {
                        reading = false;
                        let _ = input.send(Input::Bytes(conn, buf[..n].to_vec()));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        let _ = input.send(Input::Closed(conn));
                        return;
                    }
                }
            }
            r = stream.writable(), if !pending.is_empty() => {
                if r.is_err() {
                    let _ = input.send(Input::Closed(conn));
                    return;
                }
                match stream.try_write(&pending) {
                    Ok(n) => { pending.drain(..n); }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        let _ = input.send(Input::Closed(conn));
                        return;
                    }
                }
            }
            c = cmds.recv() => match c {
                None => return,
                Some(ConnCmd::Write(d)) => pending.extend_from_slice(&d),
                Some(ConnCmd::Read) => reading = true,
                Some(ConnCmd::Close) => end = Some(End::Close),
                Some(ConnCmd::Handoff(tx)) => end = Some(End::Handoff(tx)),
            },
        }
    }
}
