//! `fserve::FserveSession::handle_line` over an in-memory share.
//!
//! Header: how the share view matches names (case-insensitively like a Windows share, or
//! exactly), the session's `max_gets`, which welcome file to use. The rest is command text,
//! split into lines as the runtime does (`\n`, one `\r` stripped, `decode_text`).
//!
//! Checked after every line:
//! - every `GetOrder` names a file that exists in the tree (stored spelling), with its
//!   size, inside the home directory: no `.`, `..`, empty or separator-bearing component,
//!   and only when fewer than `max_gets` gets are in use; its announcement parses back;
//! - the session's cwd always exists in the tree and is a directory;
//! - reply lines are single protocol lines (no `\r`/`\n`), end with the prompt for the
//!   cwd unless the session closes, and `exit` closes with exactly `Goodbye!`.
#![no_main]

mod common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_dcc::fserve::{
    is_prompt, parse_sending, DirEntry, EntryKind, FserveConfig, FserveSession, ShareView, VPath,
};
use std::collections::BTreeMap;

/// A node of the tree: a directory or a file's contents.
#[derive(Debug)]
enum Node {
    Dir,
    File(Vec<u8>),
}

struct Mem {
    nodes: BTreeMap<Vec<String>, Node>,
    case_insensitive: bool,
}

fn p(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').map(String::from).collect()
    }
}

impl Mem {
    fn new(case_insensitive: bool) -> Mem {
        let long: String = (1..=75).map(|i| format!("line {i}\r\n")).collect();
        let mut nodes = BTreeMap::new();
        for d in
            ["", "music", "music/Live Sets", "music/Live Sets/deep", "empty", "locked", "Docs", "...", "ünïcode dir"]
        {
            nodes.insert(p(d), Node::Dir);
        }
        let files: &[(&str, &[u8])] = &[
            ("readme.txt", b"hello\r\nworld\n"),
            ("README.TXT.bak", b"old"),
            ("long.txt", long.as_bytes()),
            ("bin.dat", b"a\0b"),
            ("ctl.txt", b"bell\x07 esc\x1b[31m cr\rmid\n\xe9t\xe9\n"),
            ("empty.txt", b""),
            ("secret.bin", b"unreadable"),
            ("song (live).mp3", b"0123456789"),
            ("music/dirinfo.srv", b"Only the best music.\r\nReally."),
            ("music/song one.mp3", b"0123456789abcdef"),
            ("music/Live Sets/set 1.flac", &[1, 2, 3]),
            ("music/Live Sets/deep/x", b"x"),
            ("Docs/dirinfo.srv", b"\0binary dirinfo"),
            ("Docs/a b c.pdf", b"%PDF"),
            ("locked/inside.txt", b"cannot list me"),
            ("..../file", b"dots"),
            ("ünïcode dir/fïle.txt", "ünï\n".as_bytes()),
        ];
        for (f, content) in files {
            let parts = p(f);
            for i in 1..parts.len() {
                nodes.entry(parts[..i].to_vec()).or_insert(Node::Dir);
            }
            nodes.insert(parts, Node::File(content.to_vec()));
        }
        Mem { nodes, case_insensitive }
    }

    fn same(&self, a: &str, b: &str) -> bool {
        if self.case_insensitive {
            a.to_lowercase() == b.to_lowercase()
        } else {
            a == b
        }
    }

    fn find(&self, path: &VPath) -> Option<(&Vec<String>, &Node)> {
        let c = path.components();
        self.nodes.iter().find(|(k, _)| k.len() == c.len() && k.iter().zip(c).all(|(a, b)| self.same(a, b)))
    }

    fn kind(n: &Node) -> EntryKind {
        match n {
            Node::Dir => EntryKind::Dir,
            Node::File(c) => EntryKind::File { size: c.len() as u64 },
        }
    }
}

impl ShareView for Mem {
    fn stat(&self, path: &VPath) -> Option<(VPath, EntryKind)> {
        let (k, n) = self.find(path)?;
        Some((VPath::from_components(k.clone()), Mem::kind(n)))
    }

    fn list(&self, dir: &VPath) -> Option<Vec<DirEntry>> {
        let (k, n) = self.find(dir)?;
        if !matches!(n, Node::Dir) || k.first().map(String::as_str) == Some("locked") {
            return None;
        }
        Some(
            self.nodes
                .iter()
                .filter(|(c, _)| c.len() == k.len() + 1 && c.starts_with(k))
                .map(|(c, n)| DirEntry { name: c.last().unwrap().clone(), kind: Mem::kind(n) })
                .collect(),
        )
    }

    fn read_head(&self, file: &VPath, max: usize) -> Option<Vec<u8>> {
        let (k, n) = self.find(file)?;
        match n {
            Node::File(_) if k.last().map(String::as_str) == Some("secret.bin") => None,
            Node::File(c) => Some(c[..c.len().min(max)].to_vec()),
            Node::Dir => None,
        }
    }
}

fn check_lines(lines: &[String]) {
    for l in lines {
        assert!(!l.contains(['\n', '\r']), "reply line {l:?} is not one protocol line");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let view = Mem::new(flags & 1 != 0);
    let max_gets = (flags >> 1) as usize % 4;
    let welcome = match (flags >> 3) % 4 {
        0 => None,
        1 => Some(VPath::from_components(p("readme.txt"))),
        2 => Some(VPath::from_components(p("no/such"))),
        _ => Some(VPath::from_components(p("ctl.txt"))),
    };
    let mut session = FserveSession::new(FserveConfig { server_nick: "bob".into(), max_gets, welcome });
    let w = session.welcome(&view);
    check_lines(&w);
    assert!(is_prompt(w.last().expect("welcome has a prompt")));

    let mut gets_in_use = (flags >> 5) as usize % 4;
    let text = inp.rest();
    for raw in text.split(|&b| b == b'\n').take(512) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = omnipeer_dcc::decode_text(raw);
        let cwd_before = session.cwd().clone();
        let reply = session.handle_line(&view, &line, gets_in_use);
        check_lines(&reply.lines);

        if let Some(order) = &reply.get {
            assert!(gets_in_use < max_gets, "get ordered with {gets_in_use}/{max_gets} in use");
            let comps = order.path.components();
            assert!(!comps.is_empty(), "the home directory was ordered");
            for c in comps {
                assert!(
                    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\']),
                    "component {c:?} in ordered path {comps:?}"
                );
            }
            match view.nodes.get(comps) {
                Some(Node::File(content)) => assert_eq!(order.size, content.len() as u64),
                other => panic!("ordered {comps:?}, which is {other:?} in the tree"),
            }
            assert_eq!(Some(order.name.as_str()), order.path.file_name());
            assert_eq!(
                parse_sending(&reply.lines[0]),
                Some((order.name.clone(), order.size)),
                "announcement {:?} does not parse back",
                reply.lines[0]
            );
            gets_in_use += 1;
        } else if gets_in_use > 0 && raw.first() == Some(&b'!') {
            // Lines starting with `!` (an unknown command) stand for a finished get.
            gets_in_use -= 1;
        }

        let cwd = session.cwd();
        assert!(
            matches!(view.nodes.get(cwd.components()), Some(Node::Dir)),
            "cwd {cwd:?} is not a directory of the tree (line {line:?})"
        );
        if cwd != &cwd_before {
            let cmd = line.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            assert!(cmd == "cd" || cmd == "cd..", "cwd changed by {line:?}");
        }

        if reply.close {
            assert_eq!(reply.lines, vec!["Goodbye!".to_string()]);
            assert!(reply.get.is_none());
            break;
        }
        let last = reply.lines.last().expect("a reply ends with the prompt");
        assert_eq!(last, &format!("[{cwd}]"));
        assert!(is_prompt(last), "{last:?} is not recognised as a prompt");
    }
});
