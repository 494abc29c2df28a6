//! `omnipeer slsk`: Soulseek, a server and a client that shares, searches and downloads
//! (docs/protocols/soulseek.md).

use crate::common::{ensure_dir, print_json, shutdown_on_signals, spawn_printer, with_progress};
use crate::Global;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use omnipeer_node::config::Config;
use omnipeer_node::slsk::client::{SlskClient, SlskEvent};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum SlskCmd {
    /// Run a Soulseek server: logins (first login registers), rooms, private messages,
    /// search and connection relay, administration by private message to `server`
    Server(ServerArgs),
    /// Stay online sharing folders: answer searches, browse, queued uploads
    Share(ShareArgs),
    /// Search the network and print results (user, virtual path, size, free slot, queue)
    Search(SearchArgs),
    /// Download one file from a user into a folder (resumes a partial file)
    Get(GetArgs),
}

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2242")]
    listen: SocketAddr,
    /// Database of accounts, stored messages and bans [default: DATA_DIR/slsk-server.sqlite]
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Greeting sent at login
    #[arg(long, value_name = "TEXT", default_value = "")]
    motd: String,
    /// Refuse users without an account (no registration by first login)
    #[arg(long)]
    private: bool,
    /// A user who may give `server` commands (repeatable)
    #[arg(long, value_name = "USER")]
    admin: Vec<String>,
    /// Create (or reset) an account at start (repeatable)
    #[arg(long, value_name = "USER:PASS")]
    register: Vec<String>,
    /// No distributed tree: every search goes to every user from the server
    #[arg(long)]
    no_tree: bool,
    /// Seconds between offers of parents (PossibleParents) to a user still without one
    #[arg(long, value_name = "SECS", default_value_t = omnipeer_slsk::tree::PARENT_OFFER_EVERY.as_secs())]
    parent_offer_every: u64,
}

#[derive(Args)]
pub struct ShareArgs {
    #[command(flatten)]
    login: SlskLoginArgs,
    /// Folder to share (repeatable)
    #[arg(long, value_name = "DIR", required = true)]
    share: Vec<PathBuf>,
    /// Upload slots
    #[arg(long, value_name = "N", default_value_t = 2)]
    slots: usize,
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    login: SlskLoginArgs,
    /// Seconds to collect results
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// Words to search for
    #[arg(required = true)]
    query: Vec<String>,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    login: SlskLoginArgs,
    /// The user to download from
    #[arg(long, value_name = "USER")]
    from: String,
    /// The file's virtual path as the user shares it ('Folder\\file.mp3')
    #[arg(long, value_name = "PATH")]
    file: String,
    /// Folder to write into
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args, Clone)]
pub struct SlskLoginArgs {
    /// The server, HOST:PORT
    #[arg(long, value_name = "ADDR")]
    server: String,
    /// User name (the first login registers it)
    #[arg(long, value_name = "USER")]
    user: String,
    /// Password
    #[arg(long, value_name = "PASS")]
    password: String,
    /// Where peers connect to us [default: 0.0.0.0 on a free port]
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Distributed children we pass searches to, at most
    #[arg(long, value_name = "N", default_value_t = omnipeer_slsk::session::DEFAULT_MAX_CHILDREN)]
    max_children: usize,
}

impl SlskLoginArgs {
    fn config(&self, share: Vec<PathBuf>, slots: usize) -> omnipeer_node::slsk::client::SlskClientConfig {
        omnipeer_node::slsk::client::SlskClientConfig {
            server: self.server.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            listen: self.listen,
            share,
            slots: slots.max(1),
            uploads: None,
        }
    }
}

pub async fn run(g: &Global, cfg: Config, cmd: SlskCmd) -> anyhow::Result<()> {
    match cmd {
        SlskCmd::Server(args) => server(g, &cfg, args).await,
        SlskCmd::Share(args) => share(g, args).await,
        SlskCmd::Search(args) => search(g, args).await,
        SlskCmd::Get(args) => get(g, args).await,
    }
}

/// `omnipeer slsk server`.
async fn server(
    g: &Global,
    cfg: &Config,
    ServerArgs { listen, db, motd, private, admin, register, no_tree, parent_offer_every }: ServerArgs,
) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
    let mut reg = Vec::new();
    for r in register {
        let (u, p) = r.split_once(':').ok_or_else(|| anyhow!("--register {r:?}: expected USER:PASS"))?;
        omnipeer_slsk::login::validate_username(u).map_err(|e| anyhow!("--register {u:?}: {}", e.detail()))?;
        anyhow::ensure!(!p.is_empty(), "--register {r:?}: empty password");
        reg.push((u.to_owned(), p.to_owned()));
    }
    let server = omnipeer_node::slsk::SlskServer::bind(omnipeer_node::slsk::SlskServerConfig {
        listen,
        db: db.unwrap_or_else(|| data_dir.join("slsk-server.sqlite")),
        motd,
        private,
        admins: admin,
        register: reg,
    })
    .await?
    .with_tree(omnipeer_slsk::tree::TreeConfig {
        enabled: !no_tree,
        offer_every: Duration::from_secs(parent_offer_every.max(1)),
        ..Default::default()
    });
    eprintln!("listening on {}", server.local_addr());
    let json = g.json;
    spawn_printer(server.subscribe(), move |ev| {
        use omnipeer_slsk::central::CentralEvent;
        match ev {
            CentralEvent::RoomMessage { room, user, message } if json => {
                print_json(serde_json::json!({"event":"room_message","room":room,"user":user,"message":message}))
            }
            CentralEvent::RoomMessage { room, user, message } => println!("[{room}] <{user}> {message}"),
            CentralEvent::LoggedIn { user, ip, .. } if json => {
                print_json(serde_json::json!({"event":"logged_in","user":user,"ip":ip.to_string()}))
            }
            CentralEvent::LoggedOut { user } if json => {
                print_json(serde_json::json!({"event":"logged_out","user":user}))
            }
            _ => {}
        }
    });
    server.run(shutdown_on_signals()).await
}

/// `omnipeer slsk share`.
async fn share(g: &Global, ShareArgs { login, share, slots }: ShareArgs) -> anyhow::Result<()> {
    for d in &share {
        anyhow::ensure!(d.is_dir(), "{} is not a folder", d.display());
    }
    let client = SlskClient::start(login.config(share, slots)).await?;
    client.set_max_distributed_children(login.max_children);
    eprintln!("listening on {}:{}", login.listen.ip(), client.listen_port());
    eprintln!("sharing {} files; online at {} as {}", client.shared_files(), login.server, login.user);
    let json = g.json;
    spawn_printer(client.take_events().expect("a new client's events"), move |e| match e {
        SlskEvent::PrivateMessage { user, text } if json => {
            print_json(serde_json::json!({"event":"private_message","user":user,"text":text}))
        }
        SlskEvent::PrivateMessage { user, text } => println!("[pm] <{user}> {text}"),
        SlskEvent::Uploaded { user, path } => tracing::info!(%user, %path, "upload complete"),
        _ => {}
    });
    client.run_until(shutdown_on_signals()).await
}

/// `omnipeer slsk search`.
async fn search(g: &Global, SearchArgs { login, timeout, query }: SearchArgs) -> anyhow::Result<()> {
    let client = SlskClient::start(login.config(Vec::new(), 1)).await?;
    let mut ev = client.take_events().expect("a new client's events");
    let ours = client.search(&query.join(" "));
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    let mut n = 0;
    while let Ok(Some(e)) = tokio::time::timeout_at(end, ev.recv()).await {
        if let SlskEvent::SearchResult { user, path, size, free_slot, queue, token, .. } = e {
            if token != ours {
                continue;
            }
            n += 1;
            if g.json {
                print_json(
                    serde_json::json!({"user":user,"path":path,"size":size,"free_slot":free_slot,"queue":queue}),
                );
            } else {
                println!("{user}\t{path}\t{size}\t{}\t{queue}", if free_slot { "free" } else { "busy" });
            }
        }
    }
    eprintln!("{n} result(s)");
    client.stop().await
}

/// `omnipeer slsk get`.
async fn get(g: &Global, GetArgs { login, from, file, out }: GetArgs) -> anyhow::Result<()> {
    ensure_dir(&out)?;
    let client = SlskClient::start(login.config(Vec::new(), 1)).await?;
    let progress = std::sync::Arc::new((std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)));
    let name = file.rsplit(['\\', '/']).next().unwrap_or(&file).to_owned();
    let mut bar = omnipeer_node::progress::Progress::for_stderr(format!("get {name}"));
    let result = with_progress(client.download(&from, &file, &out, progress.clone()), &mut bar, || {
        (progress.0.load(std::sync::atomic::Ordering::Relaxed), progress.1.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await;
    let (path, size, resumed) = result?;
    bar.finish(size);
    if g.json {
        print_json(
            serde_json::json!({"event":"downloaded","from":from,"path":path,"size":size,"resumed_from":resumed}),
        );
    } else {
        println!(
            "downloaded {} ({size} bytes) from {from}{}",
            path.display(),
            if resumed > 0 { format!(", resumed at byte {resumed}") } else { String::new() }
        );
    }
    client.stop().await
}
