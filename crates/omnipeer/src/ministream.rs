//! `omnipeer ministream`: I2P ministreaming over the loopback TCP transport or an I2P
//! router's SAM bridge (docs/protocols/ministream.md).

use anyhow::Context;
use clap::Subcommand;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Subcommand)]
pub enum MinistreamCmd {
    /// Accept streams; --echo echoes each, else each stream in turn <-> stdin/stdout
    #[command(group(clap::ArgGroup::new("transport").required(true).args(["bind", "sam"])))]
    Listen {
        /// Address to listen on (loopback transport: framed TCP)
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        /// Carry the streams over I2P instead: the SAM v3 bridge of an I2P router (i2pd:
        /// 127.0.0.1:7656). Prints our destination as `destination BASE64`.
        #[arg(long, value_name = "ADDR", conflicts_with = "bind")]
        sam: Option<SocketAddr>,
        /// SESSION CREATE option for the SAM session, KEY=VALUE (repeatable), e.g.
        /// inbound.length=0
        #[arg(long = "sam-option", value_name = "KEY=VALUE", requires = "sam")]
        sam_options: Vec<String>,
        /// Echo every stream back to its sender
        #[arg(long)]
        echo: bool,
    },
    /// netcat-like: stdin -> stream -> stdout, exits when the stream closes
    Connect {
        /// The listener's address; with --sam, its I2P destination (base64)
        // (I2P's base64 alphabet has '-': one destination in 64 starts with it)
        #[arg(long, value_name = "ADDR", allow_hyphen_values = true)]
        peer: String,
        /// Carry the stream over I2P: the SAM v3 bridge of an I2P router
        #[arg(long, value_name = "ADDR")]
        sam: Option<SocketAddr>,
        /// SESSION CREATE option for the SAM session, KEY=VALUE (repeatable)
        #[arg(long = "sam-option", value_name = "KEY=VALUE", requires = "sam")]
        sam_options: Vec<String>,
        /// How long to wait for the ACK, in milliseconds (default 30 s; 60 s over I2P)
        #[arg(long, value_name = "MS", hide = true)]
        connect_timeout_ms: Option<u64>,
        /// After stdin ends, how long to wait for more data before closing, in milliseconds
        #[arg(long, value_name = "MS", hide = true)]
        linger_ms: Option<u64>,
    },
}

/// After stdin ended, how long a ministream pipe waits without receiving data before it
/// closes the stream (the protocol has no half-close to tell the peer we are done).
const MINISTREAM_LINGER: Duration = Duration::from_secs(2);
/// The same over I2P, where a round trip through tunnels takes longer.
const MINISTREAM_LINGER_I2P: Duration = Duration::from_secs(10);

pub async fn run(cmd: MinistreamCmd) -> anyhow::Result<()> {
    use omnipeer_node::ministream::sam::{SamConfig, SamEndpoint};
    use omnipeer_node::ministream::{Endpoint, Listener, Stream};
    use tokio::io::AsyncWriteExt as _;
    fn echo(s: Stream) {
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(s);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
    match cmd {
        MinistreamCmd::Listen { bind: Some(bind), echo: echo_on, .. } => {
            let mut l = Listener::bind(bind).await.with_context(|| format!("cannot listen on {bind}"))?;
            eprintln!("listening on {}", l.local_addr());
            let mut stdin = (!echo_on).then(spawn_stdin_reader);
            loop {
                let s = l.accept().await?;
                tracing::info!("ministream {} accepted", s.id());
                match stdin.take() {
                    None => echo(s),
                    Some(rx) => stdin = Some(ministream_pipe(s, rx, MINISTREAM_LINGER).await?),
                }
            }
        }
        MinistreamCmd::Listen { sam: Some(sam), sam_options, echo: echo_on, .. } => {
            eprintln!("creating an I2P session on the SAM bridge at {sam} (building tunnels may take a while)");
            let cfg = SamConfig { options: sam_options, ..SamConfig::new(sam) };
            let ep = SamEndpoint::create(cfg, true).await.with_context(|| format!("I2P session on {sam}"))?;
            println!("destination {}", ep.destination());
            eprintln!("listening on I2P");
            let mut stdin = (!echo_on).then(spawn_stdin_reader);
            loop {
                let s = ep.accept().await?;
                tracing::info!("ministream {} accepted over I2P", s.id());
                match stdin.take() {
                    None => echo(s),
                    Some(rx) => stdin = Some(ministream_pipe(s, rx, MINISTREAM_LINGER_I2P).await?),
                }
            }
        }
        MinistreamCmd::Listen { .. } => anyhow::bail!("give --bind ADDR or --sam ADDR"),
        MinistreamCmd::Connect { peer, sam: None, connect_timeout_ms, linger_ms, .. } => {
            let peer: SocketAddr =
                peer.parse().with_context(|| format!("--peer {peer:?} is not HOST:PORT (for I2P add --sam)"))?;
            let cfg = omnipeer_node::ministream::Config {
                connect_timeout: connect_timeout_ms
                    .map_or(omnipeer_node::ministream::CONNECT_TIMEOUT, Duration::from_millis),
                ..Default::default()
            };
            let s = Endpoint::new(cfg).connect(peer).await.with_context(|| format!("ministream connect to {peer}"))?;
            let linger = linger_ms.map_or(MINISTREAM_LINGER, Duration::from_millis);
            ministream_pipe(s, spawn_stdin_reader(), linger).await?;
            Ok(())
        }
        MinistreamCmd::Connect { peer, sam: Some(sam), sam_options, connect_timeout_ms, linger_ms } => {
            omnipeer_node::ministream::sam::decode_destination(&peer).context("--peer")?;
            eprintln!("creating an I2P session on the SAM bridge at {sam} (building tunnels may take a while)");
            let mut cfg = SamConfig { options: sam_options, ..SamConfig::new(sam) };
            if let Some(ms) = connect_timeout_ms {
                cfg.connect_timeout = Duration::from_millis(ms);
            }
            let ep = SamEndpoint::create(cfg, false).await.with_context(|| format!("I2P session on {sam}"))?;
            eprintln!("connecting over I2P");
            let s = ep.connect(&peer).await.context("ministream connect over I2P")?;
            let linger = linger_ms.map_or(MINISTREAM_LINGER_I2P, Duration::from_millis);
            ministream_pipe(s, spawn_stdin_reader(), linger).await?;
            Ok(())
        }
    }
}

/// Reads stdin in chunks on a thread (`None`-closed channel = end of stdin).
fn spawn_stdin_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// stdin -> stream and stream -> stdout until the stream closes (or, once stdin ended, no
/// data came for [`MINISTREAM_LINGER`]). Returns the stdin channel for the next stream.
async fn ministream_pipe(
    s: omnipeer_node::ministream::Stream,
    mut stdin: tokio::sync::mpsc::Receiver<Vec<u8>>,
    linger: Duration,
) -> anyhow::Result<tokio::sync::mpsc::Receiver<Vec<u8>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut r, mut w) = tokio::io::split(s);
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (eof_tx, mut eof_rx) = tokio::sync::oneshot::channel::<()>();
    // Writing runs apart from reading: a blocked write must not stop us from reading.
    let writer = tokio::spawn(async move {
        let mut eof_tx = Some(eof_tx);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop_rx => break,
                d = stdin.recv(), if eof_tx.is_some() => match d {
                    Some(d) => tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        r = w.write_all(&d) => if r.is_err() { break },
                    },
                    None => {
                        let _ = eof_tx.take().map(|t| t.send(()));
                    }
                },
            }
        }
        (stdin, w)
    });
    let mut out = tokio::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin_done = false;
    loop {
        tokio::select! {
            n = r.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).await?;
                out.flush().await?;
            }
            _ = &mut eof_rx, if !stdin_done => stdin_done = true,
            _ = tokio::time::sleep(linger), if stdin_done => break,
        }
    }
    let _ = stop_tx.send(());
    let (stdin, mut w) = writer.await?;
    let _ = w.shutdown().await;
    Ok(stdin)
}
