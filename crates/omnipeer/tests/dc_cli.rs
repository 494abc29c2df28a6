//! `omnipeer dc hub|share|search|get` end to end over loopback: search by words and TTH,
//! downloads active and passive, by TTH, by path and the file list, resume, TTH check.

mod omni;

use omni::{run_in as run, Omni as Proc};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn share_search_and_get_active_and_passive() {
    let t = tempfile::tempdir().unwrap();
    let share = t.path().join("pub");
    std::fs::create_dir_all(share.join("music")).unwrap();
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(share.join("music/Song Title.mp3"), &data).unwrap();
    std::fs::write(share.join("notes.txt"), b"hello world\n").unwrap();

    let hub = Proc::start_in(&t.path().join("hub"), &["dc", "hub", "--listen", "127.0.0.1:0", "--name", "Test Hub"]);
    let hub_addr = format!("dchub://{}", hub.wait_line("listening on "));
    let share_listen = free_addr();
    let sharer = Proc::start_in(
        &t.path().join("sharer"),
        &[
            "dc",
            "share",
            "--hub",
            &hub_addr,
            "--nick",
            "alice",
            "--share",
            share.to_str().unwrap(),
            "--listen",
            &share_listen,
        ],
    );
    sharer.wait_line("online at");

    // Search by words (passive searcher: results come through the hub).
    let c = t.path().join("client");
    let (code, out, err) =
        run(&c, &["dc", "search", "--hub", &hub_addr, "--nick", "bob", "--timeout", "2", "song", "title"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().next().unwrap_or_else(|| panic!("no result: {err}"));
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(&cols[..3], ["alice", "pub\\music\\Song Title.mp3", "2500000"], "{line}");
    let tth = cols[3].to_owned();
    assert_eq!(tth.len(), 39);
    // Search by TTH, as JSON.
    let (code, out, _) =
        run(&c, &["--json", "dc", "search", "--hub", &hub_addr, "--nick", "bob", "--timeout", "2", "--tth", &tth]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["size"], 2_500_000);

    // `dc get` as `nick` from `from`, of `what` (`--tth`, `--path`, `--filelist`), into
    // `out`, with `extra` options.
    let get = |nick: &str, from: &str, what: &[&str], out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["dc", "get", "--hub", &hub_addr, "--nick", nick, "--from", from];
        args.extend_from_slice(what);
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        run(&c, &args)
    };

    // Passive download by TTH, with a partial file to resume.
    let dl = t.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(dl.join("a.mp3"), &data[..1_000_000]).unwrap();
    let (code, out, err) = get("bob", "alice", &["--tth", &tth], &dl.join("a.mp3"), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resumed at byte 1000000") && out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(dl.join("a.mp3")).unwrap(), data);

    // Active download by path.
    let my_listen = free_addr();
    let (code, out, err) =
        get("carol", "alice", &["--path", "pub/music/Song Title.mp3"], &dl.join("b.mp3"), &["--listen", &my_listen]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(dl.join("b.mp3")).unwrap(), data);

    // The file list.
    let (code, _, err) = get("dave", "alice", &["--filelist"], &dl.join("alice.xml.bz2"), &[]);
    assert_eq!(code, 0, "{err}");
    let bz = std::fs::read(dl.join("alice.xml.bz2")).unwrap();
    assert_eq!(&bz[..3], b"BZh");

    // Errors: a user who is not there, a file that is not shared.
    let (code, _, err) = get("erin", "nobody", &["--filelist"], &dl.join("x"), &[]);
    assert_ne!(code, 0);
    assert!(err.contains("nobody is not on the hub"), "{err}");
    let (code, _, err) = get("erin", "alice", &["--path", "pub/missing.bin"], &dl.join("y"), &[]);
    assert_ne!(code, 0);
    assert!(err.contains("does not share"), "{err}");
    drop(sharer);
    drop(hub);
}
