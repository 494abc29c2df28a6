//! The node's Tox side in integration tests: an `omnipeer up` whose client bootstraps off a
//! given node and accepts every friend request, and what its API says about friends, chats
//! and users (docs/api.md).

use super::node::{content, server_config, Node, Ports};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A node `nick` on `p` in `dir` whose Tox client bootstraps off `bootstrap`
/// (`HOST:PORT:KEY`) and accepts friend requests at once; returns it and its Tox ID.
pub fn start_node(dir: &Path, p: Ports, nick: &str, bootstrap: &str) -> (Node, String) {
    let cfg =
        server_config(nick, p).replace("[tox]\n", &format!("[tox]\nauto_accept = true\nbootstrap = \"{bootstrap}\"\n"));
    let n = Node::start(dir, &cfg, p.api);
    let id = n.get("/api/tox")["id"].as_str().unwrap().to_owned();
    (n, id)
}

/// The friend `pk` (64 hex) in `GET /api/tox`, once online.
pub fn friend_online(n: &Node, pk: &str) -> Option<Value> {
    n.get("/api/tox")["friends"].as_array()?.iter().find(|f| f["pk"] == pk && f["online"] == true).cloned()
}

/// The lines of chat `chat`.
pub fn chat_lines(n: &Node, chat: &str) -> Vec<Value> {
    n.get(&format!("/api/chats/messages?chat={chat}")).as_array().cloned().unwrap_or_default()
}

/// The nicks of chat `chat`'s users.
pub fn user_nicks(n: &Node, chat: &str) -> Vec<String> {
    let u = n.get(&format!("/api/users?chat={chat}"));
    u.as_array().map(|a| a.iter().filter_map(|x| x["nick"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Chat `chat` as `GET /api/chats` lists it (panics when it is not listed).
pub fn listed_chat(n: &Node, chat: &str) -> Value {
    let chats = n.get("/api/chats");
    let listed = chats.as_array().unwrap().iter().find(|x| x["id"] == chat).cloned();
    listed.unwrap_or_else(|| panic!("{chats}"))
}

/// Runs web test `script` (tests/web) against node `n` with `env` (besides `OMNI_URL` and
/// `OMNI_OUT`, a folder in `dir`, the node's); on failure keeps `dir` and panics with the
/// page's lines and `logs()`, else gives `dir` back (the node still runs in it).
pub fn run_web(
    script: &str,
    n: &Node,
    dir: tempfile::TempDir,
    env: &[(&str, String)],
    logs: impl Fn() -> String,
) -> tempfile::TempDir {
    let out = dir.path().join("browser");
    let mut all = vec![("OMNI_URL", format!("{}/", n.base)), ("OMNI_OUT", out.display().to_string())];
    all.extend(env.iter().cloned());
    let (ok, lines) = super::web::run_web_script(script, &all, Duration::from_secs(300));
    if !ok {
        let kept = dir.keep();
        panic!("{script} failed; files kept in {}\n{}\n{}", kept.display(), lines.join("\n"), logs());
    }
    dir
}

/// A file `dir/name` of `size` pseudo-random bytes from `seed` ([`content`]).
pub fn test_file(dir: &Path, name: &str, seed: u64, size: usize) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content(size, seed)).unwrap();
    p
}
