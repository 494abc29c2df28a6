//! `omnipeer dc`: Direct Connect (NMDC), a hub and a client that shares, searches and
//! downloads (docs/protocols/nmdc.md).

use crate::common::{ensure_dir, print_json, shutdown_on_signals, spawn_printer, with_progress};
use crate::Global;
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use omnipeer_node::config::Config;
use omnipeer_node::nmdc::client::{ClientEvent, DcClient};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DcCmd {
    /// Run an NMDC hub (PtokaX-class): login, chat, search and connection relay, ops
    Hub(RunHubArgs),
    /// Stay online on a hub sharing a folder: answer searches, serve uploads
    Share(ShareArgs),
    /// Search the hub and print results (nick, path, size, TTH, slots)
    Search(SearchArgs),
    /// Download a file (by TTH or path) or the file list from a user; resumes and verifies
    Get(GetArgs),
}

#[derive(Args)]
pub struct RunHubArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4111")]
    listen: SocketAddr,
    /// Hub name ($HubName)
    #[arg(long, value_name = "NAME", default_value = "omnipeer hub")]
    name: String,
    /// Hub topic ($HubTopic)
    #[arg(long, value_name = "TEXT", default_value = "")]
    topic: String,
    /// A line of the message of the day (repeatable)
    #[arg(long, value_name = "TEXT")]
    motd: Vec<String>,
    /// Database of registered users and bans [default: DATA_DIR/hub.sqlite]
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Register a nick at start (repeatable); add ":op" for an operator
    #[arg(long, value_name = "NICK:PASS[:op]")]
    register: Vec<String>,
    /// Users at once (registered users may exceed it)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    max_users: usize,
    /// --listen speaks TLS only (nmdcs://); the certificate is kept in DATA_DIR/tls and its
    /// keyprint printed at start
    #[arg(long)]
    tls: bool,
    /// Also accept TLS (nmdcs://) on ADDR, beside the plain --listen (like PtokaX's TLS ports)
    #[arg(long, value_name = "ADDR", conflicts_with = "tls")]
    tls_listen: Option<SocketAddr>,
}

#[derive(Args)]
pub struct ShareArgs {
    #[command(flatten)]
    hub: DcHubArgs,
    /// Folder to share (repeatable; each appears as a top-level folder named after it)
    #[arg(long, value_name = "DIR", required = true)]
    share: Vec<PathBuf>,
    /// Upload slots
    #[arg(long, value_name = "N", default_value_t = 3)]
    slots: usize,
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    hub: DcHubArgs,
    /// Seconds to collect results
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// Search for a TTH instead of words
    #[arg(long, value_name = "TTH")]
    tth: Option<String>,
    /// Words to search for
    query: Vec<String>,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    hub: DcHubArgs,
    /// The user to download from
    #[arg(long, value_name = "NICK")]
    from: String,
    /// The file's TTH (39 base32 characters)
    #[arg(long, value_name = "TTH", conflicts_with_all = ["path", "filelist"])]
    tth: Option<String>,
    /// The file's share path (e.g. share/dir/file.bin)
    #[arg(long, value_name = "PATH", conflicts_with = "filelist")]
    path: Option<String>,
    /// Download the user's file list (files.xml.bz2)
    #[arg(long)]
    filelist: bool,
    /// Where to write it (a partial file there is resumed)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Clone)]
pub struct DcHubArgs {
    /// The hub, dchub://HOST:PORT, or nmdcs://HOST:PORT for TLS (add /?kp=SHA256/... to
    /// accept only the hub certificate with that keyprint)
    #[arg(long, value_name = "URL")]
    hub: String,
    /// Our nick
    #[arg(long, value_name = "NICK")]
    nick: String,
    /// Password for a registered nick
    #[arg(long, value_name = "PW")]
    password: Option<String>,
    /// Active mode: accept connections (TCP) and search results (UDP) on ADDR; without it
    /// the client is passive ($RevConnectToMe)
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

impl DcHubArgs {
    fn client_config(
        &self,
        g: &Global,
        cfg: &Config,
        share: Vec<PathBuf>,
        slots: usize,
    ) -> anyhow::Result<omnipeer_node::nmdc::client::ClientConfig> {
        let hub = omnipeer_node::config::nmdc_session_address(&self.hub).context("--hub")?;
        let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
        Ok(omnipeer_node::nmdc::client::ClientConfig {
            hub,
            nick: self.nick.clone(),
            password: self.password.clone(),
            listen: self.listen,
            share,
            slots,
            uploads: None,
            db: data_dir.join("dc.sqlite"),
            description: String::new(),
        })
    }
}

pub async fn run(g: &Global, cfg: Config, cmd: DcCmd) -> anyhow::Result<()> {
    match cmd {
        DcCmd::Hub(args) => hub(g, &cfg, args).await,
        DcCmd::Share(args) => share(g, &cfg, args).await,
        DcCmd::Search(args) => search(g, &cfg, args).await,
        DcCmd::Get(args) => get(g, &cfg, args).await,
    }
}

/// `omnipeer dc hub`.
async fn hub(
    g: &Global,
    cfg: &Config,
    RunHubArgs { listen, name, topic, motd, db, register, max_users, tls, tls_listen }: RunHubArgs,
) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
    let db = db.unwrap_or_else(|| data_dir.join("hub.sqlite"));
    let mut reg = Vec::new();
    for r in register {
        let mut parts = r.splitn(3, ':');
        let (Some(nick), Some(pass)) = (parts.next(), parts.next()) else {
            anyhow::bail!("--register {r:?}: expected NICK:PASS or NICK:PASS:op");
        };
        let op = match parts.next() {
            None => false,
            Some(x) if x.eq_ignore_ascii_case("op") => true,
            Some(x) => anyhow::bail!("--register {r:?}: the third part must be 'op', not {x:?}"),
        };
        if nick.is_empty() || pass.is_empty() || !omnipeer_nmdc::command::is_valid_nick(nick) {
            anyhow::bail!("--register {r:?}: empty or invalid nick or password");
        }
        reg.push((nick.to_owned(), pass.to_owned(), op));
    }
    let hub_cfg = omnipeer_nmdc::hub::HubConfig {
        name: omnipeer_nmdc::text::utf8_to_wire(&name),
        topic: omnipeer_nmdc::text::utf8_to_wire(&topic),
        motd: motd.iter().map(|m| omnipeer_nmdc::text::utf8_to_wire(m)).collect(),
        max_users,
        ..Default::default()
    };
    // TLS only: the plain listener is reached by the in-process TLS relay over loopback.
    let (plain, tls_addr) = match (tls, tls_listen) {
        (true, _) => (SocketAddr::from(([127, 0, 0, 1], 0)), Some(listen)),
        (false, t) => (listen, t),
    };
    let mut server = omnipeer_node::nmdc::HubServer::bind(omnipeer_node::nmdc::HubServerConfig {
        listen: plain,
        hub: hub_cfg,
        db,
        register: reg,
    })
    .await?;
    if !tls {
        eprintln!("listening on {}", server.local_addr());
    }
    if let Some(addr) = tls_addr {
        let identity = omnipeer_node::tls::TlsIdentity::load_or_create(&data_dir)?;
        let kp = identity.keyprint().to_owned();
        let bound = server.listen_tls(addr, identity)?;
        eprintln!("listening on {bound} (TLS)");
        eprintln!("nmdcs://{bound}/?kp={kp}");
    }
    let json = g.json;
    spawn_printer(server.subscribe(), move |ev| {
        use omnipeer_nmdc::hub::HubEvent;
        match ev {
            HubEvent::Chat { nick, text } => {
                let (nick, text) = (omnipeer_nmdc::text::wire_to_utf8(&nick), omnipeer_nmdc::text::wire_to_utf8(&text));
                if json {
                    print_json(serde_json::json!({"event":"chat","nick":nick,"text":text}));
                } else {
                    println!("<{nick}> {text}");
                }
            }
            HubEvent::LoggedIn { nick, ip, op, .. } if json => {
                print_json(serde_json::json!({"event":"logged_in","nick":nick,"ip":ip.to_string(),"op":op}))
            }
            HubEvent::LoggedOut { nick, .. } if json => {
                print_json(serde_json::json!({"event":"logged_out","nick":nick}))
            }
            _ => {}
        }
    });
    server.run(shutdown_on_signals()).await
}

/// `omnipeer dc share`.
async fn share(g: &Global, cfg: &Config, ShareArgs { hub, share, slots }: ShareArgs) -> anyhow::Result<()> {
    for d in &share {
        anyhow::ensure!(d.is_dir(), "{} is not a folder", d.display());
    }
    let client = DcClient::start(hub.client_config(g, cfg, share, slots)?).await?;
    if let Some(a) = client.listen_addr {
        eprintln!("listening on {a}");
    }
    if let Some(s) = client.share() {
        eprintln!("sharing {} files ({})", s.files().len(), omnipeer_node::progress::human(s.total_size()));
    }
    eprintln!("online at {} as {}", hub.hub, hub.nick);
    let json = g.json;
    spawn_printer(client.take_events().expect("a new client's events"), move |e| match e {
        ClientEvent::Chat { nick, text } if json => {
            print_json(serde_json::json!({"event":"chat","nick":nick,"text":text}))
        }
        ClientEvent::Chat { nick, text } => println!("<{nick}> {text}"),
        ClientEvent::PrivateMessage { from, text } if json => {
            print_json(serde_json::json!({"event":"private_message","from":from,"text":text}))
        }
        ClientEvent::PrivateMessage { from, text } => println!("[pm] <{from}> {text}"),
        _ => {}
    });
    client.run_until(shutdown_on_signals()).await
}

/// `omnipeer dc search`.
async fn search(g: &Global, cfg: &Config, SearchArgs { hub, timeout, tth, query }: SearchArgs) -> anyhow::Result<()> {
    let q = match &tth {
        Some(t) => {
            let t = omnipeer_nmdc::tth::Tth::from_base32(t).map_err(|e| anyhow!("--tth {t}: {e}"))?;
            omnipeer_nmdc::command::SearchQuery::tth(&t)
        }
        None => {
            anyhow::ensure!(!query.is_empty(), "give words to search for, or --tth");
            omnipeer_nmdc::command::SearchQuery::text(&omnipeer_nmdc::text::utf8_to_wire(&query.join(" ")))
        }
    };
    let client = DcClient::start(hub.client_config(g, cfg, Vec::new(), 0)?).await?;
    let mut ev = client.take_events().expect("a new client's events");
    client.search(q).await?;
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    let mut n = 0;
    while let Ok(Some(e)) = tokio::time::timeout_at(end, ev.recv()).await {
        if let ClientEvent::SearchResult(sr) = e {
            // A TTH search is exact: a peer answering with another file (or none) is
            // not a hit (some clients match `TTH:…` as words).
            if let Some(want) = &tth {
                if sr.tth().map(|t| t.to_base32()).as_deref() != Some(want.to_ascii_uppercase().as_str()) {
                    continue;
                }
            }
            n += 1;
            let nick = omnipeer_nmdc::text::wire_to_utf8(&sr.nick);
            let path = omnipeer_nmdc::text::wire_to_utf8(&sr.path);
            let tth = sr.tth().map(|t| t.to_base32());
            if g.json {
                print_json(serde_json::json!({"nick":nick,"path":path,"size":sr.size,"tth":tth,
                    "free_slots":sr.free_slots,"total_slots":sr.total_slots}));
            } else {
                let size = sr.size.map_or("dir".to_owned(), |s| s.to_string());
                println!("{nick}\t{path}\t{size}\t{}\t{}/{}", tth.unwrap_or_default(), sr.free_slots, sr.total_slots);
            }
        }
    }
    eprintln!("{n} result(s)");
    client.stop().await
}

/// `omnipeer dc get`.
async fn get(g: &Global, cfg: &Config, GetArgs { hub, from, tth, path, filelist, out }: GetArgs) -> anyhow::Result<()> {
    use omnipeer_nmdc::transfer::Identifier;
    let (what, expect) = if let Some(t) = &tth {
        let t = omnipeer_nmdc::tth::Tth::from_base32(t).map_err(|e| anyhow!("--tth {t}: {e}"))?;
        (Identifier::Tth(t), Some(t))
    } else if let Some(p) = &path {
        (Identifier::Path(format!("/{}", p.trim_start_matches(['/', '\\']).replace('\\', "/"))), None)
    } else if filelist {
        (Identifier::FileList, None)
    } else {
        anyhow::bail!("say what to get: --tth, --path or --filelist");
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    let client = DcClient::start(hub.client_config(g, cfg, Vec::new(), 0)?).await?;
    // For a path, the user's file list tells the TTH to check the file against.
    let expect = match (&what, expect) {
        (Identifier::Path(p), None) => {
            let list_path = out.with_extension("filelist.tmp.bz2");
            let _ = std::fs::remove_file(&list_path);
            let job = omnipeer_node::nmdc::cc::DownloadJob {
                what: Identifier::FileList,
                out: list_path.clone(),
                progress: Default::default(),
                total: Default::default(),
                control: Default::default(),
            };
            client.download(&from, &job).await.context("fetching the file list to learn the file's TTH")?;
            let data = std::fs::read(&list_path)?;
            let _ = std::fs::remove_file(&list_path);
            let list =
                omnipeer_nmdc::filelist::FileList::from_bz2(&data).map_err(|e| anyhow!("{from}'s file list: {e}"))?;
            let want = p.trim_start_matches('/').to_lowercase();
            let found = list.files().into_iter().find(|(vp, _)| vp.trim_start_matches('/').to_lowercase() == want);
            match found {
                Some((_, f)) => Some(f.tth),
                None => anyhow::bail!("{from} does not share {p}"),
            }
        }
        (_, e) => e,
    };
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let job = omnipeer_node::nmdc::cc::DownloadJob {
        what,
        out: out.clone(),
        progress: progress.clone(),
        total: total.clone(),
        control: Default::default(),
    };
    let label = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut bar = omnipeer_node::progress::Progress::for_stderr(format!("get {label}"));
    let done = with_progress(client.download(&from, &job), &mut bar, || {
        (progress.load(std::sync::atomic::Ordering::Relaxed), total.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await;
    let done = done?;
    bar.finish(done.size);
    let verdict = match expect {
        Some(t) => {
            let got = omnipeer_node::nmdc::cc::file_tth(&out)?;
            if got != t {
                anyhow::bail!(
                    "the TTH of {} is {} but {} was expected: the download is corrupt",
                    out.display(),
                    got.to_base32(),
                    t.to_base32()
                );
            }
            format!("TTH {} verified", t.to_base32())
        }
        None => "no TTH to verify".to_owned(),
    };
    if g.json {
        print_json(serde_json::json!({"event":"downloaded","from":done.peer,"path":out,"size":done.size,
            "resumed_from":done.resumed_from,"tth_verified":expect.is_some()}));
    } else {
        println!(
            "downloaded {} ({} bytes) from {}{}, {verdict}",
            out.display(),
            done.size,
            done.peer,
            if done.resumed_from > 0 { format!(", resumed at byte {}", done.resumed_from) } else { String::new() }
        );
    }
    client.stop().await
}
