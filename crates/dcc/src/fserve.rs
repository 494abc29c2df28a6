//! mIRC-style file server session (`110`/`111`): `help`, `dir`, `ls`, `cd`, `read`, `get`,
//! `exit`. The output format is our convention (line-oriented, mIRC-like; see
//! `docs/protocols/dcc.md#fserve`): every command's output ends with a prompt line `[\dir]`.
//!
//! The session never sees a real path. It works on [`VPath`]s (lists of components inside
//! the home directory), resolves `cd ..` itself so nothing can climb above the home, and
//! asks the runtime's [`ShareView`] — an index of the share, not the file system — what is
//! there.

use crate::name::SafeName;
use std::time::{Duration, Instant};

/// Paths shown to the user use `\` like mIRC; input accepts `/` and `\`.
pub const SEP: char = '\\';
/// Lines per page for `read` unless `-N` says otherwise.
pub const READ_LINES_DEFAULT: usize = 20;
/// The range mIRC allows for `read -N`.
pub const READ_LINES_RANGE: (usize, usize) = (5, 50);
/// The most of a text file `read` will page through.
pub const MAX_READ_BYTES: usize = 1 << 20;
/// The most of a `dirinfo.srv` shown after `cd`.
pub const MAX_DIRINFO_BYTES: usize = 4096;
/// The most entries one `dir`/`ls` lists.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Names per line of a wide listing unless `-#N` says otherwise.
pub const WIDE_DEFAULT: usize = 4;

/// A path inside the share, as components. The empty path is the home directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VPath(Vec<String>);

impl VPath {
    /// The home directory.
    pub fn root() -> Self {
        VPath(Vec::new())
    }

    /// From components (each must be an ordinary name).
    pub fn from_components(c: Vec<String>) -> Self {
        VPath(c)
    }

    /// The components.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// The last component (the file name), if any.
    pub fn file_name(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// This path plus one more component.
    pub fn child(&self, name: &str) -> VPath {
        let mut c = self.0.clone();
        c.push(name.to_owned());
        VPath(c)
    }

    /// Resolve what the user typed (relative to `self`, or to the home when it starts with
    /// a separator). `..` above the home is refused; `.` and empty parts are skipped.
    pub fn resolve(&self, input: &str) -> Result<VPath, PathError> {
        let input = strip_quotes(input.trim());
        let mut out = if input.starts_with(['/', '\\']) { Vec::new() } else { self.0.clone() };
        for part in input.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    if out.pop().is_none() {
                        return Err(PathError::OutsideHome);
                    }
                }
                p => {
                    let name = SafeName::new(p).map_err(|_| PathError::BadName)?;
                    out.push(name.as_str().to_owned());
                }
            }
        }
        Ok(VPath(out))
    }
}

impl std::fmt::Display for VPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "{SEP}");
        }
        for c in &self.0 {
            write!(f, "{SEP}{c}")?;
        }
        Ok(())
    }
}

/// Why a typed path does not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// It climbs above the home directory.
    OutsideHome,
    /// A part that cannot be a name (control characters, too long).
    BadName,
}

/// What a path is in the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A file of this many bytes.
    File {
        /// Size in bytes.
        size: u64,
    },
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// Directory or file.
    pub kind: EntryKind,
}

/// The share as the session sees it. The runtime implements it over its share index.
pub trait ShareView {
    /// Where `path` is in the share (the returned path carries the stored spelling, for
    /// shares that match names without regard to case) and what it is.
    fn stat(&self, path: &VPath) -> Option<(VPath, EntryKind)>;
    /// The entries of a directory, `None` if it is not one.
    fn list(&self, dir: &VPath) -> Option<Vec<DirEntry>>;
    /// Up to `max` bytes from the start of a file, `None` if it cannot be read.
    fn read_head(&self, file: &VPath, max: usize) -> Option<Vec<u8>>;
}

/// A file the user asked for with `get`; the runtime expects the client's `130` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOrder {
    /// Where it is in the share.
    pub path: VPath,
    /// The name the client will ask for in `130`.
    pub name: String,
    /// Its size when ordered.
    pub size: u64,
}

/// The answer to one command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Lines to send, in order.
    pub lines: Vec<String>,
    /// A file to expect a `130` for.
    pub get: Option<GetOrder>,
    /// Close the session after sending the lines.
    pub close: bool,
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct FserveConfig {
    /// The server's nick (shown in the welcome).
    pub server_nick: String,
    /// How many gets a session may have pending or running at once.
    pub max_gets: usize,
    /// An optional welcome text file inside the share, sent on connect.
    pub welcome: Option<VPath>,
}

#[derive(Debug)]
struct Pager {
    name: String,
    lines: Vec<String>,
    next: usize,
    per_page: usize,
}

/// One file-server session.
#[derive(Debug)]
pub struct FserveSession {
    cfg: FserveConfig,
    cwd: VPath,
    pager: Option<Pager>,
}

impl FserveSession {
    /// A new session in the home directory.
    pub fn new(cfg: FserveConfig) -> Self {
        FserveSession { cfg, cwd: VPath::root(), pager: None }
    }

    /// The current directory.
    pub fn cwd(&self) -> &VPath {
        &self.cwd
    }

    /// The lines sent right after `111`.
    pub fn welcome(&self, view: &dyn ShareView) -> Vec<String> {
        let mut lines = vec![format!("Welcome to {}'s file server. Type 'help' for commands.", self.cfg.server_nick)];
        if let Some(w) = &self.cfg.welcome {
            if let Some(text) = view.read_head(w, MAX_DIRINFO_BYTES) {
                lines.extend(text_lines(&text));
            }
        }
        lines.push(self.prompt());
        lines
    }

    /// Handle one command line. `gets_in_use` is how many gets of this session are pending
    /// or running.
    pub fn handle_line(&mut self, view: &dyn ShareView, line: &str, gets_in_use: usize) -> Reply {
        let line = line.trim();
        let (cmd, args) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        let mut reply = Reply::default();
        let cmd = cmd.to_ascii_lowercase();
        match cmd.as_str() {
            "" => {}
            "help" | "?" => reply.lines.extend(HELP.iter().map(|s| s.to_string())),
            "dir" => self.dir(view, args, false, &mut reply),
            "ls" => self.dir(view, args, true, &mut reply),
            "cd" | "cd.." => {
                let args = if cmd == "cd.." { ".." } else { args };
                self.cd(view, args, &mut reply)
            }
            "read" | "type" => self.read(view, args, &mut reply),
            "get" => self.get(view, args, gets_in_use, &mut reply),
            "exit" | "quit" | "bye" => {
                reply.lines.push("Goodbye!".into());
                reply.close = true;
                return reply;
            }
            _ => reply.lines.push(format!(
                "Unknown command '{}'. Type 'help' for commands.",
                line.split_whitespace().next().unwrap_or("")
            )),
        }
        reply.lines.push(self.prompt());
        reply
    }

    fn prompt(&self) -> String {
        format!("[{}]", self.cwd)
    }

    fn dir(&mut self, view: &dyn ShareView, args: &str, wide_only: bool, reply: &mut Reply) {
        let mut unit = Unit::Bytes;
        let mut wide = wide_only;
        let mut per_line = WIDE_DEFAULT;
        let mut target = None;
        for a in args.split_whitespace() {
            match a.to_ascii_lowercase().as_str() {
                "-b" => unit = Unit::Bytes,
                "-k" => unit = Unit::Kib,
                "/w" | "-w" => wide = true,
                flag if flag.starts_with('-') => {
                    let n = flag.trim_start_matches(['-', '#']);
                    match n.parse::<usize>() {
                        Ok(n) if (1..=20).contains(&n) => {
                            per_line = n;
                            wide = true;
                        }
                        _ => {
                            reply.lines.push(format!("Unknown option '{a}'. Usage: dir [-b|-k] [-#N] [/w]"));
                            return;
                        }
                    }
                }
                _ => target = Some(a),
            }
        }
        let dir = match target.map(|t| self.cwd.resolve(t)).unwrap_or(Ok(self.cwd.clone())) {
            Ok(d) => d,
            Err(e) => return reply.lines.push(path_error(e)),
        };
        let (dir, entries) = match view.stat(&dir) {
            Some((d, EntryKind::Dir)) => match view.list(&d) {
                Some(e) => (d, e),
                None => return reply.lines.push("Access denied".into()),
            },
            Some(_) => return reply.lines.push("Not a directory".into()),
            None => return reply.lines.push("No such file or directory".into()),
        };
        let mut dirs: Vec<&DirEntry> = entries.iter().filter(|e| e.kind == EntryKind::Dir).collect();
        let mut files: Vec<&DirEntry> = entries.iter().filter(|e| e.kind != EntryKind::Dir).collect();
        dirs.sort_by_key(|e| e.name.to_lowercase());
        files.sort_by_key(|e| e.name.to_lowercase());
        let (nd, nf) = (dirs.len(), files.len());
        reply.lines.push(format!("Listing of {dir}"));
        let shown = dirs.into_iter().chain(files).take(MAX_LIST_ENTRIES);
        if wide {
            let names: Vec<String> = shown
                .map(|e| match e.kind {
                    EntryKind::Dir => format!("{}{SEP}", e.name),
                    EntryKind::File { .. } => e.name.clone(),
                })
                .collect();
            for chunk in names.chunks(per_line) {
                reply.lines.push(format!("  {}", chunk.join("  ")));
            }
        } else {
            let width = entries.iter().map(|e| e.name.chars().count()).max().unwrap_or(0).min(60);
            for e in shown {
                match e.kind {
                    EntryKind::Dir => reply.lines.push(format!("  {}{SEP}", e.name)),
                    EntryKind::File { size } => {
                        reply.lines.push(format!("  {:<width$}  {}", e.name, unit.show(size), width = width))
                    }
                }
            }
        }
        if nd + nf > MAX_LIST_ENTRIES {
            reply.lines.push(format!("(only the first {MAX_LIST_ENTRIES} entries are shown)"));
        }
        reply.lines.push(format!("End of list ({nd} dirs, {nf} files)"));
    }

    fn cd(&mut self, view: &dyn ShareView, args: &str, reply: &mut Reply) {
        if args.is_empty() {
            return;
        }
        let target = match self.cwd.resolve(args) {
            Ok(t) => t,
            Err(e) => return reply.lines.push(path_error(e)),
        };
        match view.stat(&target) {
            Some((t, EntryKind::Dir)) => {
                if let Some(text) = view.read_head(&t.child("dirinfo.srv"), MAX_DIRINFO_BYTES) {
                    reply.lines.extend(text_lines(&text));
                }
                self.cwd = t;
            }
            Some(_) => reply.lines.push("Not a directory".into()),
            None => reply.lines.push("No such file or directory".into()),
        }
    }

    fn read(&mut self, view: &dyn ShareView, args: &str, reply: &mut Reply) {
        let mut per_page = READ_LINES_DEFAULT;
        let mut rest = args;
        if let Some(flag) = args.split_whitespace().next().filter(|f| f.starts_with('-')) {
            match flag[1..].parse::<usize>() {
                Ok(n) if (READ_LINES_RANGE.0..=READ_LINES_RANGE.1).contains(&n) => per_page = n,
                _ => {
                    return reply.lines.push(format!(
                        "Lines per page must be {} to {}. Usage: read [-numlines] <file>",
                        READ_LINES_RANGE.0, READ_LINES_RANGE.1
                    ))
                }
            }
            rest = args[flag.len()..].trim();
        }
        if rest.is_empty() {
            // `read` alone continues the current file.
            match self.pager.as_mut() {
                Some(p) => {
                    if args.starts_with('-') {
                        p.per_page = per_page;
                    }
                }
                None => return reply.lines.push("Usage: read [-numlines] <file>".into()),
            }
        } else {
            let path = match self.cwd.resolve(rest) {
                Ok(p) => p,
                Err(e) => return reply.lines.push(path_error(e)),
            };
            let (path, kind) = match view.stat(&path) {
                Some(x) => x,
                None => return reply.lines.push("No such file or directory".into()),
            };
            if kind == EntryKind::Dir {
                return reply.lines.push("Not a file".into());
            }
            let Some(text) = view.read_head(&path, MAX_READ_BYTES) else {
                return reply.lines.push("Access denied".into());
            };
            if text.contains(&0) {
                return reply.lines.push("Not a text file".into());
            }
            self.pager = Some(Pager {
                name: path.file_name().unwrap_or_default().to_owned(),
                lines: text_lines(&text),
                next: 0,
                per_page,
            });
        }
        let p = self.pager.as_mut().expect("set above");
        let end = (p.next + p.per_page).min(p.lines.len());
        reply.lines.extend(p.lines[p.next..end].iter().cloned());
        p.next = end;
        if p.next < p.lines.len() {
            reply.lines.push("-- more (type 'read' to continue) --".into());
        } else {
            reply.lines.push(format!("-- end of {} --", p.name));
            self.pager = None;
        }
    }

    fn get(&mut self, view: &dyn ShareView, args: &str, in_use: usize, reply: &mut Reply) {
        if args.is_empty() {
            return reply.lines.push("Usage: get <filename>".into());
        }
        let path = match self.cwd.resolve(args) {
            Ok(p) => p,
            Err(e) => return reply.lines.push(path_error(e)),
        };
        match view.stat(&path) {
            Some((path, EntryKind::File { size })) => {
                if in_use >= self.cfg.max_gets {
                    return reply.lines.push(format!("Too many gets (at most {} at a time)", self.cfg.max_gets));
                }
                let name = path.file_name().unwrap_or_default().to_owned();
                reply.lines.push(format!("Sending {name} ({size} bytes). Connect with 130 to receive it."));
                reply.get = Some(GetOrder { path, name, size });
            }
            Some(_) => reply.lines.push("Not a file".into()),
            None => reply.lines.push("No such file or directory".into()),
        }
    }
}

/// Parse the announcement of a `get` (`Sending NAME (SIZE bytes). …`), for clients.
pub fn parse_sending(line: &str) -> Option<(String, u64)> {
    let rest = line.strip_prefix("Sending ")?;
    let open = rest.rfind(" (")?;
    let name = &rest[..open];
    let size = rest[open + 2..].split(' ').next()?.parse().ok()?;
    Some((name.to_owned(), size))
}

/// Whether a line is the prompt that ends each command's output.
pub fn is_prompt(line: &str) -> bool {
    line.starts_with('[') && line.ends_with(']') && line[1..].starts_with(SEP)
}

/// How long a file server that prints no prompt may stay silent before the client takes
/// the output of its last command as complete and sends the next one. mIRC's file server
/// output is not ours and need not end with `[\dir]`; 1.5 s is longer than a server on
/// the same network takes to start answering, and short enough that a script of commands
/// does not crawl.
pub const QUIET_PERIOD: Duration = Duration::from_millis(1500);

/// What the client does next in a scripted fserve session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pace {
    /// Send this command line.
    Send(String),
    /// Everything was sent and the server has had its time: close the session.
    Close,
    /// A server that prints prompts stopped answering within the reply timeout.
    Stalled,
}

/// Paces the commands of a scripted session (`omnipeer dcc fserve --cmd …`), sans-IO.
///
/// Our own server ends the welcome and every command's output with a prompt; the next
/// command goes out when it comes. A server that has printed no prompt so far is paced
/// by [`QUIET_PERIOD`] instead: the next command goes out once the server has been silent
/// that long. After the commands, `exit` is sent; the session then ends when the server
/// closes, or once it has been silent for the reply timeout (output of the last commands
/// that comes late is still read, so no `get` is missed).
#[derive(Debug)]
pub struct CommandPacer {
    queue: std::collections::VecDeque<String>,
    quiet: Duration,
    reply_timeout: Duration,
    /// The server printed a prompt at least once: wait for prompts, not for silence.
    prompted: bool,
    /// `exit` was sent.
    exiting: bool,
    /// When the server last spoke, or the last command went out.
    last_activity: Instant,
}

impl CommandPacer {
    /// A pacer for `commands`, started when the server accepted the session (`111`).
    pub fn new(commands: Vec<String>, now: Instant, quiet: Duration, reply_timeout: Duration) -> Self {
        CommandPacer {
            queue: commands.into(),
            quiet,
            reply_timeout,
            prompted: false,
            exiting: false,
            last_activity: now,
        }
    }

    /// A line of server output arrived.
    pub fn on_line(&mut self, now: Instant, line: &str) -> Option<Pace> {
        self.last_activity = now;
        if is_prompt(line) {
            self.prompted = true;
            if !self.exiting {
                return Some(self.next(now));
            }
        }
        None
    }

    /// When to call [`CommandPacer::on_timeout`] unless a line comes first.
    pub fn deadline(&self) -> Instant {
        if self.prompted || self.exiting {
            self.last_activity + self.reply_timeout
        } else {
            self.last_activity + self.quiet
        }
    }

    /// Time passed without output.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Pace> {
        if now < self.deadline() {
            return None;
        }
        match (self.exiting, self.prompted) {
            (true, _) => Some(Pace::Close),
            (false, true) => Some(Pace::Stalled),
            (false, false) => Some(self.next(now)),
        }
    }

    fn next(&mut self, now: Instant) -> Pace {
        self.last_activity = now;
        match self.queue.pop_front() {
            Some(cmd) => Pace::Send(cmd),
            None => {
                self.exiting = true;
                Pace::Send("exit".to_owned())
            }
        }
    }
}

const HELP: &[&str] = &[
    "Commands:",
    "  cd <directory>          change directory (cd .. goes up, cd \\ goes home)",
    "  dir [-b|-k] [-#N] [/w]  list files and sizes (-k in KiB, /w wide, N per line)",
    "  ls [-b|-k] [-#N]        wide listing of names",
    "  read [-N] <file>        page a text file, N lines (5-50) at a time; 'read' continues",
    "  get <file>              have the file sent to you (your client fetches it with 130)",
    "  help                    this list",
    "  exit                    leave (also quit, bye)",
];

#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Kib,
}

impl Unit {
    fn show(self, size: u64) -> String {
        match self {
            Unit::Bytes => size.to_string(),
            Unit::Kib => format!("{}k", size.div_ceil(1024)),
        }
    }
}

fn strip_quotes(s: &str) -> &str {
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn path_error(e: PathError) -> String {
    match e {
        PathError::OutsideHome => "Access denied".into(),
        PathError::BadName => "No such file or directory".into(),
    }
}

fn text_lines(bytes: &[u8]) -> Vec<String> {
    crate::decode_text(bytes)
        .lines()
        .map(|l| l.trim_end_matches('\r').chars().filter(|c| !c.is_control() || *c == '\t').collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory share: path components -> file contents, or directory.
    struct Mem(BTreeMap<Vec<String>, Option<Vec<u8>>>);

    impl Mem {
        fn new(files: &[(&str, &str)]) -> Mem {
            let mut m = BTreeMap::new();
            m.insert(vec![], None);
            for (p, content) in files {
                let parts: Vec<String> = p.split('/').map(String::from).collect();
                for i in 1..parts.len() {
                    m.insert(parts[..i].to_vec(), None);
                }
                m.insert(parts, Some(content.as_bytes().to_vec()));
            }
            Mem(m)
        }
    }

    impl ShareView for Mem {
        fn stat(&self, path: &VPath) -> Option<(VPath, EntryKind)> {
            let (k, v) = self.0.iter().find(|(k, _)| {
                k.len() == path.0.len() && k.iter().zip(&path.0).all(|(a, b)| a.eq_ignore_ascii_case(b))
            })?;
            let kind = match v {
                None => EntryKind::Dir,
                Some(c) => EntryKind::File { size: c.len() as u64 },
            };
            Some((VPath(k.clone()), kind))
        }
        fn list(&self, dir: &VPath) -> Option<Vec<DirEntry>> {
            Some(
                self.0
                    .iter()
                    .filter(|(k, _)| k.len() == dir.0.len() + 1 && k.starts_with(&dir.0))
                    .map(|(k, v)| DirEntry {
                        name: k.last().unwrap().clone(),
                        kind: match v {
                            None => EntryKind::Dir,
                            Some(c) => EntryKind::File { size: c.len() as u64 },
                        },
                    })
                    .collect(),
            )
        }
        fn read_head(&self, file: &VPath, max: usize) -> Option<Vec<u8>> {
            let c = self.0.get(&file.0)?.as_ref()?;
            Some(c[..c.len().min(max)].to_vec())
        }
    }

    fn session() -> FserveSession {
        FserveSession::new(FserveConfig { server_nick: "bob".into(), max_gets: 2, welcome: None })
    }

    fn share() -> Mem {
        let long: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let long: &'static str = Box::leak(long.into_boxed_str());
        Mem::new(&[
            ("readme.txt", "hello\r\nworld\n"),
            ("music/song one.mp3", "0123456789"),
            ("music/dirinfo.srv", "Only the best music."),
            ("long.txt", long),
            ("bin.dat", "a\0b"),
        ])
    }

    #[test]
    fn welcome_and_prompt() {
        let s = session();
        assert_eq!(s.welcome(&share()), vec!["Welcome to bob's file server. Type 'help' for commands.", "[\\]"]);
    }

    #[test]
    fn dir_lists_dirs_then_files_with_sizes() {
        let mut s = session();
        let r = s.handle_line(&share(), "dir", 0);
        assert_eq!(
            r.lines,
            vec![
                "Listing of \\",
                "  music\\",
                "  bin.dat     3",
                "  long.txt    231",
                "  readme.txt  13",
                "End of list (1 dirs, 3 files)",
                "[\\]",
            ]
        );
        let r = s.handle_line(&share(), "ls -#2", 0);
        assert_eq!(r.lines[1], "  music\\  bin.dat");
        assert_eq!(r.lines[2], "  long.txt  readme.txt");
        let r = s.handle_line(&share(), "dir -k", 0);
        assert_eq!(r.lines[3], "  long.txt    1k");
    }

    #[test]
    fn cd_stays_inside_home_and_shows_dirinfo() {
        let mut s = session();
        let r = s.handle_line(&share(), "cd MUSIC", 0);
        assert_eq!(r.lines, vec!["Only the best music.", "[\\music]"]);
        let r = s.handle_line(&share(), "cd ../..", 0);
        assert_eq!(r.lines, vec!["Access denied", "[\\music]"]);
        let r = s.handle_line(&share(), "cd /etc", 0);
        assert_eq!(r.lines, vec!["No such file or directory", "[\\music]"]);
        let r = s.handle_line(&share(), "cd ..", 0);
        assert_eq!(r.lines, vec!["[\\]"]);
        let r = s.handle_line(&share(), "cd readme.txt", 0);
        assert_eq!(r.lines, vec!["Not a directory", "[\\]"]);
        s.handle_line(&share(), "cd music", 0);
        let r = s.handle_line(&share(), "CD..", 0);
        assert_eq!(r.lines, vec!["[\\]"]);
        let r = s.handle_line(&share(), "cd \\music", 0);
        assert_eq!(r.lines.last().unwrap(), "[\\music]");
    }

    #[test]
    fn read_pages_and_continues() {
        let mut s = session();
        let r = s.handle_line(&share(), "read -10 long.txt", 0);
        assert_eq!(r.lines.len(), 12);
        assert_eq!(r.lines[0], "line 1");
        assert_eq!(r.lines[10], "-- more (type 'read' to continue) --");
        let r = s.handle_line(&share(), "read", 0);
        assert_eq!(r.lines[0], "line 11");
        let r = s.handle_line(&share(), "read -50", 0);
        assert_eq!(r.lines[0], "line 21");
        assert_eq!(r.lines[10], "-- end of long.txt --");
        let r = s.handle_line(&share(), "read", 0);
        assert_eq!(r.lines[0], "Usage: read [-numlines] <file>");
        let r = s.handle_line(&share(), "read readme.txt", 0);
        assert_eq!(r.lines, vec!["hello", "world", "-- end of readme.txt --", "[\\]"]);
        let r = s.handle_line(&share(), "read -4 readme.txt", 0);
        assert!(r.lines[0].starts_with("Lines per page must be 5 to 50"));
        let r = s.handle_line(&share(), "read bin.dat", 0);
        assert_eq!(r.lines[0], "Not a text file");
        let r = s.handle_line(&share(), "read ../../etc/passwd", 0);
        assert_eq!(r.lines[0], "Access denied");
    }

    #[test]
    fn get_orders_files_and_counts_limits() {
        let mut s = session();
        let r = s.handle_line(&share(), "get music\\Song One.mp3", 0);
        assert_eq!(r.lines[0], "Sending song one.mp3 (10 bytes). Connect with 130 to receive it.");
        let order = r.get.unwrap();
        assert_eq!(order.path.components(), ["music", "song one.mp3"]);
        assert_eq!(parse_sending(&r.lines[0]), Some(("song one.mp3".into(), 10)));
        let r = s.handle_line(&share(), "get readme.txt", 2);
        assert_eq!(r.lines[0], "Too many gets (at most 2 at a time)");
        assert!(r.get.is_none());
        let r = s.handle_line(&share(), "get music", 0);
        assert_eq!(r.lines[0], "Not a file");
        let r = s.handle_line(&share(), "get ../secret", 0);
        assert_eq!(r.lines[0], "Access denied");
        assert!(r.get.is_none());
    }

    #[test]
    fn exit_help_unknown() {
        let mut s = session();
        let r = s.handle_line(&share(), "EXIT", 0);
        assert_eq!(r.lines, vec!["Goodbye!"]);
        assert!(r.close);
        let r = s.handle_line(&share(), "frobnicate now", 0);
        assert_eq!(r.lines[0], "Unknown command 'frobnicate'. Type 'help' for commands.");
        assert!(!r.close);
        let r = s.handle_line(&share(), "help", 0);
        assert!(r.lines.iter().any(|l| l.contains("get <file>")));
        assert!(is_prompt(r.lines.last().unwrap()));
    }

    #[test]
    fn resolve_rules() {
        let cwd = VPath::root().resolve("a/b").unwrap();
        assert_eq!(cwd.resolve("..").unwrap().components(), ["a"]);
        assert_eq!(cwd.resolve("\\c").unwrap().components(), ["c"]);
        assert_eq!(cwd.resolve("\"x y\"").unwrap().components(), ["a", "b", "x y"]);
        assert_eq!(cwd.resolve("../../..").unwrap_err(), PathError::OutsideHome);
        assert_eq!(cwd.resolve("a\0").unwrap_err(), PathError::BadName);
        assert_eq!(cwd.to_string(), "\\a\\b");
    }

    #[test]
    fn pacer_follows_prompts_when_the_server_prints_them() {
        let t0 = Instant::now();
        let q = Duration::from_millis(1500);
        let r = Duration::from_secs(30);
        let mut p = CommandPacer::new(vec!["dir".into(), "get a".into()], t0, q, r);
        assert_eq!(p.on_line(t0, "Welcome"), None);
        assert_eq!(p.on_line(t0, "[\\]"), Some(Pace::Send("dir".into())));
        // A prompting server is waited for, not paced by silence.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(p.deadline(), t0 + r);
        assert_eq!(p.on_timeout(t1), None);
        assert_eq!(p.on_line(t1, "[\\]"), Some(Pace::Send("get a".into())));
        assert_eq!(p.on_line(t1, "[\\]"), Some(Pace::Send("exit".into())));
        assert_eq!(p.on_line(t1, "[\\]"), None, "nothing after exit");
        assert_eq!(p.on_timeout(t1 + r), Some(Pace::Close));
        // A prompting server that goes silent mid-script has stalled.
        let mut p = CommandPacer::new(vec!["dir".into()], t0, q, r);
        assert_eq!(p.on_line(t0, "[\\]"), Some(Pace::Send("dir".into())));
        assert_eq!(p.on_timeout(t0 + r), Some(Pace::Stalled));
    }

    #[test]
    fn pacer_falls_back_to_a_quiet_period_without_prompts() {
        let t0 = Instant::now();
        let q = Duration::from_millis(1500);
        let r = Duration::from_secs(30);
        let mut p = CommandPacer::new(vec!["dir".into(), "get a".into()], t0, q, r);
        assert_eq!(p.on_line(t0 + Duration::from_millis(100), "Welcome"), None);
        // Output pushes the quiet period back.
        assert_eq!(p.deadline(), t0 + Duration::from_millis(1600));
        assert_eq!(p.on_timeout(t0 + Duration::from_millis(1599)), None);
        let t1 = t0 + Duration::from_millis(1600);
        assert_eq!(p.on_timeout(t1), Some(Pace::Send("dir".into())));
        assert_eq!(p.deadline(), t1 + q);
        assert_eq!(p.on_timeout(t1 + q), Some(Pace::Send("get a".into())));
        assert_eq!(p.on_timeout(t1 + q * 2), Some(Pace::Send("exit".into())));
        // After `exit`, late output is still waited for, up to the reply timeout.
        assert_eq!(p.on_timeout(t1 + q * 3), None);
        assert_eq!(p.on_line(t1 + q * 3, "Sending a (5 bytes). Connect with 130 to receive it."), None);
        assert_eq!(p.on_timeout(t1 + q * 3 + r), Some(Pace::Close));
    }
}
