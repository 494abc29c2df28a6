//! The real Soulseek clients aioslsk 1.7.1 and Nicotine+ 3.3.11 (headless) against
//! `omnipeer slsk server`: both log in (the first login registers), a search by one finds
//! the other's file and the download completes through our server's relay (both ways),
//! private messages and room messages reach the other client, a wrong password is refused,
//! and a second login of the same user sends Relogged to the first.
//! Each test skips (and passes) when the clients' venv is missing;
//! `scripts/install-slsk-peers.sh` (run by `scripts/test.sh`) installs it.

mod slsk_support;

use slsk_support::{Client, Peer, PeerOptions};
mod omni;

use omni::Omni;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// `omnipeer slsk server` on a free port (stopped on drop).
struct Server {
    _proc: Omni,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut args = vec!["slsk", "server", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let proc = Omni::start(&args);
        let addr = proc.wait_line("listening on ");
        Server { _proc: proc, addr }
    }
}

fn start(client: Client, server: &Server, opts: PeerOptions) -> Peer {
    Peer::spawn(client, &server.addr, opts).expect("spawn driver")
}

fn logged_in(p: &Peer) {
    if let Err(e) = p.wait_logged_in(T) {
        panic!("{e}\n{}", p.stderr_tail(30));
    }
}

fn search_and_download(searcher: &mut Peer, sharer: &Peer, query: &str, name: &str, content: &[u8]) {
    searcher.search(query);
    let hit = searcher
        .wait_event(
            "search_result",
            |e| e["user"] == sharer.user.as_str() && e["path"].as_str().is_some_and(|p| p.ends_with(name)),
            T,
        )
        .unwrap_or_else(|| {
            panic!("{} found nothing\n{}\n{}", searcher.user, searcher.stderr_tail(30), sharer.stderr_tail(30))
        });
    assert_eq!(hit["size"], content.len() as u64, "{hit}");
    let path = hit["path"].as_str().unwrap().to_string();
    searcher.download(&sharer.user, &path);
    let done = searcher
        .wait_event(
            "",
            |e| {
                (e["event"] == "transfer_complete" || e["event"] == "transfer_failed")
                    && e["direction"] == "download"
                    && e["path"] == path.as_str()
            },
            T,
        )
        .unwrap_or_else(|| panic!("download did not finish\n{}\n{}", searcher.stderr_tail(30), sharer.stderr_tail(30)));
    assert_eq!(done["event"], "transfer_complete", "{done}");
    let local = std::path::PathBuf::from(done["local_path"].as_str().unwrap());
    let want = {
        use sha2::{Digest, Sha256};
        Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(slsk_support::sha256_file(&local), want);
}

#[test]
fn real_clients_search_and_download_through_omnipeer_server() {
    if !slsk_support::require("real_clients_search_and_download_through_omnipeer_server") {
        return;
    }
    let server = Server::start(&[]);
    let a_file = slsk_support::test_bytes(254_415, 1);
    let n_file = slsk_support::test_bytes(300_001, 2);
    let mut a = start(
        Client::Aioslsk,
        &server,
        PeerOptions::new("alice").file("Album/Kevin_MacLeod-Galway.bin", a_file.clone()),
    );
    let mut n = start(
        Client::Nicotine,
        &server,
        PeerOptions::new("nick").file("Disc 1/omnipeer fixture song.bin", n_file.clone()),
    );
    logged_in(&a);
    logged_in(&n);
    for p in [&a, &n] {
        p.wait_event("shares_scanned", |_| true, T).unwrap_or_else(|| panic!("{} did not scan", p.user));
    }
    search_and_download(&mut a, &n, "fixture song", "omnipeer fixture song.bin", &n_file);
    search_and_download(&mut n, &a, "galway", "Kevin_MacLeod-Galway.bin", &a_file);
}

#[test]
fn real_clients_exchange_private_and_room_messages_through_omnipeer_server() {
    if !slsk_support::require("real_clients_exchange_private_and_room_messages") {
        return;
    }
    let server = Server::start(&[]);
    let mut a = start(Client::Aioslsk, &server, PeerOptions::new("alice"));
    let mut n = start(Client::Nicotine, &server, PeerOptions::new("nick"));
    logged_in(&a);
    logged_in(&n);
    a.private_message("nick", "hello nick, from aioslsk ☺");
    n.private_message("alice", "hello alice, from Nicotine+");
    let got_n = n.wait_event("private_message", |e| e["user"] == "alice", T).expect("nick got alice's message");
    let got_a = a.wait_event("private_message", |e| e["user"] == "nick", T).expect("alice got nick's message");
    assert_eq!(got_n["text"], "hello nick, from aioslsk ☺");
    assert_eq!(got_a["text"], "hello alice, from Nicotine+");

    a.join_room("omnipeer");
    a.wait_event("room_joined", |e| e["room"] == "omnipeer", T).expect("alice joined");
    n.join_room("omnipeer");
    let j = n.wait_event("room_joined", |e| e["room"] == "omnipeer", T).expect("nick joined");
    assert!(j["users"].as_array().unwrap().iter().any(|u| u == "alice"), "{j}");
    assert!(a.wait_event("user_joined_room", |e| e["room"] == "omnipeer" && e["user"] == "nick", T).is_some());
    n.say_room("omnipeer", "room hello from nick");
    a.say_room("omnipeer", "room hello from alice");
    for p in [&a, &n] {
        for (from, text) in [("nick", "room hello from nick"), ("alice", "room hello from alice")] {
            assert!(
                p.wait_event("room_message", |e| e["user"] == from && e["text"] == text, T).is_some(),
                "{} missed {from}'s room message\n{}",
                p.user,
                p.stderr_tail(30)
            );
        }
    }
}

#[test]
fn a_message_to_an_offline_user_arrives_at_its_next_login_and_bad_logins_are_refused() {
    if !slsk_support::require("offline_messages_and_bad_logins") {
        return;
    }
    let server = Server::start(&[]);
    // nick registers, then leaves.
    let mut n = start(Client::Nicotine, &server, PeerOptions::new("nick").password("secret"));
    logged_in(&n);
    n.quit();
    drop(n);
    // alice writes to nick while nick is away.
    let mut a = start(Client::Aioslsk, &server, PeerOptions::new("alice"));
    logged_in(&a);
    a.private_message("nick", "while you were away");
    std::thread::sleep(Duration::from_millis(500));
    // A wrong password is refused.
    let bad = start(Client::Aioslsk, &server, PeerOptions::new("nick").password("wrong"));
    let failed = bad.wait_event("login_failed", |_| true, T).expect("the wrong password is refused");
    assert!(failed.to_string().contains("INVALIDPASS"), "{failed}");
    drop(bad);
    // nick comes back with the right password and gets the stored message.
    let n = start(Client::Nicotine, &server, PeerOptions::new("nick").password("secret"));
    logged_in(&n);
    let got = n.wait_event("private_message", |e| e["user"] == "alice", T).expect("the stored message");
    assert_eq!(got["text"], "while you were away");
}

/// `omnipeer slsk share` as a long-running process.
/// (Kept alive by the test; stopped on drop.)
struct Sharer(#[allow(dead_code)] Omni);

impl Sharer {
    fn start(server: &Server, user: &str, dir: &std::path::Path) -> Sharer {
        let p = Omni::start(&[
            "slsk",
            "share",
            "--server",
            &server.addr,
            "--user",
            user,
            "--password",
            "pw",
            "--share",
            dir.to_str().unwrap(),
        ]);
        p.wait_line("sharing ");
        Sharer(p)
    }
}

fn omni(server: &Server, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--server", &server.addr]);
    omni::run(&all)
}

#[test]
fn omnipeer_searches_and_gets_from_aioslsk() {
    if !slsk_support::require("omnipeer_searches_and_gets_from_aioslsk") {
        return;
    }
    let server = Server::start(&[]);
    let content = slsk_support::test_bytes(400_123, 7);
    let a = start(
        Client::Aioslsk,
        &server,
        PeerOptions::new("alice").file("Album/Kevin_MacLeod-Galway.bin", content.clone()),
    );
    logged_in(&a);
    a.wait_event("shares_scanned", |_| true, T).expect("alice scanned");
    let (code, out, err) =
        omni(&server, &["slsk", "search", "--user", "omni", "--password", "pw", "--timeout", "3", "galway"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("alice\t"))
        .unwrap_or_else(|| panic!("no result: {out}\n{err}\n{}", a.stderr_tail(20)));
    let path = line.split('\t').nth(1).unwrap().to_owned();
    assert!(path.ends_with("Kevin_MacLeod-Galway.bin"), "{line}");
    let out_dir = tempfile::tempdir().unwrap();
    // A partial file is resumed.
    std::fs::write(out_dir.path().join("Kevin_MacLeod-Galway.bin"), &content[..100_000]).unwrap();
    let (code, out, err) = omni(
        &server,
        &[
            "slsk",
            "get",
            "--user",
            "omni2",
            "--password",
            "pw",
            "--from",
            "alice",
            "--file",
            &path,
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}\n{}", a.stderr_tail(30));
    assert!(out.contains("resumed at byte 100000"), "{out}");
    assert_eq!(std::fs::read(out_dir.path().join("Kevin_MacLeod-Galway.bin")).unwrap(), content);
}

#[test]
fn aioslsk_searches_browses_and_downloads_from_omnipeer_share() {
    if !slsk_support::require("aioslsk_downloads_from_omnipeer_share") {
        return;
    }
    let server = Server::start(&[]);
    let share = tempfile::tempdir().unwrap();
    let dir = share.path().join("Music");
    std::fs::create_dir_all(dir.join("Album")).unwrap();
    let content = slsk_support::test_bytes(333_333, 9);
    std::fs::write(dir.join("Album/omnipeer shared song.bin"), &content).unwrap();
    let _sharer = Sharer::start(&server, "omnishare", &dir);
    let mut a = start(Client::Aioslsk, &server, PeerOptions::new("alice"));
    logged_in(&a);
    a.search("shared song");
    let hit = a
        .wait_event("search_result", |e| e["user"] == "omnishare", T)
        .unwrap_or_else(|| panic!("aioslsk found nothing\n{}", a.stderr_tail(30)));
    let path = hit["path"].as_str().unwrap().to_owned();
    assert!(path.ends_with("omnipeer shared song.bin"), "{hit}");
    assert_eq!(hit["size"], 333_333);
    a.download("omnishare", &path);
    let done = a
        .wait_event(
            "",
            |e| (e["event"] == "transfer_complete" || e["event"] == "transfer_failed") && e["path"] == path.as_str(),
            T,
        )
        .unwrap_or_else(|| panic!("download did not finish\n{}", a.stderr_tail(30)));
    assert_eq!(done["event"], "transfer_complete", "{done}\n{}", a.stderr_tail(30));
    let local = std::path::PathBuf::from(done["local_path"].as_str().unwrap());
    assert_eq!(std::fs::read(local).unwrap(), content);
    a.browse("omnishare");
    let b = a
        .wait_event("browse_result", |e| e["user"] == "omnishare", T)
        .unwrap_or_else(|| panic!("browse\n{}", a.stderr_tail(30)));
    let names: Vec<String> = b["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["files"].as_array().unwrap().iter())
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect();
    assert!(names.iter().any(|n| n.ends_with("omnipeer shared song.bin")), "{b}");
}
