//! ncdc 1.23.1 driven headless in its own tmux server (docs/protocols/nmdc.md#real-clients).
//!
//! ncdc is curses-only: commands are typed with `tmux send-keys -l` + `Enter`, the screen is
//! read with `tmux capture-pane -p`. With `/set log_debug true` ncdc writes every protocol
//! line to `$NCDC_DIR/stderr.log` as `ip:port< msg|` (received) / `ip:port> msg|` (sent),
//! raw bytes (the `$Key` values are binary).
//!
//! Gotchas handled here: ncdc writes its own `files.xml.bz2` only every 60 s or when a
//! `/refresh` finishes, so [`Ncdc::share_and_wait`] waits for hashing and then forces a
//! `/refresh`; tmux gets a private socket (`-L`) so the whole server dies on drop; typed
//! commands are only sent once the UI is drawn (earlier keys are lost).

use super::{have, mkdir, quiet, read_lossy, temp_dir, wait_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How to start ncdc.
#[derive(Clone, Debug, Default)]
pub struct NcdcConfig {
    /// Nick (`/set nick`).
    pub nick: String,
    /// Hub as `127.0.0.1:PORT` (connected as `dchub://127.0.0.1:PORT/`), or a whole address
    /// with its scheme (`adc://127.0.0.1:PORT`, `adcs://...`, `nmdcs://...`).
    pub hub: String,
    /// Directory shared as `files` (`/share files <dir>`), hashed before connecting.
    pub share: Option<PathBuf>,
    /// Active mode on this TCP+UDP port (`active_ip 127.0.0.1`); `None` = passive.
    pub active_port: Option<u16>,
    /// Hub password (`/hset password`).
    pub password: Option<String>,
}

/// A running ncdc; its tmux server (and so ncdc) is killed on drop.
pub struct Ncdc {
    /// The configuration it was started with.
    pub config: NcdcConfig,
    socket: String,
    session: String,
    ncdc_dir: PathBuf,
    pid: Option<u32>,
    _tmp: tempfile::TempDir,
    stopped: bool,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Ncdc {
    /// True when `ncdc` and `tmux` are installed.
    pub fn available() -> bool {
        have("ncdc") && have("tmux")
    }

    /// Starts ncdc in a fresh temp dir, configures it, shares (waiting until the share is
    /// hashed and ncdc's own file list is written) and connects to the hub. Does not wait
    /// for the login; use `wait_log(&format!("$Hello {nick}|"), …)` or [`Ncdc::wait_logged_in`].
    /// Panics if ncdc's UI does not come up within 10 s.
    pub fn start(config: NcdcConfig) -> Ncdc {
        let tmp = temp_dir("ncdc-");
        let ncdc_dir = mkdir(tmp.path().join("ncdc"));
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let socket = format!("omnipeer-ncdc-{}-{n}", std::process::id());
        let session = format!("ncdc{n}");
        let mut me = Ncdc { config, socket, session, ncdc_dir, pid: None, _tmp: tmp, stopped: false };

        let shell_cmd = format!("exec ncdc -n -c '{}'", me.ncdc_dir.display());
        let ok = quiet("tmux")
            .args(["-L", &me.socket, "-f", "/dev/null", "new-session", "-d", "-s", &me.session])
            .args(["-x", "200", "-y", "50", &shell_cmd])
            .env("NCDC_DIR", &me.ncdc_dir)
            .env("TERM", "xterm")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "tmux new-session for ncdc failed");
        // Keys typed before the curses UI is up are lost: wait for the tab bar.
        let up = wait_until(Duration::from_secs(10), || me.screen().contains("1:main"));
        assert!(up, "ncdc UI did not come up; screen:\n{}", me.screen());
        me.pid = Command::new("tmux")
            .args(["-L", &me.socket, "display-message", "-p", "-t", &me.session, "#{pane_pid}"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());

        let c = me.config.clone();
        me.cmd("/set log_debug true");
        me.cmd(&format!("/set nick {}", c.nick));
        me.cmd("/set description omnipeer-test");
        me.cmd("/set connection 100");
        me.cmd("/set tls_policy disabled"); // plain c-c, no "$ConnectToMe …S"
        me.cmd("/set local_address 127.0.0.1");
        match c.active_port {
            Some(p) => {
                me.cmd("/set active_ip 127.0.0.1"); // else it waits for $UserIP
                me.cmd(&format!("/set active_port {p}"));
                me.cmd("/set active true");
            }
            None => me.cmd("/set active false"),
        }
        if let Some(share) = &c.share {
            me.share_and_wait(share, Duration::from_secs(30));
        }
        me.cmd("/open -n testhub"); // hub tab without connecting; later commands go there
        if let Some(pw) = &c.password {
            me.cmd(&format!("/hset password {pw}"));
        }
        me.cmd(&format!("/connect {}", super::hub_url(&c.hub)));
        me
    }

    /// Types `line` into ncdc's input line and presses Enter (then pauses 200 ms so ncdc
    /// handles it before the next one).
    pub fn cmd(&self, line: &str) {
        let _ = quiet("tmux").args(["-L", &self.socket, "send-keys", "-t", &self.session, "-l", line]).status();
        let _ = quiet("tmux").args(["-L", &self.socket, "send-keys", "-t", &self.session, "Enter"]).status();
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Selects the hub tab with Alt+2 (it is always tab 2: opened right after `main`).
    /// Hub commands such as `/search` and `/browse` only work there, and `/search` /
    /// `/browse` switch to a results / list tab that has no command line.
    pub fn hub_tab(&self) {
        self.keys(&["M-2"]);
    }

    /// `/search <args>` on the hub tab (e.g. `"golden"`, `"-tth <TTH>"`).
    pub fn search(&self, args: &str) {
        self.hub_tab();
        self.cmd(&format!("/search {args}"));
    }

    /// `/browse <nick>` from the hub tab: downloads the user's file list.
    pub fn browse(&self, nick: &str) {
        self.hub_tab();
        self.cmd(&format!("/browse {nick}"));
    }

    /// Sends tmux key names (e.g. `"Down"`, `"d"`, `"M-2"`) without `-l`.
    pub fn keys(&self, keys: &[&str]) {
        let _ = quiet("tmux").args(["-L", &self.socket, "send-keys", "-t", &self.session]).args(keys).status();
        std::thread::sleep(Duration::from_millis(200));
    }

    /// The visible screen (`tmux capture-pane -p`), "" if the session is gone.
    pub fn screen(&self) -> String {
        Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", &self.session])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// `$NCDC_DIR/stderr.log` (lossy UTF-8): protocol lines `ip:port< msg|` / `ip:port> msg|`.
    pub fn protocol_log(&self) -> String {
        read_lossy(&self.ncdc_dir.join("stderr.log"))
    }

    /// The raw bytes of `stderr.log` (for golden frames: `$Key` is binary).
    pub fn protocol_log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.ncdc_dir.join("stderr.log")).unwrap_or_default()
    }

    /// Waits until the protocol log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.protocol_log().contains(needle))
    }

    /// Waits until the hub greeted us (`$Hello <nick>|` received).
    pub fn wait_logged_in(&self, timeout: Duration) -> bool {
        self.wait_log(&format!("< $Hello {}|", self.config.nick), timeout)
    }

    /// Nicks whose `$MyINFO` ncdc received from the hub.
    pub fn seen_users(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .protocol_log()
            .lines()
            .filter_map(|l| l.split("< $MyINFO $ALL ").nth(1))
            .filter_map(|r| r.split(' ').next())
            .map(str::to_owned)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// `$NCDC_DIR` (db.sqlite3, stderr.log, files.xml.bz2, dl/, …).
    pub fn dir(&self) -> &Path {
        &self.ncdc_dir
    }

    /// Where finished downloads land (`$NCDC_DIR/dl`, ncdc's default `download_dir`).
    pub fn download_dir(&self) -> PathBuf {
        self.ncdc_dir.join("dl")
    }

    /// ncdc's own file list (`$NCDC_DIR/files.xml.bz2`).
    pub fn own_filelist(&self) -> PathBuf {
        self.ncdc_dir.join("files.xml.bz2")
    }

    /// `/share files <dir>`, waits until every regular (non-hidden) file under `dir` is
    /// hashed, then `/refresh` so ncdc rewrites `files.xml.bz2` now (it otherwise flushes
    /// it only every 60 s), and waits until that list names every file. False on timeout.
    pub fn share_and_wait(&self, dir: &Path, timeout: Duration) -> bool {
        let files = count_files(dir);
        self.cmd(&format!("/share files {}", dir.display()));
        let hashed =
            wait_until(timeout, || self.protocol_log().matches("*message* Completed hashing ").count() >= files);
        if !hashed {
            return false;
        }
        self.cmd("/refresh");
        wait_until(timeout, || bunzip_to_string(&self.own_filelist()).matches("<File ").count() >= files)
    }

    /// ncdc's process id (the tmux pane's process; `exec` replaced the shell).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// `/quit` (ncdc saves its state), waits up to 5 s for the exit, then kills the tmux
    /// server (and ncdc, if still there). Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.cmd("/quit");
        self.kill(true);
    }

    /// Ends ncdc: after a `/quit` (`graceful`) first waits up to 5 s for it to exit; then
    /// kills the tmux server (ncdc gets SIGHUP and exits, writing `history` etc., so wait
    /// for that before the temp dir is removed), and SIGKILLs ncdc if still there after 3 s.
    fn kill(&mut self, graceful: bool) {
        self.stopped = true;
        if let (true, Some(pid)) = (graceful, self.pid) {
            wait_until(Duration::from_secs(5), || !alive(pid));
        }
        let _ = quiet("tmux").args(["-L", &self.socket, "kill-server"]).status();
        if let Some(pid) = self.pid {
            if !wait_until(Duration::from_secs(3), || !alive(pid)) {
                let _ = quiet("kill").args(["-KILL", &pid.to_string()]).status();
                wait_until(Duration::from_secs(2), || !alive(pid));
            }
        }
    }
}

impl Drop for Ncdc {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill(false);
        }
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit(')').next().map(|r| !r.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// Regular, non-hidden files below `dir` (what ncdc shares by default).
pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// `bzip2 -dc FILE` as a string ("" on any error).
pub fn bunzip_to_string(path: &Path) -> String {
    Command::new("bzip2")
        .arg("-dc")
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
