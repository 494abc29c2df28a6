//! Configuration: a TOML file whose every key has a default. The defaults are themselves a
//! TOML file embedded in the binary ([`DEFAULT_TOML`], printed by `omnipeer config
//! default`); a user's file is laid over it key by key, so the two can never disagree.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings for the whole node.
    pub node: NodeConfig,
    /// The mIRC DCC Server.
    pub dcc: DccConfig,
    /// The NMDC hub.
    pub nmdc_hub: NmdcHubConfig,
    /// The ADC hub.
    pub adc_hub: AdcHubSection,
    /// The Soulseek server.
    pub slsk_server: SlskServerSection,
    /// The Tox bootstrap node (a DHT and onion node).
    pub tox_bootstrap: ToxBootstrapSection,
    /// Shared folders and downloads.
    pub share: ShareSection,
    /// The download engine.
    pub transfers: TransfersSection,
    /// The NMDC client side of the node.
    pub nmdc_client: NmdcClientSection,
    /// The Soulseek client side of the node.
    pub slsk_client: SlskClientSection,
    /// The HTTP API.
    pub api: ApiSection,
    /// The Tox client side of the node (friends and their chats).
    pub tox: ToxSection,
    /// More hubs (`[[hubs]]`), beside `[nmdc_client].hub`.
    pub hubs: Vec<HubEntry>,
    /// More Soulseek servers (`[[slsk_servers]]`), beside `[slsk_client].server`.
    pub slsk_servers: Vec<SlskServerEntry>,
}

/// One `[[hubs]]` entry.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HubEntry {
    /// `dchub://host:port` or `host:port`; an ADC hub: `adc://host:port` or
    /// `adcs://host:port[/?kp=SHA256/...]` (docs/protocols/adc.md#node).
    pub url: String,
    /// The session's label (chat ids `nmdc@NAME:hub`); empty: made from the address.
    #[serde(default)]
    pub name: String,
    /// Nick on this hub; empty: `[node].nick`.
    #[serde(default)]
    pub nick: String,
    /// Password of a registered nick; empty: none.
    #[serde(default)]
    pub password: String,
}

/// One `[[slsk_servers]]` entry.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlskServerEntry {
    /// `host:port`.
    pub address: String,
    /// The session's label (chat ids `slsk@NAME:room:ROOM`); empty: made from the address.
    #[serde(default)]
    pub name: String,
    /// User name on this server; empty: `[node].nick`.
    #[serde(default)]
    pub user: String,
    /// Password; empty: a random one kept in `<data_dir>/slsk-password@NAME`.
    #[serde(default)]
    pub password: String,
}

/// The protocol a hub speaks, from its address's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubProtocol {
    /// `dchub://`, `nmdc://`, `nmdcs://`, or no scheme.
    Nmdc,
    /// `adc://`, `adcs://`.
    Adc,
}

/// A parsed hub address (`[[hubs]].url`, `[nmdc_client].hub`): see docs/protocols/adc.md#tls
/// for the keyprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    /// NMDC or ADC.
    pub protocol: HubProtocol,
    /// `nmdcs://` or `adcs://`: the connection is TLS.
    pub tls: bool,
    /// `host:port` (port 411 when the address has none).
    pub address: String,
    /// `?kp=SHA256/<base32>`: the hub certificate's pinned keyprint, as written.
    pub keyprint: Option<String>,
}

/// Parses a hub address: `[dchub|nmdc|nmdcs|adc|adcs]://host[:port][/][?kp=SHA256/...]`, or
/// `host[:port]` (NMDC). A keyprint is only accepted on a TLS address.
pub fn parse_hub_url(url: &str) -> anyhow::Result<HubUrl> {
    let url = url.trim();
    let (protocol, tls, rest) = match url.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "dchub" | "nmdc" => (HubProtocol::Nmdc, false, rest),
            "nmdcs" => (HubProtocol::Nmdc, true, rest),
            "adc" => (HubProtocol::Adc, false, rest),
            "adcs" => (HubProtocol::Adc, true, rest),
            _ => bail!("hub {url:?}: {scheme}:// is not a hub address (dchub, nmdcs, adc, adcs)"),
        },
        None => (HubProtocol::Nmdc, false, url),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let mut keyprint = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("kp", v)) if v.starts_with("SHA256/") && v.len() > "SHA256/".len() => {
                if !tls {
                    bail!("hub {url:?}: a keyprint (kp=) needs a TLS address (adcs:// or nmdcs://)");
                }
                keyprint = Some(v.to_owned());
            }
            _ => bail!("hub {url:?}: unknown parameter {pair:?} (only kp=SHA256/...)"),
        }
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.chars().any(char::is_whitespace) {
        bail!("hub {url:?}: expected dchub://host:port");
    }
    let address = if has_port(rest) { rest.to_owned() } else { format!("{rest}:411") };
    Ok(HubUrl { protocol, tls, address, keyprint })
}

/// `host:port` of a plain NMDC hub address: `dchub://host:port`, `host:port`, or `host`
/// (port 411). Other kinds of hub ([`parse_hub_url`]) are refused here.
pub fn hub_address(url: &str) -> anyhow::Result<String> {
    let parsed = parse_hub_url(url)?;
    if parsed.protocol != HubProtocol::Nmdc || parsed.tls {
        bail!("hub {url:?}: only dchub:// hubs are supported here");
    }
    Ok(parsed.address)
}

/// The address an NMDC hub session connects to: `host:port` for a plain hub (as
/// [`hub_address`]), `nmdcs://host:port` with its `/?kp=…` for a TLS one (the NMDC client
/// parses it again, crate::nmdc::client). ADC addresses are refused.
pub fn nmdc_session_address(url: &str) -> anyhow::Result<String> {
    let parsed = parse_hub_url(url)?;
    if parsed.protocol != HubProtocol::Nmdc {
        bail!("hub {url:?}: not an NMDC hub (dchub:// or nmdcs://)");
    }
    Ok(match (parsed.tls, parsed.keyprint) {
        (false, _) => parsed.address,
        (true, None) => format!("nmdcs://{}", parsed.address),
        (true, Some(kp)) => format!("nmdcs://{}/?kp={kp}", parsed.address),
    })
}

/// `host:port` of a Soulseek server address (`host` alone: port 2242).
pub fn slsk_address(address: &str) -> anyhow::Result<String> {
    let a = address.trim();
    if a.is_empty() || a.contains('/') || a.chars().any(char::is_whitespace) {
        bail!("Soulseek server {address:?}: expected host:port");
    }
    Ok(if has_port(a) { a.to_owned() } else { format!("{a}:2242") })
}

fn has_port(a: &str) -> bool {
    match a.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
        }
        None => false,
    }
}

/// `[tox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxSection {
    /// Run the Tox client.
    pub enabled: bool,
    /// UDP address; when its port is taken, any free port on the same address.
    pub listen: SocketAddr,
    /// Profile file (keys, nospam, friends; `omnipeer tox id` format); empty for
    /// `<data_dir>/tox.profile`.
    pub profile: String,
    /// Nodes to bootstrap off, `HOST:PORT:DHTKEY[,...]`; empty for this node's own
    /// `[tox_bootstrap]` node.
    pub bootstrap: String,
    /// Accept every friend request without asking.
    pub auto_accept: bool,
    /// UDP on (c-toxcore's udp_enabled); off: TCP relays only.
    #[serde(default = "yes")]
    pub udp: bool,
    /// TCP relays `HOST:PORT:KEY`, used when UDP is off or gets no answer
    /// (docs/protocols/tox.md#tcp-relays).
    #[serde(default)]
    pub tcp_relays: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `[slsk_server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlskServerSection {
    /// Run the server.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Greeting.
    pub motd: String,
    /// No registration by first login.
    pub private: bool,
    /// Database; empty for `<data_dir>/slsk-server.sqlite`.
    pub db: String,
    /// Accounts one address may create per hour (0: no limit).
    pub max_registrations_per_ip_per_hour: u32,
    /// Sessions at once from one address, administrators aside (0: no limit).
    pub max_sessions_per_ip: usize,
    /// Build the distributed tree (searches to branch roots, PossibleParents).
    pub distributed_tree: bool,
    /// Seconds between offers of parents to a user still without one
    /// (`omnipeer_slsk::tree::PARENT_OFFER_EVERY`).
    pub parent_offer_every_secs: u64,
}

/// `[tox_bootstrap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxBootstrapSection {
    /// Run the node.
    pub enabled: bool,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// DHT key pair file (pk ‖ sk, 64 raw bytes, as tox-bootstrapd); empty for
    /// `<data_dir>/tox-bootstrap.keys`.
    pub keys: String,
    /// Other nodes to join, `HOST:PORT:DHTKEY[,...]`; empty for none.
    pub bootstrap: String,
    /// Message of the day for bootstrap info requests (0xf0); empty: not answered.
    pub motd: String,
    /// TCP relay address; empty: `listen`'s address and port (a free port when that is
    /// 0), as tox-bootstrapd; `off`: no relay.
    pub tcp_listen: String,
}

/// `[share]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSection {
    /// Shared folders; empty for `<data_dir>/share` (created). A listed folder that
    /// does not exist is a warning, not created.
    pub folders: Vec<String>,
    /// Finished downloads; empty for `<data_dir>/downloads`.
    pub downloads: String,
    /// Partial downloads, one folder per transfer; empty for `<data_dir>/incomplete`.
    pub incomplete: String,
    /// Rescan on file-system changes.
    pub watch: bool,
    /// Debounce for `watch`, in seconds.
    pub watch_delay_secs: u64,
}

/// `[transfers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransfersSection {
    /// Downloads at once over all networks.
    pub global_slots: usize,
    /// Downloads at once per network.
    pub network_slots: usize,
    /// Retries before failing.
    pub max_retries: u32,
    /// First retry delay in seconds (doubling).
    pub retry_base_secs: u64,
    /// Download limit over all downloads in KiB/s (0: none).
    pub max_download_kib: u64,
    /// Uploads at once over all networks (each network also at most its own `slots`).
    pub upload_slots: usize,
    /// Upload limit over all uploads of every network in KiB/s (0: none).
    pub max_upload_kib: u64,
    /// Where a download lands inside the downloads folder: a template with `{user}`,
    /// `{folder}`, `{network}`, `{session}` (`crate::app::browse::resolve_destination`).
    pub destination: String,
    /// Sources of one file downloading at once in a segmented download
    /// (`crate::segments::DEFAULT_SOURCES_PER_FILE`).
    #[serde(default = "default_segment_sources_per_file")]
    pub segment_sources_per_file: usize,
    /// Sources of every segmented download together at once
    /// (`crate::segments::DEFAULT_SOURCES_TOTAL`).
    #[serde(default = "default_segment_sources_total")]
    pub segment_sources_total: usize,
}

fn default_segment_sources_per_file() -> usize {
    crate::segments::DEFAULT_SOURCES_PER_FILE
}

fn default_segment_sources_total() -> usize {
    crate::segments::DEFAULT_SOURCES_TOTAL
}

/// `[nmdc_client]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmdcClientSection {
    /// Log in to a hub.
    pub enabled: bool,
    /// The hub; empty for this node's own hub.
    pub hub: String,
    /// Password.
    pub password: String,
    /// Active-mode address; empty for passive.
    pub listen: String,
    /// Upload slots.
    pub slots: usize,
    /// `$MyINFO` description.
    pub description: String,
}

/// `[slsk_client]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlskClientSection {
    /// Log in to a server.
    pub enabled: bool,
    /// The server; empty for this node's own server.
    pub server: String,
    /// Password; empty for a generated one.
    pub password: String,
    /// Where peers connect.
    pub listen: SocketAddr,
    /// Upload slots.
    pub slots: usize,
    /// Rooms joined at login.
    pub rooms: Vec<String>,
    /// Distributed children we pass searches to, at most.
    pub max_distributed_children: usize,
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Serve the API.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token (see default.toml for when it is required).
    pub token: String,
    /// More names the API answers to (`HOST:PORT`, or `HOST` for any port); `"*"` turns
    /// the `Host` check off. Checked by `api::HostPolicy` (docs/api.md "Who may call").
    pub hosts: Vec<String>,
    /// Seconds a connection has to send a complete request head, and to start the next
    /// one on a kept-alive connection (`api::HEADER_TIMEOUT` is the default).
    pub header_timeout_secs: u64,
    /// Connections (WebSockets included) open at once (`api::MAX_CONNECTIONS`).
    pub max_connections: usize,
}

/// `[nmdc_hub]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmdcHubConfig {
    /// Run the hub.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `$HubName`.
    pub name: String,
    /// `$HubTopic`.
    pub topic: String,
    /// Message of the day.
    pub motd: Vec<String>,
    /// Users at once.
    pub max_users: usize,
    /// Database; empty for `<data_dir>/hub.sqlite`.
    pub db: String,
    /// Unregistered users at once from one address (0: no limit).
    pub max_users_per_ip: usize,
    /// Logins one address may start per minute (0: no limit).
    pub max_logins_per_ip_per_minute: u32,
    /// Addresses the two per-address limits do not apply to.
    pub exempt_ips: Vec<std::net::IpAddr>,
    /// A second port speaking TLS only (`nmdcs://`), with the certificate kept in
    /// `<data_dir>/tls`; empty: none. For a TLS-only hub, put `listen` on 127.0.0.1.
    pub tls_listen: String,
}

/// `[adc_hub]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdcHubSection {
    /// Run the hub.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve `adcs://` (TLS, the certificate in `<data_dir>/tls`) instead of `adc://`.
    pub tls: bool,
    /// The hub's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Message of the day.
    pub motd: Vec<String>,
    /// Users at once.
    pub max_users: usize,
    /// Database; empty for `<data_dir>/adc-hub.sqlite`.
    pub db: String,
    /// Unregistered users at once from one address (0: no limit).
    pub max_users_per_ip: usize,
    /// Logins one address may start per minute (0: no limit).
    pub max_logins_per_ip_per_minute: u32,
    /// Addresses the two per-address limits do not apply to.
    pub exempt_ips: Vec<std::net::IpAddr>,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where state lives; empty for the XDG default.
    pub data_dir: String,
    /// Default log level.
    pub log_level: String,
    /// The nick used on every network.
    pub nick: String,
}

/// `[dcc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DccConfig {
    /// Run the DCC server.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Nick; empty for `[node].nick`.
    pub nick: String,
    /// Share folder; empty for `<data_dir>/share`.
    pub share: String,
    /// Incoming folder; empty for `<data_dir>/incoming`.
    pub incoming: String,
    /// Services offered.
    pub services: Vec<String>,
    /// Connections at once.
    pub max_connections: usize,
    /// Opening-line timeout in seconds.
    pub handshake_timeout_secs: u64,
    /// Fserve idle timeout in seconds.
    pub fserve_idle_timeout_secs: u64,
    /// Transfer stall timeout in seconds.
    pub transfer_idle_timeout_secs: u64,
    /// Gets per fserve session.
    pub max_gets: usize,
    /// Seconds a get waits for its 130.
    pub get_expiry_secs: u64,
    /// Welcome file inside the share.
    pub welcome: String,
    /// Largest incoming send accepted, in bytes.
    pub max_incoming_bytes: u64,
}

impl Config {
    /// The embedded defaults.
    pub fn default_config() -> Config {
        Config::from_toml("").expect("embedded default config is valid")
    }

    /// Parse a user's TOML over the defaults.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let mut base: toml::Value = toml::from_str(DEFAULT_TOML).expect("embedded default config parses");
        let user: toml::Value = toml::from_str(text).context("the configuration is not valid TOML")?;
        merge(&mut base, user, "")?;
        let cfg: Config = base.try_into().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        omnipeer_dcc::name::check_nick(&self.node.nick)
            .map_err(|e| anyhow::anyhow!("[node].nick {:?}: {e}", self.node.nick))?;
        if !self.dcc.nick.is_empty() {
            omnipeer_dcc::name::check_nick(&self.dcc.nick)
                .map_err(|e| anyhow::anyhow!("[dcc].nick {:?}: {e}", self.dcc.nick))?;
        }
        self.dcc.services()?;
        if self.dcc.max_connections == 0 {
            bail!("[dcc].max_connections must be at least 1");
        }
        if self.transfers.global_slots == 0 || self.transfers.network_slots == 0 {
            bail!("[transfers].global_slots and network_slots must be at least 1");
        }
        if !self.tox.bootstrap.trim().is_empty() {
            for spec in self.tox.bootstrap.split(',').filter(|s| !s.trim().is_empty()) {
                let (_, key) = spec
                    .trim()
                    .rsplit_once(':')
                    .ok_or_else(|| anyhow::anyhow!("[tox].bootstrap {spec:?}: expected HOST:PORT:DHTKEY"))?;
                if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("[tox].bootstrap {spec:?}: the DHT key must be 64 hex digits");
                }
            }
        }
        for spec in &self.tox.tcp_relays {
            let key = spec.trim().rsplit_once(':').map(|(_, k)| k).unwrap_or("");
            if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("[tox].tcp_relays {spec:?}: expected HOST:PORT:KEY (64 hex digits)");
            }
        }
        if !self.nmdc_client.listen.is_empty() {
            self.nmdc_client
                .listen
                .parse::<SocketAddr>()
                .map_err(|e| anyhow::anyhow!("[nmdc_client].listen {:?}: {e}", self.nmdc_client.listen))?;
        }
        let mut labels = std::collections::BTreeSet::new();
        for h in &self.hubs {
            parse_hub_url(&h.url).context("[[hubs]]")?;
            if !h.name.is_empty() && !crate::app::net::valid_label(&h.name) {
                bail!("[[hubs]] name {:?}: 1-64 of A-Z a-z 0-9 . _ -", h.name);
            }
            if !labels.insert(("nmdc", h.name.clone())) && !h.name.is_empty() {
                bail!("[[hubs]] name {:?} is used twice", h.name);
            }
        }
        for s in &self.slsk_servers {
            slsk_address(&s.address).context("[[slsk_servers]]")?;
            if !s.name.is_empty() && !crate::app::net::valid_label(&s.name) {
                bail!("[[slsk_servers]] name {:?}: 1-64 of A-Z a-z 0-9 . _ -", s.name);
            }
            if !labels.insert(("slsk", s.name.clone())) && !s.name.is_empty() {
                bail!("[[slsk_servers]] name {:?} is used twice", s.name);
            }
        }
        Ok(())
    }

    /// The data directory: `--data-dir`, else `[node].data_dir`, else the XDG default.
    pub fn data_dir(&self, cli: Option<&Path>) -> anyhow::Result<PathBuf> {
        if let Some(d) = cli {
            return Ok(d.to_path_buf());
        }
        if !self.node.data_dir.is_empty() {
            return Ok(PathBuf::from(&self.node.data_dir));
        }
        default_data_dir()
    }
}

impl DccConfig {
    /// The services list as flags.
    pub fn services(&self) -> anyhow::Result<omnipeer_dcc::Services> {
        omnipeer_dcc::Services::parse_list(&self.services.join(",")).map_err(|e| anyhow::anyhow!("[dcc].services: {e}"))
    }

    /// Timeouts as durations.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

/// `$XDG_DATA_HOME/omnipeer`, else `$HOME/.local/share/omnipeer`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("omnipeer"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/omnipeer")),
        None => bail!("neither XDG_DATA_HOME nor HOME is set: pass --data-dir DIR"),
    }
}

/// Lay `over` onto `base`: tables merge key by key, anything else replaces. A key the
/// defaults do not have is an error (a typo would otherwise be silently ignored).
fn merge(base: &mut toml::Value, over: toml::Value, at: &str) -> anyhow::Result<()> {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v, &path)?,
                    None => bail!("unknown configuration key '{path}'"),
                }
            }
            Ok(())
        }
        (b, o) => {
            *b = o;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_every_key() {
        let c = Config::default_config();
        assert!(c.dcc.enabled);
        assert_eq!(c.dcc.listen.to_string(), "127.0.0.1:5959");
        assert_eq!(c.dcc.handshake_timeout_secs, 15);
        assert_eq!(c.dcc.services().unwrap(), omnipeer_dcc::Services::ALL);
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8040");
        assert_eq!(c.slsk_server.listen.port(), 2242);
        assert_eq!(c.nmdc_hub.max_users_per_ip, omnipeer_nmdc::hub::MAX_USERS_PER_IP);
        assert_eq!(c.nmdc_hub.max_logins_per_ip_per_minute, omnipeer_nmdc::hub::MAX_LOGINS_PER_IP_PER_MINUTE);
        assert!(c.nmdc_hub.exempt_ips.is_empty());
        assert!(Config::from_toml("[nmdc_hub]\nexempt_ips = [\"nope\"]\n").is_err());
        assert_eq!(
            c.slsk_server.max_registrations_per_ip_per_hour,
            omnipeer_slsk::central::MAX_REGISTRATIONS_PER_IP_PER_HOUR
        );
        assert_eq!(c.slsk_server.max_sessions_per_ip, omnipeer_slsk::central::MAX_SESSIONS_PER_IP);
        assert!(c.nmdc_client.enabled && c.slsk_client.enabled);
        assert_eq!(c.slsk_client.rooms, vec!["omnipeer".to_string()]);
        assert!(Config::from_toml("[transfers]\nglobal_slots = 0\n").is_err());
        assert!(Config::from_toml("[nmdc_client]\nlisten = \"x\"\n").is_err());
        let c = Config::from_toml(
            "[[hubs]]\nurl = \"dchub://a.example:4111\"\n[[hubs]]\nurl = \"b.example\"\nname = \"b\"\n\
             [[slsk_servers]]\naddress = \"s.example:2242\"\nuser = \"me\"\n",
        )
        .unwrap();
        assert_eq!(c.hubs.len(), 2);
        assert_eq!(c.slsk_servers[0].user, "me");
        assert_eq!(hub_address(&c.hubs[1].url).unwrap(), "b.example:411");
        assert!(Config::from_toml("[[hubs]]\nurl = \"ftp://x:1\"\n").is_err());
        let u = parse_hub_url("adcs://h.example:1511/?kp=SHA256/ABC").unwrap();
        assert_eq!(
            (u.protocol, u.tls, u.address.as_str(), u.keyprint.as_deref()),
            (HubProtocol::Adc, true, "h.example:1511", Some("SHA256/ABC"))
        );
        assert!(parse_hub_url("adc://h:1/?kp=SHA256/ABC").is_err());
        assert_eq!(parse_hub_url("nmdcs://h").unwrap().address, "h:411");
        assert_eq!(nmdc_session_address("dchub://h:1/").unwrap(), "h:1");
        assert_eq!(nmdc_session_address("nmdcs://h/?kp=SHA256/AB").unwrap(), "nmdcs://h:411/?kp=SHA256/AB");
        assert!(nmdc_session_address("adcs://h:1").is_err());
        assert!(Config::from_toml("[[hubs]]\nurl = \"x:1\"\nname = \"a:b\"\n").is_err());
        assert!(Config::from_toml("[[hubs]]\nurl = \"x:1\"\nnick = \"n\"\nbogus = 1\n").is_err());
        assert_eq!(slsk_address("[::1]:5").unwrap(), "[::1]:5");
        assert!(c.tox.enabled && !c.tox.auto_accept);
        assert_eq!(c.tox.listen.to_string(), "127.0.0.1:33446");
        assert!(c.tox.profile.is_empty() && c.tox.bootstrap.is_empty());
        assert!(Config::from_toml("[tox]\nbootstrap = \"127.0.0.1:33445:XYZ\"\n").is_err());
        let k = "AB".repeat(32);
        assert!(Config::from_toml(&format!("[tox]\nbootstrap = \"127.0.0.1:33445:{k}, h:1:{k}\"\n")).is_ok());
        // TCP relays and the UDP switch (docs/protocols/tox.md#tcp-relays).
        assert!(c.tox.udp && c.tox.tcp_relays.is_empty());
        let t = Config::from_toml(&format!("[tox]\nudp = false\ntcp_relays = [\"127.0.0.1:33445:{k}\"]\n")).unwrap();
        assert!(!t.tox.udp && t.tox.tcp_relays.len() == 1);
        assert!(Config::from_toml("[tox]\ntcp_relays = [\"127.0.0.1:33445\"]\n").is_err());
    }

    #[test]
    fn adc_hub_defaults_match_the_machine_and_the_nmdc_hub() {
        let c = Config::default_config();
        let h = &c.adc_hub;
        assert!(!h.enabled && !h.tls);
        assert_eq!(h.listen.port(), 4112);
        assert_ne!(h.listen, c.nmdc_hub.listen);
        let m = omnipeer_adc::hub::HubConfig::default();
        assert_eq!(h.max_users_per_ip, m.max_users_per_ip);
        assert_eq!(h.max_logins_per_ip_per_minute, m.max_logins_per_ip_per_minute);
        assert_eq!(h.max_users, m.max_users);
        let c = Config::from_toml("[adc_hub]\nenabled = true\ntls = true\nlisten = \"127.0.0.1:5000\"\n").unwrap();
        assert!(c.adc_hub.enabled && c.adc_hub.tls);
        assert!(Config::from_toml("[adc_hub]\ntsl = true\n").is_err());
    }

    #[test]
    fn user_values_override_and_typos_are_errors() {
        let c = Config::from_toml("[dcc]\nlisten = \"127.0.0.1:7000\"\nservices = [\"chat\"]\n").unwrap();
        assert_eq!(c.dcc.listen.port(), 7000);
        assert!(!c.dcc.services().unwrap().send);
        assert_eq!(c.dcc.max_gets, 5);
        let e = Config::from_toml("[dcc]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("dcc.listen_addr"));
        assert!(Config::from_toml("[dcc]\nservices = [\"ftp\"]\n").is_err());
        assert!(Config::from_toml("[dcc]\nlisten = \"nope\"\n").is_err());
    }

    #[test]
    fn data_dir_precedence() {
        let c = Config::from_toml("[node]\ndata_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(c.data_dir(None).unwrap(), PathBuf::from("/tmp/x"));
        assert_eq!(c.data_dir(Some(Path::new("/y"))).unwrap(), PathBuf::from("/y"));
    }
}
