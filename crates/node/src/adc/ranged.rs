//! Byte ranges and Tiger trees from one ADC user, for segmented downloads
//! (`crate::segments`, driven by `crate::app::segmented`): `CGET tthl TTH/… 0 -1` for the
//! tree, then `CGET file TTH/… start length` for each segment, on one client-to-client
//! connection kept open between requests (docs/protocols/adc.md, "Client-to-client", and
//! docs/protocols/nmdc.md, "Segmented downloads"). The ADC twin of `crate::nmdc::ranged`,
//! with its errors: a connection is dropped when a request fails or is cancelled mid-data
//! (the stream cannot be resynchronised); the next request opens a new one.

use super::cc::{self, Stream};
use super::client::AdcClient;
use crate::nmdc::ranged::{offered, read_range, tree_within_limit, RangeError};
use anyhow::anyhow;
use omnipeer_adc::transfer::{Connection, Event, Get, Ident, Kind};
use omnipeer_nmdc::tth::{self, Hash, Tth};
use std::sync::Arc;
use std::time::Instant;

struct Conn {
    stream: Stream,
    conn: Connection,
}

/// One ADC user as a source of ranges.
pub struct AdcRangedSource {
    adc: Arc<AdcClient>,
    nick: String,
    conn: Option<Conn>,
}

impl AdcRangedSource {
    /// `nick` on `adc`'s hub.
    pub fn new(adc: Arc<AdcClient>, nick: &str) -> AdcRangedSource {
        AdcRangedSource { adc, nick: nick.to_owned(), conn: None }
    }

    /// Drop the kept connection (a request was abandoned mid-data).
    pub fn forget_connection(&mut self) {
        self.conn = None;
    }

    async fn take_conn(&mut self) -> Result<Conn, RangeError> {
        if let Some(c) = self.conn.take() {
            return Ok(c);
        }
        let (stream, conn, _tls) = self.adc.connect_to_download(&self.nick).await?;
        Ok(Conn { stream, conn })
    }

    /// Send a GET to `nick`; returns the data's leftover bytes and how many follow on the
    /// stream. (Not a method: `Conn` is `Send` but not `Sync`, so no `&self` across awaits.)
    /// An answer with another start, or another length when one was asked, is refused
    /// before anything is used.
    async fn request(
        nick: &str,
        c: &mut Conn,
        kind: Kind,
        root: &Tth,
        start: u64,
        len: Option<u64>,
    ) -> Result<(Vec<u8>, u64), RangeError> {
        c.conn.get(Instant::now(), &Get { kind, ident: Ident::Tth(*root), start, len });
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cc::pump(&mut c.stream, &mut c.conn, &mut buf).await? {
                // `STA x53`: no free slot (253 when queued, docs/protocols/adc.md).
                Event::Status { code, .. } if code % 100 == 53 => return Err(RangeError::Full(None)),
                Event::Status { code, text } if code / 100 != 0 => {
                    return Err(anyhow!("{} answered: {text} ({code})", nick).into())
                }
                Event::Closed(r) => return Err(anyhow!("{} closed the connection: {r}", nick).into()),
                Event::Snd { start: got, len: n, leftover, .. } => {
                    return offered(nick, (start, len), (got, n), leftover);
                }
                _ => {}
            }
        }
    }

    /// Read `rest` bytes of an answer, handing them to `sink` as they come.
    async fn body(
        nick: &str,
        c: &mut Conn,
        rest: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
        control: Option<&crate::ratelimit::TransferControl>,
    ) -> Result<(), RangeError> {
        read_range(&mut c.stream, nick, rest, sink, control).await?;
        c.conn.transfer_done(Instant::now());
        Ok(())
    }

    /// The Tiger tree of `root` for a file of `size` bytes, checked against the root:
    /// (bytes per hash, hashes).
    pub async fn tthl(&mut self, root: &Tth, size: u64) -> Result<(u64, Vec<Hash>), RangeError> {
        let mut c = self.take_conn().await?;
        let (leftover, rest) = Self::request(&self.nick, &mut c, Kind::Tthl, root, 0, None).await?;
        let mut data = tree_within_limit(&self.nick, leftover, rest)?;
        Self::body(&self.nick, &mut c, rest, &mut |b: &[u8]| data.extend_from_slice(b), None).await?;
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
        let (leftover, rest) = Self::request(&self.nick, &mut c, Kind::File, root, start, Some(length)).await?;
        sink(&leftover);
        Self::body(&self.nick, &mut c, rest, sink, Some(control)).await?;
        self.conn = Some(c);
        Ok(())
    }
}
