//! What runs on a client-to-client connection once [`crate::handshake::CcHandshake`] is
//! ready: the uploader's and the downloader's side of file requests, as sans-IO machines.
//!
//! # Wire layouts
//!
//! `$ADCGET` / `$ADCSND` (ncdc, EiskaltDC++; docs/protocols/nmdc.md#adcget):
//!
//! ```text
//! D: $ADCGET <file|tthl|list> <identifier> <start> <bytes>[ ZL1]|   start 0-based, bytes -1 = to the end
//! U: $ADCSND <file|tthl|list> <identifier> <start> <bytes>|          then exactly <bytes> raw bytes
//!    or $Error File Not Available|   or $Error File Part Not Available| (start beyond the end)
//!    or $MaxedOut|                   (no free slot; the downloader closes)
//! ```
//!
//! Identifiers: `files.xml.bz2`, `TTH/<39 base32>` (TTHF), or a share path `/dir/name` with
//! spaces sent as `\ `. Seen on the wire:
//! `$ADCGET file files.xml.bz2 0 -1|`, `$ADCGET file TTH/BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY 0 5000|`,
//! `$ADCGET tthl TTH/<root> 0 -1|` (ncdc, for files over 2 MiB).
//!
//! Legacy (microdc2 downloads only this way; the old PtokaX page's example; docs/protocols/nmdc.md#legacy-get):
//!
//! ```text
//! D: $Get <path with \ separators>$<start + 1>|       e.g. $Get files.xml.bz2$1|
//! U: $FileLength <size of the whole file>|
//! D: $Send|
//! U: <size - start raw bytes>
//! ```
//!
//! The old PtokaX page says the downloader sends (docs/protocols/nmdc.md#legacy-get) `$Send` again after every 40 906 bytes. microdc2
//! sends one `$Send` and then reads everything, so the [`Uploader`] streams all of it after
//! the first `$Send` and ignores later ones; the [`Downloader`] still sends one per 40 906
//! bytes received (switch off with [`Downloader::set_legacy_resend`]), which uploaders that
//! do not need them ignore.
//!
//! Compression (`ZL1`) is never used: we do not advertise `ZLIG`, so a request with `ZL1`
//! is answered uncompressed (the `$ADCSND` has no `ZL1`), as DC++ does for peers that did
//! not negotiate it.
//!
//! # Bulk bytes
//!
//! File bytes never pass through the machines. The uploader emits
//! [`UploadEvent::SendBytes`]; the driver writes that range of the file to the socket and
//! calls [`Uploader::sent`]. The downloader emits [`DownloadEvent::Incoming`] with the raw
//! bytes already buffered behind the header; the driver reads exactly
//! [`Downloader::remaining`] more bytes from the socket straight to the file, reporting them
//! with [`Downloader::received`], then calls [`Downloader::done`]. Anything the driver read
//! beyond the end belongs to the next command and goes to `handle_input`.
//!
//! # Text
//!
//! [`Identifier::Path`] is real text (UTF-8) with `/` separators and a leading `/`;
//! identifiers are converted from and to wire strings with [`crate::text::wire_to_utf8`] /
//! [`crate::text::utf8_to_wire`] (UTF-8 on the wire, as every current client sends).

use crate::command::{AdcIdentifier, AdcKind, AdcRequest, Command, ParseError};
use crate::framing::{CommandReader, FramingError};
use crate::limits::{MAX_COMMAND, MAX_PATH};
use crate::text::{utf8_to_wire, wire_to_utf8};
use crate::tth::Tth;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long the uploader waits for the first or the next request before closing (our
/// choice; ncdc drops idle c-c connections after 30 s, DC++ keeps them a little longer).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the legacy uploader waits for `$Send` after `$FileLength`.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the downloader waits for `$ADCSND`, `$FileLength`, `$MaxedOut` or `$Error`
/// (ncdc's 30 s inactivity rule for c-c connections).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The old PtokaX page's legacy chunk (docs/protocols/nmdc.md#legacy-get): "after every 40906 bytes is received the downloading client
/// must send the `$Send` again".
pub const LEGACY_CHUNK: u64 = 40_906;
/// Most bytes buffered while no command is expected (the driver is deciding, streaming or
/// receiving): more than a peer that follows the protocol sends ahead.
pub const MAX_PENDING: usize = MAX_COMMAND;
/// The `$Error` text for a missing file. ncdc drops us as a source for that file when it
/// sees "file not available" in an `$Error`.
pub const FILE_NOT_AVAILABLE: &str = "File Not Available";
/// The `$Error` text for a start beyond the end (ncdc's wording; ncdc keeps us as a source).
pub const FILE_PART_NOT_AVAILABLE: &str = "File Part Not Available";

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// `files.xml.bz2`.
    FileList,
    /// `TTH/<root>`: the shared file with this root.
    Tth(Tth),
    /// A share path: UTF-8, `/` separators, leading `/` (legacy `\` paths are converted).
    Path(String),
}

impl Identifier {
    /// From a parsed `$ADCGET`/`$ADCSND` identifier (wire text).
    pub fn from_adc(id: &AdcIdentifier) -> Identifier {
        match id {
            AdcIdentifier::FileListBz2 => Identifier::FileList,
            AdcIdentifier::Tth(t) => Identifier::Tth(*t),
            AdcIdentifier::Path(p) => Identifier::Path(rooted(&wire_to_utf8(p))),
        }
    }

    /// From a `$Get` path (wire text, `\` separators).
    pub fn from_legacy(path: &str) -> Identifier {
        if path == "files.xml.bz2" {
            return Identifier::FileList;
        }
        if let Some(t) = path.strip_prefix("TTH/").and_then(|b| Tth::from_base32(b).ok()) {
            return Identifier::Tth(t);
        }
        Identifier::Path(rooted(&wire_to_utf8(path).replace('\\', "/")))
    }

    /// The identifier for an `$ADCGET`.
    pub fn to_adc(&self) -> Result<AdcIdentifier, TransferError> {
        Ok(match self {
            Identifier::FileList => AdcIdentifier::FileListBz2,
            Identifier::Tth(t) => AdcIdentifier::Tth(*t),
            Identifier::Path(p) => {
                let wire = utf8_to_wire(&rooted(p));
                check_wire_path(&wire)?;
                AdcIdentifier::Path(wire)
            }
        })
    }

    /// The path for a `$Get`: no leading `/`, `\` separators.
    pub fn to_legacy(&self) -> Result<String, TransferError> {
        match self {
            Identifier::FileList => Ok("files.xml.bz2".to_owned()),
            Identifier::Tth(_) => Err(TransferError::BadIdentifier("a legacy $Get cannot ask for a TTH")),
            Identifier::Path(p) => {
                let wire = utf8_to_wire(&p.trim_start_matches('/').replace('/', "\\"));
                check_wire_path(&wire)?;
                Ok(wire)
            }
        }
    }
}

fn rooted(p: &str) -> String {
    if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/{p}")
    }
}

fn check_wire_path(wire: &str) -> Result<(), TransferError> {
    if wire.trim_matches(['/', '\\']).is_empty() {
        return Err(TransferError::BadIdentifier("empty path"));
    }
    if wire.len() > MAX_PATH {
        return Err(TransferError::BadIdentifier("path longer than MAX_PATH"));
    }
    if wire.contains('|') {
        return Err(TransferError::BadIdentifier("'|' cannot be sent in a path"));
    }
    Ok(())
}

/// One request, as the uploader received it or the downloader sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `file`, `tthl` or `list` (legacy requests are always `file`).
    pub kind: AdcKind,
    /// What.
    pub identifier: Identifier,
    /// First byte, 0-based (a legacy `$Get`'s offset minus one).
    pub start: u64,
    /// Bytes wanted; `None` for "to the end" (`-1`, and every legacy request).
    pub length: Option<u64>,
    /// Whether it came as `$Get` (answered with `$FileLength`, data after `$Send`).
    pub legacy: bool,
    /// Whether the peer asked for `ZL1`; the answer is uncompressed all the same.
    pub compressed: bool,
}

/// A mistake in how the driver called a machine; the machine's state is unchanged.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TransferError {
    /// `serve`, `not_available` or `maxed_out` without a pending request.
    #[error("no request is waiting for an answer")]
    NoRequest,
    /// `sent` while no bytes were to be sent.
    #[error("no bytes are being sent")]
    NotSending,
    /// `received` or `done` while no answer is being received.
    #[error("no answer is being received")]
    NotReceiving,
    /// A new request while one is under way.
    #[error("a request is already under way; wait for its answer and call done()")]
    Busy,
    /// `received` reported more bytes than the answer has left.
    #[error("{got} bytes reported but only {remaining} were left")]
    Overrun {
        /// What was left.
        remaining: u64,
        /// What was reported.
        got: u64,
    },
    /// `done` before every byte arrived.
    #[error("{remaining} bytes of the answer are still missing")]
    Incomplete {
        /// What is left.
        remaining: u64,
    },
    /// A length that cannot be sent (`$ADCGET` counts are signed 64-bit).
    #[error("length {0} is too large for $ADCGET")]
    TooLong(u64),
    /// An identifier that cannot be sent.
    #[error("bad identifier: {0}")]
    BadIdentifier(&'static str),
    /// The connection is over.
    #[error("the connection is closed")]
    Closed,
}

/// Why a machine ended the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer did not send what we waited for in time.
    Timeout,
    /// A command longer than the limit.
    Framing(FramingError),
    /// A command that does not parse.
    Malformed(ParseError),
    /// A command that does not belong here (named), e.g. `$ADCSND` nobody asked for.
    Unexpected(String),
    /// An answer that does not fit the request (what is wrong).
    Mismatch(String),
    /// More than [`MAX_PENDING`] bytes arrived while no command was expected.
    TooMuchPending,
    /// We answered `$MaxedOut`.
    MaxedOut,
    /// The peer closed the connection.
    PeerClosed,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<E> {
    /// Write these bytes.
    Transmit(Vec<u8>),
    /// Something happened.
    Event(E),
    /// Call `handle_timeout` at this instant unless input comes first.
    Timeout(Instant),
}

/// The driver-facing methods [`Uploader`] and [`Downloader`] share, the same for both:
/// input (commands only, never the raw bytes of a file or an answer), time, end of stream
/// and outputs, over their `core`, `awaits_peer`, `close` and `process`.
macro_rules! connection_io {
    ($event:ty) => {
        /// Bytes received from the peer (commands; never the raw bytes of a file or an
        /// answer).
        pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
            if self.core.done {
                return;
            }
            if self.awaits_peer() && self.core.expired(now) {
                return self.close(CloseReason::Timeout);
            }
            self.core.reader.push(bytes);
            self.process();
        }

        /// The time is `now`.
        pub fn handle_timeout(&mut self, now: Instant) {
            if !self.core.done && self.awaits_peer() && self.core.expired(now) {
                self.close(CloseReason::Timeout);
            }
        }

        /// The peer closed its end (normal after a transfer: microdc2 closes after each
        /// file).
        pub fn handle_eof(&mut self) {
            if !self.core.done {
                self.close(CloseReason::PeerClosed);
            }
        }

        /// The next thing to do; `None` when nothing is to be done until input or a call.
        pub fn poll_output(&mut self) -> Option<Output<$event>> {
            self.core.poll()
        }
    };
}

/// Shared plumbing: the command reader, the output queue, the deadline.
#[derive(Debug)]
struct Core<E> {
    reader: CommandReader,
    out: VecDeque<Output<E>>,
    deadline: Option<Instant>,
    done: bool,
}

impl<E> Core<E> {
    fn new(leftover: &[u8]) -> Core<E> {
        let mut reader = CommandReader::new();
        reader.push(leftover);
        Core { reader, out: VecDeque::new(), deadline: None, done: false }
    }

    fn send(&mut self, cmd: &Command) {
        self.out.push_back(Output::Transmit(cmd.encode()));
    }

    fn event(&mut self, e: E) {
        self.out.push_back(Output::Event(e));
    }

    fn poll(&mut self) -> Option<Output<E>> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if self.done {
            return None;
        }
        self.deadline.map(Output::Timeout)
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// The next command, or `Err` with the reason to close.
    fn next(&mut self) -> Result<Option<Command>, CloseReason> {
        match self.reader.next_command() {
            Ok(Some(raw)) => Command::parse(&raw).map(Some).map_err(CloseReason::Malformed),
            Ok(None) => Ok(None),
            Err(e) => Err(CloseReason::Framing(e)),
        }
    }

    fn too_much_pending(&self) -> bool {
        self.reader.buffered() > MAX_PENDING
    }
}

// ---------------------------------------------------------------------------------------
// Uploader
// ---------------------------------------------------------------------------------------

/// What the uploader reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadEvent {
    /// The peer wants something: answer with [`Uploader::serve`] (with the size of the file,
    /// the `tthl` data or the partial list), [`Uploader::not_available`] or
    /// [`Uploader::maxed_out`].
    Request(Request),
    /// Write `length` bytes of the requested thing, from byte `start`, raw to the socket,
    /// then call [`Uploader::sent`].
    SendBytes {
        /// First byte.
        start: u64,
        /// How many.
        length: u64,
    },
    /// The connection is over; close it once the transmits before this are written.
    Closed(CloseReason),
}

#[derive(Debug)]
enum UpState {
    /// Waiting for `$ADCGET` or `$Get` (deadline: idle timeout).
    AwaitRequest,
    /// The driver decides (no deadline). `adc` is the request as received, to mirror it.
    Deciding { request: Request, adc: Option<AdcRequest> },
    /// Legacy: `$FileLength` sent, waiting for `$Send` (deadline: send timeout).
    AwaitSend { start: u64, length: u64 },
    /// The driver streams the bytes (no deadline).
    Sending,
    /// Over.
    Done,
}

/// The uploading side of a client-to-client connection (the handshake's outcome was
/// [`crate::command::DirectionOutcome::TheyDownload`]). Serves several requests in a row:
/// ncdc and EiskaltDC++ keep the connection for the next file.
#[derive(Debug)]
pub struct Uploader {
    core: Core<UploadEvent>,
    state: UpState,
    /// A command that arrived while we were sending, handled after [`Uploader::sent`].
    stash: Option<Command>,
    idle_timeout: Duration,
    send_timeout: Duration,
}

impl Uploader {
    /// Start at `now` with the bytes that followed the handshake
    /// ([`crate::handshake::Event::Ready`]'s `leftover`, often the first `$ADCGET`).
    pub fn new(now: Instant, leftover: &[u8]) -> Uploader {
        Uploader::with_timeouts(now, leftover, IDLE_TIMEOUT, SEND_TIMEOUT)
    }

    /// [`Uploader::new`] with other timeouts.
    pub fn with_timeouts(now: Instant, leftover: &[u8], idle_timeout: Duration, send_timeout: Duration) -> Uploader {
        let mut up = Uploader {
            core: Core::new(leftover),
            state: UpState::AwaitRequest,
            stash: None,
            idle_timeout,
            send_timeout,
        };
        up.core.deadline = Some(now + idle_timeout);
        up.process();
        up
    }

    /// Whether the connection is over.
    pub fn is_done(&self) -> bool {
        self.core.done
    }

    connection_io!(UploadEvent);

    /// Answer the pending request: the thing asked for has `size` bytes (the file, the
    /// `tthl` leaf data, the partial list). `$ADCGET` gets `$ADCSND` with the byte count
    /// clamped to what exists from `start` and then [`UploadEvent::SendBytes`]; `$Get` gets
    /// `$FileLength <size>` and the bytes follow the peer's `$Send`. A start beyond `size`
    /// gets `$Error File Part Not Available`.
    pub fn serve(&mut self, now: Instant, size: u64) -> Result<(), TransferError> {
        let (request, adc) = self.take_decision()?;
        if request.start > size {
            self.core.send(&Command::Error(FILE_PART_NOT_AVAILABLE.to_owned()));
            self.await_request(now);
        } else if let Some(mut snd) = adc {
            let available = (size - request.start).min(i64::MAX as u64);
            let length = request.length.map_or(available, |l| l.min(available));
            snd.start = request.start;
            snd.bytes = length as i64; // at most i64::MAX, see above
            snd.zlib = false;
            self.core.send(&Command::AdcSnd(snd));
            self.core.event(UploadEvent::SendBytes { start: request.start, length });
            self.state = UpState::Sending;
            self.core.deadline = None;
        } else {
            self.core.send(&Command::FileLength(size));
            self.state = UpState::AwaitSend { start: request.start, length: size - request.start };
            self.core.deadline = Some(now + self.send_timeout);
        }
        self.process();
        Ok(())
    }

    /// Answer the pending request with `$Error File Not Available`; the connection stays
    /// open for the next request.
    pub fn not_available(&mut self, now: Instant) -> Result<(), TransferError> {
        self.take_decision()?;
        self.core.send(&Command::Error(FILE_NOT_AVAILABLE.to_owned()));
        self.await_request(now);
        self.process();
        Ok(())
    }

    /// Answer the pending request with `$MaxedOut` (no free slot) and end the connection,
    /// as the downloader does on receiving it.
    pub fn maxed_out(&mut self) -> Result<(), TransferError> {
        self.maxed_out_at(None)
    }

    /// [`Uploader::maxed_out`] telling the requester its place in our upload queue
    /// (`$MaxedOut 3|`, as DC++-family uploaders do).
    pub fn maxed_out_at(&mut self, position: Option<u32>) -> Result<(), TransferError> {
        self.take_decision()?;
        self.core.send(&Command::MaxedOut(position));
        self.close(CloseReason::MaxedOut);
        Ok(())
    }

    /// The driver wrote every byte of the last [`UploadEvent::SendBytes`]; wait for the next
    /// request.
    pub fn sent(&mut self, now: Instant) -> Result<(), TransferError> {
        if self.core.done {
            return Err(TransferError::Closed);
        }
        if !matches!(self.state, UpState::Sending) {
            return Err(TransferError::NotSending);
        }
        self.await_request(now);
        self.process();
        Ok(())
    }

    fn take_decision(&mut self) -> Result<(Request, Option<AdcRequest>), TransferError> {
        if self.core.done {
            return Err(TransferError::Closed);
        }
        match std::mem::replace(&mut self.state, UpState::AwaitRequest) {
            UpState::Deciding { request, adc } => Ok((request, adc)),
            other => {
                self.state = other;
                Err(TransferError::NoRequest)
            }
        }
    }

    fn await_request(&mut self, now: Instant) {
        self.state = UpState::AwaitRequest;
        self.core.deadline = Some(now + self.idle_timeout);
    }

    fn awaits_peer(&self) -> bool {
        matches!(self.state, UpState::AwaitRequest | UpState::AwaitSend { .. })
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = UpState::Done;
        self.core.done = true;
        self.core.deadline = None;
        self.core.event(UploadEvent::Closed(reason));
    }

    fn process(&mut self) {
        loop {
            let cmd = match self.state {
                UpState::Done | UpState::Deciding { .. } => break,
                UpState::Sending if self.stash.is_some() => break,
                UpState::Sending => None,
                UpState::AwaitRequest | UpState::AwaitSend { .. } => self.stash.take(),
            };
            let cmd = match cmd {
                Some(c) => c,
                None => match self.core.next() {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(reason) => return self.close(reason),
                },
            };
            self.on_command(cmd);
        }
        if !self.core.done && self.core.too_much_pending() {
            self.close(CloseReason::TooMuchPending);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            // microdc2 sends one $Send, the old page's downloader (docs/protocols/nmdc.md#legacy-get) one per 40906 bytes: the first
            // starts the stream, the others are dropped wherever they arrive.
            Command::Send => {
                if let UpState::AwaitSend { start, length } = self.state {
                    self.core.event(UploadEvent::SendBytes { start, length });
                    self.state = UpState::Sending;
                    self.core.deadline = None;
                }
            }
            // The next request, sent before we finished streaming: answered after `sent`.
            cmd @ (Command::AdcGet(_) | Command::Get { .. }) if matches!(self.state, UpState::Sending) => {
                self.stash = Some(cmd)
            }
            Command::AdcGet(adc) => {
                let request = Request {
                    kind: adc.kind,
                    identifier: Identifier::from_adc(&adc.identifier),
                    start: adc.start,
                    length: adc.length(),
                    legacy: false,
                    compressed: adc.zlib,
                };
                self.decide(request, Some(adc));
            }
            cmd @ Command::Get { .. } => {
                let start = cmd.get_start().unwrap_or(0);
                let Command::Get { path, .. } = cmd else {
                    return;
                };
                let request = Request {
                    kind: AdcKind::File,
                    identifier: Identifier::from_legacy(&path),
                    start,
                    length: None,
                    legacy: true,
                    compressed: false,
                };
                self.decide(request, None);
            }
            // Raw bytes may follow a stray $ADCSND: the stream cannot be read further.
            cmd @ (Command::AdcSnd(_) | Command::FileLength(_)) => {
                self.close(CloseReason::Unexpected(cmd.name().to_owned()))
            }
            // Anything else ($GetListLen, $Supports again, ...) is ignored, as DC++ does.
            _ => {}
        }
    }

    fn decide(&mut self, request: Request, adc: Option<AdcRequest>) {
        self.core.event(UploadEvent::Request(request.clone()));
        self.state = UpState::Deciding { request, adc };
        self.core.deadline = None;
    }
}

// ---------------------------------------------------------------------------------------
// Downloader
// ---------------------------------------------------------------------------------------

/// What the downloader reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// Legacy: `$FileLength` said the whole file has this many bytes (`$Send` is on its
    /// way; [`DownloadEvent::Incoming`] follows).
    Length(u64),
    /// The answer's bytes follow: `leftover` holds the first of them (already received);
    /// read [`Downloader::remaining`] more raw bytes from the socket, report them with
    /// [`Downloader::received`], then call [`Downloader::done`].
    Incoming {
        /// What we asked for.
        request: Request,
        /// First byte of the answer.
        start: u64,
        /// Bytes in the answer, `leftover` included.
        length: u64,
        /// Answer bytes that arrived together with the header.
        leftover: Vec<u8>,
    },
    /// `$MaxedOut`: no free slot, with our place in the uploader's queue if it said.
    /// The uploader closes; try again later.
    MaxedOut(Option<u32>),
    /// `$Error <message>` (UTF-8): nothing comes for this request; the connection may take
    /// the next one. ncdc and DC++ send "File Not Available" for a missing file.
    Error(String),
    /// The connection is over; close it once the transmits before this are written.
    Closed(CloseReason),
}

#[derive(Debug)]
enum DownState {
    /// No request under way (no deadline).
    Idle,
    /// Request sent, waiting for the answer (deadline: answer timeout).
    AwaitAnswer { request: Request, adc: Option<AdcRequest> },
    /// The driver receives raw bytes.
    Receiving {
        remaining: u64,
        /// Bytes of this answer received so far (legacy `$Send` pacing).
        received: u64,
        /// Legacy with resends: the count after which the next `$Send` goes out.
        next_send: Option<u64>,
    },
    /// Over.
    Done,
}

/// The downloading side of a client-to-client connection (the handshake's outcome was
/// [`crate::command::DirectionOutcome::WeDownload`]). One request at a time; after
/// [`Downloader::done`] the next one can go on the same connection.
#[derive(Debug)]
pub struct Downloader {
    core: Core<DownloadEvent>,
    state: DownState,
    answer_timeout: Duration,
    legacy_resend: bool,
}

impl Downloader {
    /// Start with the bytes that followed the handshake (normally none).
    pub fn new(leftover: &[u8]) -> Downloader {
        Downloader::with_timeout(leftover, ANSWER_TIMEOUT)
    }

    /// [`Downloader::new`] with another answer timeout.
    pub fn with_timeout(leftover: &[u8], answer_timeout: Duration) -> Downloader {
        let mut d =
            Downloader { core: Core::new(leftover), state: DownState::Idle, answer_timeout, legacy_resend: true };
        d.process();
        d
    }

    /// Whether to send `$Send` again after every [`LEGACY_CHUNK`] bytes of a legacy answer
    /// (the old page's rule, docs/protocols/nmdc.md#legacy-get; on by default). Real uploaders (microdc2, DC++) stream everything
    /// after the first `$Send` and ignore the extra ones.
    pub fn set_legacy_resend(&mut self, on: bool) {
        self.legacy_resend = on;
    }

    /// Whether the connection is over.
    pub fn is_done(&self) -> bool {
        self.core.done
    }

    /// Whether a new request can be sent now.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, DownState::Idle)
    }

    /// Raw bytes still expected for the answer being received.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            DownState::Receiving { remaining, .. } => Some(remaining),
            _ => None,
        }
    }

    /// Ask with `$ADCGET <kind> <identifier> <start> <length or -1>`.
    pub fn request_adc(
        &mut self,
        now: Instant,
        kind: AdcKind,
        identifier: &Identifier,
        start: u64,
        length: Option<u64>,
    ) -> Result<(), TransferError> {
        self.check_idle()?;
        let bytes = match length {
            None => -1,
            Some(l) => i64::try_from(l).map_err(|_| TransferError::TooLong(l))?,
        };
        let adc = AdcRequest { kind, identifier: identifier.to_adc()?, start, bytes, zlib: false };
        let request = Request { kind, identifier: identifier.clone(), start, length, legacy: false, compressed: false };
        self.core.send(&Command::AdcGet(adc.clone()));
        self.await_answer(now, request, Some(adc));
        Ok(())
    }

    /// Ask with `$Get <path>$<start + 1>` (peers without `ADCGet`: their `$Supports` lacks
    /// it). Only [`Identifier::FileList`] and paths can be asked for this way.
    pub fn request_legacy(&mut self, now: Instant, identifier: &Identifier, start: u64) -> Result<(), TransferError> {
        self.check_idle()?;
        let path = identifier.to_legacy()?;
        let request = Request {
            kind: AdcKind::File,
            identifier: identifier.clone(),
            start,
            length: None,
            legacy: true,
            compressed: false,
        };
        self.core.send(&Command::get(&path, start));
        self.await_answer(now, request, None);
        Ok(())
    }

    /// `n` more raw bytes of the answer were received (not counting `leftover`).
    pub fn received(&mut self, n: u64) -> Result<(), TransferError> {
        if self.core.done {
            return Err(TransferError::Closed);
        }
        let DownState::Receiving { remaining, .. } = self.state else {
            return Err(TransferError::NotReceiving);
        };
        if n > remaining {
            return Err(TransferError::Overrun { remaining, got: n });
        }
        self.count(n);
        Ok(())
    }

    /// Every byte of the answer was received; the next request can go.
    pub fn done(&mut self) -> Result<(), TransferError> {
        if self.core.done {
            return Err(TransferError::Closed);
        }
        match self.state {
            DownState::Receiving { remaining: 0, .. } => {
                self.state = DownState::Idle;
                self.core.deadline = None;
                self.process();
                Ok(())
            }
            DownState::Receiving { remaining, .. } => Err(TransferError::Incomplete { remaining }),
            _ => Err(TransferError::NotReceiving),
        }
    }

    connection_io!(DownloadEvent);

    fn check_idle(&self) -> Result<(), TransferError> {
        if self.core.done {
            Err(TransferError::Closed)
        } else if !self.is_idle() {
            Err(TransferError::Busy)
        } else {
            Ok(())
        }
    }

    fn await_answer(&mut self, now: Instant, request: Request, adc: Option<AdcRequest>) {
        self.state = DownState::AwaitAnswer { request, adc };
        self.core.deadline = Some(now + self.answer_timeout);
        self.process();
    }

    fn awaits_peer(&self) -> bool {
        matches!(self.state, DownState::AwaitAnswer { .. })
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = DownState::Done;
        self.core.done = true;
        self.core.deadline = None;
        self.core.event(DownloadEvent::Closed(reason));
    }

    /// Count `n` answer bytes; send the legacy `$Send`s that are due.
    fn count(&mut self, n: u64) {
        let DownState::Receiving { remaining, received, next_send } = &mut self.state else {
            return;
        };
        *remaining -= n;
        *received += n;
        let mut sends = 0;
        while let Some(at) = next_send {
            if *received < *at || *remaining == 0 {
                break;
            }
            sends += 1;
            *at += LEGACY_CHUNK;
        }
        for _ in 0..sends {
            self.core.send(&Command::Send);
        }
    }

    fn process(&mut self) {
        while matches!(self.state, DownState::Idle | DownState::AwaitAnswer { .. }) {
            let cmd = match self.core.next() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(reason) => return self.close(reason),
            };
            self.on_command(cmd);
        }
        if !self.core.done && self.core.too_much_pending() {
            self.close(CloseReason::TooMuchPending);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let state = std::mem::replace(&mut self.state, DownState::Idle);
        match (state, cmd) {
            (DownState::AwaitAnswer { request, adc: Some(asked) }, Command::AdcSnd(snd)) => {
                match answer_length(&asked, &snd) {
                    Ok(length) => self.incoming(request, snd.start, length, None),
                    Err(why) => self.close(CloseReason::Mismatch(why)),
                }
            }
            (DownState::AwaitAnswer { request, adc: None }, Command::FileLength(size)) => {
                if request.start > size {
                    return self.close(CloseReason::Mismatch(format!(
                        "$FileLength {size} is before the start {}",
                        request.start
                    )));
                }
                self.core.event(DownloadEvent::Length(size));
                self.core.send(&Command::Send);
                let start = request.start;
                let next_send = self.legacy_resend.then_some(LEGACY_CHUNK);
                self.incoming(request, start, size - start, next_send);
            }
            (DownState::AwaitAnswer { .. }, Command::MaxedOut(position)) => {
                self.core.deadline = None;
                self.core.event(DownloadEvent::MaxedOut(position));
            }
            (DownState::AwaitAnswer { .. }, Command::Error(msg)) => {
                self.core.deadline = None;
                self.core.event(DownloadEvent::Error(wire_to_utf8(&msg)));
            }
            (_, cmd @ (Command::AdcSnd(_) | Command::FileLength(_) | Command::AdcGet(_) | Command::Get { .. })) => {
                self.close(CloseReason::Unexpected(cmd.name().to_owned()))
            }
            // Stray $Error/$MaxedOut/$Send and unknown commands change nothing.
            (state, _) => self.state = state,
        }
    }

    fn incoming(&mut self, request: Request, start: u64, length: u64, next_send: Option<u64>) {
        let leftover = self.core.reader.take_raw(usize::try_from(length).unwrap_or(usize::MAX));
        self.state = DownState::Receiving { remaining: length, received: 0, next_send };
        self.core.deadline = None;
        self.core.event(DownloadEvent::Incoming { request, start, length, leftover: leftover.clone() });
        self.count(leftover.len() as u64);
    }
}

/// The byte count of an `$ADCSND` that answers `asked`, or what is wrong with it.
fn answer_length(asked: &AdcRequest, snd: &AdcRequest) -> Result<u64, String> {
    if snd.kind != asked.kind {
        return Err(format!("asked for {}, got {}", asked.kind.as_str(), snd.kind.as_str()));
    }
    if snd.identifier != asked.identifier {
        return Err("the $ADCSND identifier is not the one asked for".to_owned());
    }
    if snd.start != asked.start {
        return Err(format!("asked from {}, got from {}", asked.start, snd.start));
    }
    if snd.zlib {
        return Err("ZL1 answer to a request without ZL1".to_owned());
    }
    match (snd.length(), asked.length()) {
        (Some(got), Some(max)) if got > max => Err(format!("asked for {max} bytes, got {got}")),
        (Some(got), _) => Ok(got),
        // Some clients (DCGUI, per ncdc) answer -1: "the rest", which we know only if we
        // asked for a definite count.
        (None, Some(max)) => Ok(max),
        (None, None) => Err("$ADCSND with -1 bytes".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROOT: &str = "BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY";

    fn t0() -> Instant {
        Instant::now()
    }

    fn drain<E>(out: impl FnMut() -> Option<Output<E>>) -> (Vec<u8>, Vec<E>, Option<Instant>) {
        let mut out = out;
        let mut bytes = Vec::new();
        let mut events = Vec::new();
        let mut timeout = None;
        while let Some(o) = out() {
            match o {
                Output::Transmit(b) => bytes.extend(b),
                Output::Event(e) => events.push(e),
                Output::Timeout(t) => {
                    timeout = Some(t);
                    break;
                }
            }
        }
        (bytes, events, timeout)
    }

    fn up_drain(u: &mut Uploader) -> (Vec<u8>, Vec<UploadEvent>, Option<Instant>) {
        drain(|| u.poll_output())
    }

    fn down_drain(d: &mut Downloader) -> (Vec<u8>, Vec<DownloadEvent>, Option<Instant>) {
        drain(|| d.poll_output())
    }

    fn root() -> Tth {
        Tth::from_base32(ROOT).unwrap()
    }

    /// EiskaltDC++'s first request arrives with the handshake's leftover; the file list is
    /// served, then the connection stays open for a TTH request (docs/protocols/nmdc.md#adcget, byte for byte).
    #[test]
    fn uploader_serves_eiskalt_list_then_tth_on_one_connection() {
        let now = t0();
        let mut up = Uploader::new(now, b"$ADCGET file files.xml.bz2 0 -1|");
        let (sent, events, timeout) = up_drain(&mut up);
        assert!(sent.is_empty());
        assert_eq!(timeout, None, "no deadline while the driver decides");
        assert_eq!(
            events,
            vec![UploadEvent::Request(Request {
                kind: AdcKind::File,
                identifier: Identifier::FileList,
                start: 0,
                length: None,
                legacy: false,
                compressed: false,
            })]
        );
        up.serve(now, 350).unwrap();
        let (sent, events, _) = up_drain(&mut up);
        assert_eq!(sent, b"$ADCSND file files.xml.bz2 0 350|");
        assert_eq!(events, vec![UploadEvent::SendBytes { start: 0, length: 350 }]);
        let later = now + Duration::from_secs(3);
        up.sent(later).unwrap();
        assert_eq!(up_drain(&mut up).2, Some(later + IDLE_TIMEOUT));

        up.handle_input(later, format!("$ADCGET file TTH/{ROOT} 0 5000|").as_bytes());
        let (_, events, _) = up_drain(&mut up);
        assert_eq!(
            events,
            vec![UploadEvent::Request(Request {
                kind: AdcKind::File,
                identifier: Identifier::Tth(root()),
                start: 0,
                length: Some(5000),
                legacy: false,
                compressed: false,
            })]
        );
        up.serve(later, 1_000_000).unwrap();
        let (sent, events, _) = up_drain(&mut up);
        assert_eq!(sent, format!("$ADCSND file TTH/{ROOT} 0 5000|").as_bytes());
        assert_eq!(events, vec![UploadEvent::SendBytes { start: 0, length: 5000 }]);
    }

    /// ncdc asks for the leaves first; the answer's count is the tthl data's size.
    #[test]
    fn uploader_serves_ncdc_tthl() {
        let now = t0();
        let mut up = Uploader::new(now, b"");
        up.handle_input(now, format!("$ADCGET tthl TTH/{ROOT} 0 -1|").as_bytes());
        let (_, events, _) = up_drain(&mut up);
        let [UploadEvent::Request(r)] = &events[..] else { panic!("{events:?}") };
        assert_eq!(r.kind, AdcKind::Tthl);
        assert_eq!(r.identifier, Identifier::Tth(root()));
        up.serve(now, 24 * 48).unwrap();
        let (sent, events, _) = up_drain(&mut up);
        assert_eq!(sent, format!("$ADCSND tthl TTH/{ROOT} 0 1152|").as_bytes());
        assert_eq!(events, vec![UploadEvent::SendBytes { start: 0, length: 1152 }]);
    }

    #[test]
    fn uploader_clamps_refuses_and_answers_zl1_uncompressed() {
        let now = t0();
        let mut up = Uploader::new(now, b"");
        // A range running past the end is clamped; ZL1 is dropped from the answer; a path
        // with an escaped space comes out as real text.
        up.handle_input(now, b"$ADCGET file /share/a\\ b.bin 900 5000 ZL1|");
        let (_, events, _) = up_drain(&mut up);
        let [UploadEvent::Request(r)] = &events[..] else { panic!("{events:?}") };
        assert_eq!(r.identifier, Identifier::Path("/share/a b.bin".into()));
        assert!(r.compressed);
        up.serve(now, 1000).unwrap();
        let (sent, events, _) = up_drain(&mut up);
        assert_eq!(sent, b"$ADCSND file /share/a\\ b.bin 900 100|");
        assert_eq!(events, vec![UploadEvent::SendBytes { start: 900, length: 100 }]);
        up.sent(now).unwrap();
        // Start beyond the end: ncdc's wording, connection kept.
        up.handle_input(now, b"$ADCGET file /x 1001 -1|");
        up_drain(&mut up);
        up.serve(now, 1000).unwrap();
        assert_eq!(up_drain(&mut up).0, b"$Error File Part Not Available|");
        // Start exactly at the end: an empty answer.
        up.handle_input(now, b"$ADCGET file /x 1000 -1|");
        up_drain(&mut up);
        up.serve(now, 1000).unwrap();
        assert_eq!(up_drain(&mut up).0, b"$ADCSND file /x 1000 0|");
        up.sent(now).unwrap();
        // Missing file.
        up.handle_input(now, b"$ADCGET file TTH/LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ 0 -1|");
        up_drain(&mut up);
        up.not_available(now).unwrap();
        assert_eq!(up_drain(&mut up).0, b"$Error File Not Available|");
        assert!(!up.is_done());
        // No slot: $MaxedOut and the end.
        up.handle_input(now, b"$ADCGET list /share/ 0 -1|");
        let (_, events, _) = up_drain(&mut up);
        assert!(matches!(&events[..], [UploadEvent::Request(r)] if r.kind == AdcKind::List));
        up.maxed_out().unwrap();
        let (sent, events, _) = up_drain(&mut up);
        assert_eq!(sent, b"$MaxedOut|");
        assert_eq!(events, vec![UploadEvent::Closed(CloseReason::MaxedOut)]);
        assert_eq!(up.poll_output(), None);
        assert_eq!(up.serve(now, 1), Err(TransferError::Closed));
    }

    /// microdc2 (docs/protocols/nmdc.md#legacy-get): one `$Send`, then the whole file. A downloader following the old page's extra
    /// `$Send`s are ignored, before and after the end.
    #[test]
    fn uploader_legacy_microdc2() {
        let now = t0();
        let mut up = Uploader::new(now, b"");
        up.handle_input(now, b"$Get files.xml.bz2$1|");
        let (_, events, _) = up_drain(&mut up);
        assert_eq!(
            events,
            vec![UploadEvent::Request(Request {
                kind: AdcKind::File,
                identifier: Identifier::FileList,
                start: 0,
                length: None,
                legacy: true,
                compressed: false,
            })]
        );
        up.serve(now, 153_798).unwrap();
        let (sent, events, timeout) = up_drain(&mut up);
        assert_eq!(sent, b"$FileLength 153798|");
        assert!(events.is_empty());
        assert_eq!(timeout, Some(now + SEND_TIMEOUT));
        up.handle_input(now, b"$Send|");
        let (sent, events, timeout) = up_drain(&mut up);
        assert!(sent.is_empty());
        assert_eq!(events, vec![UploadEvent::SendBytes { start: 0, length: 153_798 }]);
        assert_eq!(timeout, None);
        // Extra $Send while streaming: nothing.
        up.handle_input(now, b"$Send|$Send|");
        assert_eq!(up_drain(&mut up), (vec![], vec![], None));
        up.sent(now).unwrap();
        up.handle_input(now, b"$Send|");
        assert_eq!(up_drain(&mut up).1, vec![]);
        // A path with backslashes and a resume offset.
        up.handle_input(now, b"$Get d\\cdab03.bin$41|");
        let (_, events, _) = up_drain(&mut up);
        let [UploadEvent::Request(r)] = &events[..] else { panic!("{events:?}") };
        assert_eq!(r.identifier, Identifier::Path("/d/cdab03.bin".into()));
        assert_eq!((r.start, r.legacy), (40, true));
        up.serve(now, 100).unwrap();
        assert_eq!(up_drain(&mut up).0, b"$FileLength 100|");
        up.handle_input(now, b"$Send|");
        assert_eq!(up_drain(&mut up).1, vec![UploadEvent::SendBytes { start: 40, length: 60 }]);
        up.handle_eof();
        assert_eq!(up_drain(&mut up).1, vec![UploadEvent::Closed(CloseReason::PeerClosed)]);
    }

    /// A request that arrives while bytes are streaming is answered after `sent`.
    #[test]
    fn uploader_keeps_a_request_that_arrives_while_sending() {
        let now = t0();
        let mut up = Uploader::new(now, b"$ADCGET file /a 0 10|$ADCGET file /b 0 10|");
        let (_, events, _) = up_drain(&mut up);
        assert_eq!(events.len(), 1);
        up.serve(now, 10).unwrap();
        up_drain(&mut up);
        up.sent(now).unwrap();
        let (_, events, _) = up_drain(&mut up);
        assert!(matches!(&events[..], [UploadEvent::Request(r)] if r.identifier == Identifier::Path("/b".into())));
        up.serve(now, 10).unwrap();
        up_drain(&mut up);
        up.handle_input(now, b"$ADCGET file /c 0 10|");
        up.handle_input(now, &vec![b'x'; MAX_PENDING + 1]);
        assert_eq!(up_drain(&mut up).1, vec![UploadEvent::Closed(CloseReason::TooMuchPending)]);
    }

    #[test]
    fn uploader_timeouts_and_misuse() {
        let now = t0();
        let mut up = Uploader::new(now, b"");
        assert_eq!(up.poll_output(), Some(Output::Timeout(now + IDLE_TIMEOUT)));
        assert_eq!(up.serve(now, 1), Err(TransferError::NoRequest));
        assert_eq!(up.sent(now), Err(TransferError::NotSending));
        up.handle_timeout(now + IDLE_TIMEOUT - Duration::from_millis(1));
        assert!(!up.is_done());
        up.handle_timeout(now + IDLE_TIMEOUT);
        assert_eq!(up_drain(&mut up).1, vec![UploadEvent::Closed(CloseReason::Timeout)]);

        // Legacy: no $Send within SEND_TIMEOUT.
        let mut up = Uploader::new(now, b"$Get a$1|");
        up_drain(&mut up);
        let t = now + Duration::from_secs(500); // the driver took its time deciding
        up.serve(t, 5).unwrap();
        assert_eq!(up_drain(&mut up).2, Some(t + SEND_TIMEOUT));
        up.handle_input(t + SEND_TIMEOUT, b"$Send|");
        assert_eq!(up_drain(&mut up).1, vec![UploadEvent::Closed(CloseReason::Timeout)]);

        // Garbage and out-of-place commands close.
        let mut up = Uploader::new(now, b"$ADCGET nope x 0 1|");
        assert!(matches!(&up_drain(&mut up).1[..], [UploadEvent::Closed(CloseReason::Malformed(_))]));
        let mut up = Uploader::new(now, b"$ADCSND file /x 0 5|hello");
        assert_eq!(up_drain(&mut up).1, vec![UploadEvent::Closed(CloseReason::Unexpected("$ADCSND".into()))]);
        let mut up = Uploader::new(now, b"$GetListLen|$Supports A|");
        assert_eq!(up_drain(&mut up).1, vec![]);
    }

    /// ncdc/eiskalt style: list, then a TTH range, on one connection; the answer's first
    /// bytes arrive with the header.
    #[test]
    fn downloader_adc_requests() {
        let now = t0();
        let mut d = Downloader::new(b"");
        assert_eq!(d.poll_output(), None);
        d.request_adc(now, AdcKind::File, &Identifier::FileList, 0, None).unwrap();
        let (sent, _, timeout) = down_drain(&mut d);
        assert_eq!(sent, b"$ADCGET file files.xml.bz2 0 -1|");
        assert_eq!(timeout, Some(now + ANSWER_TIMEOUT));
        assert_eq!(d.request_adc(now, AdcKind::File, &Identifier::FileList, 0, None), Err(TransferError::Busy));
        d.handle_input(now, b"$ADCSND file files.xml.bz2 0 350|BZh91AY");
        let (_, events, timeout) = down_drain(&mut d);
        assert_eq!(timeout, None);
        let [DownloadEvent::Incoming { request, start, length, leftover }] = &events[..] else { panic!("{events:?}") };
        assert_eq!(request.identifier, Identifier::FileList);
        assert_eq!((*start, *length), (0, 350));
        assert_eq!(leftover, b"BZh91AY");
        assert_eq!(d.remaining(), Some(343));
        assert_eq!(d.done(), Err(TransferError::Incomplete { remaining: 343 }));
        assert_eq!(d.received(344), Err(TransferError::Overrun { remaining: 343, got: 344 }));
        d.received(300).unwrap();
        d.received(43).unwrap();
        d.done().unwrap();
        assert!(d.is_idle());

        d.request_adc(now, AdcKind::File, &Identifier::Tth(root()), 0, Some(5000)).unwrap();
        assert_eq!(down_drain(&mut d).0, format!("$ADCGET file TTH/{ROOT} 0 5000|").as_bytes());
        // The whole answer in one segment, and the next command behind it stays queued.
        let mut seg = format!("$ADCSND file TTH/{ROOT} 0 5|").into_bytes();
        seg.extend(b"ab|de$Error late|");
        d.handle_input(now, &seg);
        let (_, events, _) = down_drain(&mut d);
        assert!(matches!(&events[..], [DownloadEvent::Incoming { length: 5, leftover, .. }] if leftover == b"ab|de"));
        assert_eq!(d.remaining(), Some(0));
        d.done().unwrap();
        // A stray $Error while idle changes nothing.
        assert_eq!(down_drain(&mut d).1, vec![]);

        // Share path with a space; errors keep the connection.
        d.request_adc(now, AdcKind::File, &Identifier::Path("/share/a b.bin".into()), 10, Some(20)).unwrap();
        assert_eq!(down_drain(&mut d).0, b"$ADCGET file /share/a\\ b.bin 10 20|");
        d.handle_input(now, b"$Error File Not Available|");
        assert_eq!(down_drain(&mut d).1, vec![DownloadEvent::Error("File Not Available".into())]);
        assert!(d.is_idle());
        d.request_adc(now, AdcKind::Tthl, &Identifier::Tth(root()), 0, None).unwrap();
        down_drain(&mut d);
        d.handle_input(now, b"$MaxedOut|");
        assert_eq!(down_drain(&mut d).1, vec![DownloadEvent::MaxedOut(None)]);
    }

    #[test]
    fn maxed_out_carries_the_queue_position_both_ways() {
        let now = t0();
        let mut up = Uploader::new(now, b"$ADCGET file /x 0 -1|");
        up_drain(&mut up);
        up.maxed_out_at(Some(3)).unwrap();
        assert_eq!(up_drain(&mut up).0, b"$MaxedOut 3|");
        let mut d = Downloader::new(b"");
        d.request_adc(now, AdcKind::File, &Identifier::Path("/x".into()), 0, None).unwrap();
        down_drain(&mut d);
        d.handle_input(now, b"$MaxedOut 3|");
        assert_eq!(down_drain(&mut d).1, vec![DownloadEvent::MaxedOut(Some(3))]);
    }

    #[test]
    fn downloader_rejects_answers_that_do_not_fit() {
        let now = t0();
        let run = |answer: &[u8], length: Option<u64>| {
            let mut d = Downloader::new(b"");
            d.request_adc(now, AdcKind::File, &Identifier::Path("/a".into()), 5, length).unwrap();
            down_drain(&mut d);
            d.handle_input(now, answer);
            down_drain(&mut d).1
        };
        for bad in [
            &b"$ADCSND tthl /a 5 10|"[..],
            b"$ADCSND file /b 5 10|",
            b"$ADCSND file /a 6 10|",
            b"$ADCSND file /a 5 11|",
            b"$ADCSND file /a 5 10 ZL1|",
        ] {
            assert!(
                matches!(&run(bad, Some(10))[..], [DownloadEvent::Closed(CloseReason::Mismatch(_))]),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(&run(b"$ADCSND file /a 5 -1|", None)[..], [DownloadEvent::Closed(CloseReason::Mismatch(_))]));
        // DCGUI's -1 answer to a definite request means the requested count.
        assert!(matches!(&run(b"$ADCSND file /a 5 -1|", Some(10))[..], [DownloadEvent::Incoming { length: 10, .. }]));
        // Fewer bytes than asked (end of file) is fine.
        assert!(matches!(&run(b"$ADCSND file /a 5 3|", Some(10))[..], [DownloadEvent::Incoming { length: 3, .. }]));
        // An $ADCSND nobody asked for.
        let mut d = Downloader::new(b"$ADCSND file /a 0 1|x");
        assert_eq!(down_drain(&mut d).1, vec![DownloadEvent::Closed(CloseReason::Unexpected("$ADCSND".into()))]);
        // Bad identifiers never reach the wire.
        let mut d = Downloader::new(b"");
        assert!(matches!(
            d.request_adc(now, AdcKind::File, &Identifier::Path("/a|b".into()), 0, None),
            Err(TransferError::BadIdentifier(_))
        ));
        assert!(matches!(
            d.request_adc(now, AdcKind::File, &Identifier::Path("/".into()), 0, None),
            Err(TransferError::BadIdentifier(_))
        ));
        assert_eq!(
            d.request_adc(now, AdcKind::File, &Identifier::FileList, 0, Some(u64::MAX)),
            Err(TransferError::TooLong(u64::MAX))
        );
        assert!(matches!(d.request_legacy(now, &Identifier::Tth(root()), 0), Err(TransferError::BadIdentifier(_))));
        assert!(d.is_idle());
        assert_eq!(down_drain(&mut d).0, b"");
    }

    /// The old page's legacy download (docs/protocols/nmdc.md#legacy-get): `$Get` with a 1-based offset, `$FileLength`, `$Send`, and
    /// another `$Send` after every 40 906 bytes while more are due.
    #[test]
    fn downloader_legacy_with_seed_resends() {
        let now = t0();
        let mut d = Downloader::new(b"");
        d.request_legacy(now, &Identifier::FileList, 0).unwrap();
        assert_eq!(down_drain(&mut d).0, b"$Get files.xml.bz2$1|");
        d.handle_input(now, b"$FileLength 100000|");
        let (sent, events, _) = down_drain(&mut d);
        assert_eq!(sent, b"$Send|");
        assert!(matches!(
            &events[..],
            [DownloadEvent::Length(100_000), DownloadEvent::Incoming { start: 0, length: 100_000, leftover, .. }] if leftover.is_empty()
        ));
        d.received(40_905).unwrap();
        assert_eq!(down_drain(&mut d).0, b"");
        d.received(1).unwrap();
        assert_eq!(down_drain(&mut d).0, b"$Send|");
        // One call spanning the second chunk boundary.
        d.received(50_000).unwrap();
        assert_eq!(down_drain(&mut d).0, b"$Send|");
        // The rest: the end comes before the third boundary (3 × 40 906 > 100 000).
        d.received(100_000 - 90_906).unwrap();
        assert_eq!(down_drain(&mut d).0, b"");
        d.done().unwrap();

        // A resume from byte 40 of a path; resends off.
        d.set_legacy_resend(false);
        d.request_legacy(now, &Identifier::Path("/d/cdab03.bin".into()), 40).unwrap();
        assert_eq!(down_drain(&mut d).0, b"$Get d\\cdab03.bin$41|");
        d.handle_input(now, b"$FileLength 100000|");
        let (sent, events, _) = down_drain(&mut d);
        assert_eq!(sent, b"$Send|");
        assert!(matches!(
            &events[..],
            [DownloadEvent::Length(100_000), DownloadEvent::Incoming { start: 40, length: 99_960, .. }]
        ));
        d.received(99_960).unwrap();
        assert_eq!(down_drain(&mut d).0, b"");
        d.done().unwrap();

        // $FileLength shorter than the start.
        d.request_legacy(now, &Identifier::FileList, 10).unwrap();
        down_drain(&mut d);
        d.handle_input(now, b"$FileLength 5|");
        assert!(matches!(&down_drain(&mut d).1[..], [DownloadEvent::Closed(CloseReason::Mismatch(_))]));
    }

    #[test]
    fn downloader_answer_timeout() {
        let now = t0();
        let mut d = Downloader::new(b"");
        let t = now + Duration::from_secs(7);
        d.request_adc(t, AdcKind::File, &Identifier::FileList, 0, None).unwrap();
        assert_eq!(down_drain(&mut d).2, Some(t + ANSWER_TIMEOUT));
        d.handle_timeout(t + ANSWER_TIMEOUT - Duration::from_millis(1));
        assert!(!d.is_done());
        d.handle_timeout(t + ANSWER_TIMEOUT);
        assert_eq!(down_drain(&mut d).1, vec![DownloadEvent::Closed(CloseReason::Timeout)]);
        assert_eq!(d.poll_output(), None);
        assert_eq!(d.request_adc(t, AdcKind::File, &Identifier::FileList, 0, None), Err(TransferError::Closed));
        // No timeout while receiving raw bytes (the driver watches the socket) or idle.
        let mut d = Downloader::new(b"");
        d.request_adc(now, AdcKind::File, &Identifier::FileList, 0, None).unwrap();
        d.handle_input(now, b"$ADCSND file files.xml.bz2 0 3|");
        down_drain(&mut d);
        d.handle_timeout(now + Duration::from_secs(3600));
        assert!(!d.is_done());
        assert_eq!(d.poll_output(), None);
    }

    /// Both machines against each other over a simulated socket that cuts every write into
    /// 7-byte pieces; the driver loop moves raw bytes itself, as a real one would.
    #[test]
    fn uploader_and_downloader_talk() {
        let now = t0();
        let file: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for legacy in [false, true] {
            let mut up = Uploader::new(now, b"");
            let mut down = Downloader::new(b"");
            if legacy {
                down.request_legacy(now, &Identifier::Path("/f.bin".into()), 1000).unwrap();
            } else {
                down.request_adc(now, AdcKind::File, &Identifier::Path("/f.bin".into()), 1000, None).unwrap();
            }
            let mut got = Vec::new();
            let mut wire_to_up: Vec<u8> = Vec::new();
            let mut wire_to_down: Vec<u8> = Vec::new();
            let mut finished = false;
            for _ in 0..200_000 {
                // Downloader side.
                while let Some(o) = down.poll_output() {
                    match o {
                        Output::Transmit(b) => wire_to_up.extend(b),
                        Output::Event(DownloadEvent::Incoming { leftover, .. }) => got.extend(leftover),
                        Output::Event(e @ DownloadEvent::Closed(_)) => panic!("{e:?}"),
                        Output::Event(_) => {}
                        Output::Timeout(_) => break,
                    }
                }
                // Uploader side.
                while let Some(o) = up.poll_output() {
                    match o {
                        Output::Transmit(b) => wire_to_down.extend(b),
                        Output::Event(UploadEvent::Request(r)) => {
                            assert_eq!(r.identifier, Identifier::Path("/f.bin".into()));
                            up.serve(now, file.len() as u64).unwrap();
                        }
                        Output::Event(UploadEvent::SendBytes { start, length }) => {
                            let s = start as usize;
                            wire_to_down.extend(&file[s..s + length as usize]);
                            up.sent(now).unwrap();
                        }
                        Output::Event(e) => panic!("{e:?}"),
                        Output::Timeout(_) => break,
                    }
                }
                if finished && wire_to_up.is_empty() && wire_to_down.is_empty() {
                    break;
                }
                let n = wire_to_up.len().min(7);
                let chunk: Vec<u8> = wire_to_up.drain(..n).collect();
                up.handle_input(now, &chunk);
                let n = wire_to_down.len().min(7);
                let mut chunk: Vec<u8> = wire_to_down.drain(..n).collect();
                while !chunk.is_empty() {
                    match down.remaining() {
                        Some(0) => {
                            down.done().unwrap();
                            finished = true;
                        }
                        Some(r) => {
                            let k = chunk.len().min(r as usize);
                            got.extend(chunk.drain(..k));
                            down.received(k as u64).unwrap();
                        }
                        None => {
                            down.handle_input(now, &chunk);
                            chunk.clear();
                        }
                    }
                }
                if down.remaining() == Some(0) {
                    down.done().unwrap();
                    finished = true;
                }
            }
            assert!(finished, "legacy={legacy}");
            assert_eq!(got, &file[1000..], "legacy={legacy}");
            assert!(!up.is_done() && !down.is_done());
        }
    }

    #[test]
    fn identifiers_round_trip() {
        for id in [Identifier::FileList, Identifier::Tth(root()), Identifier::Path("/share/café/x y.bin".into())] {
            assert_eq!(Identifier::from_adc(&id.to_adc().unwrap()), id);
            if !matches!(id, Identifier::Tth(_)) {
                assert_eq!(Identifier::from_legacy(&id.to_legacy().unwrap()), id);
            }
        }
        assert_eq!(Identifier::from_legacy("share\\dir\\f.txt"), Identifier::Path("/share/dir/f.txt".into()));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Input(Vec<u8>),
        Advance(u64),
        Serve(u64),
        NotAvailable,
        MaxedOut,
        Sent,
        RequestAdc(u64, Option<u64>),
        RequestLegacy(u64),
        Received(u64),
        Done,
        Eof,
    }

    fn step() -> impl Strategy<Value = Step> {
        let cmd = prop_oneof![
            Just(b"$ADCGET file files.xml.bz2 0 -1|".to_vec()),
            Just(b"$ADCSND file files.xml.bz2 0 5|".to_vec()),
            Just(b"$Get a$1|".to_vec()),
            Just(b"$FileLength 50000|".to_vec()),
            Just(b"$Send|".to_vec()),
            Just(b"$MaxedOut|$Error x|".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ];
        prop_oneof![
            cmd.prop_map(Step::Input),
            (0u64..200).prop_map(Step::Advance),
            any::<u64>().prop_map(Step::Serve),
            Just(Step::NotAvailable),
            Just(Step::MaxedOut),
            Just(Step::Sent),
            (any::<u64>(), proptest::option::of(any::<u64>())).prop_map(|(s, l)| Step::RequestAdc(s, l)),
            any::<u64>().prop_map(Step::RequestLegacy),
            (0u64..60_000).prop_map(Step::Received),
            Just(Step::Done),
            Just(Step::Eof),
        ]
    }

    proptest! {
        #[test]
        fn never_panics(steps in proptest::collection::vec(step(), 0..40)) {
            let mut now = t0();
            let mut up = Uploader::new(now, b"");
            let mut down = Downloader::new(b"");
            for s in steps {
                match s {
                    Step::Input(b) => { up.handle_input(now, &b); down.handle_input(now, &b); }
                    Step::Advance(secs) => {
                        now += Duration::from_secs(secs);
                        up.handle_timeout(now);
                        down.handle_timeout(now);
                    }
                    Step::Serve(n) => { let _ = up.serve(now, n); }
                    Step::NotAvailable => { let _ = up.not_available(now); }
                    Step::MaxedOut => { let _ = up.maxed_out(); }
                    Step::Sent => { let _ = up.sent(now); }
                    Step::RequestAdc(s, l) => {
                        let _ = down.request_adc(now, AdcKind::File, &Identifier::FileList, s, l);
                    }
                    Step::RequestLegacy(s) => {
                        let _ = down.request_legacy(now, &Identifier::Path("/a".into()), s);
                    }
                    Step::Received(n) => { let _ = down.received(n); }
                    Step::Done => { let _ = down.done(); }
                    Step::Eof => { up.handle_eof(); down.handle_eof(); }
                }
                while let Some(o) = up.poll_output() { if matches!(o, Output::Timeout(_)) { break; } }
                while let Some(o) = down.poll_output() { if matches!(o, Output::Timeout(_)) { break; } }
            }
        }
    }
}
