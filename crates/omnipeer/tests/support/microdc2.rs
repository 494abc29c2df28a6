//! microdc2 0.15.6 driven through a FIFO on its stdin (docs/protocols/nmdc.md#real-clients).
//!
//! microdc2 is a readline program that exits on EOF, so the harness creates `cmd.fifo`,
//! holds it open read-write itself (the "writer kept open"), and starts microdc2 with the
//! FIFO as stdin, `HOME=<tmp>/home`, `TERM=dumb` and stdout+stderr in `out.log`. The start
//! script (`-c config`) sets nick, dirs, listen address/port, share and `connect`.
//!
//! Gotchas: its output redraws the prompt with `\r` (see [`Microdc2::output`], which turns
//! `\r` into `\n`); it downloads only with legacy `$Get` (ncdc 1.23.1 ignores `$Get`, so
//! microdc2 cannot download from ncdc); it shares `listingdir` with its own list files.

use super::{have, mkdir, read_lossy, temp_dir, wait_until, KillOnDrop};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How to start microdc2.
#[derive(Clone, Debug, Default)]
pub struct Microdc2Config {
    /// Nick.
    pub nick: String,
    /// Hub as `127.0.0.1:PORT`.
    pub hub: String,
    /// Directory to share (`share <dir>`); microdc2 hashes it in the background.
    pub share: Option<PathBuf>,
    /// Active mode listening on 127.0.0.1:<port> (TCP and UDP); `None` = passive.
    pub listen_port: Option<u16>,
    /// Hub password (`set password`), sent when the hub asks with `$GetPass`.
    pub password: Option<String>,
}

/// A running microdc2; killed on drop (after an `exit` attempt in [`Microdc2::stop`]).
pub struct Microdc2 {
    /// The configuration it was started with.
    pub config: Microdc2Config,
    child: KillOnDrop,
    fifo: Option<File>,
    base: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Microdc2 {
    /// True when `microdc2` and `mkfifo` are installed.
    pub fn available() -> bool {
        have("microdc2") && have("mkfifo")
    }

    /// Writes the start script, creates the FIFO, starts microdc2 and waits until it
    /// printed its prompt (≤ 10 s; panics otherwise). Does not wait for the login; see
    /// [`Microdc2::wait_logged_in`].
    pub fn start(config: Microdc2Config) -> Microdc2 {
        let tmp = temp_dir("mdc-");
        let base = tmp.path().to_path_buf();
        let home = mkdir(base.join("home"));
        let dl = mkdir(base.join("dl"));
        let lists = mkdir(base.join("lists"));
        let mut script = format!(
            "set nick {}\nset description omnipeer-test\nset speed LAN(T1)\n\
             set downloaddir {}\nset listingdir {}\nset slots 3\n",
            config.nick,
            dl.display(),
            lists.display()
        );
        match config.listen_port {
            Some(p) => script.push_str(&format!("set listenaddr 127.0.0.1\nset listenport {p}\nset active on\n")),
            None => script.push_str("set active off\n"),
        }
        if let Some(s) = &config.share {
            script.push_str(&format!("share {}\n", s.display()));
        }
        if let Some(pw) = &config.password {
            script.push_str(&format!("set password {pw}\n"));
        }
        script.push_str(&format!("set logfile {}\n", base.join("microdc2.log").display()));
        script.push_str(&format!("connect {}\n", config.hub));
        std::fs::write(base.join("config"), script).unwrap();

        let fifo_path = base.join("cmd.fifo");
        let ok = Command::new("mkfifo").arg(&fifo_path).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "mkfifo failed");
        // O_RDWR never blocks on a FIFO and keeps a writer open: EOF on stdin = exit.
        let holder = OpenOptions::new().read(true).write(true).open(&fifo_path).expect("open fifo");
        let stdin = File::open(&fifo_path).expect("open fifo for reading");
        let out = File::create(base.join("out.log")).unwrap();
        let child = KillOnDrop::spawn(
            Command::new("microdc2")
                .arg("-c")
                .arg(base.join("config"))
                .current_dir(&base)
                .env("HOME", &home)
                .env("TERM", "dumb")
                .stdin(Stdio::from(stdin))
                .stdout(out.try_clone().unwrap())
                .stderr(out),
        )
        .expect("spawn microdc2");
        let me = Microdc2 { config, child, fifo: Some(holder), base, _tmp: tmp };
        let up = me.wait_output("microdc2>", Duration::from_secs(10));
        assert!(up, "microdc2 did not start; output:\n{}", me.output());
        me
    }

    /// Writes one command line into the FIFO (e.g. `"browse alice"`, `"raw $GetNickList|"`).
    pub fn cmd(&mut self, line: &str) {
        if let Some(f) = self.fifo.as_mut() {
            let _ = f.write_all(format!("{line}\n").as_bytes());
            let _ = f.flush();
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Everything microdc2 printed so far, with prompt-redraw `\r` turned into `\n`.
    pub fn output(&self) -> String {
        read_lossy(&self.base.join("out.log")).replace('\r', "\n")
    }

    /// Waits until the output contains `needle`.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.output().contains(needle))
    }

    /// Waits for "Nick accepted. You are now logged in."
    pub fn wait_logged_in(&self, timeout: Duration) -> bool {
        self.wait_output("You are now logged in", timeout)
    }

    /// Where downloaded files land (`downloaddir`).
    pub fn download_dir(&self) -> PathBuf {
        self.base.join("dl")
    }

    /// `listingdir`: its own `files.xml.bz2` and downloaded `<nick>.files.xml.bz2` lists.
    pub fn listing_dir(&self) -> PathBuf {
        self.base.join("lists")
    }

    /// The instance's temp dir (config, cmd.fifo, out.log, microdc2.log, home/, dl/, lists/).
    pub fn dir(&self) -> &Path {
        &self.base
    }

    /// `exit`, waits up to 3 s, then kills; closes the FIFO writer.
    pub fn stop(&mut self) {
        if self.child.running() {
            self.cmd("exit");
        }
        self.fifo = None;
        self.child.wait_or_kill(Duration::from_secs(3));
    }
}
