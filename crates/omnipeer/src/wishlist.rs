//! `omnipeer wishlist [add QUERY | remove ID | run ID | seen ID]`: the running node's
//! saved searches (docs/api.md "Wishlist"), and the result filters that `wishlist add` and
//! `omnipeer search` share (`GET /api/searches/{id}`'s query parameters).

use crate::node_client::{off_runtime, ApiArgs, Conn};
use crate::Global;
use anyhow::bail;
use clap::{Args, Subcommand};
use omnipeer_node::config::Config;
use omnipeer_node::progress::human;
use serde_json::{json, Map, Value};

// No doc comment on WishlistArgs: its help text is the one on `Command::Wishlist`.

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WishlistArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    cmd: Option<WishlistCmd>,
}

#[derive(Subcommand)]
pub enum WishlistCmd {
    /// Save a search; the node runs it at once, then again on each network's interval
    /// (Soulseek's WishlistInterval, 10 minutes on hubs), and marks the matches it had not
    /// seen before
    Add {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        filters: FilterArgs,
        /// Download every new match that passes the filters, by itself
        #[arg(long)]
        auto_download: bool,
        /// Words to search for
        #[arg(required = true)]
        query: Vec<String>,
    },
    /// Forget a saved search (ID as `omnipeer wishlist` lists it)
    Remove {
        #[command(flatten)]
        api: ApiArgs,
        /// The item
        id: i64,
    },
    /// Run a saved search now, whatever its interval says
    Run {
        #[command(flatten)]
        api: ApiArgs,
        /// The item
        id: i64,
    },
    /// The new matches of an item were looked at: its count of new ones goes back to 0
    Seen {
        #[command(flatten)]
        api: ApiArgs,
        /// The item
        id: i64,
    },
}

/// What results must pass: the filters of `GET /api/searches/{id}` and of a wishlist item.
#[derive(Args, Clone, Default)]
pub struct FilterArgs {
    /// Smallest file size (bytes, or with a unit: 500k, 10M, 1.5G; binary units)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    min_size: Option<u64>,
    /// Largest file size (as --min-size)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_size: Option<u64>,
    /// File extensions, any of (comma-separated: mp3,flac)
    #[arg(long, value_name = "EXTS")]
    ext: Option<String>,
    /// Lowest bitrate in kbps (only Soulseek sources give one; others do not pass)
    #[arg(long, value_name = "KBPS")]
    min_bitrate: Option<u32>,
    /// Only sources with a free upload slot
    #[arg(long)]
    free_slot: bool,
    /// Only sources on this network (nmdc or slsk)
    #[arg(long, value_name = "NET", value_parser = parse_network)]
    network: Option<String>,
}

/// `500k`, `10M`, `1.5GiB`, `300000` → bytes (binary units, as the node prints sizes).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{s:?} is not a size (bytes, or 500k, 10M, 1.5G)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (bytes, or 500k, 10M, 1.5G)"))?;
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v.round() as u64)
}

fn parse_network(s: &str) -> Result<String, String> {
    match s {
        "nmdc" | "slsk" => Ok(s.to_owned()),
        _ => Err(format!("{s:?}: the network is nmdc or slsk (the networks that search)")),
    }
}

impl FilterArgs {
    /// As the API's Filters object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(v) = self.min_size {
            m.insert("min_size".into(), json!(v));
        }
        if let Some(v) = self.max_size {
            m.insert("max_size".into(), json!(v));
        }
        if let Some(v) = self.ext.as_deref().filter(|e| !e.trim().is_empty()) {
            m.insert("ext".into(), json!(v));
        }
        if let Some(v) = self.min_bitrate {
            m.insert("min_bitrate".into(), json!(v));
        }
        if self.free_slot {
            m.insert("free_slot".into(), json!(true));
        }
        if let Some(v) = &self.network {
            m.insert("network".into(), json!(v));
        }
        Value::Object(m)
    }

    /// As `GET /api/searches/{id}`'s query string ("" or `?min_size=…&ext=…`).
    pub fn query_string(&self) -> String {
        let f = self.to_json();
        let parts: Vec<String> = ["min_size", "max_size", "ext", "min_bitrate", "free_slot", "network"]
            .iter()
            .filter_map(|k| {
                let v = match f.get(*k)? {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                Some(format!("{k}={}", crate::node_client::urlencode(&v)))
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// A Filters object as one short text: `ext=flac min-size=100.0 KiB free-slot`.
pub fn filters_text(f: &Value) -> String {
    let mut out = Vec::new();
    if let Some(v) = f["min_size"].as_u64() {
        out.push(format!("min-size={}", human(v)));
    }
    if let Some(v) = f["max_size"].as_u64() {
        out.push(format!("max-size={}", human(v)));
    }
    if let Some(v) = f["ext"].as_str() {
        out.push(format!("ext={v}"));
    }
    if let Some(v) = f["min_bitrate"].as_u64() {
        out.push(format!("min-bitrate={v}kbps"));
    }
    if f["free_slot"] == true {
        out.push("free-slot".into());
    }
    if let Some(v) = f["network"].as_str() {
        out.push(format!("network={v}"));
    }
    out.join(" ")
}

/// "5s ago", "3m ago", "2h ago", "4d ago".
fn ago(now: i64, then: i64) -> String {
    let s = now.saturating_sub(then).max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// One line per item: `ID  "QUERY"  FILTERS  auto-download  ran 5s ago  2 new`.
fn item_line(it: &Value, now: i64) -> String {
    let mut cols = vec![it["id"].to_string(), format!("{:?}", it["query"].as_str().unwrap_or(""))];
    let f = filters_text(&it["filters"]);
    if !f.is_empty() {
        cols.push(f);
    }
    if it["auto_download"] == true {
        cols.push("auto-download".into());
    }
    cols.push(match it["last_run"].as_i64() {
        Some(t) => format!("ran {}", ago(now, t)),
        None => "not run yet".into(),
    });
    cols.push(format!("{} new", it["new_matches"].as_u64().unwrap_or(0)));
    cols.join("  ")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn print_item(it: &Value, json_out: bool) {
    if json_out {
        println!("{it}");
    } else {
        println!("{}", item_line(it, unix_now()));
    }
}

/// `omnipeer wishlist …`.
pub async fn run(g: &Global, cfg: &Config, WishlistArgs { api, cmd }: WishlistArgs) -> anyhow::Result<()> {
    let api = match &cmd {
        None => api,
        Some(
            WishlistCmd::Add { api, .. }
            | WishlistCmd::Remove { api, .. }
            | WishlistCmd::Run { api, .. }
            | WishlistCmd::Seen { api, .. },
        ) => api.clone(),
    };
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    off_runtime(move || {
        let conn = conn?;
        match cmd {
            None => {
                let v = conn.get("/api/wishlist")?;
                let items = v.as_array().cloned().unwrap_or_default();
                for it in &items {
                    print_item(it, json_out);
                }
                match items.len() {
                    0 => eprintln!("no wishlist items; save one with `omnipeer wishlist add QUERY`"),
                    n => eprintln!("{n} wishlist item{}", if n == 1 { "" } else { "s" }),
                }
            }
            Some(WishlistCmd::Add { filters, auto_download, query, .. }) => {
                let query = query.join(" ");
                if query.trim().is_empty() {
                    bail!("give words to search for");
                }
                let body = json!({"query": query, "filters": filters.to_json(), "auto_download": auto_download});
                let it = conn.post("/api/wishlist", &body)?;
                print_item(&it, json_out);
                eprintln!("saved; the node runs it now and again on each network's interval");
            }
            Some(WishlistCmd::Remove { id, .. }) => {
                conn.delete(&format!("/api/wishlist/{id}"))?;
                eprintln!("removed wishlist item {id}");
            }
            Some(WishlistCmd::Run { id, .. }) => {
                let it = conn.post(&format!("/api/wishlist/{id}/run"), &json!({}))?;
                print_item(&it, json_out);
                eprintln!(
                    "sent as search {}; new matches show in `omnipeer wishlist`",
                    it["last_search"].as_u64().map(|s| s.to_string()).unwrap_or_else(|| "?".into())
                );
            }
            Some(WishlistCmd::Seen { id, .. }) => {
                let it = conn.post(&format!("/api/wishlist/{id}/seen"), &json!({}))?;
                print_item(&it, json_out);
            }
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("300000"), Ok(300_000));
        assert_eq!(parse_size("100k"), Ok(102_400));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2 MB"), Ok(2 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5x").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn filters_go_to_the_api_as_it_names_them() {
        let f = FilterArgs { ext: Some("mp3,flac".into()), free_slot: true, min_size: Some(5), ..Default::default() };
        assert_eq!(f.to_json(), json!({"ext": "mp3,flac", "free_slot": true, "min_size": 5}));
        assert_eq!(f.query_string(), "?min_size=5&ext=mp3%2Cflac&free_slot=true");
        assert_eq!(FilterArgs::default().query_string(), "");
        assert_eq!(filters_text(&f.to_json()), "min-size=5 B ext=mp3,flac free-slot");
    }
}
