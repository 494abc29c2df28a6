//! `omnipeer up`: the node, every network the configuration enables and the HTTP API
//! (docs/api.md, docs/operations.md).

use crate::common::shutdown_on_signals;
use crate::{dcc, Global};
use anyhow::anyhow;
use clap::Args;
use omnipeer_node::config::Config;

// No doc comment: the help text is the one on `Command::Up` (which would override it).
#[derive(Args)]
pub struct UpArgs {
    /// Start with a new node.sqlite when it is missing, empty or damaged in a data
    /// directory that holds state from an earlier run (refused otherwise; see
    /// docs/operations.md, "Backups and recovery")
    #[arg(long)]
    fresh_db: bool,
}

pub async fn run(g: &Global, cfg: Config, UpArgs { fresh_db }: UpArgs) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir(g.data_dir.as_deref())?;
    let shutdown = shutdown_on_signals();
    let any = cfg.dcc.enabled
        || cfg.nmdc_hub.enabled
        || cfg.adc_hub.enabled
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
