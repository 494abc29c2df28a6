//! The node's client commands for searching like Nicotine+ or slskd users do (issue 15):
//! `omnipeer wishlist` (list, add with filters, run, remove) and `omnipeer search`
//! numbering its results 1, 2, 3… so that `omnipeer get N` (or `get SEARCH/N`) fetches
//! the file printed under that number. Node A (alice) runs the hub and the Soulseek server
//! and shares files; node B (bob) joins both; the commands run against B.

mod omni;

use omni::node::{content, joining_config, server_config, sha256_file, wait_for, Node, Ports};
use serde_json::{json, Value};
use std::path::Path;

fn share_file(a_dir: &Path, rel: &str, data: &[u8]) {
    let p = a_dir.join("share").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn two_nodes(t: &Path, files: &[(&str, Vec<u8>)]) -> (Node, Node) {
    let pa = Ports::free();
    let a_dir = t.join("a");
    std::fs::create_dir_all(&a_dir).unwrap();
    for (rel, data) in files {
        share_file(&a_dir, rel, data);
    }
    let a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let b_api = omni::node::free_port();
    let b = Node::start(&t.join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    (a, b)
}

/// `omnipeer wishlist add` saves a search with its filters (as the API shows them),
/// `omnipeer wishlist` lists it, `run` runs it again and its auto-download takes a file
/// shared after it was saved (only the one its filters pass), `remove` forgets it.
#[test]
fn wishlist_add_list_run_and_remove_from_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(t.path(), &[("docs/readme.txt", content(1_000, 1))]);

    let (code, out, err) = b.cli(&["wishlist"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "nothing saved yet");
    assert!(err.contains("no wishlist items"), "{err}");

    let (code, out, err) =
        b.cli(&["wishlist", "add", "zeta", "track", "--ext", "flac", "--min-size", "100k", "--auto-download"]);
    assert_eq!(code, 0, "{err}");
    let id: i64 = out.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{out:?}"));
    assert!(out.contains("zeta track") && out.contains("ext=flac") && out.contains("auto-download"), "{out}");
    // What the node keeps is what was asked for.
    let w = b.get("/api/wishlist");
    assert_eq!(w.as_array().unwrap().len(), 1, "{w}");
    assert_eq!(w[0]["query"], "zeta track");
    assert_eq!(w[0]["filters"], json!({"ext": "flac", "min_size": 102_400}));
    assert_eq!(w[0]["auto_download"], true);
    let (code, out, err) = b.cli(&["wishlist", "add", "omega", "--network", "slsk", "--free-slot"]);
    assert_eq!(code, 0, "{err}");
    let id2: i64 = out.split_whitespace().next().and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{out:?}"));

    // The list: one line per item, with its filters.
    let (code, out, err) = b.cli(&["wishlist"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let line = lines.iter().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("zeta track") && line.contains("ext=flac") && line.contains("min-size=100.0 KiB"), "{line}");
    let line2 = lines.iter().find(|l| l.starts_with(&format!("{id2} "))).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line2.contains("network=slsk") && line2.contains("free-slot") && !line2.contains("auto-download"),
        "{line2}"
    );
    let (code, out, _) = b.cli(&["--json", "wishlist"]);
    assert_eq!(code, 0);
    let items: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(items.len(), 2, "{out}");

    // alice shares two matching files; `wishlist run` finds them and the FLAC downloads.
    share_file(&a.dir, "music/zeta track.flac", &content(400_000, 21));
    share_file(&a.dir, "music/zeta track.mp3", &content(300_000, 22));
    let (code, _) = a.post("/api/shares/rescan", json!({}));
    assert_eq!(code, 202);
    let want = sha256_file(&a.dir.join("share/music/zeta track.flac"));
    let done = wait_for("the new match downloaded by itself", 90, || {
        let (code, out, err) = b.cli(&["wishlist", "run", &id.to_string()]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with(&format!("{id} ")), "{out}");
        std::thread::sleep(std::time::Duration::from_secs(2));
        let ts = b.get("/api/transfers");
        ts.as_array()?.iter().find(|t| t["name"] == "zeta track.flac" && t["state"] == "done").cloned()
    });
    assert_eq!(sha256_file(Path::new(done["local_path"].as_str().unwrap())), want);
    let (code, out, _) = b.cli(&["wishlist"]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap().to_owned();
    assert!(line.contains("1 new") && line.contains("ran "), "{line}");

    // Remove both; a third time is an error naming the item.
    for i in [id, id2] {
        let (code, _, err) = b.cli(&["wishlist", "remove", &i.to_string()]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(b.get("/api/wishlist"), json!([]));
    let (code, _, err) = b.cli(&["wishlist", "remove", &id.to_string()]);
    assert_ne!(code, 0);
    assert!(err.starts_with("error: ") && err.contains(&id.to_string()) && err.trim().lines().count() == 1, "{err}");
    // A bad filter is refused before anything is saved.
    let (code, _, err) = b.cli(&["wishlist", "add", "x", "--network", "irc"]);
    assert_ne!(code, 0);
    assert!(err.contains("nmdc or slsk"), "{err}");
    let (code, _, err) = b.cli(&["wishlist", "add", "x", "--min-size", "lots"]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(b.get("/api/wishlist"), json!([]));
}

/// The number in front of a result of `omnipeer search` is the number `omnipeer get`
/// takes: 1, 2, 3… for every search (not the node's global result ids), remembered for
/// the last search printed; `get SEARCH/N` picks from a given search; `get` first says
/// what it is about to fetch.
#[test]
fn search_numbers_results_and_get_n_fetches_that_one() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(
        t.path(),
        &[
            ("music/Alpha Song.mp3", content(300_000, 1)),
            ("docs/beta notes.txt", content(200_000, 2)),
            ("docs/beta notes.pdf", content(50_000, 3)),
            ("docs/old/beta notes draft.txt", content(20_000, 4)),
        ],
    );
    // An earlier search takes the first global result ids.
    let (code, out, err) = b.cli(&["search", "--timeout", "5", "alpha", "song"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("[1] Alpha Song.mp3"), "{out}");

    let (code, out, err) = b.cli(&["search", "--timeout", "8", "beta", "notes"]);
    assert_eq!(code, 0, "{err}");
    let numbered: Vec<(usize, &str)> = out
        .lines()
        .map(|l| {
            let (n, rest) = l.strip_prefix('[').and_then(|l| l.split_once("] ")).unwrap_or_else(|| panic!("{l:?}"));
            (n.parse().unwrap(), rest)
        })
        .collect();
    assert_eq!(numbered.len(), 3, "{out}");
    assert_eq!(numbered.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3], "numbered as printed: {out}");
    let search_id: u64 = err
        .split("(search ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no search id in {err}"));
    let number_of = |name: &str| {
        numbered
            .iter()
            .find(|(_, l)| l.starts_with(&format!("{name}  ")))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .0
    };

    // `get N`: the PDF, and it says so first.
    let n = number_of("beta notes.pdf");
    let (code, out, err) = b.cli(&["get", &n.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("about to fetch beta notes.pdf (48.8 KiB) from ") && l.contains(":alice")),
        "{err}"
    );
    let got = out.trim().rsplit_once(" to ").unwrap_or_else(|| panic!("{out:?}")).1.to_owned();
    assert!(out.starts_with("downloaded beta notes.pdf (50000 bytes)"), "{out}");
    assert_eq!(sha256_file(Path::new(&got)), sha256_file(&a.dir.join("share/docs/beta notes.pdf")));

    // `get SEARCH/N` from the named search, over the network asked for.
    let n = number_of("beta notes draft.txt");
    let (code, out, err) = b.cli(&["get", &format!("{search_id}/{n}"), "--network", "slsk"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("about to fetch beta notes draft.txt (19.5 KiB) from slsk:alice"), "{err}");
    let got = out.trim().rsplit_once(" to ").unwrap_or_else(|| panic!("{out:?}")).1.to_owned();
    assert_eq!(sha256_file(Path::new(&got)), sha256_file(&a.dir.join("share/docs/old/beta notes draft.txt")));

    // A number the last search did not print is refused, saying so.
    let (code, _, err) = b.cli(&["get", "7"]);
    assert_ne!(code, 0);
    assert!(err.contains("no result 7") && err.trim().lines().count() == 1, "{err}");
    // `--search ID N` is the same as ID/N (the earlier search: its one result).
    let (code, out, err) = b.cli(&["get", "--search", &(search_id - 1).to_string(), "1", "--no-wait"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("about to fetch Alpha Song.mp3"), "{err}{out}");
}
