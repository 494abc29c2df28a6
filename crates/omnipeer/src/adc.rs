//! `omnipeer adc`: Direct Connect over ADC, the hub (docs/protocols/adc.md).

use crate::common::{print_json, shutdown_on_signals, spawn_printer};
use crate::Global;
use clap::{Args, Subcommand};
use omnipeer_node::adc::hub::{HubConfig, HubEvent, MAX_LOGINS_PER_IP_PER_MINUTE, MAX_NICK, MAX_USERS_PER_IP};
use omnipeer_node::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AdcCmd {
    /// Run an ADC hub (adc://, or adcs:// with --tls): login with SID/CID checks,
    /// registered users and operators, chat, search and connection relay
    Hub(RunHubArgs),
}

#[derive(Args)]
pub struct RunHubArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4112")]
    listen: SocketAddr,
    /// Serve TLS (adcs://) with the certificate kept in DATA_DIR/tls (made on first use);
    /// its keyprint is printed for clients to pin
    #[arg(long)]
    tls: bool,
    /// Hub name (NI of the hub's INF)
    #[arg(long, value_name = "NAME", default_value = "omnipeer ADC hub")]
    name: String,
    /// Hub description (DE)
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
    /// A line of the message of the day (repeatable)
    #[arg(long, value_name = "TEXT")]
    motd: Vec<String>,
    /// Database of registered users and bans [default: DATA_DIR/adc-hub.sqlite]
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Register a nick at start (repeatable); add ":op" for an operator
    #[arg(long, value_name = "NICK:PASS[:op]")]
    register: Vec<String>,
    /// Users at once (registered users may exceed it)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    max_users: usize,
    /// Unregistered users at once from one address (0: no limit)
    #[arg(long, value_name = "N", default_value_t = MAX_USERS_PER_IP)]
    max_users_per_ip: usize,
    /// Logins one address may start per minute (0: no limit)
    #[arg(long, value_name = "N", default_value_t = MAX_LOGINS_PER_IP_PER_MINUTE)]
    max_logins_per_ip_per_minute: u32,
}

pub async fn run(g: &Global, cfg: Config, cmd: AdcCmd) -> anyhow::Result<()> {
    match cmd {
        AdcCmd::Hub(args) => hub(g, &cfg, args).await,
    }
}

/// `--register NICK:PASS[:op]`.
fn parse_register(r: &str) -> anyhow::Result<(String, String, bool)> {
    let mut parts = r.splitn(3, ':');
    let (Some(nick), Some(pass)) = (parts.next(), parts.next()) else {
        anyhow::bail!("--register {r:?}: expected NICK:PASS or NICK:PASS:op");
    };
    let op = match parts.next() {
        None => false,
        Some(x) if x.eq_ignore_ascii_case("op") => true,
        Some(x) => anyhow::bail!("--register {r:?}: the third part must be 'op', not {x:?}"),
    };
    if nick.is_empty() || pass.is_empty() || nick.len() > MAX_NICK || nick.chars().any(char::is_whitespace) {
        anyhow::bail!("--register {r:?}: empty or invalid nick or password");
    }
    Ok((nick.to_owned(), pass.to_owned(), op))
}

/// `omnipeer adc hub`.
async fn hub(g: &Global, cfg: &Config, a: RunHubArgs) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
    let register = a.register.iter().map(|r| parse_register(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let tls = if a.tls { Some(omnipeer_node::tls::TlsIdentity::load_or_create(&data_dir)?) } else { None };
    let server = omnipeer_node::adc::AdcHubServer::bind(omnipeer_node::adc::AdcHubServerConfig {
        listen: a.listen,
        hub: HubConfig {
            name: a.name,
            description: a.description,
            motd: a.motd,
            max_users: a.max_users,
            max_users_per_ip: a.max_users_per_ip,
            max_logins_per_ip_per_minute: a.max_logins_per_ip_per_minute,
            ..Default::default()
        },
        db: a.db.unwrap_or_else(|| data_dir.join("adc-hub.sqlite")),
        register,
        tls,
    })
    .await?;
    if let Some(kp) = server.keyprint() {
        eprintln!("keyprint {kp}");
    }
    eprintln!("hub address {}", server.url());
    eprintln!("listening on {}", server.local_addr());
    let json = g.json;
    spawn_printer(server.subscribe(), move |ev| match ev {
        HubEvent::Chat { nick, text } => {
            if json {
                print_json(serde_json::json!({"event":"chat","nick":nick,"text":text}));
            } else {
                println!("<{nick}> {text}");
            }
        }
        HubEvent::LoggedIn { nick, ip, op, sid, .. } if json => print_json(
            serde_json::json!({"event":"logged_in","nick":nick,"sid":sid.to_string(),"ip":ip.to_string(),"op":op}),
        ),
        HubEvent::LoggedOut { nick, .. } if json => print_json(serde_json::json!({"event":"logged_out","nick":nick})),
        HubEvent::Dropped { nick, why, .. } if json => {
            print_json(serde_json::json!({"event":"refused","nick":nick,"why":why}))
        }
        _ => {}
    });
    server.run(shutdown_on_signals()).await
}
