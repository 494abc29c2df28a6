//! `omnipeer`: one program, client and server, for classic peer-to-peer protocols.
//! The command line follows README.md ("The two commands", "The node: web UI, API and CLI"); no protocol page.
//!
//! This file holds only the top-level commands, logging and dispatch. Each command family
//! is a module with its clap definitions beside its code: `up` (the node), `node_client`
//! (status, search, get, chat: clients of a running node), `wishlist` (the node's saved
//! searches), `config`, `dcc`, `dc`, `slsk`, `ministream` and `tox`; `common` has what
//! several of them use.

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use omnipeer_node::config::Config;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod adc;
mod common;
mod config;
mod dc;
mod dcc;
mod ministream;
mod node_client;
mod slsk;
mod tox;
mod up;
mod wishlist;

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
    Up(up::UpArgs),
    /// Show the running node's networks, transfers and shares (through its API)
    Status(node_client::StatusArgs),
    /// Who is in a hub's main chat or a Soulseek room (through the running node)
    Users(node_client::UsersArgs),
    /// Search every network the running node is on; prints merged results numbered 1, 2,
    /// 3… for `omnipeer get N`
    #[command(after_help = "The numbers are remembered in DATA_DIR/last-search.json (beside the api-token the \
client commands read), with the node's address and the search's id: `omnipeer get N` takes number N of the last \
search printed, `omnipeer get SEARCH_ID/N` the Nth result of another search.")]
    Search(node_client::SearchArgs),
    /// Download a search result (number N of the last `omnipeer search`, or SEARCH_ID/N),
    /// or a file or a whole folder of a user's share (NETWORK:USER:PATH), through the
    /// running node; says what it is about to fetch, then shows progress until it is done
    #[command(after_help = "N is a number the last `omnipeer search` printed (remembered in \
DATA_DIR/last-search.json); SEARCH_ID/N or --search SEARCH_ID N takes the Nth result of that search.")]
    Get(node_client::GetArgs),
    /// The running node's wishlist (saved searches, re-run on each network's interval,
    /// new matches marked, optionally downloaded): lists it; add, remove, run, seen
    Wishlist(wishlist::WishlistArgs),
    /// Browse a user's share through the running node: NETWORK:USER (nmdc or slsk;
    /// nmdc@LABEL:USER for a labelled session) and an optional folder; one line per
    /// folder and file with sizes
    Browse(node_client::BrowseArgs),
    /// Chat through the running node: list, send, follow
    #[command(subcommand)]
    Chat(node_client::ChatCmd),
    /// Show or check configuration
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// mIRC DCC Server: server, chat, send, fserve
    #[command(subcommand)]
    Dcc(dcc::DccCmd),
    /// Direct Connect (NMDC): hub, and client (share, search, get)
    #[command(subcommand)]
    Dc(dc::DcCmd),
    /// Direct Connect (ADC): hub
    #[command(subcommand)]
    Adc(adc::AdcCmd),
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

fn main() -> ExitCode {
    omnipeer_node::store::pin_mmap_threshold();
    let cli = Cli::parse();
    let cfg = match config::load(&cli.global) {
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
        Command::Config(cmd) => {
            config::run(&cfg, cmd);
            Ok(())
        }
        Command::Up(args) => up::run(&g, cfg, args).await,
        Command::Status(args) => node_client::status(&g, &cfg, args).await,
        Command::Users(args) => node_client::users(&g, &cfg, args).await,
        Command::Search(args) => node_client::search(&g, &cfg, args).await,
        Command::Get(args) => node_client::get(&g, &cfg, args).await,
        Command::Browse(args) => node_client::browse(&g, &cfg, args).await,
        Command::Wishlist(args) => wishlist::run(&g, &cfg, args).await,
        Command::Chat(cmd) => node_client::chat(&g, &cfg, cmd).await,
        Command::Dcc(cmd) => dcc::run(&g, cfg, cmd).await,
        Command::Dc(cmd) => dc::run(&g, cfg, cmd).await,
        Command::Adc(cmd) => adc::run(&g, cfg, cmd).await,
        Command::Slsk(cmd) => slsk::run(&g, cfg, cmd).await,
        Command::Ministream(cmd) => ministream::run(cmd).await,
        Command::Tox(cmd) => tox::run(cmd).await,
    }
}
