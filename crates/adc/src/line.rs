//! PROVISIONAL: a minimal view of ADC lines used by the client until the codec
//! (`crate::message`, helper adc-hub) is merged; replaced by it then.

/// One ADC message split into its header and unescaped parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The type letter (B, C, D, E, F, H, I, U).
    pub kind: u8,
    /// The three-letter command.
    pub cmd: [u8; 3],
    /// The sender's SID (B, D, E, F).
    pub sid: Option<String>,
    /// The target's SID (D, E).
    pub target: Option<String>,
    /// The sender's CID (U).
    pub cid: Option<String>,
    /// The parameters after the header, unescaped.
    pub params: Vec<String>,
}

/// Unescape one ADC parameter (`\s` space, `\n` newline, `\\` backslash).
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next()? {
                's' => out.push(' '),
                'n' => out.push('\n'),
                '\\' => out.push('\\'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Escape one ADC parameter.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

impl Msg {
    /// Parse one line (without its newline).
    pub fn parse(line: &str) -> Option<Msg> {
        let mut words = line.split(' ');
        let head = words.next()?;
        let b = head.as_bytes();
        if b.len() != 4 {
            return None;
        }
        let kind = b[0];
        let cmd = [b[1], b[2], b[3]];
        let mut m = Msg { kind, cmd, sid: None, target: None, cid: None, params: Vec::new() };
        match kind {
            b'B' | b'F' => m.sid = Some(words.next()?.to_owned()),
            b'D' | b'E' => {
                m.sid = Some(words.next()?.to_owned());
                m.target = Some(words.next()?.to_owned());
            }
            b'U' => m.cid = Some(words.next()?.to_owned()),
            b'C' | b'H' | b'I' => {}
            _ => return None,
        }
        for w in words {
            m.params.push(unescape(w)?);
        }
        Some(m)
    }

    /// The command as text.
    pub fn command(&self) -> &str {
        std::str::from_utf8(&self.cmd).unwrap_or("")
    }

    /// The first value of the named parameter `code` among the parameters after `skip`.
    pub fn named(&self, skip: usize, code: &str) -> Option<&str> {
        self.params.iter().skip(skip).find_map(|p| p.strip_prefix(code))
    }

    /// Every value of the named parameter `code` after `skip`.
    pub fn named_all<'a>(&'a self, skip: usize, code: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params.iter().skip(skip).filter_map(move |p| p.strip_prefix(code))
    }
}

/// One line: `header` as given, each of `params` escaped, a newline.
pub fn line(header: &str, params: &[String]) -> Vec<u8> {
    let mut s = String::from(header);
    for p in params {
        s.push(' ');
        s.push_str(&escape(p));
    }
    s.push('\n');
    s.into_bytes()
}
