//! Interop: Tox file transfers between omnipeer (the binary under test: `tox send-file`,
//! `tox echo --incoming`) and REAL c-toxcore 0.2.18 bots (tests/tox_support/toxbot.c),
//! bootstrapped off tox-bootstrapd (docs/protocols/tox.md#file-transfers).
//!
//! - omnipeer → c-toxcore: a 50 MiB file; the bot is killed part-way and restarted with
//!   the same identity and directory: it resumes (seek) and the file arrives intact.
//! - c-toxcore → omnipeer: a 50 MiB file; `tox echo` is killed part-way and restarted
//!   with the same profile and `--incoming` directory: it resumes and the file arrives
//!   intact.
//! - omnipeer → c-toxcore again, this time `tox send-file` itself is killed part-way and
//!   run again: its offer carries the same file id, the bot resumes.
//!
//! Skips (and passes) when c-toxcore is not installed.

mod omni;
mod tox_support;

use omni::node::sha256_file as sha;
use omni::tox::test_file as sized_file;
use std::path::Path;
use std::time::Duration;
use tox_support::{free_udp_port, omni, Bootstrapd, Bot, BotOptions, Proc};

/// Size of the test files.
const SIZE: usize = 50 << 20;
/// Bytes the receiver must have before its restart.
const RESTART_AFTER: u64 = 12 << 20;
/// Generous bound for one 50 MiB transfer with a restart on a loaded 2-core machine.
const T: Duration = Duration::from_secs(300);

/// A file of `SIZE` pseudo-random bytes.
fn test_file(dir: &Path, name: &str, seed: u64) -> std::path::PathBuf {
    sized_file(dir, name, seed, SIZE)
}

fn random_hex32() -> String {
    let mut x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let b: [u8; 32] = std::array::from_fn(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    });
    b.iter().map(|b| format!("{b:02X}")).collect()
}

/// Waits for a `FILE_PROGRESS n` line with n ≥ `at`.
fn wait_progress(p: &Proc, at: u64, t: Duration) -> Option<u64> {
    p.wait_for(t, |l| l.strip_prefix("FILE_PROGRESS ").and_then(|n| n.trim().parse::<u64>().ok()).filter(|n| *n >= at))
}

#[test]
fn tox_send_file_to_c_toxcore_resumes_after_the_bot_restarts() {
    if !tox_support::require("tox_send_file_to_c_toxcore_resumes_after_the_bot_restarts") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let file = test_file(work.path(), "fifty.bin", 0x5eed);
    let recv = work.path().join("bot-in");
    std::fs::create_dir_all(&recv).unwrap();
    let sk = random_hex32();
    let profile = work.path().join("send.tox");
    // Our public key, for the restarted bot's friend list.
    let mut id = omni("omnipeer-tox-id", &["tox", "id", "--profile", profile.to_str().unwrap()]);
    assert_eq!(id.wait_exit(Duration::from_secs(30)), Some(0), "{}", id.log());
    let our_pk = id.lines()[0][..64].to_owned();

    let bot_opts = BotOptions::new().bootstrap(&bsd.node_spec()).secret_key(&sk).recv_dir(&recv).timeout_secs(280);
    let bot = Bot::start(bot_opts.clone());
    let bot_id = bot.tox_id();
    let port = free_udp_port();
    let mut send = omni(
        "omnipeer-tox-send-file",
        &[
            "tox",
            "send-file",
            "--profile",
            profile.to_str().unwrap(),
            "--bootstrap",
            &bsd.node_spec(),
            "--to",
            &bot_id,
            "--file",
            file.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "280",
        ],
    );
    assert!(
        wait_progress(&bot.proc, RESTART_AFTER, T).is_some(),
        "the bot never got {RESTART_AFTER} bytes\n{}\n{}",
        bot.log(),
        send.log()
    );
    let before = bot.proc.lines();
    drop(bot); // SIGKILL: the partial file stays
    let bot = Bot::start(bot_opts.friend(&our_pk).exit_on_file());
    let resume: u64 = bot
        .proc
        .wait_line("FILE_RESUME ", T)
        .unwrap_or_else(|| panic!("the restarted bot did not resume\n{}\n{}", bot.log(), send.log()))
        .parse()
        .unwrap();
    assert!(resume >= RESTART_AFTER / 2, "resumed at {resume}: {before:?}");
    let done = bot.proc.expect_line("FILE_DONE ", T);
    assert_eq!(send.wait_exit(T), Some(0), "{}\n{}", send.log(), bot.log());
    let lines = send.lines();
    assert!(lines.iter().any(|l| l == &format!("resumed at {resume}")), "{}", send.log());
    assert!(lines.iter().any(|l| l == &format!("sent {SIZE} bytes")), "{}", send.log());
    let got = done.split_once(' ').map(|(_, p)| p.to_owned()).unwrap();
    assert_eq!(got, recv.join("fifty.bin").display().to_string());
    assert_eq!(sha(Path::new(&got)), sha(&file), "the file differs after the resume");
}

#[test]
fn c_toxcore_sends_file_to_tox_echo_which_resumes_after_a_restart() {
    if !tox_support::require("c_toxcore_sends_file_to_tox_echo_which_resumes_after_a_restart") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let file = test_file(work.path(), "from-bot.bin", 0xb07);
    let incoming = work.path().join("incoming");
    let profile = work.path().join("echo.tox");
    let port = free_udp_port();
    let echo_args = |port: u16| {
        vec![
            "tox".to_string(),
            "echo".into(),
            "--profile".into(),
            profile.display().to_string(),
            "--bootstrap".into(),
            bsd.node_spec(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--incoming".into(),
            incoming.display().to_string(),
        ]
    };
    let args = echo_args(port);
    let echo = omni("omnipeer-tox-echo", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let echo_id = echo
        .wait_for(Duration::from_secs(30), |l| (l.len() == 76).then(|| l.to_owned()))
        .unwrap_or_else(|| panic!("no Tox ID\n{}", echo.log()));
    let mut bot = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .friend_request(&echo_id)
            .send_file(&file)
            .exit_on_file()
            .timeout_secs(280),
    );
    assert!(
        echo.wait_line("receiving \"from-bot.bin\"", T).is_some(),
        "tox echo was not offered the file\n{}\n{}",
        echo.log(),
        bot.log()
    );
    assert!(
        wait_progress(&bot.proc, RESTART_AFTER, T).is_some(),
        "the bot never sent {RESTART_AFTER} bytes\n{}\n{}",
        bot.log(),
        echo.log()
    );
    drop(echo); // SIGKILL mid-transfer; the profile and the partial file stay
    let port2 = free_udp_port();
    let args = echo_args(port2);
    let echo = omni("omnipeer-tox-echo-again", &args.iter().map(String::as_str).collect::<Vec<_>>());
    let resumed = echo
        .wait_for(T, |l| {
            l.strip_prefix("receiving \"from-bot.bin\"")
                .and_then(|r| r.rsplit_once("resuming at "))
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        })
        .unwrap_or_else(|| panic!("the restarted tox echo did not resume\n{}\n{}", echo.log(), bot.log()));
    assert!(resumed > 0);
    assert!(bot.proc.wait_line(&format!("FILE_SENT {SIZE}"), T).is_some(), "{}\n{}", bot.log(), echo.log());
    let done = echo.expect_line("received ", T);
    assert!(done.contains(&format!("({SIZE} bytes)")), "{done}");
    assert_eq!(bot.wait_exit(T), Some(0), "{}", bot.log());
    let got = incoming.join("from-bot.bin");
    assert_eq!(sha(&got), sha(&file), "the file differs after the resume");
    // Nothing is left behind in the partial directory.
    assert_eq!(std::fs::read_dir(incoming.join(".partial")).unwrap().count(), 0);
}

#[test]
fn tox_send_file_restarted_resumes_where_the_bot_is() {
    if !tox_support::require("tox_send_file_restarted_resumes_where_the_bot_is") {
        return;
    }
    const SMALLER: usize = 24 << 20;
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let file = sized_file(work.path(), "again.bin", 0xa9a1, SMALLER);
    let recv = work.path().join("bot-in");
    std::fs::create_dir_all(&recv).unwrap();
    let profile = work.path().join("send.tox");
    let bot =
        Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).recv_dir(&recv).exit_on_file().timeout_secs(280));
    let bot_id = bot.tox_id();
    let args = |port: u16| {
        vec![
            "tox".to_string(),
            "send-file".into(),
            "--profile".into(),
            profile.display().to_string(),
            "--bootstrap".into(),
            bsd.node_spec(),
            "--to".into(),
            bot_id.clone(),
            "--file".into(),
            file.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--timeout".into(),
            "250".into(),
        ]
    };
    let a = args(free_udp_port());
    let send = omni("omnipeer-tox-send-file", &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wait_progress(&bot.proc, 8 << 20, T).is_some(), "the bot never got 8 MiB\n{}\n{}", bot.log(), send.log());
    drop(send); // SIGKILL mid-transfer
    let a = args(free_udp_port());
    let mut send = omni("omnipeer-tox-send-file-again", &a.iter().map(String::as_str).collect::<Vec<_>>());
    let resume: u64 = bot
        .proc
        .wait_line("FILE_RESUME ", T)
        .unwrap_or_else(|| panic!("the bot did not resume the new offer\n{}\n{}", bot.log(), send.log()))
        .parse()
        .unwrap();
    assert!(resume > 0);
    assert_eq!(send.wait_exit(T), Some(0), "{}\n{}", send.log(), bot.log());
    assert!(send.lines().iter().any(|l| l == &format!("resumed at {resume}")), "{}", send.log());
    let done = bot.proc.expect_line("FILE_DONE ", T);
    let got = done.split_once(' ').map(|(_, p)| p.to_owned()).unwrap();
    assert_eq!(sha(Path::new(&got)), sha(&file), "the file differs after the resume");
}
