//! `omnipeer dcc`: the mIRC DCC Server protocol, server and clients (chat, send, fserve);
//! docs/protocols/dcc.md.

use crate::common::{ensure_dir, print_json, shutdown_on_signals, spawn_printer};
use crate::Global;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use omnipeer_node::config::Config;
use omnipeer_node::dcc::{self, ClientOptions, DccServer, DccServerConfig, ServerEvent};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[derive(Subcommand)]
pub enum DccCmd {
    /// Run a DCC server: chat, incoming sends and an fserve of the share folder
    Server(ServerArgs),
    /// Chat with a DCC server: stdin -> peer, peer -> stdout
    Chat(ChatArgs),
    /// Send a file to a DCC server (120/121); resumes where the server says
    Send(SendArgs),
    /// Open a file-server session; `get` fetches files over 130/131/132
    Fserve(FserveArgs),
}

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on [default: the config's dcc.listen, 127.0.0.1:5959]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Folder served by fserve [default: DATA_DIR/share]
    #[arg(long, value_name = "DIR")]
    share: Option<PathBuf>,
    /// Folder incoming sends are written to [default: DATA_DIR/incoming]
    #[arg(long, value_name = "DIR")]
    incoming: Option<PathBuf>,
    /// Our nick [default: the config's]
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
    /// Services that answer, comma-separated (others get "150 unavailable")
    #[arg(long, value_name = "LIST")]
    services: Option<String>,
    /// Connections served at once; more get "150 unavailable"
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Answer chats from stdin even when it is not a terminal (lines go to every open
    /// chat; "/msg NICK text" to one)
    #[arg(long)]
    chat_stdin: bool,
}

#[derive(Args)]
pub struct ChatArgs {
    /// The server, HOST:PORT
    addr: String,
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
    /// Seconds to keep listening for replies after stdin ends
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    linger: f64,
}

#[derive(Args)]
pub struct SendArgs {
    /// The server, HOST:PORT
    addr: String,
    /// The file to send
    file: PathBuf,
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
}

#[derive(Args)]
pub struct FserveArgs {
    /// The server, HOST:PORT
    addr: String,
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
    /// Where `get` stores files (partial files there are resumed) [default: .]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A command to run (repeatable); without any, commands are read from stdin
    #[arg(long = "cmd", value_name = "LINE")]
    cmds: Vec<String>,
}

/// Print what the server does: chat lines on stdout, the rest as log lines.
pub fn spawn_event_printer(handle: dcc::DccServerHandle, json: bool) {
    let Some(rx) = handle.take_events() else { return };
    spawn_printer(rx, move |ev| {
        if json {
            print_json(event_json(&ev));
            return;
        }
        match ev {
            ServerEvent::ChatOpened { nick, peer, .. } => eprintln!("* chat with {nick} ({peer}) opened"),
            ServerEvent::ChatLine { nick, text, .. } => println!("<{nick}> {text}"),
            ServerEvent::ChatClosed { nick, .. } => eprintln!("* chat with {nick} closed"),
            _ => {}
        }
    });
}

fn event_json(ev: &ServerEvent) -> serde_json::Value {
    use serde_json::json;
    match ev {
        ServerEvent::ChatOpened { id, nick, peer } => {
            json!({"event":"chat_opened","id":id,"nick":nick,"peer":peer.to_string()})
        }
        ServerEvent::ChatLine { id, nick, text } => json!({"event":"chat_line","id":id,"nick":nick,"text":text}),
        ServerEvent::ChatClosed { id, nick } => json!({"event":"chat_closed","id":id,"nick":nick}),
        ServerEvent::ReceiveStarted { nick, name, size, position } => {
            json!({"event":"receive_started","nick":nick,"name":name,"size":size,"position":position})
        }
        ServerEvent::ReceiveDone { nick, path, size } => {
            json!({"event":"receive_done","nick":nick,"path":path,"size":size})
        }
        ServerEvent::ReceiveFailed { nick, name, error } => {
            json!({"event":"receive_failed","nick":nick,"name":name,"error":error})
        }
        ServerEvent::FserveOpened { nick, peer } => {
            json!({"event":"fserve_opened","nick":nick,"peer":peer.to_string()})
        }
        ServerEvent::GetDone { nick, path, bytes } => json!({"event":"get_done","nick":nick,"path":path,"bytes":bytes}),
        ServerEvent::GetFailed { nick, path, error } => {
            json!({"event":"get_failed","nick":nick,"path":path,"error":error})
        }
    }
}

fn client_options(cfg: &Config, nick: Option<String>) -> anyhow::Result<ClientOptions> {
    let nick = nick.unwrap_or_else(|| cfg.node.nick.clone());
    omnipeer_dcc::name::check_nick(&nick).map_err(|e| anyhow!("bad --nick {nick:?}: {e}"))?;
    let mut o = ClientOptions::new(nick);
    o.idle_timeout = Duration::from_secs(cfg.dcc.transfer_idle_timeout_secs);
    o.progress = true;
    Ok(o)
}

pub async fn run(g: &Global, cfg: Config, cmd: DccCmd) -> anyhow::Result<()> {
    match cmd {
        DccCmd::Server(args) => server(g, cfg, args).await,
        DccCmd::Chat(args) => chat(&cfg, args).await,
        DccCmd::Send(args) => send(g, &cfg, args).await,
        DccCmd::Fserve(args) => fserve(g, &cfg, args).await,
    }
}

/// `omnipeer dcc server`.
async fn server(
    g: &Global,
    mut cfg: Config,
    ServerArgs { listen, share, incoming, nick, services, max_connections, chat_stdin }: ServerArgs,
) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
    if let Some(l) = listen {
        cfg.dcc.listen = l;
    }
    if let Some(n) = nick {
        omnipeer_dcc::name::check_nick(&n).map_err(|e| anyhow!("bad --nick {n:?}: {e}"))?;
        cfg.dcc.nick = n;
    }
    if let Some(s) = services {
        omnipeer_dcc::Services::parse_list(&s).map_err(|e| anyhow!("--services: {e}"))?;
        cfg.dcc.services = s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect();
    }
    if let Some(m) = max_connections {
        cfg.dcc.max_connections = m.max(1);
    }
    let mut dcfg = DccServerConfig::from_config(&cfg, &data_dir)?;
    if let Some(s) = share {
        dcfg.share = s;
    }
    if let Some(i) = incoming {
        dcfg.incoming = i;
    }
    let server = DccServer::bind(dcfg).await.map_err(|e| {
        let taken = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse));
        if taken {
            e.context("--listen (or [dcc].listen)")
        } else {
            e
        }
    })?;
    let handle = server.handle();
    eprintln!("listening on {}", server.local_addr());
    spawn_event_printer(handle.clone(), g.json);
    if chat_stdin || std::io::stdin().is_terminal() {
        spawn_console(handle);
    }
    server.run(shutdown_on_signals()).await
}

/// `omnipeer dcc chat`.
async fn chat(cfg: &Config, ChatArgs { addr, nick, linger }: ChatArgs) -> anyhow::Result<()> {
    let opts = client_options(cfg, nick)?;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let linger = Duration::from_secs_f64(linger.max(0.0));
    let server_nick = dcc::client::chat(&addr, &opts, stdin, &mut stdout, linger).await?;
    tracing::info!("chat with {server_nick} closed");
    Ok(())
}

/// `omnipeer dcc send`.
async fn send(g: &Global, cfg: &Config, SendArgs { addr, file, nick }: SendArgs) -> anyhow::Result<()> {
    let opts = client_options(cfg, nick)?;
    let s = dcc::client::send(&addr, &opts, &file).await?;
    if g.json {
        print_json(serde_json::json!({"event":"sent","summary":s}));
    } else {
        println!(
            "sent {} ({} bytes) to {}{}",
            s.name,
            s.size,
            s.server_nick,
            if s.resumed_from > 0 { format!(", resumed at byte {}", s.resumed_from) } else { String::new() }
        );
    }
    Ok(())
}

/// `omnipeer dcc fserve`.
async fn fserve(g: &Global, cfg: &Config, FserveArgs { addr, nick, out, cmds }: FserveArgs) -> anyhow::Result<()> {
    let opts = client_options(cfg, nick)?;
    let out = out.unwrap_or_else(|| PathBuf::from("."));
    ensure_dir(&out)?;
    let commands = if cmds.is_empty() { None } else { Some(cmds) };
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let summary = dcc::client::fserve(&addr, &opts, &out, commands, stdin, &mut stdout).await?;
    for gs in summary.gets {
        if g.json {
            print_json(serde_json::json!({"event":"got","summary":gs}));
        } else {
            eprintln!("got {} ({} bytes)", gs.path.display(), gs.size);
        }
    }
    Ok(())
}

/// Answer chats from stdin: a line goes to every open chat, "/msg NICK text" to one.
fn spawn_console(handle: dcc::DccServerHandle) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let (target, text) = match line.strip_prefix("/msg ").and_then(|r| r.split_once(' ')) {
                Some((nick, text)) => (Some(nick.to_owned()), text.to_owned()),
                None => (None, line),
            };
            if handle.say(target.as_deref(), &text) == 0 {
                match target {
                    Some(n) => eprintln!("* no open chat with {n}"),
                    None => eprintln!("* no open chat"),
                }
            }
        }
    });
}
