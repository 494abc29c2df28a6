//! Byte ranges and Tiger trees from one NMDC source, for segmented downloads
//! (`crate::segments`): `$ADCGET tthl TTH/… 0 -1` for the tree, then
//! `$ADCGET file TTH/… start length` for each segment, on one client-to-client connection
//! kept open between requests (docs/protocols/nmdc.md, "Segmented downloads"). A
//! connection is dropped when a request is cancelled mid-data (the stream cannot be
//! resynchronised) or fails; the next request opens a new one.

use super::client::DcClient;
use anyhow::anyhow;
use omnipeer_nmdc::command::AdcKind;
use omnipeer_nmdc::handshake::Peer;
use omnipeer_nmdc::limits::MAX_TTHL;
use omnipeer_nmdc::transfer::{DownloadEvent, Downloader, Identifier, Output};
use omnipeer_nmdc::tth::{self, Hash, Tth};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long a source may take to answer a request, or stall mid-range.
pub const RANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per read of range data.
const READ_CHUNK: usize = 256 * 1024;

/// Why a range did not arrive.
#[derive(Debug)]
pub enum RangeError {
    /// No free slot (`$MaxedOut`, with our place in its queue if it said).
    Full(Option<u32>),
    /// Anything else (no connection, an error answer, a closed or stalled connection).
    Failed(anyhow::Error),
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeError::Full(Some(p)) => write!(f, "no free upload slot ($MaxedOut), queued at place {p}"),
            RangeError::Full(None) => write!(f, "no free upload slot ($MaxedOut)"),
            RangeError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for RangeError {
    fn from(e: anyhow::Error) -> Self {
        RangeError::Failed(e)
    }
}

impl From<std::io::Error> for RangeError {
    fn from(e: std::io::Error) -> Self {
        RangeError::Failed(e.into())
    }
}

struct Conn {
    stream: super::cc::DcStream,
    peer: Peer,
    down: Downloader,
}

/// One NMDC user as a source of ranges.
pub struct RangedSource {
    dc: Arc<DcClient>,
    nick: String,
    conn: Option<Conn>,
}

impl RangedSource {
    /// `nick` on `dc`'s hub.
    pub fn new(dc: Arc<DcClient>, nick: &str) -> RangedSource {
        RangedSource { dc, nick: nick.to_owned(), conn: None }
    }

    /// Drop the kept connection (a request was abandoned mid-data).
    pub fn forget_connection(&mut self) {
        self.conn = None;
    }

    async fn take_conn(&mut self) -> Result<Conn, RangeError> {
        if let Some(c) = self.conn.take() {
            return Ok(c);
        }
        let (stream, peer, leftover) = self.dc.connect_to_download(&self.nick).await?;
        if !peer.supports("ADCGet") {
            return Err(anyhow!("{} does not serve ranges ($ADCGET)", self.nick).into());
        }
        Ok(Conn { stream, peer, down: Downloader::new(&leftover) })
    }

    /// Ask for `length` bytes of `what` from `start`; returns the data's leftover bytes and
    /// how many follow on the stream.
    async fn request(
        c: &mut Conn,
        kind: AdcKind,
        what: &Identifier,
        start: u64,
        length: Option<u64>,
    ) -> Result<(Vec<u8>, u64), RangeError> {
        c.down.request_adc(Instant::now(), kind, what, start, length).map_err(|e| anyhow!("{e}"))?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut deadline = None;
            while let Some(o) = c.down.poll_output() {
                match o {
                    Output::Transmit(b) => c.stream.write_all(&b).await?,
                    Output::Timeout(t) => {
                        deadline = Some(t);
                        break;
                    }
                    Output::Event(DownloadEvent::Length(_)) => {}
                    Output::Event(DownloadEvent::MaxedOut(place)) => return Err(RangeError::Full(place)),
                    Output::Event(DownloadEvent::Error(e)) => {
                        return Err(anyhow!("{} answered: {e}", c.peer.nick).into())
                    }
                    Output::Event(DownloadEvent::Closed(r)) => {
                        return Err(anyhow!("{} closed the connection: {r:?}", c.peer.nick).into())
                    }
                    Output::Event(DownloadEvent::Incoming { start: got, length: n, leftover, .. }) => {
                        return offered(&c.peer.nick, (start, length), (got, n), leftover);
                    }
                }
            }
            let deadline = deadline.unwrap_or_else(|| Instant::now() + RANGE_TIMEOUT);
            tokio::select! {
                r = c.stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => c.down.handle_eof(),
                    Ok(n) => c.down.handle_input(Instant::now(), &buf[..n]),
                },
                _ = tokio::time::sleep_until(deadline.into()) => c.down.handle_timeout(Instant::now()),
            }
        }
    }

    /// Read `rest` bytes of an answer, handing them to `sink` as they come.
    async fn body(
        c: &mut Conn,
        rest: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
        control: Option<&crate::ratelimit::TransferControl>,
    ) -> Result<(), RangeError> {
        read_range(&mut c.stream, &c.peer.nick, rest, sink, control).await?;
        c.down.received(rest).map_err(|e| anyhow!("{e}"))?;
        c.down.done().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }

    /// The Tiger tree of `root` for a file of `size` bytes, checked against the root:
    /// (bytes per hash, hashes).
    pub async fn tthl(&mut self, root: &Tth, size: u64) -> Result<(u64, Vec<Hash>), RangeError> {
        let mut c = self.take_conn().await?;
        let (leftover, rest) = Self::request(&mut c, AdcKind::Tthl, &Identifier::Tth(*root), 0, None).await?;
        let mut data = tree_within_limit(&self.nick, leftover, rest)?;
        Self::body(&mut c, rest, &mut |b: &[u8]| data.extend_from_slice(b), None).await?;
        self.conn = Some(c);
        tth::verify_tthl_for_size(&data, root, size).map_err(|e| anyhow!("{}'s tree: {e}", self.nick).into())
    }

    /// `length` bytes of the file `root` from `start`, handed to `sink` as they come,
    /// paced by `control`'s download limit. If this future is dropped mid-range the
    /// connection goes with it.
    pub async fn fetch(
        &mut self,
        root: &Tth,
        start: u64,
        length: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
        control: &crate::ratelimit::TransferControl,
    ) -> Result<(), RangeError> {
        let mut c = self.take_conn().await?;
        let (leftover, rest) =
            Self::request(&mut c, AdcKind::File, &Identifier::Tth(*root), start, Some(length)).await?;
        sink(&leftover);
        Self::body(&mut c, rest, sink, Some(control)).await?;
        self.conn = Some(c);
        Ok(())
    }
}

/// Check an answer against its request: a peer must send what was asked (`start`, and
/// `length` when one was asked); another start, or another length, is refused before
/// anything is used. Returns the data's `leftover` bytes and how many follow on the stream.
pub(crate) fn offered(
    nick: &str,
    (start, length): (u64, Option<u64>),
    (got, n): (u64, u64),
    leftover: Vec<u8>,
) -> Result<(Vec<u8>, u64), RangeError> {
    if got != start || length.is_some_and(|l| n != l) {
        return Err(anyhow!("{nick} offered {n} bytes from {got}, asked for {length:?} from {start}").into());
    }
    let rest = n - leftover.len() as u64;
    Ok((leftover, rest))
}

/// A Tiger tree's first bytes, if the whole tree (`leftover` and `rest` more) is within
/// [`MAX_TTHL`].
pub(crate) fn tree_within_limit(nick: &str, leftover: Vec<u8>, rest: u64) -> Result<Vec<u8>, RangeError> {
    if leftover.len() as u64 + rest > MAX_TTHL as u64 {
        return Err(anyhow!("{nick} offered a tree of {} bytes", leftover.len() as u64 + rest).into());
    }
    Ok(leftover)
}

/// Read `rest` bytes of an answer from `stream`, handing them to `sink` as they come,
/// paced by `control`; a read that waits [`RANGE_TIMEOUT`] fails the range.
pub(crate) async fn read_range<S: AsyncRead + Unpin>(
    stream: &mut S,
    nick: &str,
    rest: u64,
    sink: &mut (dyn FnMut(&[u8]) + Send),
    control: Option<&crate::ratelimit::TransferControl>,
) -> Result<(), RangeError> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut left = rest;
    while left > 0 {
        let want = left.min(READ_CHUNK as u64) as usize;
        let n = tokio::time::timeout(RANGE_TIMEOUT, stream.read(&mut buf[..want]))
            .await
            .map_err(|_| anyhow!("{nick} stalled mid-range"))??;
        if n == 0 {
            return Err(anyhow!("{nick} closed the connection mid-range").into());
        }
        sink(&buf[..n]);
        left -= n as u64;
        if let Some(c) = control {
            c.pace(n).await;
        }
    }
    Ok(())
}
