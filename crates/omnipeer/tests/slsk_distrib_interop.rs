//! The Soulseek distributed network on `omnipeer slsk server`, with six clients: two
//! omnipeer (`omnipeer slsk share`), two Nicotine+ 3.3.11 and two aioslsk 1.7.1. They form
//! a tree at least two levels deep (omnipeer `rootA` a branch root taking one child,
//! omnipeer `midb` under it, Nicotine+ `n1` under `midb`); a search from aioslsk `a1`
//! reaches `n1` through the tree only — the server's own account of that search names
//! the users it sent it to directly, and `n1` is not among them — and `a1` downloads the
//! file `n1` answered with. Skips (and passes) when the clients' venv is missing;
//! `scripts/install-slsk-peers.sh` installs it.

mod slsk_support;

use slsk_support::{Client, Peer, PeerOptions};
mod omni;

use omni::Omni;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn logged_in(p: &Peer) {
    if let Err(e) = p.wait_logged_in(T) {
        panic!("{e}\n{}", p.stderr_tail(30));
    }
}

/// `omnipeer slsk share` of one folder with one file.
fn omni_share(server: &str, user: &str, dir: &Path, max_children: usize) -> Omni {
    let share = dir.join(format!("{user}-share"));
    std::fs::create_dir_all(share.join("Misc")).unwrap();
    std::fs::write(share.join("Misc").join(format!("{user} notes.txt")), b"hello").unwrap();
    let mc = max_children.to_string();
    let args = [
        "slsk",
        "share",
        "--server",
        server,
        "--user",
        user,
        "--password",
        "pw",
        "--listen",
        "127.0.0.1:0",
        "--share",
        share.to_str().unwrap(),
        "--max-children",
        &mc,
    ];
    let o = Omni::start(&args);
    o.wait_line_containing("sharing ");
    o
}

/// The value of `key=` in a log line (up to the next space), quotes removed.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    Some(line[at..].split(' ').next().unwrap_or("").trim_matches('"'))
}

/// The server's "search relayed" line for `user`'s search `token`: (branch roots sent it
/// embedded, users sent it directly by name).
fn relayed(server: &Omni, user: &str, token: u64) -> (usize, Vec<String>) {
    loop {
        let l = server.wait_line_containing("search relayed");
        if field(&l, "user") == Some(user) && field(&l, "token") == Some(&token.to_string()) {
            let roots = field(&l, "roots").and_then(|r| r.parse().ok()).expect("roots");
            eprintln!("server: {l}");
            let direct = field(&l, "direct_users").unwrap_or("");
            return (roots, direct.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect());
        }
    }
}

fn search(p: &mut Peer, query: &str) -> u64 {
    let mark = p.mark();
    p.search(query);
    let sent = p
        .wait_event_from(mark, "search_sent", |e| e["query"] == query, T)
        .unwrap_or_else(|| panic!("{} did not search\n{}", p.user, p.stderr_tail(30)));
    sent["token"].as_u64().expect("token")
}

#[test]
fn six_real_clients_build_a_tree_and_a_search_reaches_a_sharer_only_through_it() {
    if !slsk_support::require("six_real_clients_build_a_tree_and_a_search_reaches_a_sharer_only_through_it") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Offers of parents are not repeated during the test: a repeat makes Nicotine+ drop
    // the candidate connections it holds (it adopts a candidate at its first search).
    // The server's line per search ("search relayed", naming its direct recipients) is a
    // debug line.
    let server = Omni::start(&[
        "--log-level",
        "info,omnipeer_node::slsk::server=debug",
        "slsk",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--parent-offer-every",
        "600",
    ]);
    let addr = server.wait_line("listening on ");

    // a1 (aioslsk, the searcher) first: a branch root that takes no children.
    let mut a1 = Peer::spawn(Client::Aioslsk, &addr, PeerOptions::new("a1")).expect("spawn a1");
    logged_in(&a1);
    // rootA: a branch root of ours that takes one child.
    let root = omni_share(&addr, "rootA", tmp.path(), 1);
    std::thread::sleep(Duration::from_secs(2)); // the server's offer delay: both are roots now
                                                // A first search feeds the roots: rootA then takes children.
    let t = search(&mut a1, "warm up one");
    let (roots, _) = relayed(&server, "a1", t);
    assert_eq!(roots, 2, "a1 and rootA are the branch roots");
    let l = root.wait_line_containing("server_parent=true");
    assert!(l.contains("level=0"), "{l}");

    // midb (omnipeer) is offered rootA and takes it: level 1.
    let midb = omni_share(&addr, "midb", tmp.path(), 10);
    let l = midb.wait_line_containing("parent=rootA");
    assert!(l.contains("level=1"), "{l}");

    // n1 (Nicotine+, the sharer) is offered midb (rootA is full) and connects to it.
    let n_file = slsk_support::test_bytes(300_001, 7);
    let n1 = Peer::spawn(
        Client::Nicotine,
        &addr,
        PeerOptions::new("n1").file("Deep/omnipeer tree only song.bin", n_file.clone()),
    )
    .expect("spawn n1");
    logged_in(&n1);
    n1.wait_event("shares_scanned", |_| true, T).expect("n1 scanned");
    midb.wait_line_containing("children=n1");

    // The other three join too (wherever the server puts them).
    let n2 = Peer::spawn(Client::Nicotine, &addr, PeerOptions::new("n2")).expect("spawn n2");
    let a2 = Peer::spawn(Client::Aioslsk, &addr, PeerOptions::new("a2")).expect("spawn a2");
    logged_in(&n2);
    logged_in(&a2);

    // Nicotine+ takes its parent at the first search that comes down from it; until it
    // tells the server (HaveNoParent 0, level 2, root rootA) the server still sends it
    // searches itself. Search until the server leaves n1 to the tree.
    let end = Instant::now() + T;
    loop {
        let t = search(&mut a1, "warm up again");
        let (_, direct) = relayed(&server, "a1", t);
        if !direct.iter().any(|u| u == "n1") {
            break;
        }
        assert!(Instant::now() < end, "n1 never joined the tree\n{}", n1.stderr_tail(40));
        std::thread::sleep(Duration::from_secs(1));
    }

    // The search that counts: the server does not send it to n1 (nor to midb), n1 gets it
    // through rootA → midb → n1 and answers, and a1 downloads the file.
    let mark = a1.mark();
    let t = search(&mut a1, "tree only song");
    let (roots, direct) = relayed(&server, "a1", t);
    assert!(roots >= 1, "a branch root got it");
    assert!(!direct.iter().any(|u| u == "n1" || u == "midb"), "sent directly to {direct:?}");
    let hit = a1
        .wait_event_from(mark, "search_result", |e| e["user"] == "n1", T)
        .unwrap_or_else(|| panic!("a1 found nothing\n{}\n{}", a1.stderr_tail(30), n1.stderr_tail(30)));
    assert_eq!(hit["size"], n_file.len() as u64, "{hit}");
    let path = hit["path"].as_str().unwrap().to_string();
    a1.download("n1", &path);
    let done = a1
        .wait_event(
            "",
            |e| {
                (e["event"] == "transfer_complete" || e["event"] == "transfer_failed")
                    && e["direction"] == "download"
                    && e["path"] == path.as_str()
            },
            T,
        )
        .unwrap_or_else(|| panic!("download did not finish\n{}\n{}", a1.stderr_tail(30), n1.stderr_tail(30)));
    assert_eq!(done["event"], "transfer_complete", "{done}");
    let local = std::path::PathBuf::from(done["local_path"].as_str().unwrap());
    let want = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&n_file).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(slsk_support::sha256_file(&local), want);
}
