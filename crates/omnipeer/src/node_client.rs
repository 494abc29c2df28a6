//! `omnipeer status | search | get | browse | chat`: clients of a running node's HTTP API
//! (docs/api.md). Blocking (ureq); run off the async runtime. `omnipeer wishlist` is in
//! `crate::wishlist`, on the same connection ([`Conn`]).

use crate::wishlist::FilterArgs;
use crate::Global;
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use omnipeer_node::config::Config;
use omnipeer_node::progress::{human, Progress};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Where the running node's API is.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The node's API address [default: the config's [api].listen]
    #[arg(long, value_name = "ADDR")]
    api: Option<String>,
    /// Bearer token [default: OMNIPEER_TOKEN, else [api].token, else DATA_DIR/api-token]
    #[arg(long, value_name = "TOKEN", env = "OMNIPEER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
pub enum ChatCmd {
    /// Every chat (hub main chat, rooms, private messages, Tox friends, DCC chats) with its
    /// last line
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Say something: CHAT is nmdc:hub, nmdc:pm:NICK, slsk:room:ROOM, slsk:pm:USER,
    /// tox:friend:PUBLICKEY or dcc:chat:NICK (an open DCC chat with the node). A private
    /// message to a nick not on the hub, or to a user the Soulseek server does not know,
    /// is refused; one to an offline Soulseek user waits on the server until they log in
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

// No doc comments on the structs below: their help texts are the ones on `Command` (which
// would override them).

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A hub's main chat (nmdc:hub, nmdc@LABEL:hub) or a Soulseek room (slsk:room:NAME)
    chat: String,
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Seconds to wait for results
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    timeout: u64,
    #[command(flatten)]
    filters: FilterArgs,
    /// Words to search for
    #[arg(required = true)]
    query: Vec<String>,
}

#[derive(Args)]
pub struct GetArgs {
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
    /// With NETWORK:USER:PATH: where it lands inside the downloads folder, a template
    /// with {user}, {folder}, {network}, {session} [default: [transfers].destination]
    #[arg(long, value_name = "TEMPLATE")]
    destination: Option<String>,
    /// Take number N from this search (its id, as `omnipeer search` says) instead of the
    /// last one printed; the same as SEARCH_ID/N
    #[arg(long, value_name = "SEARCH_ID")]
    search: Option<u64>,
    /// N: the result numbered N by the last `omnipeer search`; SEARCH_ID/N: the Nth result
    /// of that search; or NETWORK:USER:PATH (nmdc@LABEL:USER:PATH for a labelled session):
    /// a file or a whole folder of the user's share, as `omnipeer browse` shows
    result: String,
}

#[derive(Args)]
pub struct BrowseArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Print only names matching every one of these words
    #[arg(long, value_name = "WORDS")]
    find: Option<String>,
    /// Ask the user again even if the node browsed it in the last minutes
    #[arg(long)]
    refresh: bool,
    /// NETWORK:USER, NETWORK being nmdc or slsk (nmdc@LABEL:USER for a labelled session)
    target: String,
    /// A folder of the share (default: all of it)
    path: Option<String>,
}

/// A user on a session: `nmdc:alice`, `slsk@other:bob`, and with `with_path` a path after
/// one more `:` (`slsk:bob:music/Album`).
struct Target {
    network: String,
    session: String,
    user: String,
    path: String,
}

fn parse_target(s: &str, with_path: bool) -> anyhow::Result<Target> {
    let usage = if with_path { "NETWORK:USER:PATH" } else { "NETWORK:USER" };
    let (net, rest) = s.split_once(':').ok_or_else(|| anyhow!("{s:?}: expected {usage} (nmdc or slsk)"))?;
    let (network, session) = net.split_once('@').unwrap_or((net, ""));
    if !matches!(network, "nmdc" | "slsk") {
        bail!("{s:?}: the network is nmdc or slsk (optionally nmdc@LABEL), not {network:?}");
    }
    let (user, path) =
        if with_path { rest.split_once(':').ok_or_else(|| anyhow!("{s:?}: expected {usage}"))? } else { (rest, "") };
    if user.is_empty() || (with_path && path.is_empty()) {
        bail!("{s:?}: expected {usage}");
    }
    Ok(Target { network: network.into(), session: session.into(), user: user.into(), path: path.into() })
}

/// How long a browse may take through the API: the node's own limit (150 s) and a margin.
const BROWSE_WAIT: Duration = Duration::from_secs(180);

/// Runs a blocking client-of-the-node command off the runtime's threads.
pub(crate) async fn off_runtime(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(f).await?
}

/// How often results, progress and chat are polled.
const POLL: Duration = Duration::from_millis(250);

/// A connection to the node's API.
pub(crate) struct Conn {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Conn {
    pub(crate) fn new(g: &Global, cfg: &Config, api: &ApiArgs) -> anyhow::Result<Conn> {
        let addr = api.api.clone().unwrap_or_else(|| cfg.api.listen.to_string());
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        };
        let token = match &api.token {
            Some(t) if !t.is_empty() => Some(t.clone()),
            _ if !cfg.api.token.is_empty() => Some(cfg.api.token.clone()),
            _ => cfg
                .data_dir(g.data_dir.as_deref())
                .ok()
                .and_then(|d| std::fs::read_to_string(d.join("api-token")).ok())
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Conn { base, token, agent })
    }

    fn finish(&self, path: &str, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> anyhow::Result<Value> {
        let mut r = r.map_err(|e| {
            anyhow!("cannot reach the node at {} ({e}): is `omnipeer up` running? (--api ADDR)", self.base)
        })?;
        let status = r.status();
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["error"].as_str().map(str::to_owned).unwrap_or_else(|| format!("HTTP {status} on {path}"));
            if status.as_u16() == 401 {
                bail!("{msg}: pass --token or set OMNIPEER_TOKEN");
            }
            bail!("{msg}");
        }
        Ok(v)
    }

    /// For requests that wait for a peer (a browse): the node's own limit applies.
    fn patient(mut self) -> Conn {
        self.agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(BROWSE_WAIT)).build().into();
        self
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let r = req.call();
        self.finish(path, r)
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let r = req.send_json(body);
        self.finish(path, r)
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let mut req = self.agent.delete(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let r = req.call();
        self.finish(path, r)
    }
}

fn sources_text(r: &Value) -> String {
    r["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| format!("{}:{}", s["network"].as_str().unwrap_or("?"), s["user"].as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `omnipeer status`.
/// `omnipeer users CHAT`: who is in a hub's main chat or a room, one line each.
pub async fn users(g: &Global, cfg: &Config, UsersArgs { api, chat }: UsersArgs) -> anyhow::Result<()> {
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    off_runtime(move || {
        let v = conn?.get(&format!("/api/users?chat={}", urlencode(&chat)))?;
        if json_out {
            println!("{v}");
            return Ok(());
        }
        let list = v.as_array().cloned().unwrap_or_default();
        for u in &list {
            let mut marks = Vec::new();
            if u["op"] == true {
                marks.push("op".to_owned());
            }
            if u["away"] == true {
                marks.push("away".to_owned());
            }
            if let Some(r) = u["relation"].as_str() {
                marks.push(r.to_owned());
            }
            let shared = match (u["share_size"].as_u64(), u["files"].as_u64()) {
                (Some(b), _) => human_bytes(b),
                (None, Some(f)) => format!("{f} files"),
                _ => String::new(),
            };
            let slots = match (u["slots"].as_u64(), u["slots_full"].as_bool()) {
                (Some(n), _) => format!("{n} slots"),
                (None, Some(true)) => "slots full".to_owned(),
                (None, Some(false)) => "free slot".to_owned(),
                _ => String::new(),
            };
            println!(
                "{:<24} {:>11}  {:<10} {:<12} {}",
                u["nick"].as_str().unwrap_or(""),
                shared,
                slots,
                marks.join(","),
                u["description"].as_str().or(u["country"].as_str()).unwrap_or("")
            );
        }
        eprintln!("{} user{} in {chat}", list.len(), if list.len() == 1 { "" } else { "s" });
        Ok(())
    })
    .await
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub async fn status(g: &Global, cfg: &Config, StatusArgs { api }: StatusArgs) -> anyhow::Result<()> {
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    off_runtime(move || {
        let conn = conn?;
        let v = conn.get("/api/status")?;
        if json_out {
            println!("{v}");
            return Ok(());
        }
        println!(
            "node {} (omnipeer {}), data in {}",
            v["nick"].as_str().unwrap_or(""),
            v["version"].as_str().unwrap_or(""),
            v["data_dir"].as_str().unwrap_or("")
        );
        for n in v["networks"].as_array().into_iter().flatten() {
            println!(
                "  {:<12} {:<7} {:<9} {:<22} {}",
                n["name"].as_str().unwrap_or(""),
                n["role"].as_str().unwrap_or(""),
                n["state"].as_str().unwrap_or(""),
                n["address"].as_str().unwrap_or(""),
                n["detail"].as_str().unwrap_or("")
            );
        }
        let t = &v["transfers"];
        println!(
            "transfers: {} queued, {} running, {} paused, {} done, {} failed",
            t["queued"], t["running"], t["paused"], t["done"], t["failed"]
        );
        let s = &v["shares"];
        println!("shares: {} files, {}", s["files"], human(s["bytes"].as_u64().unwrap_or(0)));
        Ok(())
    })
    .await
}

/// Where `omnipeer search` remembers the numbers it printed, for `omnipeer get N`: a file
/// in the data directory, beside the `api-token` the client commands read.
pub const LAST_SEARCH_FILE: &str = "last-search.json";
/// Largest last-search file read back: it holds at most the node's 2000 result ids of a
/// search (`app::search::MAX_RESULTS`), far below this.
pub const LAST_SEARCH_MAX_BYTES: u64 = 1 << 20;

/// The last search `omnipeer search` printed: on which node, which search (its id and
/// start time: ids start again when the node restarts) and the result id of each number.
struct LastSearch {
    api: String,
    search: u64,
    started: i64,
    query: String,
    results: Vec<u64>,
}

impl LastSearch {
    fn to_json(&self) -> Value {
        json!({"api": self.api, "search": self.search, "started": self.started, "query": self.query,
               "results": self.results})
    }

    fn from_json(v: &Value) -> Option<LastSearch> {
        Some(LastSearch {
            api: v["api"].as_str()?.to_owned(),
            search: v["search"].as_u64()?,
            started: v["started"].as_i64()?,
            query: v["query"].as_str().unwrap_or("").to_owned(),
            results: v["results"].as_array()?.iter().filter_map(Value::as_u64).collect(),
        })
    }

    /// Written whole to a temporary file and renamed, so a `get` never reads half of it.
    fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json().to_string())?;
        std::fs::rename(&tmp, path)
    }

    /// None when there is none (or it cannot be read: a `get N` then says to search).
    fn load(path: &std::path::Path) -> Option<LastSearch> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path).ok()?.take(LAST_SEARCH_MAX_BYTES).read_to_string(&mut text).ok()?;
        LastSearch::from_json(&serde_json::from_str(&text).ok()?)
    }
}

/// The last-search file of this client: `DATA_DIR/last-search.json`.
fn last_search_path(g: &Global, cfg: &Config) -> Option<std::path::PathBuf> {
    cfg.data_dir(g.data_dir.as_deref()).ok().map(|d| d.join(LAST_SEARCH_FILE))
}

/// `omnipeer search QUERY`: results numbered 1, 2, 3… as they are printed.
pub async fn search(
    g: &Global,
    cfg: &Config,
    SearchArgs { api, timeout, filters, query }: SearchArgs,
) -> anyhow::Result<()> {
    let (query, wait) = (query.join(" "), Duration::from_secs(timeout));
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    let last_path = last_search_path(g, cfg);
    off_runtime(move || {
        let conn = conn?;
        let s = conn.post("/api/searches", &json!({ "query": query }))?;
        let id = s["id"].as_u64().ok_or_else(|| anyhow!("the node did not return a search id"))?;
        let sent: Vec<&str> = s["sent_to"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let to = if sent.is_empty() { String::new() } else { format!(" on {}", sent.join(", ")) };
        eprintln!("searching for {query:?} (search {id}){to} for {}s", wait.as_secs());
        let mut last = LastSearch {
            api: conn.base.clone(),
            search: id,
            started: s["started"].as_i64().unwrap_or(0),
            query: query.clone(),
            results: Vec::new(),
        };
        let mut saved_warned = false;
        let mut save = |last: &LastSearch| {
            let Some(p) = &last_path else { return };
            if let Err(e) = last.save(p) {
                if !saved_warned {
                    eprintln!("warning: cannot remember the numbers in {}: {e}", p.display());
                    saved_warned = true;
                }
            }
        };
        // Saved at once: a `get N` from before must not take a number of an older search.
        save(&last);
        let end = Instant::now() + wait;
        let mut seen = HashSet::new();
        let q = filters.query_string();
        loop {
            let s = conn.get(&format!("/api/searches/{id}{q}"))?;
            let before = last.results.len();
            for r in s["results"].as_array().into_iter().flatten() {
                let rid = r["id"].as_u64().unwrap_or(0);
                if !seen.insert(rid) {
                    continue;
                }
                last.results.push(rid);
                let n = last.results.len();
                if json_out {
                    let mut r = r.clone();
                    r["number"] = json!(n);
                    println!("{r}");
                } else {
                    println!(
                        "[{n}] {}  {}  {}",
                        r["name"].as_str().unwrap_or(""),
                        human(r["size"].as_u64().unwrap_or(0)),
                        sources_text(r)
                    );
                }
            }
            if last.results.len() != before {
                save(&last);
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            if Instant::now() >= end || s["state"] == "finished" {
                break;
            }
            std::thread::sleep(POLL);
        }
        if seen.is_empty() {
            eprintln!("no results");
        } else {
            eprintln!("{} results; download one with `omnipeer get NUMBER`", seen.len());
        }
        Ok(())
    })
    .await
}

/// Which search result `get` means: number `n` of the last search printed, or of search
/// `search`; the result as the node has it now (with every source found so far).
fn resolve_number(conn: &Conn, last: Option<LastSearch>, search: Option<u64>, n: usize) -> anyhow::Result<Value> {
    if n == 0 {
        bail!("results are numbered from 1");
    }
    let last = last.filter(|l| l.api == conn.base);
    let sid = match (search, &last) {
        (Some(s), _) => s,
        (None, Some(l)) => l.search,
        (None, None) => bail!(
            "no search printed yet for the node at {}: run `omnipeer search QUERY` first, or give SEARCH_ID/N",
            conn.base
        ),
    };
    let s = conn.get(&format!("/api/searches/{sid}")).map_err(|e| {
        anyhow!("{e:#}: the node keeps its last 64 searches, and none from before it restarted; search again")
    })?;
    let results = s["results"].as_array().cloned().unwrap_or_default();
    // The numbers printed for this very search (with any filters it was printed with).
    if let Some(l) = last.filter(|l| l.search == sid && l.started == s["started"].as_i64().unwrap_or(-1)) {
        let rid = *l
            .results
            .get(n - 1)
            .ok_or_else(|| anyhow!("no result {n} in the last search ({:?}: {} printed)", l.query, l.results.len()))?;
        return results
            .into_iter()
            .find(|r| r["id"].as_u64() == Some(rid))
            .ok_or_else(|| anyhow!("result {n} of the last search is gone from the node; search again"));
    }
    if search.is_none() {
        bail!("the last search printed is gone from the node (it restarted?): search again");
    }
    // Another search: numbered in arrival order, as `omnipeer search` prints it.
    let count = results.len();
    results.into_iter().nth(n - 1).ok_or_else(|| {
        anyhow!("no result {n} in search {sid} ({:?}: {count} results)", s["query"].as_str().unwrap_or(""))
    })
}

/// The source `get` takes: the one asked for, the first on the network asked for, else
/// the node's own choice (`POST /api/transfers` without a source): NMDC when the result
/// has a TTH (verified on arrival), then a free slot, then the first.
fn pick_source(r: &Value, source: Option<usize>, network: Option<&str>) -> anyhow::Result<usize> {
    let sources = r["sources"].as_array().cloned().unwrap_or_default();
    let name = r["name"].as_str().unwrap_or("");
    let idx = match (source, network) {
        (Some(i), _) => i,
        (None, Some(n)) => sources
            .iter()
            .position(|s| s["network"] == n)
            .ok_or_else(|| anyhow!("{name} has no source on {n} (it has {})", sources_text(r)))?,
        (None, None) => (0..sources.len())
            .max_by_key(|&i| {
                let s = &sources[i];
                (
                    (s["network"] == "nmdc" && r["tth"].is_string()) as u8,
                    (s["free_slots"].as_u64().unwrap_or(0) > 0) as u8,
                    std::cmp::Reverse(i),
                )
            })
            .unwrap_or(0),
    };
    if idx >= sources.len() {
        bail!("{name} has {} sources (0 to {})", sources.len(), sources.len().saturating_sub(1));
    }
    Ok(idx)
}

/// `nmdc:alice`, `slsk@other:bob`.
fn source_name(s: &Value) -> String {
    let net = s["network"].as_str().unwrap_or("?");
    let user = s["user"].as_str().unwrap_or("?");
    match s["session"].as_str().filter(|l| !l.is_empty()) {
        Some(l) => format!("{net}@{l}:{user}"),
        None => format!("{net}:{user}"),
    }
}

/// What `get` was given: a search result by number, or a path of a user's share.
enum GetWhat {
    Number { search: Option<u64>, n: usize },
    Path(Target),
}

fn parse_get(result: &str, search: Option<u64>) -> anyhow::Result<GetWhat> {
    if let Ok(n) = result.parse::<usize>() {
        return Ok(GetWhat::Number { search, n });
    }
    if let Some((s, n)) = result.split_once('/') {
        if let (Ok(s), Ok(n)) = (s.parse::<u64>(), n.parse::<usize>()) {
            if search.is_some_and(|x| x != s) {
                bail!("{result:?} names search {s}, --search another");
            }
            return Ok(GetWhat::Number { search: Some(s), n });
        }
    }
    if search.is_some() {
        bail!("with --search, give the number of a result (N)");
    }
    Ok(GetWhat::Path(parse_target(result, true)?))
}

/// `omnipeer get N | SEARCH_ID/N | NETWORK:USER:PATH`.
pub async fn get(
    g: &Global,
    cfg: &Config,
    GetArgs { api, source, network, no_wait, destination, search, result }: GetArgs,
) -> anyhow::Result<()> {
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    let (search, n) = match parse_get(&result, search)? {
        GetWhat::Number { search, n } => (search, n),
        GetWhat::Path(target) => {
            return off_runtime(move || get_path(conn?.patient(), target, destination, no_wait, json_out)).await;
        }
    };
    let last = last_search_path(g, cfg).and_then(|p| LastSearch::load(&p));
    off_runtime(move || {
        let conn = conn?;
        let r = resolve_number(&conn, last, search, n)?;
        let idx = pick_source(&r, source, network.as_deref())?;
        let src = &r["sources"][idx];
        eprintln!(
            "about to fetch {} ({}) from {} ({})",
            r["name"].as_str().unwrap_or(""),
            human(r["size"].as_u64().unwrap_or(0)),
            source_name(src),
            src["path"].as_str().unwrap_or("")
        );
        let body = json!({ "result": r["id"], "source": idx });
        let t = conn.post("/api/transfers", &body).context("cannot queue the download")?;
        let id = t["id"].as_i64().ok_or_else(|| anyhow!("the node did not return a transfer id"))?;
        let name = t["name"].as_str().unwrap_or("").to_owned();
        eprintln!(
            "queued {name} from {}:{} as transfer {id}",
            t["network"].as_str().unwrap_or(""),
            t["source"].as_str().unwrap_or("")
        );
        if no_wait {
            if json_out {
                println!("{t}");
            }
            return Ok(());
        }
        let mut bar = Progress::for_stderr(name.clone());
        let mut started = false;
        let mut last_error = String::new();
        loop {
            let t = conn.get(&format!("/api/transfers/{id}"))?;
            let state = t["state"].as_str().unwrap_or("");
            let bytes = t["bytes"].as_u64().unwrap_or(0);
            let size = t["size"].as_u64().unwrap_or(0);
            match state {
                "done" => {
                    if started {
                        bar.finish(size);
                    }
                    if json_out {
                        println!("{t}");
                    } else {
                        println!("downloaded {name} ({size} bytes) to {}", t["local_path"].as_str().unwrap_or(""));
                    }
                    return Ok(());
                }
                "failed" => bail!("download of {name} failed: {}", t["error"].as_str().unwrap_or("")),
                "cancelled" => bail!("download of {name} was cancelled"),
                "running" => {
                    if !started {
                        bar.start(bytes, size);
                        started = true;
                    }
                    // A segmented download: how many sources send, and its block map.
                    if let Ok(seg) = conn.get(&format!("/api/transfers/{id}/segments")) {
                        if let (Some(map), Some(sources)) = (seg["blocks"].as_str(), seg["sources"].as_array()) {
                            let busy = sources.iter().filter(|s| s["state"] == "downloading").count();
                            let map = omnipeer_node::segments::condense(map, 32);
                            bar.set_detail(&format!("{busy}/{} sources [{map}]", sources.len()));
                        }
                    }
                    bar.set(bytes);
                }
                _ => {
                    let e = t["error"].as_str().unwrap_or("");
                    if !e.is_empty() && e != last_error {
                        eprintln!("{state}: {e} (retry {})", t["retries"]);
                        last_error = e.to_owned();
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    })
    .await
}

/// `omnipeer get NETWORK:USER:PATH`: a file or a whole folder, as one group.
fn get_path(conn: Conn, t: Target, destination: Option<String>, no_wait: bool, json_out: bool) -> anyhow::Result<()> {
    let mut body = json!({"network": t.network, "session": t.session, "user": t.user, "path": t.path});
    if let Some(d) = destination {
        body["destination"] = json!(d);
    }
    let p = conn.post("/api/transfers", &body).context("cannot queue the download")?;
    let files = p["files"].as_u64().unwrap_or(0);
    let size = p["size"].as_u64().unwrap_or(0);
    let name = p["name"].as_str().unwrap_or("").to_owned();
    let dest = p["destination"].as_str().unwrap_or("").to_owned();
    let kind = if p["folder"] == true { "folder" } else { "file" };
    eprintln!("queued {kind} {name} from {}:{}: {files} files, {} into {dest}", t.network, t.user, human(size));
    for e in p["existing"].as_array().into_iter().flatten() {
        eprintln!("warning: {} is already on disk; the new copy gets a name of its own", e.as_str().unwrap_or(""));
    }
    let ids: Vec<i64> = p["transfers"].as_array().into_iter().flatten().filter_map(|t| t["id"].as_i64()).collect();
    if no_wait {
        if json_out {
            println!("{p}");
        }
        return Ok(());
    }
    let mut bar = Progress::for_stderr(name.clone());
    bar.start(0, size);
    loop {
        let all = conn.get("/api/transfers")?;
        let mine: Vec<&Value> = all
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["id"].as_i64().is_some_and(|i| ids.contains(&i)))
            .collect();
        let state = |s: &str| mine.iter().filter(|t| t["state"] == s).count();
        let bytes: u64 = mine
            .iter()
            .map(|t| if t["state"] == "done" { t["size"].as_u64() } else { t["bytes"].as_u64() }.unwrap_or(0))
            .sum();
        bar.set(bytes);
        if state("failed") + state("cancelled") > 0 && state("queued") + state("running") + state("paused") == 0 {
            let why: Vec<String> = mine
                .iter()
                .filter(|t| t["state"] != "done")
                .map(|t| format!("{}: {}", t["name"].as_str().unwrap_or(""), t["error"].as_str().unwrap_or("")))
                .collect();
            bail!("{} of {files} files of {name} did not download: {}", why.len(), why.join("; "));
        }
        if state("done") == mine.len() {
            bar.finish(bytes);
            if json_out {
                println!("{p}");
            } else if kind == "folder" {
                println!("downloaded folder {name} ({files} files, {bytes} bytes) to {dest}");
            } else {
                let local = mine.first().and_then(|t| t["local_path"].as_str()).unwrap_or("");
                println!("downloaded {name} ({bytes} bytes) to {local}");
            }
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// `omnipeer browse NETWORK:USER [PATH]`.
pub async fn browse(
    g: &Global,
    cfg: &Config,
    BrowseArgs { api, find, refresh, target, path }: BrowseArgs,
) -> anyhow::Result<()> {
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    let t = parse_target(&target, false)?;
    off_runtime(move || {
        let conn = conn?.patient();
        let mut q = format!(
            "/api/browse?network={}&session={}&user={}&path={}",
            t.network,
            urlencode(&t.session),
            urlencode(&t.user),
            urlencode(path.as_deref().unwrap_or(""))
        );
        if refresh {
            q.push_str("&refresh=true");
        }
        if let Some(words) = &find {
            q.push_str(&format!("&q={}", urlencode(words)));
        }
        eprintln!("browsing {}:{} ...", t.network, t.user);
        let v = conn.get(&q)?;
        if json_out {
            println!("{v}");
            return Ok(());
        }
        if find.is_some() {
            let hits = v["hits"].as_array().cloned().unwrap_or_default();
            for h in &hits {
                print_entry(h["kind"] == "folder", h["path"].as_str().unwrap_or(""), h["size"].as_u64(), &h["files"]);
            }
            eprintln!("{} matches", hits.len());
            return Ok(());
        }
        let root = &v["folder"];
        // Depth first, each folder before what is in it.
        let mut stack = vec![root];
        while let Some(f) = stack.pop() {
            if !f["path"].as_str().unwrap_or("").is_empty() {
                print_entry(true, f["path"].as_str().unwrap_or(""), f["size"].as_u64(), &f["files"]);
            }
            for e in f["entries"].as_array().into_iter().flatten() {
                print_entry(false, e["path"].as_str().unwrap_or(""), e["size"].as_u64(), &Value::Null);
            }
            let subs: Vec<&Value> = f["folders"].as_array().into_iter().flatten().collect();
            stack.extend(subs.into_iter().rev());
        }
        eprintln!(
            "{} files, {} in {}:{}; download a file or folder with `omnipeer get {target}:PATH`",
            root["files"],
            human(root["size"].as_u64().unwrap_or(0)),
            t.network,
            t.user,
        );
        Ok(())
    })
    .await
}

/// One line of `omnipeer browse`: size, then the path (a folder's ends in `\` and says
/// how many files it holds).
fn print_entry(folder: bool, path: &str, size: Option<u64>, files: &Value) {
    let size = human(size.unwrap_or(0));
    if folder {
        println!("{size:>10}  {path}\\  ({files} files)");
    } else {
        println!("{size:>10}  {path}");
    }
}

fn print_message(m: &Value, json_out: bool) {
    if json_out {
        println!("{m}");
    } else {
        println!("<{}> {}", m["nick"].as_str().unwrap_or(""), m["text"].as_str().unwrap_or(""));
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `omnipeer chat list | send | follow`.
pub async fn chat(g: &Global, cfg: &Config, cmd: ChatCmd) -> anyhow::Result<()> {
    let api = match &cmd {
        ChatCmd::List { api } | ChatCmd::Send { api, .. } | ChatCmd::Follow { api, .. } => api.clone(),
    };
    let conn = Conn::new(g, cfg, &api);
    let json_out = g.json;
    off_runtime(move || {
        let conn = conn?;
        match cmd {
            ChatCmd::List { .. } => {
                let v = conn.get("/api/chats")?;
                for c in v.as_array().into_iter().flatten() {
                    if json_out {
                        println!("{c}");
                        continue;
                    }
                    let last = &c["last"];
                    let line = if last.is_null() {
                        String::new()
                    } else {
                        format!("<{}> {}", last["nick"].as_str().unwrap_or(""), last["text"].as_str().unwrap_or(""))
                    };
                    println!("{:<28} {line}", c["id"].as_str().unwrap_or(""));
                }
                Ok(())
            }
            ChatCmd::Send { chat, text, .. } => {
                let m = conn.post("/api/chats/messages", &json!({ "chat": chat, "text": text.join(" ") }))?;
                if json_out {
                    println!("{m}");
                }
                Ok(())
            }
            ChatCmd::Follow { chat, history, .. } => {
                let c = urlencode(&chat);
                let first = conn.get(&format!("/api/chats/messages?chat={c}&limit={}", history.max(1)))?;
                let mut after = 0i64;
                for m in first.as_array().into_iter().flatten() {
                    after = after.max(m["id"].as_i64().unwrap_or(0));
                    if history > 0 {
                        print_message(m, json_out);
                    }
                }
                loop {
                    std::thread::sleep(POLL);
                    let v = conn.get(&format!("/api/chats/messages?chat={c}&after={after}"))?;
                    for m in v.as_array().into_iter().flatten() {
                        after = after.max(m["id"].as_i64().unwrap_or(0));
                        print_message(m, json_out);
                    }
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                }
            }
        }
    })
    .await
}
