//! The configuration: which file is read, and `omnipeer config`.

use crate::Global;
use clap::Subcommand;
use omnipeer_node::config::{Config, DEFAULT_TOML};

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the embedded default configuration (every key, with comments)
    Default,
    /// Print the effective configuration after reading --config
    Check,
}

/// The configuration: `--config FILE`, else DATA_DIR/config.toml when there is one, else
/// the defaults.
pub fn load(g: &Global) -> anyhow::Result<Config> {
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

pub fn run(cfg: &Config, cmd: ConfigCmd) {
    match cmd {
        ConfigCmd::Default => print!("{DEFAULT_TOML}"),
        ConfigCmd::Check => println!("{cfg:#?}"),
    }
}
