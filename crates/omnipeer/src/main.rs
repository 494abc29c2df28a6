//! `omnipeer`: one program, client and server, for classic peer-to-peer protocols.
//! The command line follows README.md ("The two commands", "The node: web UI, API and CLI"); no protocol page.

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use omnipeer_node::config::{Config, DEFAULT_TOML};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod common;
mod dc;
mod dcc;
mod ministream;
mod slsk;
mod tox;
use common::shutdown_on_signals;

#[derive(Parser)]
#[command(name = "omnipeer", version, about = "One program, client and server, for classic peer-to-peer protocols")]
#[command(after_help = "Results go to stdout, progress and logs to stderr. Data lives under \
$XDG_DATA_HOME/omnipeer unless --data-dir is given.")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// Where state, shares and downloads live [default: $XDG_DATA_HOME/omnipeer]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (TOML; every key optional, see `omnipeer config default`)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error [default: RUST_LOG, else the config's]
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Print results on stdout as one JSON object per line
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: every network the configuration enables (DCC server, NMDC hub,
    /// Soulseek server, the NMDC and Soulseek clients logged in to them) and the HTTP API
    Up {
        /// Start with a new node.sqlite when it is missing, empty or damaged in a data
        /// directory that holds state from an earlier run (refused otherwise; see
        /// docs/operations.md, "Backups and recovery")
        #[arg(long)]
        fresh_db: bool,
    },
    /// Show the running node's networks, transfers and shares (through its API)
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Search every network the running node is on; prints numbered merged results
    Search {
        #[command(flatten)]
        api: ApiArgs,
        /// Seconds to wait for results
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        timeout: u64,
        /// Words to search for
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Download a search result (by the number `omnipeer search` printed) through the
    /// running node; shows progress until it is done
    Get {
        #[command(flatten)]
        api: ApiArgs,
        /// Which of the result's sources (0 = first; default: the node picks)
        #[arg(long, value_name = "N", conflicts_with = "network")]
        source: Option<usize>,
        /// Take the result's first source on this network (nmdc or slsk)
        #[arg(long, value_name = "NET")]
        network: Option<String>,
        /// Queue it and return at once
        #[arg(long)]
        no_wait: bool,
        /// The result number
        result: u64,
    },
    /// Chat through the running node: list, send, follow
    #[command(subcommand)]
    Chat(ChatCmd),
    /// Show or check configuration
    #[command(subcommand)]
    Config(ConfigCmd),
    /// mIRC DCC Server: server, chat, send, fserve
    #[command(subcommand)]
    Dcc(dcc::DccCmd),
    /// Direct Connect (NMDC): hub
    #[command(subcommand)]
    Dc(dc::DcCmd),
    /// Soulseek: server, share, search, get
    #[command(subcommand)]
    Slsk(slsk::SlskCmd),
    /// I2P ministreaming over the loopback TCP transport or an I2P router (SAM): listen, connect
    #[command(subcommand)]
    Ministream(ministream::MinistreamCmd),
    /// Tox: bootstrap node, id, echo, send
    #[command(subcommand)]
    Tox(tox::ToxCmd),
}

/// Where the running node's API is.
#[derive(Args, Clone)]
struct ApiArgs {
    /// The node's API address [default: the config's [api].listen]
    #[arg(long, value_name = "ADDR")]
    api: Option<String>,
    /// Bearer token [default: OMNIPEER_TOKEN, else [api].token, else DATA_DIR/api-token]
    #[arg(long, value_name = "TOKEN", env = "OMNIPEER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum ChatCmd {
    /// Every chat (hub main chat, rooms, private messages, Tox friends, DCC chats) with its
    /// last line
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Say something: CHAT is nmdc:hub, nmdc:pm:NICK, slsk:room:ROOM, slsk:pm:USER,
    /// tox:friend:PUBLICKEY or dcc:chat:NICK (an open DCC chat with the node)
    Send {
        #[command(flatten)]
        api: ApiArgs,
        /// The chat
        chat: String,
        /// The text
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print a chat's recent lines, then new ones as they come (Ctrl-C to stop)
    Follow {
        #[command(flatten)]
        api: ApiArgs,
        /// The chat
        chat: String,
        /// Lines of history to show first
        #[arg(long, value_name = "N", default_value_t = 20)]
        history: usize,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the embedded default configuration (every key, with comments)
    Default,
    /// Print the effective configuration after reading --config
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match load_config(&cli.global) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = init_logging(&cli.global, &cfg) {
        return fail(e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e.into()),
    };
    let result = rt.block_on(run(cli, cfg));
    // A console task may be blocked reading stdin: don't wait for it.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn load_config(g: &Global) -> anyhow::Result<Config> {
    match &g.config {
        Some(p) => Config::load(p),
        None => {
            // A config.toml in the data directory is read when no --config is given.
            let base = Config::default_config();
            let dir = base.data_dir(g.data_dir.as_deref()).ok();
            match dir.map(|d| d.join("config.toml")).filter(|p| p.is_file()) {
                Some(p) => Config::load(&p),
                None => Ok(base),
            }
        }
    }
}

/// The level names `--log-level` and `[node].log_level` take.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `--log-level` / `[node].log_level` value: a level name, or `EnvFilter`
/// directives each of which is a level or `target=level` (`omnipeer_node=debug,info`).
/// `EnvFilter` itself takes any bare word as a target name and silently logs nothing for
/// a typo like `verbose`, so the value is checked here first.
fn check_log_level(value: &str, from: &str) -> anyhow::Result<()> {
    let is_level = |l: &str| LOG_LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    let ok = !value.trim().is_empty()
        && value.split(',').all(|d| match d.split_once('=') {
            Some((target, level)) => {
                !target.trim().is_empty()
                    && target.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && is_level(level)
            }
            None => is_level(d),
        });
    if !ok {
        anyhow::bail!(
            "{from} {value:?} is not a log level: use one of {} (or TARGET=LEVEL,...)",
            LOG_LEVELS.join(", ")
        );
    }
    Ok(())
}

fn init_logging(g: &Global, cfg: &Config) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    // Both are checked even when RUST_LOG wins, so a bad value shows at once.
    check_log_level(&cfg.node.log_level, "[node].log_level")?;
    if let Some(l) = &g.log_level {
        check_log_level(l, "--log-level")?;
    }
    let filter = match (&g.log_level, std::env::var("RUST_LOG")) {
        (Some(l), _) => EnvFilter::try_new(l).map_err(|e| anyhow!("--log-level {l:?}: {e}"))?,
        (None, Ok(env)) if !env.is_empty() => EnvFilter::new(env),
        _ => EnvFilter::try_new(&cfg.node.log_level)
            .map_err(|e| anyhow!("[node].log_level {:?}: {e}", cfg.node.log_level))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

async fn run(cli: Cli, cfg: Config) -> anyhow::Result<()> {
    let g = cli.global.clone();
    match cli.command {
        Command::Config(ConfigCmd::Default) => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Config(ConfigCmd::Check) => {
            println!("{cfg:#?}");
            Ok(())
        }
        Command::Up { fresh_db } => up(&g, cfg, fresh_db).await,
        Command::Status { api } => client_cmd(node_client::status(&g, &cfg, &api)).await,
        Command::Search { api, timeout, query } => {
            client_cmd(node_client::search(&g, &cfg, &api, query.join(" "), Duration::from_secs(timeout))).await
        }
        Command::Get { api, source, network, no_wait, result } => {
            client_cmd(node_client::get(&g, &cfg, &api, result, source, network, no_wait)).await
        }
        Command::Chat(cmd) => client_cmd(node_client::chat(&g, &cfg, cmd)).await,
        Command::Dcc(cmd) => dcc::run(&g, cfg, cmd).await,
        Command::Dc(cmd) => dc::run(&g, cfg, cmd).await,
        Command::Slsk(cmd) => slsk::run(&g, cfg, cmd).await,
        Command::Ministream(cmd) => ministream::run(cmd).await,
        Command::Tox(cmd) => tox::run(cmd).await,
    }
}

async fn up(g: &Global, cfg: Config, fresh_db: bool) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
    let shutdown = shutdown_on_signals();
    let any = cfg.dcc.enabled
        || cfg.nmdc_hub.enabled
        || cfg.slsk_server.enabled
        || cfg.tox_bootstrap.enabled
        || cfg.tox.enabled
        || cfg.nmdc_client.enabled
        || cfg.slsk_client.enabled;
    if !any {
        return Err(anyhow!("the configuration enables no network: nothing to run"));
    }
    let opts = omnipeer_node::app::UpOptions { fresh_db };
    let mut up = omnipeer_node::app::up_with(cfg, &data_dir, shutdown.clone(), opts).await?;
    if let Some(h) = up.dcc.take() {
        dcc::spawn_event_printer(h, g.json);
    }
    while let Some(r) = up.tasks.join_next().await {
        if let Err(e) = r? {
            shutdown.cancel();
            return Err(e);
        }
    }
    Ok(())
}

/// Run a blocking client-of-the-node command off the runtime's threads.
async fn client_cmd(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(f).await?
}

mod node_client;
