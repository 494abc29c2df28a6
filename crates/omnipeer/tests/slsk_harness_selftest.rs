//! Self-test of the Soulseek interop harness (`tests/slsk_support/`, `tests/slsk/*.py`):
//! the REAL clients aioslsk 1.7.1 and Nicotine+ 3.3.11 (headless) run on 127.0.0.1
//! against the TEST-FIXTURE mock server and (a) log in, (b) find each other's shared file
//! by search and download it with a matching SHA-256 (plus browse), (c) exchange private
//! messages (and room chat). The tests that need the clients skip (and pass) when the venv
//! is missing; `scripts/install-slsk-peers.sh` installs it.
//!
//! `capture_golden_frames` (ignored; run with `-- --ignored capture_golden_frames`)
//! rewrites `tests/fixtures/slsk/` from what the real clients send.

mod slsk_support;

use slsk_support::mockserver::{Dir, MockConfig, MockServer};
use slsk_support::wire::{self, frame, unhex, W};
use slsk_support::{Client, Peer, PeerOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Generous per-step timeout (each step normally takes well under a second).
const T: Duration = Duration::from_secs(20);

fn start(client: Client, server: &MockServer, opts: PeerOptions) -> Peer {
    Peer::spawn(client, &server.addr(), opts).expect("spawn driver")
}

fn logged_in(p: &Peer) {
    if let Err(e) = p.wait_logged_in(T) {
        panic!("{e}");
    }
}

/// Dumps the server log and the drivers' stderr paths when a test is about to fail.
fn context(server: &MockServer, peers: &[&Peer]) -> String {
    let log = std::env::temp_dir().join(format!("slsk-mock-{}.log", server.port()));
    let _ = server.write_log(&log);
    let mut s = format!("mock server log: {}\n", log.display());
    for p in peers {
        s.push_str(&format!(
            "--- {}:{} events: {}\n--- stderr tail:\n{}\n",
            p.client.name(),
            p.user,
            serde_json::to_string(&p.events()).unwrap(),
            p.stderr_tail(30)
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Fixture checks that need no real client.

#[test]
fn wire_helpers_match_reference_vectors() {
    // RFC 1321 / FIPS 180-2 vectors.
    assert_eq!(wire::md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(wire::md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        wire::md5_hex(b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"),
        "57edf4a22be3c955ac49da2e2107b67a"
    );
    assert_eq!(wire::md5_hex(b"password"), "5f4dcc3b5aa765d61d8327deb882cf99");
    assert_eq!(wire::md5_hex(b"usernamepassword"), "d51c9a7e9353746a6020f9602d452929");
    assert_eq!(wire::sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(wire::sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(
        wire::sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    let million_a = vec![b'a'; 1_000_000];
    assert_eq!(wire::sha256_hex(&million_a), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    // Golden frames of docs/protocols/soulseek.md#test-vectors, rebuilt with the fixture's encoders.
    let login_ok = frame(
        1,
        &W::new()
            .bool(true)
            .str("Welcome to my server")
            .ip([127, 0, 0, 1])
            .str(&wire::md5_hex(b"password"))
            .bool(false)
            .0,
    );
    assert_eq!(
        login_ok,
        unhex(
            "46 00 00 00 01 00 00 00 01 14 00 00 00 57 65 6c 63 6f 6d 65 20 74 6f 20 6d 79 20 73
             65 72 76 65 72 01 00 00 7f 20 00 00 00 35 66 34 64 63 63 33 62 35 61 61 37 36 35 64
             36 31 64 38 33 32 37 64 65 62 38 38 32 63 66 39 39 00"
        )
        .unwrap()
    );
    let peer_addr = frame(3, &W::new().str("alice").ip([127, 0, 0, 1]).u32(40000).u32(0).u16(0).0);
    assert_eq!(
        peer_addr,
        unhex(
            "1b 00 00 00 03 00 00 00 05 00 00 00 61 6c 69 63 65 01 00 00 7f 40 9c 00 00 00 00 00
             00 00 00"
        )
        .unwrap()
    );
    let ctp = frame(18, &W::new().str("bob").str("P").ip([127, 0, 0, 1]).u32(41000).u32(7).bool(false).u32(0).u32(0).0);
    assert_eq!(
        ctp,
        unhex(
            "25 00 00 00 12 00 00 00 03 00 00 00 62 6f 62 01 00 00 00 50 01 00 00 7f 28 a0 00 00
             07 00 00 00 00 00 00 00 00 00 00 00 00"
        )
        .unwrap()
    );
    let search = frame(26, &W::new().str("bob").u32(1234).str("galway").0);
    assert_eq!(
        search,
        unhex(
            "19 00 00 00 1a 00 00 00 03 00 00 00 62 6f 62 d2 04 00 00 06 00 00 00 67 61 6c 77 61
             79"
        )
        .unwrap()
    );
}

/// A scripted raw client against the mock server: Login reply bytes, post-login frames,
/// wrong password, GetPeerAddress, search relay, private message, logging.
#[test]
fn mock_server_speaks_the_notes_layouts() {
    let server =
        MockServer::start_with(MockConfig { greeting: "Welcome to my server".into(), ..MockConfig::default() });
    let login = |user: &str, pass: &str| -> (TcpStream, Vec<u8>) {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let body =
            W::new().str(user).str(pass).u32(177).str(&wire::md5_hex(format!("{user}{pass}").as_bytes())).u32(1).0;
        s.write_all(&frame(1, &body)).unwrap();
        let f = read_frame(&mut s);
        (s, f)
    };
    let (mut a, reply) = login("username", "password");
    assert_eq!(
        reply,
        unhex(
            "46 00 00 00 01 00 00 00 01 14 00 00 00 57 65 6c 63 6f 6d 65 20 74 6f 20 6d 79 20 73
             65 72 76 65 72 01 00 00 7f 20 00 00 00 35 66 34 64 63 63 33 62 35 61 61 37 36 35 64
             36 31 64 38 33 32 37 64 65 62 38 38 32 63 66 39 39 00"
        )
        .unwrap(),
        "success reply = docs/protocols/soulseek.md#test-vectors golden"
    );
    let codes: Vec<u32> = (0..6).map(|_| code(&read_frame(&mut a))).collect();
    assert_eq!(codes, [64, 83, 84, 104, 69, 160]);

    let (_x, bad) = login("username", "nope");
    assert_eq!(bad, unhex("14 00 00 00 01 00 00 00 00 0b 00 00 00 49 4e 56 41 4c 49 44 50 41 53 53").unwrap());

    let (mut b, _) = login("bob", "pw");
    for _ in 0..6 {
        read_frame(&mut b);
    }
    a.write_all(&frame(2, &W::new().u32(40000).0)).unwrap();
    assert!(server.wait_frame(T, |f| f.dir == Dir::In && f.code == 2 && f.user == "username").is_some());
    b.write_all(&frame(3, &W::new().str("username").0)).unwrap();
    let f = read_frame(&mut b);
    assert_eq!(f, frame(3, &W::new().str("username").ip([127, 0, 0, 1]).u32(40000).u32(0).u16(0).0));
    b.write_all(&frame(26, &W::new().u32(1234).str("galway").0)).unwrap();
    assert_eq!(read_frame(&mut a), frame(26, &W::new().str("bob").u32(1234).str("galway").0));
    b.write_all(&frame(18, &W::new().u32(7).str("username").str("P").0)).unwrap();
    let f = read_frame(&mut a);
    assert_eq!(
        f[..],
        frame(18, &W::new().str("bob").str("P").ip([127, 0, 0, 1]).u32(0).u32(7).bool(false).u32(0).u32(0).0)[..],
        "ConnectToPeer relayed with privileged + obfuscation fields"
    );
    b.write_all(&frame(22, &W::new().str("username").str("hi").0)).unwrap();
    let f = read_frame(&mut a);
    assert_eq!(code(&f), 22);
    let mut r = wire::R::new(&f[8..]);
    let id = r.u32().unwrap();
    let _ts = r.u32().unwrap();
    assert_eq!((r.str().unwrap(), r.str().unwrap(), r.bool().unwrap()), ("bob".into(), "hi".into(), true));
    a.write_all(&frame(23, &W::new().u32(id).0)).unwrap();
    a.write_all(&frame(92, &[])).unwrap();
    assert_eq!(read_frame(&mut a), frame(92, &W::new().u32(0).0));
    assert!(server.wait_frame(T, |f| f.dir == Dir::In && f.code == 23 && f.user == "username").is_some());
    assert_eq!(server.online(), ["bob", "username"]);
}

/// The golden files parse: every framed line's `u32 len` matches its length and every
/// frame has a name line before it.
#[test]
fn golden_files_are_well_formed() {
    let dir = slsk_support::repo_root().join("tests/fixtures/slsk");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!("no {} yet", dir.display());
        return;
    };
    let mut n = 0;
    for e in rd {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("hex") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut title = "";
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# ") {
                if !t.starts_with("zlib-decompressed body:") {
                    title = t;
                }
                continue;
            }
            let bytes = unhex(line).unwrap_or_else(|| panic!("{}: bad hex {line}", path.display()));
            if title.starts_with("server ") || title.starts_with("peer ") || title.starts_with("peer-init ") {
                let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
                assert_eq!(len + 4, bytes.len(), "{}: {title}", path.display());
            } else {
                assert!(title.starts_with("F: "), "{}: unnamed line {line}", path.display());
            }
            n += 1;
        }
    }
    eprintln!("{n} golden frames checked");
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let mut f = len.to_vec();
    f.resize(4 + u32::from_le_bytes(len) as usize, 0);
    s.read_exact(&mut f[4..]).expect("frame body");
    f
}

fn code(f: &[u8]) -> u32 {
    u32::from_le_bytes([f[4], f[5], f[6], f[7]])
}

// ---------------------------------------------------------------------------------------
// Real clients.

/// (a) aioslsk and Nicotine+ both log in, announce their port and see each other.
#[test]
fn real_clients_log_in() {
    if !slsk_support::require("real_clients_log_in") {
        return;
    }
    let t0 = Instant::now();
    let server = MockServer::start();
    let mut a = start(Client::Aioslsk, &server, PeerOptions::new("alice"));
    let mut n = start(Client::Nicotine, &server, PeerOptions::new("nick"));
    logged_in(&a);
    logged_in(&n);
    let ta = a.wait_event("logged_in", |_| true, T).unwrap();
    assert_eq!(ta["ip"], "127.0.0.1", "{}", context(&server, &[&a, &n]));
    for (p, port) in [(&a, a.listen_port), (&n, n.listen_port)] {
        let got = server.wait_frame(T, |f| f.dir == Dir::In && f.code == 2 && f.user == p.user);
        let f = got.unwrap_or_else(|| panic!("no SetWaitPort from {}\n{}", p.user, context(&server, &[&a, &n])));
        assert_eq!(wire::R::new(f.body()).u32(), Some(port as u32));
    }
    assert_eq!(server.online(), ["alice", "nick"]);
    // Both scanned their (empty) shares and told the server.
    for p in [&a, &n] {
        assert!(p.wait_event("shares_scanned", |_| true, T).is_some(), "{}", context(&server, &[&a, &n]));
    }
    // Bad commands are reported, and the drivers keep running.
    for p in [&mut a, &mut n] {
        p.send(serde_json::json!({"cmd": "bogus"})).unwrap();
        p.send(serde_json::json!({"cmd": "search"})).unwrap();
        assert!(p.wait_event("error", |e| e["cmd"] == "bogus", T).is_some());
        assert!(p.wait_event("error", |e| e["cmd"] == "search", T).is_some());
        assert!(p.running());
    }
    // A wrong password is refused with INVALIDPASS and reported as login_failed.
    let bad = start(Client::Aioslsk, &server, PeerOptions::new("nick").password("wrong"));
    let e = bad.wait_logged_in(T).unwrap_err();
    assert!(e.contains("INVALIDPASS"), "{e}");
    let badn = start(Client::Nicotine, &server, PeerOptions::new("alice").password("wrong"));
    let e = badn.wait_logged_in(T).unwrap_err();
    assert!(e.contains("INVALIDPASS") || e.contains("PASSWORD"), "{e}");
    eprintln!(
        "real_clients_log_in: aioslsk logged in after {:.2}s, Nicotine+ after {:.2}s (total {:.2}s)",
        ta["t"].as_f64().unwrap_or(0.0),
        n.wait_event("logged_in", |_| true, T).unwrap()["t"].as_f64().unwrap_or(0.0),
        t0.elapsed().as_secs_f64()
    );
}

fn search_and_download(
    searcher: &mut Peer,
    sharer: &Peer,
    query: &str,
    expect_name: &str,
    expect: &[u8],
    server: &MockServer,
) -> (f64, f64) {
    let t = Instant::now();
    searcher.search(query);
    let hit = searcher
        .wait_event(
            "search_result",
            |e| e["user"] == sharer.user.as_str() && e["path"].as_str().is_some_and(|p| p.ends_with(expect_name)),
            T,
        )
        .unwrap_or_else(|| panic!("{} found nothing\n{}", searcher.user, context(server, &[searcher, sharer])));
    let t_search = t.elapsed().as_secs_f64();
    assert_eq!(hit["size"], expect.len() as u64, "{hit}");
    assert_eq!(hit["free_slot"], true, "{hit}");
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
        .unwrap_or_else(|| panic!("download did not finish\n{}", context(server, &[searcher, sharer])));
    assert_eq!(done["event"], "transfer_complete", "{done}\n{}", context(server, &[searcher, sharer]));
    let want = wire::sha256_hex(expect);
    assert_eq!(done["sha256"], want.as_str(), "{done}");
    let local = std::path::PathBuf::from(done["local_path"].as_str().unwrap());
    assert_eq!(slsk_support::sha256_file(&local), want);
    (t_search, t.elapsed().as_secs_f64())
}

/// (b) Each client searches, finds the other's file, downloads it; SHA-256 matches.
/// Also: browse in both directions, and the tap saw the peer traffic.
#[test]
fn real_clients_search_and_download() {
    if slsk_support::require("real_clients_search_and_download") {
        search_download_browse(true);
    }
}

/// (b) again with the clients dialling each other's real ports (no tap in between).
#[test]
fn real_clients_search_and_download_untapped() {
    if slsk_support::require("real_clients_search_and_download_untapped") {
        search_download_browse(false);
    }
}

fn search_download_browse(tap: bool) {
    let server = MockServer::start_with(MockConfig { tap_peers: tap, ..MockConfig::default() });
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
        let s = p
            .wait_event("shares_scanned", |_| true, T)
            .unwrap_or_else(|| panic!("{} did not scan\n{}", p.user, context(&server, &[&a, &n])));
        assert_eq!(s["files"], 1, "{s}");
    }
    let (s1, d1) = search_and_download(&mut a, &n, "fixture song", "omnipeer fixture song.bin", &n_file, &server);
    let (s2, d2) = search_and_download(&mut n, &a, "galway", "Kevin_MacLeod-Galway.bin", &a_file, &server);
    eprintln!(
        "(tap={tap}) aioslsk→Nicotine+: result after {s1:.2}s, download done after {d1:.2}s; \
         Nicotine+→aioslsk: result after {s2:.2}s, download done after {d2:.2}s"
    );

    // The uploaders saw their uploads finish too.
    for (p, name) in [(&n, "omnipeer fixture song.bin"), (&a, "Kevin_MacLeod-Galway.bin")] {
        assert!(
            p.wait_event(
                "transfer_complete",
                |e| e["direction"] == "upload" && e["path"].as_str().is_some_and(|x| x.ends_with(name)),
                T
            )
            .is_some(),
            "{} upload\n{}",
            p.user,
            context(&server, &[&a, &n])
        );
    }

    // Browse both ways.
    a.browse("nick");
    n.browse("alice");
    for (p, other, name) in [(&a, "nick", "omnipeer fixture song.bin"), (&n, "alice", "Kevin_MacLeod-Galway.bin")] {
        let b = p
            .wait_event("browse_result", |e| e["user"] == other, T)
            .unwrap_or_else(|| panic!("{} browse\n{}", p.user, context(&server, &[&a, &n])));
        let files: Vec<&str> = b["dirs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["files"].as_array().unwrap().iter())
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert!(files.iter().any(|f| f.ends_with(name)), "{b}");
    }

    // The searches went through the server as FileSearch(26), relayed to the other user.
    for (from, to) in [("alice", "nick"), ("nick", "alice")] {
        assert!(server.frames_from(from).iter().any(|f| f.code == 26));
        assert!(server
            .frames_to(to)
            .iter()
            .any(|f| f.code == 26 && wire::R::new(f.body()).str().as_deref() == Some(from)));
    }
    if !tap {
        assert!(server.tap_conns().is_empty());
        return;
    }
    // The tap saw P and F connections in both directions.
    let taps = server.tap_conns();
    for (who, kind) in [("alice", "P"), ("nick", "P"), ("alice", "F"), ("nick", "F")] {
        assert!(
            taps.iter()
                .any(|t| t.kind.as_deref() == Some(kind) && (t.owner == who || t.initiator.as_deref() == Some(who))),
            "no tapped {kind} connection involving {who}: {:?}",
            taps.iter().map(|t| (&t.owner, &t.initiator, &t.kind)).collect::<Vec<_>>()
        );
    }
}

/// (c) Private messages both ways (and acked), plus room join / chat.
#[test]
fn real_clients_private_and_room_messages() {
    if !slsk_support::require("real_clients_private_and_room_messages") {
        return;
    }
    let server = MockServer::start();
    let mut a = start(Client::Aioslsk, &server, PeerOptions::new("alice"));
    let mut n = start(Client::Nicotine, &server, PeerOptions::new("nick"));
    logged_in(&a);
    logged_in(&n);
    let t = Instant::now();
    a.private_message("nick", "hello nick, from aioslsk ☺");
    n.private_message("alice", "hello alice, from Nicotine+");
    let got_n = n.wait_event("private_message", |e| e["user"] == "alice", T);
    let got_a = a.wait_event("private_message", |e| e["user"] == "nick", T);
    let (Some(got_n), Some(got_a)) = (got_n, got_a) else {
        panic!("private messages missing\n{}", context(&server, &[&a, &n]));
    };
    assert_eq!(got_n["text"], "hello nick, from aioslsk ☺");
    assert_eq!(got_a["text"], "hello alice, from Nicotine+");
    let t_pm = t.elapsed().as_secs_f64();
    // Both acknowledged (MessageAcked(23) with the id they got).
    for (p, e) in [("nick", &got_n), ("alice", &got_a)] {
        let id = e["id"].as_u64().unwrap() as u32;
        assert!(
            server
                .wait_frame(T, |f| f.dir == Dir::In && f.code == 23 && f.user == p && f.body() == id.to_le_bytes())
                .is_some(),
            "{p} did not ack message {id}\n{}",
            context(&server, &[&a, &n])
        );
    }

    // Rooms.
    a.join_room("omnipeer");
    a.wait_event("room_joined", |e| e["room"] == "omnipeer", T)
        .unwrap_or_else(|| panic!("alice join\n{}", context(&server, &[&a, &n])));
    n.join_room("omnipeer");
    let j = n
        .wait_event("room_joined", |e| e["room"] == "omnipeer", T)
        .unwrap_or_else(|| panic!("nick join\n{}", context(&server, &[&a, &n])));
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
                context(&server, &[&a, &n])
            );
        }
    }
    eprintln!("private messages both ways in {t_pm:.2}s; rooms done after {:.2}s", t.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// Golden frames.

/// Rewrites `tests/fixtures/slsk/<client>-<situation>.hex` from what the real clients send.
/// `OMNIPEER_GOLDEN_DIR` writes elsewhere.
#[test]
#[ignore]
fn capture_golden_frames() {
    if !slsk_support::require("capture_golden_frames") {
        return;
    }
    let out = std::env::var_os("OMNIPEER_GOLDEN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| slsk_support::repo_root().join("tests/fixtures/slsk"));
    std::fs::create_dir_all(&out).unwrap();
    golden::capture(&out);
}

mod golden {
    use super::*;
    use slsk_support::mockserver::{Frame, TapConn};
    use slsk_support::wire::{peer_code_name, server_code_name};
    use std::path::Path;

    pub struct Entry {
        pub title: String,
        pub bytes: Vec<u8>,
    }

    fn server_entries(frames: &[Frame]) -> Vec<Entry> {
        frames
            .iter()
            .map(|f| Entry {
                title: format!("server {} ({})", server_code_name(f.code), f.code),
                bytes: f.bytes.clone(),
            })
            .collect()
    }

    /// `what` describes the connection ("a -> b" = opened by a to b's listen port).
    fn peer_entries(t: &TapConn, initiator_side: bool, what: &str) -> Vec<Entry> {
        let frames = if initiator_side { t.initiator_frames() } else { t.owner_frames() };
        let kind = t.kind.clone().unwrap_or_default();
        let mut out = Vec::new();
        for (i, f) in frames.into_iter().enumerate() {
            let title = if initiator_side && i == 0 {
                if t.pierced {
                    format!("peer-init PierceFireWall (0) [{kind} connection, {what}]")
                } else {
                    format!("peer-init PeerInit (1) [{kind} connection, {what}]")
                }
            } else if kind == "F" {
                match f.len() {
                    4 => "F: u32 token (no frame header)".into(),
                    8 => "F: u64 offset (no frame header)".into(),
                    n => {
                        out.push(Entry {
                            title: format!("F: {n} raw file bytes (first 16 shown)"),
                            bytes: f[..16.min(n)].to_vec(),
                        });
                        continue;
                    }
                }
            } else if f.len() >= 8 {
                let c = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                format!("peer {} ({c}) [{what}]", peer_code_name(c))
            } else {
                format!("partial frame [{what}]")
            };
            out.push(Entry { title, bytes: f });
        }
        out
    }

    /// For peer messages 5 / 9 / 37 (zlib bodies): the decompressed body as hex, inflated
    /// by the venv's python (the harness itself has no zlib).
    fn zlib_body(title: &str, frame: &[u8]) -> Option<String> {
        if !title.starts_with("peer ") || frame.len() < 9 {
            return None;
        }
        let code = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if ![5, 9, 37].contains(&code) {
            return None;
        }
        let out = std::process::Command::new(slsk_support::venv_python()?)
            .arg("-c")
            .arg("import sys, zlib; print(zlib.decompress(bytes.fromhex(sys.argv[1])).hex())")
            .arg(wire::hex(&frame[8..]))
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn write(dir: &Path, client: Client, situation: &str, note: &str, entries: &[Entry]) {
        if entries.is_empty() {
            eprintln!("golden: nothing for {}-{situation}", client.name());
            return;
        }
        let mut s = format!(
            "# {} {} — {situation}: {note}\n# One frame per line as hex (frame header included); '#' lines name the frame.\n",
            match client {
                Client::Aioslsk => "aioslsk",
                Client::Nicotine => "Nicotine+",
            },
            client.version()
        );
        for e in entries {
            s.push_str(&format!("# {}\n", e.title));
            if let Some(plain) = zlib_body(&e.title, &e.bytes) {
                s.push_str(&format!("# zlib-decompressed body: {plain}\n"));
            }
            s.push_str(&format!("{}\n", wire::hex(&e.bytes)));
        }
        let path = dir.join(format!("{}-{situation}.hex", client.name()));
        std::fs::write(&path, s).unwrap();
        eprintln!("golden: wrote {} ({} frames)", path.display(), entries.len());
    }

    pub fn capture(dir: &Path) {
        for (searcher_client, sharer_client) in
            [(Client::Aioslsk, Client::Nicotine), (Client::Nicotine, Client::Aioslsk)]
        {
            let server = MockServer::start_with(MockConfig { tap_peers: true, ..MockConfig::default() });
            // 40 silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz): both clients read
            // bitrate/duration from it, so the search results carry real attributes.
            let mut content = Vec::new();
            for _ in 0..40 {
                content.extend_from_slice(&[0xff, 0xfb, 0x90, 0x00]);
                content.extend_from_slice(&[0u8; 413]);
            }
            let mut s = start(searcher_client, &server, PeerOptions::new("searcher").password("pw"));
            let h = start(
                sharer_client,
                &server,
                PeerOptions::new("sharer").password("pw").file("Music/golden track.mp3", content.clone()),
            );
            logged_in(&s);
            logged_in(&h);
            h.wait_event("shares_scanned", |_| true, T).expect("scan");
            s.wait_event("shares_scanned", |_| true, T).expect("scan");
            // Let the post-login traffic settle so "login" holds all of it.
            std::thread::sleep(Duration::from_secs(2));
            let mark = server.frames().len();
            let (_ts, _td) = search_and_download(&mut s, &h, "golden track", "golden track.mp3", &content, &server);
            h.wait_event("transfer_complete", |e| e["direction"] == "upload", T);
            s.browse("sharer");
            s.wait_event("browse_result", |_| true, T).expect("browse");
            s.private_message("sharer", "golden private message");
            h.wait_event("private_message", |_| true, T).expect("pm");
            s.join_room("golden");
            s.wait_event("room_joined", |_| true, T).expect("join");
            s.say_room("golden", "golden room message");
            s.wait_event("room_message", |_| true, T).expect("room message");
            std::thread::sleep(Duration::from_millis(500));

            let frames = server.frames();
            let (before, after) = frames.split_at(mark);
            for (client, user) in [(searcher_client, "searcher"), (sharer_client, "sharer")] {
                let login: Vec<Frame> = before.iter().filter(|f| f.dir == Dir::In && f.user == user).cloned().collect();
                // The sharer's login file is taken from the run where it shares (same
                // client, other role, is written by the other iteration).
                if user == "searcher" {
                    write(
                        dir,
                        client,
                        "login",
                        "every frame sent to the server from connect until 2 s after the share scan (no shares)",
                        &server_entries(&login),
                    );
                } else {
                    write(
                        dir,
                        client,
                        "login-sharing",
                        "every frame sent to the server from connect until 2 s after the share scan (one shared file)",
                        &server_entries(&login),
                    );
                }
            }
            let searcher_after: Vec<Frame> =
                after.iter().filter(|f| f.dir == Dir::In && f.user == "searcher").cloned().collect();
            let pick = |codes: &[u32]| -> Vec<Entry> {
                server_entries(&searcher_after.iter().filter(|f| codes.contains(&f.code)).cloned().collect::<Vec<_>>())
            };
            write(dir, searcher_client, "search", "FileSearch sent for the query 'golden track'", &pick(&[26]));
            write(dir, searcher_client, "search-and-download-server", "every frame sent to the server from the search until the download and the browse finished (chat frames excluded)", &server_entries(
                &searcher_after.iter().filter(|f| ![22, 14, 13].contains(&f.code)).cloned().collect::<Vec<_>>()));
            write(dir, searcher_client, "private-message", "MessageUser to 'sharer'", &pick(&[22]));
            write(dir, searcher_client, "room", "JoinRoom 'golden' and SayChatroom", &pick(&[14, 13]));
            let sharer_acks: Vec<Frame> =
                after.iter().filter(|f| f.dir == Dir::In && f.user == "sharer" && f.code == 23).cloned().collect();
            write(
                dir,
                sharer_client,
                "message-acked",
                "MessageAcked for the private message it received",
                &server_entries(&sharer_acks),
            );

            // Peer traffic through the tap.
            let taps = server.tap_conns();
            let mut sharer_p = Vec::new();
            let mut searcher_p = Vec::new();
            let mut sharer_f = Vec::new();
            let mut searcher_f = Vec::new();
            for t in &taps {
                if t.to_owner_total == 0 {
                    continue;
                }
                let init = t.initiator.clone().unwrap_or_default();
                let what = format!(
                    "tapped conn #{}, opened by {} to {}'s port",
                    t.id,
                    if init.is_empty() { "?" } else { &init },
                    t.owner
                );
                let (init_side, owner_side) = (peer_entries(t, true, &what), peer_entries(t, false, &what));
                let (sp, hp) = match t.kind.as_deref() {
                    Some("F") => (&mut searcher_f, &mut sharer_f),
                    _ => (&mut searcher_p, &mut sharer_p),
                };
                if init == "searcher" {
                    sp.extend(init_side);
                    hp.extend(owner_side);
                } else if init == "sharer" {
                    hp.extend(init_side);
                    sp.extend(owner_side);
                }
            }
            write(dir, sharer_client, "peer-upload-side", "peer-init and P frames the sharer/uploader sent on each peer connection, in connection order (search response, TransferRequest, browse reply)", &sharer_p);
            write(dir, searcher_client, "peer-download-side", "peer-init and P frames the searcher/downloader sent on each peer connection, in connection order (QueueUpload, TransferResponse, browse request)", &searcher_p);
            write(
                dir,
                sharer_client,
                "file-upload-side",
                "what the uploader sent on F connections, in connection order (peer-init, u32 token, file data head)",
                &sharer_f,
            );
            write(dir, searcher_client, "file-download-side", "what the downloader sent on F connections, in connection order (peer-init if it opened one, u64 offset)", &searcher_f);
            let log = std::env::temp_dir().join(format!("slsk-golden-{}.log", searcher_client.name()));
            let _ = server.write_log(&log);
        }
    }
}
