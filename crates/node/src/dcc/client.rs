//! The DCC Server client commands: chat, send, fserve (with get), get.

use super::{write_lines, ChatLineReader};
use crate::progress::Progress;
use crate::transfer;
use anyhow::{anyhow, bail, Context};
use omnipeer_dcc::client::{ClientHandshake, Event, Output, Request};
use omnipeer_dcc::fserve::{parse_sending, CommandPacer, Pace, QUIET_PERIOD};
use omnipeer_dcc::SafeName;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Our nick.
    pub nick: String,
    /// How long to wait for connecting and for each server reply.
    pub reply_timeout: Duration,
    /// How long a transfer may stall.
    pub idle_timeout: Duration,
    /// Show progress on stderr.
    pub progress: bool,
}

impl ClientOptions {
    /// Defaults for `nick`.
    pub fn new(nick: impl Into<String>) -> Self {
        ClientOptions {
            nick: nick.into(),
            reply_timeout: omnipeer_dcc::client::REPLY_TIMEOUT,
            idle_timeout: Duration::from_secs(120),
            progress: false,
        }
    }

    fn progress(&self, label: String) -> Progress {
        if self.progress {
            Progress::for_stderr(label)
        } else {
            Progress::quiet()
        }
    }
}

/// What a send did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SendSummary {
    /// The server's nick.
    pub server_nick: String,
    /// The name announced.
    pub name: String,
    /// The file size.
    pub size: u64,
    /// Where the server resumed.
    pub resumed_from: u64,
}

/// What a get did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GetSummary {
    /// The server's nick.
    pub server_nick: String,
    /// Where the file is now.
    pub path: PathBuf,
    /// The file size.
    pub size: u64,
    /// Where the transfer resumed.
    pub resumed_from: u64,
}

async fn connect(addr: &str, opts: &ClientOptions) -> anyhow::Result<TcpStream> {
    let s = tokio::time::timeout(opts.reply_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Pump the handshake machine until it settles something.
async fn pump(stream: &mut TcpStream, hs: &mut ClientHandshake) -> anyhow::Result<Event> {
    let mut buf = [0u8; 2048];
    loop {
        let mut deadline = None;
        while let Some(o) = hs.poll_output() {
            match o {
                Output::Transmit(b) => stream.write_all(&b).await.context("cannot write to the server")?,
                Output::Event(Event::Failed(e)) => bail!(e),
                Output::Event(e) => return Ok(e),
                Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
            }
        }
        let deadline = deadline.ok_or_else(|| anyhow!("handshake ended without a result"))?;
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(n) => hs.handle_input(Instant::now(), &buf[..n]),
                Err(_) => hs.handle_input(Instant::now(), &[]),
            },
            _ = tokio::time::sleep_until(deadline.into()) => hs.handle_timeout(Instant::now()),
        }
    }
}

/// `120`/`121`: send a file; the server says where to resume.
pub async fn send(addr: &str, opts: &ClientOptions, path: &Path) -> anyhow::Result<SendSummary> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let size = meta.len();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} has no file name that can be sent", path.display()))?
        .to_owned();
    SafeName::new(&name).map_err(|e| anyhow!("cannot send a file named {name:?}: {e}"))?;
    let mut stream = connect(addr, opts).await?;
    let mut hs = ClientHandshake::new(
        &opts.nick,
        Request::Send { size, name: name.clone() },
        Instant::now(),
        opts.reply_timeout,
    );
    let Event::SendAccepted { server_nick, sender, leftover } = pump(&mut stream, &mut hs).await? else {
        bail!("unexpected handshake result");
    };
    let resumed_from = sender.position();
    let mut progress = opts.progress(format!("send {name}"));
    progress.start(resumed_from, size);
    let r = transfer::send(stream, file, sender, leftover, opts.idle_timeout, &mut |p| progress.set(p)).await;
    progress.finish(r.as_ref().map(|s| s.position()).unwrap_or(resumed_from));
    r.with_context(|| format!("sending {name} to {addr}"))?;
    Ok(SendSummary { server_nick, name, size, resumed_from })
}

/// `130`/`131`/`132`: fetch a file ordered with `get` in an fserve session, resuming what
/// `out_dir` already holds under that name.
pub async fn get(addr: &str, opts: &ClientOptions, name: &str, out_dir: &Path) -> anyhow::Result<GetSummary> {
    let safe = SafeName::sanitize(name).map_err(|e| anyhow!("cannot store a file named {name:?}: {e}"))?;
    // A SafeName is one ordinary path component: the join stays inside `out_dir`.
    let path = out_dir.join(safe.as_str());
    let have = match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.file_type().is_file() => bail!("{} exists and is not a regular file", path.display()),
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    let mut stream = connect(addr, opts).await?;
    let mut hs =
        ClientHandshake::new(&opts.nick, Request::Get { name: name.to_owned() }, Instant::now(), opts.reply_timeout);
    let ev = match pump(&mut stream, &mut hs).await {
        Ok(ev) => ev,
        Err(e) if e.to_string().contains("without a reply") => {
            bail!("the server ignored the get of {name} (no matching fserve get, or it expired)")
        }
        Err(e) => return Err(e),
    };
    let Event::GetOffered { server_nick, size } = ev else { bail!("unexpected handshake result") };
    if have > size {
        bail!("{} already holds {have} bytes, more than the offered {size}: move it away first", path.display());
    }
    hs.resume_get(have);
    let Event::Receive { receiver, leftover } = pump(&mut stream, &mut hs).await? else {
        bail!("unexpected handshake result");
    };
    let resumed_from = receiver.position();
    let file =
        transfer::open_for_receive(&path, resumed_from).with_context(|| format!("cannot write {}", path.display()))?;
    let mut progress = opts.progress(format!("get {}", safe));
    progress.start(resumed_from, size);
    if receiver.is_complete() {
        progress.finish(size);
    } else {
        let r = transfer::receive(stream, file, receiver, leftover, opts.idle_timeout, &mut |p| progress.set(p)).await;
        progress.finish(r.as_ref().map(|r| r.position()).unwrap_or(resumed_from));
        r.with_context(|| format!("getting {name} from {addr}"))?;
    }
    Ok(GetSummary { server_nick, path, size, resumed_from })
}

/// `100`/`101`: chat. Lines from `input` go to the server, lines from the server go to
/// `output`. At the end of `input` the chat stays open `linger` longer for replies, then
/// closes. Returns when either side closes.
pub async fn chat<I, O>(
    addr: &str,
    opts: &ClientOptions,
    input: I,
    output: &mut O,
    linger: Duration,
) -> anyhow::Result<String>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut stream = connect(addr, opts).await?;
    let mut hs = ClientHandshake::new(&opts.nick, Request::Chat, Instant::now(), opts.reply_timeout);
    let Event::Accepted { server_nick, leftover } = pump(&mut stream, &mut hs).await? else {
        bail!("unexpected handshake result");
    };
    tracing::info!("chat with {server_nick} open");
    let (mut rd, mut wr) = stream.into_split();
    let mut from_peer = ChatLineReader::new(leftover);
    let mut input = input.lines();
    let mut input_open = true;
    let linger_end = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(linger_end);
    loop {
        tokio::select! {
            line = from_peer.next(&mut rd) => match line.context("reading from the server")? {
                Some(text) => {
                    output.write_all(text.as_bytes()).await?;
                    output.write_all(b"\n").await?;
                    output.flush().await?;
                }
                None => break,
            },
            line = input.next_line(), if input_open => match line? {
                Some(text) => write_lines(&mut wr, &[text]).await.context("writing to the server")?,
                None => {
                    input_open = false;
                    linger_end.as_mut().reset(tokio::time::Instant::now() + linger);
                }
            },
            _ = &mut linger_end => break,
        }
    }
    let _ = wr.shutdown().await;
    Ok(server_nick)
}

/// What an fserve session did.
#[derive(Debug, Default)]
pub struct FserveSummary {
    /// Files fetched with `get`.
    pub gets: Vec<GetSummary>,
}

/// `110`/`111`: a file-server session. Runs `commands` one after another (each waits for
/// the prompt that ends the previous one's output, or, from a server that prints no
/// prompt, for [`QUIET_PERIOD`] of silence), or, when `commands` is `None`, the
/// lines of `input` as they come. Server output goes to `output`. Every `get` the server
/// accepts is fetched over a new `130` connection into `out_dir`, resuming a partial copy.
pub async fn fserve<I, O>(
    addr: &str,
    opts: &ClientOptions,
    out_dir: &Path,
    commands: Option<Vec<String>>,
    input: I,
    output: &mut O,
) -> anyhow::Result<FserveSummary>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut stream = connect(addr, opts).await?;
    let mut hs = ClientHandshake::new(&opts.nick, Request::Fserve, Instant::now(), opts.reply_timeout);
    let Event::Accepted { leftover, .. } = pump(&mut stream, &mut hs).await? else {
        bail!("unexpected handshake result");
    };
    let (mut rd, mut wr) = stream.into_split();
    let mut from_peer = ChatLineReader::new(leftover);
    let mut gets = tokio::task::JoinSet::new();
    let on_line = |line: &str, gets: &mut tokio::task::JoinSet<anyhow::Result<GetSummary>>| {
        if let Some((name, _size)) = parse_sending(line) {
            let (addr, opts, out) = (addr.to_owned(), opts.clone(), out_dir.to_path_buf());
            gets.spawn(async move { get(&addr, &opts, &name, &out).await });
        }
    };
    match commands {
        Some(cmds) => {
            // Paced by the prompt our own server prints after each command, or, for a
            // server that prints none, by a short quiet period (fserve::CommandPacer).
            let mut pacer = CommandPacer::new(cmds, Instant::now(), QUIET_PERIOD, opts.reply_timeout);
            loop {
                let pace = tokio::select! {
                    line = from_peer.next(&mut rd) => {
                        let Some(line) = line? else { break };
                        output.write_all(line.as_bytes()).await?;
                        output.write_all(b"\n").await?;
                        on_line(&line, &mut gets);
                        pacer.on_line(Instant::now(), &line)
                    }
                    _ = tokio::time::sleep_until(pacer.deadline().into()) => pacer.on_timeout(Instant::now()),
                };
                match pace {
                    None => {}
                    Some(Pace::Send(cmd)) => write_lines(&mut wr, &[cmd]).await?,
                    Some(Pace::Close) => break,
                    Some(Pace::Stalled) => bail!("the file server stopped answering"),
                }
            }
        }
        None => {
            let mut input = input.lines();
            let mut input_open = true;
            loop {
                tokio::select! {
                    line = from_peer.next(&mut rd) => match line? {
                        Some(line) => {
                            output.write_all(line.as_bytes()).await?;
                            output.write_all(b"\n").await?;
                            output.flush().await?;
                            on_line(&line, &mut gets);
                        }
                                None => break,
                    },
                    line = input.next_line(), if input_open => match line? {
                        Some(cmd) => write_lines(&mut wr, &[cmd]).await?,
                        None => {
                            input_open = false;
                            write_lines(&mut wr, &["exit".to_owned()]).await?;
                        }
                    },
                }
            }
        }
    }
    output.flush().await?;
    let mut summary = FserveSummary::default();
    let mut failures = Vec::new();
    while let Some(r) = gets.join_next().await {
        match r {
            Ok(Ok(g)) => summary.gets.push(g),
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if !failures.is_empty() {
        bail!("{} get(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(summary)
}
