//! `omnipeer tox`: a DHT bootstrap node and a minimal Tox client (id, echo, send).
//! The protocol is in docs/protocols/tox.md.

use crate::common::shutdown_on_signals;
use anyhow::{anyhow, Context};
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum ToxCmd {
    /// Run a Tox DHT bootstrap node (also an onion node); prints its DHT public key
    Bootstrap {
        /// UDP address to listen on
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Keep the DHT key pair in FILE (public key then secret key, 64 raw bytes, as
        /// tox-bootstrapd); created if missing. Without it the key is new each start.
        #[arg(long, value_name = "FILE")]
        keys: Option<PathBuf>,
        /// Also bootstrap off these nodes (HOST:PORT:DHTKEY, comma-separated)
        #[arg(long, value_name = "NODES")]
        bootstrap: Option<String>,
        /// Answer bootstrap info requests (0xf0) with this message of the day, as
        /// tox-bootstrapd's `motd` (at most 255 bytes)
        #[arg(long, value_name = "TEXT")]
        motd: Option<String>,
        /// Also run a TCP relay on ADDR (same key; c-toxcore clients without UDP connect
        /// through it), as tox-bootstrapd's tcp_relay_ports; prints "tcp relay on ADDR"
        #[arg(long, value_name = "ADDR")]
        tcp: Option<SocketAddr>,
    },
    /// Print the profile's Tox ID (76 hex); creates the profile if missing
    Id {
        /// Profile file (long-term keys, nospam, friends)
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
    },
    /// Accept every friend request and echo each message back as "echo: <message>";
    /// join every conference (group chat) and NGC group a friend invites us to and echo
    /// its lines the same way; prints our Tox ID on stdout first
    Echo {
        /// Profile file; created if missing
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// Bootstrap nodes, HOST:PORT:DHTKEY, comma-separated
        #[arg(long, value_name = "NODES")]
        bootstrap: String,
        /// UDP address [default: a free port on all interfaces]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Accept the files friends send and save them in DIR (partial ones are resumed)
        #[arg(long, value_name = "DIR")]
        incoming: Option<PathBuf>,
        /// Conferences (group chats): create one and invite these friends (Tox IDs or
        /// public keys, comma-separated) as each comes online. Invites from friends are
        /// always accepted, and every conference line is echoed as "echo: <line>" (except lines starting with "echo: ")
        #[arg(long, value_name = "FRIENDS", value_delimiter = ',')]
        conference_with: Vec<String>,
        /// A TCP relay, HOST:PORT:KEY (repeatable), used when UDP is off or gets no answer;
        /// the bootstrap nodes' TCP ports are tried as relays too
        #[arg(long = "tcp-relay", value_name = "HOST:PORT:KEY")]
        tcp_relay: Vec<String>,
        /// No UDP at all: the DHT, the onion and friends only through TCP relays
        #[arg(long)]
        no_udp: bool,
        /// NGC groups (c-toxcore >= 0.2.19's group chats): found a private group and invite
        /// these friends (Tox IDs or public keys, comma-separated) as each comes online.
        /// Group invites from friends are always accepted, and group lines echoed like
        /// conference lines
        #[arg(long, value_name = "FRIENDS", value_delimiter = ',')]
        group_with: Vec<String>,
    },
    /// Import a Tox save (qTox's or toxic's profile, c-toxcore's savedata; encrypted ones
    /// need --passphrase-file) as the omnipeer profile FILE; prints the Tox ID
    Import {
        /// The Tox save to read
        #[arg(value_name = "SAVE")]
        save: PathBuf,
        /// The omnipeer profile to create (refused if it exists, unless --force)
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// A file holding the save's passphrase (one trailing newline ignored)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Replace an existing profile
        #[arg(long)]
        force: bool,
    },
    /// Export the omnipeer profile FILE as a Tox save that qTox, toxic and other
    /// c-toxcore clients load (encrypted with --passphrase-file); prints the Tox ID
    Export {
        /// The Tox save to write
        #[arg(value_name = "SAVE")]
        save: PathBuf,
        /// The omnipeer profile to read
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// Encrypt with the passphrase in this file (one trailing newline ignored)
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Befriend TOXID and send it the file PATH (resumed where the friend's partial copy
    /// ends); prints each progress state, "offered", "accepted" or "resumed at N", then
    /// "sent N bytes" once the friend has it all, and exits 0
    SendFile {
        /// Profile file; created if missing
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// Bootstrap nodes, HOST:PORT:DHTKEY, comma-separated
        #[arg(long, value_name = "NODES")]
        bootstrap: String,
        /// The friend's Tox ID (76 hex)
        #[arg(long, value_name = "TOXID")]
        to: String,
        /// The file to send
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Give up after SECS
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        timeout: u64,
        /// UDP address [default: a free port on all interfaces]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// A TCP relay, HOST:PORT:KEY (repeatable), used when UDP is off or gets no answer;
        /// the bootstrap nodes' TCP ports are tried as relays too
        #[arg(long = "tcp-relay", value_name = "HOST:PORT:KEY")]
        tcp_relay: Vec<String>,
        /// No UDP at all: the DHT, the onion and friends only through TCP relays
        #[arg(long)]
        no_udp: bool,
    },
    /// Befriend TOXID, send it MESSAGE, print each progress state, each reply and
    /// "delivered"; exits 0 LINGER seconds after the receipt
    Send {
        /// Profile file; created if missing
        #[arg(long, value_name = "FILE")]
        profile: PathBuf,
        /// Bootstrap nodes, HOST:PORT:DHTKEY, comma-separated
        #[arg(long, value_name = "NODES")]
        bootstrap: String,
        /// The friend's Tox ID (76 hex)
        #[arg(long, value_name = "TOXID")]
        to: String,
        /// The message
        #[arg(long, value_name = "TEXT")]
        message: String,
        /// Give up after SECS
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
        /// Keep printing replies for SECS after the receipt
        #[arg(long, value_name = "SECS", default_value_t = 2)]
        linger: u64,
        /// UDP address [default: a free port on all interfaces]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// A TCP relay, HOST:PORT:KEY (repeatable), used when UDP is off or gets no answer;
        /// the bootstrap nodes' TCP ports are tried as relays too
        #[arg(long = "tcp-relay", value_name = "HOST:PORT:KEY")]
        tcp_relay: Vec<String>,
        /// No UDP at all: the DHT, the onion and friends only through TCP relays
        #[arg(long)]
        no_udp: bool,
    },
}

pub async fn run(cmd: ToxCmd) -> anyhow::Result<()> {
    use omnipeer_node::tox::{self, bootstrap::BootstrapNode};
    match cmd {
        ToxCmd::Bootstrap { listen, keys, bootstrap, motd, tcp } => {
            let kp = match &keys {
                Some(p) => tox::load_or_create_keys(p)?,
                None => omnipeer_tox_keys(),
            };
            let nodes = match &bootstrap {
                Some(list) => tox::parse_node_specs(list)?,
                None => Vec::new(),
            };
            let mut node =
                BootstrapNode::bind(listen, kp).await.with_context(|| format!("cannot listen on {listen}"))?;
            node.bootstrap(&nodes);
            if let Some(m) = &motd {
                node.set_motd(m);
            }
            if let Some(tcp) = tcp {
                let a = node.listen_tcp(tcp).await.with_context(|| format!("cannot listen on TCP {tcp}"))?;
                eprintln!("tcp relay on {a}");
            }
            println!("{}", node.dht_pk().to_hex());
            eprintln!("listening on {}", node.local_addr()?);
            node.run(shutdown_on_signals()).await
        }
        ToxCmd::Import { save, profile, passphrase_file, force } => {
            if profile.exists() && !force {
                return Err(anyhow!("{} exists; --force replaces it", profile.display()));
            }
            let pass = passphrase_file.as_deref().map(read_passphrase).transpose()?;
            let p = tox::profile::import_savedata(&save, pass.as_deref())?;
            tox::profile::save(&p, &profile).with_context(|| format!("writing {}", profile.display()))?;
            println!("{}", p.tox_id().to_hex());
            eprintln!("imported {} friends", p.friends.len());
            Ok(())
        }
        ToxCmd::Export { save, profile, passphrase_file } => {
            let p = tox::profile::load(&profile).with_context(|| format!("{}", profile.display()))?;
            let pass = passphrase_file.as_deref().map(read_passphrase).transpose()?;
            tox::profile::export_savedata(&p, &save, pass.as_deref())?;
            println!("{}", p.tox_id().to_hex());
            Ok(())
        }
        ToxCmd::Id { profile } => {
            let p = tox::client::load_profile(&profile)?;
            println!("{}", p.tox_id().to_hex());
            Ok(())
        }
        ToxCmd::Echo { profile, bootstrap, listen, incoming, conference_with, group_with, tcp_relay, no_udp } => {
            set_transport(&tcp_relay, no_udp)?;
            let nodes = tox::parse_node_specs(&bootstrap)?;
            let conference_with = conference_with
                .iter()
                .map(|s| match s.len() {
                    76 => {
                        s.parse::<tox::client::ToxId>().map(|id| id.pk).map_err(|e| anyhow!("--conference-with: {e}"))
                    }
                    _ => tox::PublicKey::from_hex(s)
                        .ok_or_else(|| anyhow!("--conference-with: {s:?} is no Tox ID or key")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let group_with = group_with
                .iter()
                .map(|s| match s.len() {
                    76 => s.parse::<tox::client::ToxId>().map(|id| id.pk).map_err(|e| anyhow!("--group-with: {e}")),
                    _ => tox::PublicKey::from_hex(s).ok_or_else(|| anyhow!("--group-with: {s:?} is no Tox ID or key")),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let listen = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            tox::client::run_echo(
                &profile,
                listen,
                &nodes,
                incoming.as_deref(),
                tox::client::onion_rendezvous,
                shutdown_on_signals(),
                &conference_with,
                &group_with,
            )
            .await
        }
        ToxCmd::SendFile { profile, bootstrap, to, file, timeout, listen, tcp_relay, no_udp } => {
            set_transport(&tcp_relay, no_udp)?;
            let nodes = tox::parse_node_specs(&bootstrap)?;
            let to: tox::client::ToxId = to.parse().map_err(|e| anyhow!("--to: {e}"))?;
            let listen = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let o = tox::client::SendFileOptions {
                profile: &profile,
                listen,
                bootstrap: &nodes,
                to,
                file: &file,
                timeout: Duration::from_secs(timeout),
            };
            let cancel = shutdown_on_signals();
            tokio::select! {
                r = tox::client::run_send_file(o, tox::client::onion_rendezvous) => r.map(|_| ()),
                _ = cancel.cancelled() => Err(anyhow!("interrupted")),
            }
        }
        ToxCmd::Send { profile, bootstrap, to, message, timeout, linger, listen, tcp_relay, no_udp } => {
            set_transport(&tcp_relay, no_udp)?;
            let nodes = tox::parse_node_specs(&bootstrap)?;
            let to: tox::client::ToxId = to.parse().map_err(|e| anyhow!("--to: {e}"))?;
            if message.is_empty() || message.len() > tox::client::MAX_MESSAGE_LEN {
                return Err(anyhow!("--message must be 1..={} bytes", tox::client::MAX_MESSAGE_LEN));
            }
            let listen = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let o = tox::client::SendOptions {
                profile: &profile,
                listen,
                bootstrap: &nodes,
                to,
                message: &message,
                timeout: Duration::from_secs(timeout),
                linger: Duration::from_secs(linger),
            };
            let cancel = shutdown_on_signals();
            tokio::select! {
                r = tox::client::run_send(o, tox::client::onion_rendezvous) => r.map(|_| ()),
                _ = cancel.cancelled() => Err(anyhow!("interrupted")),
            }
        }
    }
}

/// `--tcp-relay` / `--no-udp` for the clients this process starts
/// (docs/protocols/tox.md#tcp-relays).
fn set_transport(relays: &[String], no_udp: bool) -> anyhow::Result<()> {
    let tcp_relays = relays
        .iter()
        .map(|r| omnipeer_node::tox::parse_node_spec(r).map_err(|e| anyhow!("--tcp-relay: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    omnipeer_node::tox::relay::set_default_transport(omnipeer_node::tox::relay::Transport { udp: !no_udp, tcp_relays });
    Ok(())
}

/// A fresh DHT key pair (from the OS random source).
fn omnipeer_tox_keys() -> omnipeer_node::tox::KeyPair {
    omnipeer_node::tox::new_keypair()
}

/// A passphrase file's bytes, without one trailing newline (CRLF or LF).
fn read_passphrase(p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut b = std::fs::read(p).with_context(|| format!("--passphrase-file {}", p.display()))?;
    if b.ends_with(b"\n") {
        b.pop();
        if b.ends_with(b"\r") {
            b.pop();
        }
    }
    if b.is_empty() {
        return Err(anyhow!("--passphrase-file {} is empty", p.display()));
    }
    Ok(b)
}
