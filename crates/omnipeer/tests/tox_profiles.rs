//! Interop: Tox profiles in the standard save format (docs/protocols/tox.md#savedata).
//!
//! - A save written by c-toxcore 0.2.18's `tox_get_savedata` (plain, and encrypted with
//!   `tox_pass_encrypt`) is imported with `omnipeer tox import`; `omnipeer tox echo` then
//!   runs as that identity and the save's friend (a c-toxcore bot) talks to it.
//! - `omnipeer tox export` (encrypted) is loaded by c-toxcore as the same identity with
//!   the same friends, and that friend comes online.
//!
//! Skips (and passes) when c-toxcore is not installed.

mod tox_support;

use std::time::Duration;
use tox_support::{free_udp_port, keys, omni, Bootstrapd, Bot, BotOptions};

const T: Duration = Duration::from_secs(90);

/// Y's save (two fixed identities, `keys`: X an echo bot, Y the profile moved around) as c-toxcore writes it, with X as its friend.
fn c_toxcore_save(dir: &std::path::Path, pass: Option<&str>) -> std::path::PathBuf {
    let (y_sk, _) = keys(0x42);
    let (_, x_pk) = keys(0x24);
    let save = dir.join("y.tox");
    let mut args = vec!["-n", "yolanda", "-W", save.to_str().unwrap()];
    if let Some(p) = pass {
        args.extend(["-P", p]);
    }
    let mut y = Bot::start(BotOptions::new().secret_key(&y_sk).friend(&x_pk).args(&args));
    assert_eq!(y.wait_exit(Duration::from_secs(30)), Some(0), "{}", y.log());
    assert!(y.proc.wait_line("SAVED ", Duration::from_secs(5)).is_some());
    save
}

fn import_then_friend_comes_online(pass: Option<&str>) {
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let save = c_toxcore_save(work.path(), pass);
    let profile = work.path().join("imported.profile");
    let mut args = vec!["tox", "import", save.to_str().unwrap(), "--profile", profile.to_str().unwrap()];
    let passfile = work.path().join("pass.txt");
    if let Some(p) = pass {
        std::fs::write(&passfile, format!("{p}\n")).unwrap();
        args.extend(["--passphrase-file", passfile.to_str().unwrap()]);
    }
    let mut imp = omni("omnipeer-tox-import", &args);
    assert_eq!(imp.wait_exit(T), Some(0), "{}", imp.log());
    let (_, y_pk) = keys(0x42);
    let id = imp.lines()[0].clone();
    assert_eq!(&id[..64], y_pk, "imported identity");
    // A wrong passphrase is refused and leaves no profile.
    if pass.is_some() {
        std::fs::write(&passfile, "wrong\n").unwrap();
        let other = work.path().join("other.profile");
        let mut bad = omni(
            "omnipeer-tox-import-bad",
            &[
                "tox",
                "import",
                save.to_str().unwrap(),
                "--profile",
                other.to_str().unwrap(),
                "--passphrase-file",
                passfile.to_str().unwrap(),
            ],
        );
        assert_eq!(bad.wait_exit(T), Some(1), "{}", bad.log());
        assert!(!other.exists());
    }
    // omnipeer runs as Y; X (which has Y as a friend) talks to it.
    let port = free_udp_port();
    let echo = omni(
        "omnipeer-tox-echo",
        &[
            "tox",
            "echo",
            "--profile",
            profile.to_str().unwrap(),
            "--bootstrap",
            &bsd.node_spec(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert_eq!(echo.wait_for(Duration::from_secs(20), |l| (l.len() == 76).then(|| l.to_owned())), Some(id));
    let (x_sk, _) = keys(0x24);
    let mut x = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .secret_key(&x_sk)
            .friend(&y_pk)
            .message("are you back?")
            .exit_on_echo()
            .timeout_secs(80),
    );
    assert_eq!(x.wait_exit(T), Some(0), "the save's friend got no echo\n{}\n{}", x.log(), echo.log());
}

#[test]
fn c_toxcore_save_imported_and_its_friend_back_online() {
    if !tox_support::require("c_toxcore_save_imported_and_its_friend_back_online") {
        return;
    }
    import_then_friend_comes_online(None);
}

#[test]
fn encrypted_c_toxcore_save_imported_and_its_friend_back_online() {
    if !tox_support::require("encrypted_c_toxcore_save_imported_and_its_friend_back_online") {
        return;
    }
    import_then_friend_comes_online(Some("s3cret passphrase"));
}

#[test]
fn exported_profile_loads_in_c_toxcore_with_its_friends() {
    if !tox_support::require("exported_profile_loads_in_c_toxcore_with_its_friends") {
        return;
    }
    let bsd = Bootstrapd::start(&[]);
    let work = tempfile::tempdir().unwrap();
    let save = c_toxcore_save(work.path(), None);
    let profile = work.path().join("p.profile");
    let mut imp =
        omni("omnipeer-tox-import", &["tox", "import", save.to_str().unwrap(), "--profile", profile.to_str().unwrap()]);
    assert_eq!(imp.wait_exit(T), Some(0), "{}", imp.log());
    let id = imp.lines()[0].clone();
    let passfile = work.path().join("pass.txt");
    std::fs::write(&passfile, "export pass\n").unwrap();
    let out = work.path().join("exported.tox");
    let mut exp = omni(
        "omnipeer-tox-export",
        &[
            "tox",
            "export",
            out.to_str().unwrap(),
            "--profile",
            profile.to_str().unwrap(),
            "--passphrase-file",
            passfile.to_str().unwrap(),
        ],
    );
    assert_eq!(exp.wait_exit(T), Some(0), "{}", exp.log());
    assert!(std::fs::read(&out).unwrap().starts_with(b"toxEsave"));
    // X echoes; c-toxcore loads the export as Y and messages X.
    let (x_sk, _) = keys(0x24);
    let (_, y_pk) = keys(0x42);
    let x = Bot::start(BotOptions::new().bootstrap(&bsd.node_spec()).secret_key(&x_sk).friend(&y_pk));
    let mut y = Bot::start(
        BotOptions::new()
            .bootstrap(&bsd.node_spec())
            .args(&["-L", out.to_str().unwrap(), "-P", "export pass"])
            .message("loaded from omnipeer's export")
            .exit_on_echo()
            .timeout_secs(80),
    );
    assert_eq!(y.proc.expect_line("TOXID ", T), id, "same identity and nospam");
    assert_eq!(y.proc.expect_line("FRIENDS ", T), "1");
    assert_eq!(y.wait_exit(T), Some(0), "no echo from the friend\n{}\n{}", y.log(), x.log());
}
