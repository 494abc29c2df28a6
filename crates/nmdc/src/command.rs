//! Every NMDC command the hub and the clients use, parsed and encoded byte-exactly.
//!
//! [`Command::parse`] takes one command without its `|` (as returned by
//! [`crate::CommandReader`]); [`Command::encode`] gives it back with the `|`. For every line a
//! real client sends, `encode(parse(line)) == line` byte for byte; commands this crate does
//! not know become [`Command::Unknown`] and are re-sent verbatim.
//!
//! Text fields are Latin-1 strings (see [`crate::text`]). Free text (chat, `$To`,
//! descriptions, e-mail, hub name and topic, `$Error`, search patterns, share paths) is
//! stored unescaped and escaped again on encoding ([`crate::framing::escape`]). Nicks,
//! addresses and numbers are stored as sent. Whatever a caller puts in a field, `encode`
//! never emits a `|` inside a command.

use crate::framing::{escape, unescape};
use crate::limits::{MAX_LIST_COMMAND, MAX_LIST_ITEMS, MAX_LOCK, MAX_NICK, MAX_NUMBER_DIGITS, MAX_PATH, MAX_SUPPORTS};
use crate::text;
use crate::tth::Tth;
use thiserror::Error;

/// Why bytes are not a valid command.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing at all.
    #[error("empty command")]
    Empty,
    /// Longer than [`MAX_LIST_COMMAND`].
    #[error("command longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// A required field is missing or empty.
    #[error("{command}: missing {field}")]
    Missing {
        /// The command, e.g. `$MyINFO`.
        command: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A field has the wrong form (not a number, bad address, bad TTH, ...).
    #[error("{command}: invalid {field}")]
    Invalid {
        /// The command.
        command: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A field or list is longer than its limit.
    #[error("{command}: {field} longer than {limit}")]
    FieldTooLong {
        /// The command.
        command: &'static str,
        /// Which field.
        field: &'static str,
        /// The limit (bytes or items).
        limit: usize,
    },
}

type Result<T> = std::result::Result<T, ParseError>;

/// One NMDC command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `$Lock <lock> Pk=<pk>` — `lock` as raw bytes; `pk` is `None` when ` Pk=` is absent.
    Lock {
        /// The bytes the key is computed from (see [`crate::lock`]).
        lock: Vec<u8>,
        /// Free-form client or hub name (ncdc requires it non-empty).
        pk: Option<String>,
    },
    /// `$Key <key>` — the key exactly as sent, `/%DCNnnn%/` escapes included; raw bytes.
    Key(Vec<u8>),
    /// `$Supports <f1> <f2> …` — EiskaltDC++ ends the list with a space, kept in
    /// `trailing_space`.
    Supports {
        /// Feature names (`NoHello`, `ADCGet`, `TTHL`, ...).
        features: Vec<String>,
        /// Whether a space follows the last feature.
        trailing_space: bool,
    },
    /// `$ValidateNick <nick>`.
    ValidateNick(String),
    /// `$GetPass` (or `$GetPass <base32 salt>` with the SaltPass extension).
    GetPass {
        /// The SaltPass salt, if any.
        salt: Option<String>,
    },
    /// `$MyPass <password>`.
    MyPass(String),
    /// `$BadPass`.
    BadPass,
    /// `$Hello <nick>`.
    Hello(String),
    /// `$Version <version>`, e.g. `1,0091`.
    Version(String),
    /// `$MyINFO $ALL …` (see [`MyInfo`]).
    MyInfo(MyInfo),
    /// `$GetNickList`.
    GetNickList,
    /// `$NickList <a>$$<b>$$`.
    NickList(Vec<String>),
    /// `$OpList <a>$$<b>$$` (empty list: `$OpList `).
    OpList(Vec<String>),
    /// `$UserIP <nick> <ip>$$<nick2> <ip2>$$` — an empty ip is a request (`<nick>$$`).
    UserIp(Vec<(String, String)>),
    /// `$HubName <name>`.
    HubName(String),
    /// `$HubTopic <topic>`.
    HubTopic(String),
    /// `$HubIsFull`.
    HubIsFull,
    /// `$ValidateDenide <nick>` (sic).
    ValidateDenide(String),
    /// `$LogedIn <nick>` (sic), sent to operators.
    LogedIn(String),
    /// `$GetINFO <other> <me>`.
    GetInfo {
        /// Whose `$MyINFO` is wanted.
        other: String,
        /// Who asks.
        me: String,
    },
    /// `$To: <to> From: <from> $<<speaker>> <text>` — a private message. `speaker` is
    /// normally `from` (chat-room bots put the real speaker there); `None` when the body
    /// after `$` has no `<nick> ` prefix, in which case `text` is all of it.
    To {
        /// Recipient.
        to: String,
        /// Sender (or the chat room).
        from: String,
        /// The nick shown in the message.
        speaker: Option<String>,
        /// The message, unescaped.
        text: String,
    },
    /// `<nick> text` — main chat (no `$`).
    Chat {
        /// The speaker.
        nick: String,
        /// The message, unescaped.
        text: String,
    },
    /// A line that neither starts with `$` nor is `<nick> text` (hub MOTD lines). Unescaped.
    Text(String),
    /// `$ConnectToMe <target> <host>:<port>[S]` — `S` asks for TLS.
    ConnectToMe {
        /// Who should connect.
        target: String,
        /// Where to connect to (ncdc requires a numeric IP).
        host: String,
        /// TCP port.
        port: u16,
        /// The `S` suffix.
        tls: bool,
    },
    /// `$RevConnectToMe <from> <target>`.
    RevConnectToMe {
        /// The passive user asking.
        from: String,
        /// Who should send `$ConnectToMe` back.
        target: String,
    },
    /// `$Search <ip>:<port> <query>` or `$Search Hub:<nick> <query>`.
    Search {
        /// Where results go.
        origin: SearchOrigin,
        /// What is searched.
        query: SearchQuery,
    },
    /// `$SR …` (see [`SearchResult`]).
    Sr(SearchResult),
    /// `$Quit <nick>`.
    Quit(String),
    /// `$Kick <nick>`.
    Kick(String),
    /// `$OpForceMove $Who:<nick>$Where:<address>$Msg:<reason>`.
    OpForceMove {
        /// Who is moved.
        who: String,
        /// Where to.
        address: String,
        /// Why (unescaped).
        message: String,
    },
    /// `$ForceMove <address>` — redirect.
    ForceMove(String),
    /// `$MyNick <nick>` (client to client).
    MyNick(String),
    /// `$Direction <Upload|Download> <number>`.
    Direction {
        /// What the sender wants to do.
        direction: Direction,
        /// Tie-breaker: higher downloads first.
        number: u32,
    },
    /// `$Get <path>$<offset>` — `offset` is 1-based as on the wire; see [`Command::get`].
    Get {
        /// Share path with `\` separators, unescaped.
        path: String,
        /// First byte wanted, counting from 1.
        offset: u64,
    },
    /// `$FileLength <bytes>`.
    FileLength(u64),
    /// `$Send`.
    Send,
    /// `$ADCGET <type> <identifier> <start> <bytes>[ ZL1]`.
    AdcGet(AdcRequest),
    /// `$ADCSND <type> <identifier> <start> <bytes>[ ZL1]`, followed by raw bytes.
    AdcSnd(AdcRequest),
    /// `$MaxedOut` — no free slot. DC++-family uploaders (EiskaltDC++) add the
    /// requester's place in their upload queue, `$MaxedOut 3`; ncdc sends it bare and
    /// matches only the prefix, so both forms are understood everywhere.
    MaxedOut(Option<u32>),
    /// `$Error <message>`.
    Error(String),
    /// Any other command, kept verbatim (`raw` is the whole command without `|`).
    Unknown {
        /// The name after `$` up to the first space (empty for lines without `$`).
        name: String,
        /// The command's bytes.
        raw: Vec<u8>,
    },
}

/// `Upload` or `Download` in `$Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The sender wants to upload (or has nothing to download).
    Upload,
    /// The sender wants to download.
    Download,
}

impl Direction {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "Upload",
            Direction::Download => "Download",
        }
    }
}

/// Who downloads on a client-client connection, once both `$Direction`s are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectionOutcome {
    /// We download, the peer uploads.
    WeDownload,
    /// The peer downloads, we upload.
    TheyDownload,
    /// Both want to download with the same number: close the connection.
    Tie,
    /// Neither wants to download.
    Nobody,
}

/// The direction rule (docs/protocols/nmdc.md#cc-handshake): both `Download` → the higher number downloads, equal numbers
/// → close; exactly one `Download` → that side downloads.
pub fn resolve_direction(ours: Direction, our_number: u32, theirs: Direction, their_number: u32) -> DirectionOutcome {
    use Direction::*;
    match (ours, theirs) {
        (Download, Download) => match our_number.cmp(&their_number) {
            std::cmp::Ordering::Greater => DirectionOutcome::WeDownload,
            std::cmp::Ordering::Less => DirectionOutcome::TheyDownload,
            std::cmp::Ordering::Equal => DirectionOutcome::Tie,
        },
        (Download, Upload) => DirectionOutcome::WeDownload,
        (Upload, Download) => DirectionOutcome::TheyDownload,
        (Upload, Upload) => DirectionOutcome::Nobody,
    }
}

/// `$MyINFO $ALL <nick> <description><tag>$ $<connection><flag>$<email>$<share>$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyInfo {
    /// The user's nick.
    pub nick: String,
    /// Free text before the tag, unescaped.
    pub description: String,
    /// The `<Client V:…,M:…,H:…,S:…>` tag when the description ends with one this crate
    /// can re-encode byte-exactly; otherwise it stays in `description`.
    pub tag: Option<Tag>,
    /// Connection speed text (`100`, `LAN(T1)`, ...).
    pub connection: String,
    /// Status flag byte: 0x01 normal, 0x02 away, 0x04 server, 0x08 fireball, 0x10 TLS,
    /// 0x20 TLS upload, 0x40 IPv4, 0x80 IPv6. With an empty connection, 0 means "no byte".
    /// Real clients always set 0x01; 0x24 (`$`) and 0x7C (`|`) cannot be sent and get 0x01
    /// added when encoding.
    pub flag: u8,
    /// E-mail, unescaped.
    pub email: String,
    /// Shared bytes.
    pub share_size: u64,
}

/// Flag bits of [`MyInfo::flag`].
pub mod flags {
    /// Normal.
    pub const NORMAL: u8 = 0x01;
    /// Away.
    pub const AWAY: u8 = 0x02;
    /// Server (long uptime).
    pub const SERVER: u8 = 0x04;
    /// Fireball (fast uploads).
    pub const FIREBALL: u8 = 0x08;
    /// Supports TLS.
    pub const TLS: u8 = 0x10;
    /// TLS upload.
    pub const TLS_UPLOAD: u8 = 0x20;
    /// Has IPv4.
    pub const IPV4: u8 = 0x40;
    /// Has IPv6.
    pub const IPV6: u8 = 0x80;
}

/// `<Client V:<ver>,M:<A|P|5>,H:<normal>/<registered>/<op>,S:<slots>[,O:<n>]…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Client name (`ncdc`, `EiskaltDC++`, `++` for DC++).
    pub client: String,
    /// `V:` version.
    pub version: Option<String>,
    /// `M:` mode.
    pub mode: Option<Mode>,
    /// `H:` hub counts.
    pub hubs: Option<HubCounts>,
    /// `S:` upload slots.
    pub slots: Option<u32>,
    /// Any further `key:value` fields (`O:`, `L:`, `B:`, ...), in order, after `S:`.
    pub extra: Vec<(String, String)>,
}

/// Connection mode in a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `A`: accepts incoming connections.
    Active,
    /// `P`: passive.
    Passive,
    /// `5`: through SOCKS5.
    Socks5,
}

impl Mode {
    fn as_char(self) -> char {
        match self {
            Mode::Active => 'A',
            Mode::Passive => 'P',
            Mode::Socks5 => '5',
        }
    }
}

/// `H:<normal>/<registered>/<op>`: hubs where the user is a normal user, registered, op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HubCounts {
    /// Hubs as unregistered user.
    pub normal: u32,
    /// Hubs as registered user.
    pub registered: u32,
    /// Hubs as operator.
    pub op: u32,
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut fields: Vec<String> = Vec::new();
        if let Some(v) = &self.version {
            fields.push(format!("V:{v}"));
        }
        if let Some(m) = self.mode {
            fields.push(format!("M:{}", m.as_char()));
        }
        if let Some(h) = self.hubs {
            fields.push(format!("H:{}/{}/{}", h.normal, h.registered, h.op));
        }
        if let Some(s) = self.slots {
            fields.push(format!("S:{s}"));
        }
        for (k, v) in &self.extra {
            fields.push(format!("{k}:{v}"));
        }
        if fields.is_empty() {
            write!(f, "<{}>", self.client)
        } else {
            write!(f, "<{} {}>", self.client, fields.join(","))
        }
    }
}

impl Tag {
    /// Parse `<…>` (brackets included). `None` unless it is a tag that re-encodes to exactly
    /// the same text.
    pub fn parse(text: &str) -> Option<Tag> {
        let inner = text.strip_prefix('<')?.strip_suffix('>')?;
        let colon = inner.find(':')?;
        let space = inner[..colon].rfind(' ')?;
        let client = &inner[..space];
        if client.is_empty() || client.contains(['<', '>']) {
            return None;
        }
        let mut tag =
            Tag { client: client.to_owned(), version: None, mode: None, hubs: None, slots: None, extra: Vec::new() };
        for field in inner[space + 1..].split(',') {
            let (k, v) = field.split_once(':')?;
            if k.is_empty() {
                return None;
            }
            match k {
                "V" if tag.version.is_none() && tag.extra.is_empty() => tag.version = Some(v.to_owned()),
                "M" if tag.mode.is_none() && tag.extra.is_empty() => {
                    tag.mode = Some(match v {
                        "A" => Mode::Active,
                        "P" => Mode::Passive,
                        "5" => Mode::Socks5,
                        _ => return None,
                    })
                }
                "H" if tag.hubs.is_none() && tag.extra.is_empty() => {
                    let mut it = v.split('/');
                    let mut n = || -> Option<u32> { small_number(it.next()?) };
                    let h = HubCounts { normal: n()?, registered: n()?, op: n()? };
                    if it.next().is_some() {
                        return None;
                    }
                    tag.hubs = Some(h);
                }
                "S" if tag.slots.is_none() && tag.extra.is_empty() => tag.slots = Some(small_number(v)?),
                _ => tag.extra.push((k.to_owned(), v.to_owned())),
            }
        }
        (tag.to_string() == text).then_some(tag)
    }
}

fn small_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Where the results of a `$Search` go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SearchOrigin {
    /// `<ip>:<udpport>`: an active searcher, answered by UDP.
    Active {
        /// Host (an IP in practice).
        host: String,
        /// UDP port.
        port: u16,
    },
    /// `Hub:<nick>`: a passive searcher, answered through the hub.
    Passive {
        /// The searcher's nick.
        nick: String,
    },
}

/// The `$Search` type number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// 1: anything.
    Any,
    /// 2: audio.
    Audio,
    /// 3: compressed archives.
    Compressed,
    /// 4: documents.
    Document,
    /// 5: executables.
    Executable,
    /// 6: pictures.
    Picture,
    /// 7: video.
    Video,
    /// 8: folders only.
    Folder,
    /// 9: by TTH (pattern `TTH:<39 base32>`).
    Tth,
    /// 10: disk images.
    DiskImage,
    /// 11: comics.
    Comics,
    /// 12: books.
    Books,
    /// 13: magnet.
    Magnet,
}

impl FileType {
    /// The wire number 1..=13.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// From the wire number.
    pub fn from_number(n: u8) -> Option<FileType> {
        use FileType::*;
        Some(match n {
            1 => Any,
            2 => Audio,
            3 => Compressed,
            4 => Document,
            5 => Executable,
            6 => Picture,
            7 => Video,
            8 => Folder,
            9 => Tth,
            10 => DiskImage,
            11 => Comics,
            12 => Books,
            13 => Magnet,
            _ => return None,
        })
    }
}

/// `<sizerestricted T|F>?<ismax T|F>?<size>?<type>?<pattern>` — spaces in the pattern are
/// sent as `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Whether `size` applies.
    pub size_restricted: bool,
    /// `size` is a maximum (else a minimum).
    pub is_max: bool,
    /// The size bound in bytes.
    pub size: u64,
    /// The type number.
    pub file_type: FileType,
    /// The pattern with spaces (not `$`), unescaped; `TTH:<root>` for TTH searches.
    pub pattern: String,
}

impl SearchQuery {
    /// A plain text search of any type, no size bound.
    pub fn text(pattern: &str) -> SearchQuery {
        SearchQuery {
            size_restricted: false,
            is_max: true,
            size: 0,
            file_type: FileType::Any,
            pattern: pattern.to_owned(),
        }
    }

    /// A TTH search (`F?T?0?9?TTH:<root>`).
    pub fn tth(root: &Tth) -> SearchQuery {
        SearchQuery {
            size_restricted: false,
            is_max: true,
            size: 0,
            file_type: FileType::Tth,
            pattern: format!("TTH:{root}"),
        }
    }

    /// The root searched for, for a type-9 query with a valid `TTH:` pattern.
    pub fn tth_root(&self) -> Option<Tth> {
        if self.file_type != FileType::Tth {
            return None;
        }
        Tth::from_base32(self.pattern.strip_prefix("TTH:")?).ok()
    }

    /// Whether a file of `size` bytes passes the size bound (inclusive).
    pub fn size_matches(&self, size: u64) -> bool {
        if !self.size_restricted {
            true
        } else if self.is_max {
            size <= self.size
        } else {
            size >= self.size
        }
    }

    fn encode_into(&self, out: &mut String) {
        let tf = |b: bool| if b { 'T' } else { 'F' };
        out.push(tf(self.size_restricted));
        out.push('?');
        out.push(tf(self.is_max));
        out.push('?');
        out.push_str(&self.size.to_string());
        out.push('?');
        out.push_str(&self.file_type.number().to_string());
        out.push('?');
        out.push_str(&escape(&self.pattern).replace(' ', "$"));
    }

    fn parse(s: &str) -> Result<SearchQuery> {
        const C: &str = "$Search";
        let mut it = s.splitn(5, '?');
        let tf = |v: Option<&str>, field| match v {
            Some("T") => Ok(true),
            Some("F") => Ok(false),
            Some(_) => Err(ParseError::Invalid { command: C, field }),
            None => Err(ParseError::Missing { command: C, field }),
        };
        let size_restricted = tf(it.next(), "size restriction")?;
        let is_max = tf(it.next(), "is-max")?;
        let size = number(C, "size", it.next().unwrap_or(""))?;
        let t = it.next().ok_or(ParseError::Missing { command: C, field: "type" })?;
        let file_type = small_number(t)
            .and_then(|n| u8::try_from(n).ok())
            .and_then(FileType::from_number)
            .ok_or(ParseError::Invalid { command: C, field: "type" })?;
        let pattern = it.next().ok_or(ParseError::Missing { command: C, field: "pattern" })?;
        let pattern = unescape(&pattern.replace('$', " "));
        Ok(SearchQuery { size_restricted, is_max, size, file_type, pattern })
    }
}

/// What follows the slots in a `$SR`: the TTH of a file, or (directories and old clients)
/// the hub name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultTag {
    /// `TTH:<root>`.
    Tth(Tth),
    /// The hub name, unescaped.
    HubName(String),
}

/// A search result:
///
/// ```text
/// $SR <nick> <path>\x05<size> <free>/<total>\x05TTH:<root> (<hubip>:<hubport>)[\x05<target>]   file
/// $SR <nick> <dirpath> <free>/<total>\x05<hubname> (<hubip>:<hubport>)[\x05<target>]          directory
/// ```
///
/// The `\x05<target>` suffix is present only on results a passive user's client sends
/// through the hub; the hub strips it ([`SearchResult::split_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// Who has the file.
    pub nick: String,
    /// Share path with `\` separators, unescaped.
    pub path: String,
    /// File size; `None` for a directory.
    pub size: Option<u64>,
    /// Free upload slots.
    pub free_slots: u32,
    /// All upload slots.
    pub total_slots: u32,
    /// TTH or hub name.
    pub tag: ResultTag,
    /// The hub's `ip:port` as the responder sees it.
    pub hub_addr: String,
    /// The passive searcher this result is for.
    pub target: Option<String>,
}

impl SearchResult {
    /// Whether this is a directory result.
    pub fn is_dir(&self) -> bool {
        self.size.is_none()
    }

    /// The result without its target, and the target (what a hub does before relaying).
    pub fn split_target(mut self) -> (SearchResult, Option<String>) {
        let t = self.target.take();
        (self, t)
    }

    /// The result addressed to a passive searcher.
    pub fn with_target(mut self, target: &str) -> SearchResult {
        self.target = Some(target.to_owned());
        self
    }

    /// The root, for a file result with a TTH.
    pub fn tth(&self) -> Option<Tth> {
        match &self.tag {
            ResultTag::Tth(t) => Some(*t),
            ResultTag::HubName(_) => None,
        }
    }

    fn encode_into(&self, out: &mut String) {
        out.push_str("$SR ");
        out.push_str(&self.nick);
        out.push(' ');
        out.push_str(&escape(&self.path));
        if let Some(size) = self.size {
            out.push('\x05');
            out.push_str(&size.to_string());
        }
        out.push_str(&format!(" {}/{}\x05", self.free_slots, self.total_slots));
        match &self.tag {
            ResultTag::Tth(t) => {
                out.push_str("TTH:");
                out.push_str(&t.to_base32());
            }
            ResultTag::HubName(n) => out.push_str(&escape(n)),
        }
        out.push_str(" (");
        out.push_str(&self.hub_addr);
        out.push(')');
        if let Some(t) = &self.target {
            out.push('\x05');
            out.push_str(t);
        }
    }

    fn parse(args: &str) -> Result<SearchResult> {
        const C: &str = "$SR";
        let (nick, body) = args.split_once(' ').ok_or(ParseError::Missing { command: C, field: "path" })?;
        let nick = check_nick(C, "nick", nick)?;
        let parts: Vec<&str> = body.split('\x05').collect();
        let is_file = parts.len() >= 3 && size_and_slots(parts[1]).is_some();
        let (path, size, slots, tag_part, target) = if is_file {
            if parts.len() > 4 {
                return Err(ParseError::Invalid { command: C, field: "layout" });
            }
            let (size, slots) = size_and_slots(parts[1]).unwrap_or((0, (0, 0)));
            (parts[0], Some(size), slots, parts[2], parts.get(3))
        } else {
            if parts.len() < 2 || parts.len() > 3 {
                return Err(ParseError::Invalid { command: C, field: "layout" });
            }
            let (path, slots) = parts[0].rsplit_once(' ').ok_or(ParseError::Missing { command: C, field: "slots" })?;
            let slots = slot_pair(slots).ok_or(ParseError::Invalid { command: C, field: "slots" })?;
            (path, None, slots, parts[1], parts.get(2))
        };
        let path = check_path(C, path)?;
        let (tag, addr) = tag_part
            .strip_suffix(')')
            .and_then(|t| t.rsplit_once(" ("))
            .ok_or(ParseError::Invalid { command: C, field: "hub address" })?;
        let tag = match tag.strip_prefix("TTH:") {
            Some(b32) => {
                ResultTag::Tth(Tth::from_base32(b32).map_err(|_| ParseError::Invalid { command: C, field: "TTH" })?)
            }
            None => ResultTag::HubName(unescape(tag)),
        };
        let target = match target {
            Some(t) => Some(check_nick(C, "target", t)?),
            None => None,
        };
        Ok(SearchResult {
            nick,
            path,
            size,
            free_slots: slots.0,
            total_slots: slots.1,
            tag,
            hub_addr: addr.to_owned(),
            target,
        })
    }
}

/// `<size> <free>/<total>`.
fn size_and_slots(s: &str) -> Option<(u64, (u32, u32))> {
    let (size, slots) = s.split_once(' ')?;
    if size.is_empty() || size.len() > MAX_NUMBER_DIGITS || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((size.parse().ok()?, slot_pair(slots)?))
}

/// `<free>/<total>`.
fn slot_pair(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('/')?;
    Some((small_number(a)?, small_number(b)?))
}

/// The `$ADCGET`/`$ADCSND` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdcKind {
    /// `file`: file bytes.
    File,
    /// `tthl`: the leaf hashes of a file.
    Tthl,
    /// `list`: a partial file list of one directory.
    List,
}

impl AdcKind {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            AdcKind::File => "file",
            AdcKind::Tthl => "tthl",
            AdcKind::List => "list",
        }
    }
}

/// What an `$ADCGET` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AdcIdentifier {
    /// `files.xml.bz2`.
    FileListBz2,
    /// `TTH/<root>` (TTHF).
    Tth(Tth),
    /// Anything else: a share path like `/dir/name`, or `files.xml`.
    Path(String),
}

/// `$ADCGET`/`$ADCSND <type> <identifier> <start> <bytes>[ ZL1]`. The identifier is escaped
/// the NMDC way: space as `\ ` (`\s` is accepted too), newline as `\n`, backslash as `\\`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdcRequest {
    /// `file`, `tthl` or `list`.
    pub kind: AdcKind,
    /// What.
    pub identifier: AdcIdentifier,
    /// First byte, 0-based.
    pub start: u64,
    /// Byte count; -1 means "to the end".
    pub bytes: i64,
    /// The `ZL1` flag (zlib-compressed stream; only if the peer advertised `ZLIG`).
    pub zlib: bool,
}

impl AdcRequest {
    /// The byte count, `None` for "to the end" (-1).
    pub fn length(&self) -> Option<u64> {
        u64::try_from(self.bytes).ok()
    }

    fn encode_into(&self, out: &mut String) {
        out.push_str(self.kind.as_str());
        out.push(' ');
        match &self.identifier {
            AdcIdentifier::FileListBz2 => out.push_str("files.xml.bz2"),
            AdcIdentifier::Tth(t) => {
                out.push_str("TTH/");
                out.push_str(&t.to_base32());
            }
            AdcIdentifier::Path(p) => {
                for c in p.chars() {
                    match c {
                        ' ' => out.push_str("\\ "),
                        '\n' => out.push_str("\\n"),
                        '\\' => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
            }
        }
        out.push_str(&format!(" {} {}", self.start, self.bytes));
        if self.zlib {
            out.push_str(" ZL1");
        }
    }

    fn parse(command: &'static str, args: &str) -> Result<AdcRequest> {
        let tokens = adc_tokens(args).ok_or(ParseError::Invalid { command, field: "escape" })?;
        if tokens.len() < 4 {
            return Err(ParseError::Missing { command, field: "start or bytes" });
        }
        let kind = match tokens[0].as_str() {
            "file" => AdcKind::File,
            "tthl" => AdcKind::Tthl,
            "list" => AdcKind::List,
            _ => return Err(ParseError::Invalid { command, field: "type" }),
        };
        let id = &tokens[1];
        if id.is_empty() {
            return Err(ParseError::Missing { command, field: "identifier" });
        }
        if id.len() > MAX_PATH {
            return Err(ParseError::FieldTooLong { command, field: "identifier", limit: MAX_PATH });
        }
        let identifier = if id == "files.xml.bz2" {
            AdcIdentifier::FileListBz2
        } else if let Some(b32) = id.strip_prefix("TTH/") {
            AdcIdentifier::Tth(Tth::from_base32(b32).map_err(|_| ParseError::Invalid { command, field: "TTH" })?)
        } else {
            AdcIdentifier::Path(id.clone())
        };
        let start = number(command, "start", &tokens[2])?;
        let bytes = if tokens[3] == "-1" {
            -1
        } else {
            i64::try_from(number(command, "bytes", &tokens[3])?)
                .map_err(|_| ParseError::Invalid { command, field: "bytes" })?
        };
        let zlib = match &tokens[4..] {
            [] => false,
            [f] if f == "ZL1" => true,
            _ => return Err(ParseError::Invalid { command, field: "flags" }),
        };
        Ok(AdcRequest { kind, identifier, start, bytes, zlib })
    }
}

/// Split on unescaped spaces, undoing `\ `, `\s`, `\n`, `\\`. `None` on a bad escape.
fn adc_tokens(s: &str) -> Option<Vec<String>> {
    let mut tokens = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let e = chars.next()?;
                let cur = tokens.last_mut()?;
                match e {
                    ' ' | 's' => cur.push(' '),
                    'n' => cur.push('\n'),
                    '\\' => cur.push('\\'),
                    _ => return None,
                }
            }
            ' ' => tokens.push(String::new()),
            c => tokens.last_mut()?.push(c),
        }
    }
    Some(tokens)
}

/// A nick as received: non-empty, at most [`MAX_NICK`] bytes, no space, `$`, `|` or control
/// character.
fn check_nick(command: &'static str, field: &'static str, s: &str) -> Result<String> {
    if s.is_empty() {
        return Err(ParseError::Missing { command, field });
    }
    if s.len() > MAX_NICK {
        return Err(ParseError::FieldTooLong { command, field, limit: MAX_NICK });
    }
    if s.chars().any(|c| c == ' ' || c == '$' || c == '|' || (c as u32) < 0x20) {
        return Err(ParseError::Invalid { command, field });
    }
    Ok(s.to_owned())
}

/// Whether a string is a valid nick for this crate (see [`Command::parse`]).
pub fn is_valid_nick(nick: &str) -> bool {
    check_nick("", "", nick).is_ok()
}

fn number(command: &'static str, field: &'static str, s: &str) -> Result<u64> {
    if s.is_empty() {
        return Err(ParseError::Missing { command, field });
    }
    if s.len() > MAX_NUMBER_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Invalid { command, field });
    }
    s.parse().map_err(|_| ParseError::Invalid { command, field })
}

/// An escaped share path: unescaped, non-empty, at most [`MAX_PATH`] bytes.
fn check_path(command: &'static str, s: &str) -> Result<String> {
    let p = unescape(s);
    if p.is_empty() {
        return Err(ParseError::Missing { command, field: "path" });
    }
    if p.len() > MAX_PATH {
        return Err(ParseError::FieldTooLong { command, field: "path", limit: MAX_PATH });
    }
    Ok(p)
}

/// `host:port`.
fn address(command: &'static str, s: &str) -> Result<(String, u16)> {
    let (host, port) = s.rsplit_once(':').ok_or(ParseError::Invalid { command, field: "address" })?;
    if host.is_empty() || host.len() > 255 || host.contains(' ') {
        return Err(ParseError::Invalid { command, field: "address" });
    }
    let port =
        small_number(port).and_then(|p| u16::try_from(p).ok()).ok_or(ParseError::Invalid { command, field: "port" })?;
    Ok((host.to_owned(), port))
}

/// `a$$b$$` → `[a, b]`, empty items dropped.
fn dollar_list(command: &'static str, s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in s.split("$$").filter(|i| !i.is_empty()) {
        // `$` separates items and cannot be part of one (`b$` would re-encode as `b$$$`).
        if item.contains('$') {
            return Err(ParseError::Invalid { command, field: "list" });
        }
        if out.len() == MAX_LIST_ITEMS {
            return Err(ParseError::FieldTooLong { command, field: "list", limit: MAX_LIST_ITEMS });
        }
        if item.len() > MAX_NICK {
            return Err(ParseError::FieldTooLong { command, field: "nick", limit: MAX_NICK });
        }
        out.push(item.to_owned());
    }
    Ok(out)
}

impl Command {
    /// `$Get <path>$<start+1>` for a 0-based start.
    pub fn get(path: &str, start: u64) -> Command {
        Command::Get { path: path.to_owned(), offset: start.saturating_add(1) }
    }

    /// For `$Get`, the 0-based first byte.
    pub fn get_start(&self) -> Option<u64> {
        match self {
            Command::Get { offset, .. } => Some(offset.saturating_sub(1)),
            _ => None,
        }
    }

    /// `$Supports` with these features and no trailing space.
    pub fn supports(features: &[&str]) -> Command {
        Command::Supports { features: features.iter().map(|f| (*f).to_owned()).collect(), trailing_space: false }
    }

    /// Whether this is a `$Supports` naming `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        matches!(self, Command::Supports { features, .. } if features.iter().any(|f| f == feature))
    }

    /// The command name as on the wire (`$MyINFO`, `$To:`, `<chat>` for chat lines).
    pub fn name(&self) -> &str {
        match self {
            Command::Lock { .. } => "$Lock",
            Command::Key(_) => "$Key",
            Command::Supports { .. } => "$Supports",
            Command::ValidateNick(_) => "$ValidateNick",
            Command::GetPass { .. } => "$GetPass",
            Command::MyPass(_) => "$MyPass",
            Command::BadPass => "$BadPass",
            Command::Hello(_) => "$Hello",
            Command::Version(_) => "$Version",
            Command::MyInfo(_) => "$MyINFO",
            Command::GetNickList => "$GetNickList",
            Command::NickList(_) => "$NickList",
            Command::OpList(_) => "$OpList",
            Command::UserIp(_) => "$UserIP",
            Command::HubName(_) => "$HubName",
            Command::HubTopic(_) => "$HubTopic",
            Command::HubIsFull => "$HubIsFull",
            Command::ValidateDenide(_) => "$ValidateDenide",
            Command::LogedIn(_) => "$LogedIn",
            Command::GetInfo { .. } => "$GetINFO",
            Command::To { .. } => "$To:",
            Command::Chat { .. } => "<chat>",
            Command::Text(_) => "<text>",
            Command::ConnectToMe { .. } => "$ConnectToMe",
            Command::RevConnectToMe { .. } => "$RevConnectToMe",
            Command::Search { .. } => "$Search",
            Command::Sr(_) => "$SR",
            Command::Quit(_) => "$Quit",
            Command::Kick(_) => "$Kick",
            Command::OpForceMove { .. } => "$OpForceMove",
            Command::ForceMove(_) => "$ForceMove",
            Command::MyNick(_) => "$MyNick",
            Command::Direction { .. } => "$Direction",
            Command::Get { .. } => "$Get",
            Command::FileLength(_) => "$FileLength",
            Command::Send => "$Send",
            Command::AdcGet(_) => "$ADCGET",
            Command::AdcSnd(_) => "$ADCSND",
            Command::MaxedOut(_) => "$MaxedOut",
            Command::Error(_) => "$Error",
            Command::Unknown { name, .. } => name,
        }
    }

    /// Parse one command (without its `|`).
    pub fn parse(raw: &[u8]) -> Result<Command> {
        if raw.is_empty() {
            return Err(ParseError::Empty);
        }
        if raw.len() > MAX_LIST_COMMAND {
            return Err(ParseError::TooLong { limit: MAX_LIST_COMMAND });
        }
        // $Lock and $Key hold raw bytes: slice them before any text decoding.
        if let Some(rest) = raw.strip_prefix(b"$Lock ") {
            return parse_lock(rest);
        }
        if let Some(key) = raw.strip_prefix(b"$Key ") {
            return Ok(Command::Key(key.to_vec()));
        }
        let s = text::decode(raw);
        if !s.starts_with('$') {
            return Ok(parse_chat(&s));
        }
        let (name, args) = match s[1..].split_once(' ') {
            Some((n, a)) => (n, a),
            None => (&s[1..], ""),
        };
        let one_nick = |c: &'static str| check_nick(c, "nick", args);
        Ok(match name {
            "Supports" => {
                let features: Vec<String> = args.split(' ').filter(|f| !f.is_empty()).map(str::to_owned).collect();
                if features.len() > MAX_SUPPORTS {
                    return Err(ParseError::FieldTooLong {
                        command: "$Supports",
                        field: "features",
                        limit: MAX_SUPPORTS,
                    });
                }
                Command::Supports { features, trailing_space: args.ends_with(' ') }
            }
            "ValidateNick" => Command::ValidateNick(one_nick("$ValidateNick")?),
            "GetPass" => Command::GetPass { salt: (!args.is_empty()).then(|| args.to_owned()) },
            "MyPass" => Command::MyPass(args.to_owned()),
            "BadPass" => Command::BadPass,
            "Hello" => Command::Hello(one_nick("$Hello")?),
            "Version" => Command::Version(args.to_owned()),
            "MyINFO" => Command::MyInfo(parse_myinfo(args)?),
            "GetNickList" => Command::GetNickList,
            "NickList" => Command::NickList(dollar_list("$NickList", args)?),
            "OpList" => Command::OpList(dollar_list("$OpList", args)?),
            "UserIP" => {
                let items = dollar_list("$UserIP", args)?;
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    let (nick, ip) = item.split_once(' ').unwrap_or((&item, ""));
                    pairs.push((check_nick("$UserIP", "nick", nick)?, ip.to_owned()));
                }
                Command::UserIp(pairs)
            }
            "HubName" => Command::HubName(unescape(args)),
            "HubTopic" => Command::HubTopic(unescape(args)),
            "HubIsFull" => Command::HubIsFull,
            "ValidateDenide" => Command::ValidateDenide(args.to_owned()),
            "LogedIn" => Command::LogedIn(one_nick("$LogedIn")?),
            "GetINFO" => {
                const C: &str = "$GetINFO";
                let (other, me) = args.split_once(' ').ok_or(ParseError::Missing { command: C, field: "me" })?;
                Command::GetInfo { other: check_nick(C, "other", other)?, me: check_nick(C, "me", me)? }
            }
            "To:" => parse_to(args)?,
            "ConnectToMe" => {
                const C: &str = "$ConnectToMe";
                let (target, addr) =
                    args.split_once(' ').ok_or(ParseError::Missing { command: C, field: "address" })?;
                let target = check_nick(C, "target", target)?;
                let (addr, tls) = match addr.strip_suffix('S') {
                    Some(a) => (a, true),
                    None => (addr, false),
                };
                let (host, port) = address(C, addr)?;
                Command::ConnectToMe { target, host, port, tls }
            }
            "RevConnectToMe" => {
                const C: &str = "$RevConnectToMe";
                let (from, target) = args.split_once(' ').ok_or(ParseError::Missing { command: C, field: "target" })?;
                Command::RevConnectToMe { from: check_nick(C, "from", from)?, target: check_nick(C, "target", target)? }
            }
            "Search" => {
                const C: &str = "$Search";
                let (origin, query) = args.split_once(' ').ok_or(ParseError::Missing { command: C, field: "query" })?;
                let origin = match origin.strip_prefix("Hub:") {
                    Some(nick) => SearchOrigin::Passive { nick: check_nick(C, "nick", nick)? },
                    None => {
                        let (host, port) = address(C, origin)?;
                        SearchOrigin::Active { host, port }
                    }
                };
                Command::Search { origin, query: SearchQuery::parse(query)? }
            }
            "SR" => Command::Sr(SearchResult::parse(args)?),
            "Quit" => Command::Quit(one_nick("$Quit")?),
            "Kick" => Command::Kick(one_nick("$Kick")?),
            "OpForceMove" => {
                const C: &str = "$OpForceMove";
                let rest = args.strip_prefix("$Who:").ok_or(ParseError::Missing { command: C, field: "$Who:" })?;
                let (who, rest) =
                    rest.split_once("$Where:").ok_or(ParseError::Missing { command: C, field: "$Where:" })?;
                let (address, msg) =
                    rest.split_once("$Msg:").ok_or(ParseError::Missing { command: C, field: "$Msg:" })?;
                Command::OpForceMove {
                    who: check_nick(C, "who", who)?,
                    address: address.to_owned(),
                    message: unescape(msg),
                }
            }
            "ForceMove" => Command::ForceMove(args.to_owned()),
            "MyNick" => Command::MyNick(one_nick("$MyNick")?),
            "Direction" => {
                const C: &str = "$Direction";
                let (dir, n) = args.split_once(' ').ok_or(ParseError::Missing { command: C, field: "number" })?;
                let direction = match dir {
                    "Upload" => Direction::Upload,
                    "Download" => Direction::Download,
                    _ => return Err(ParseError::Invalid { command: C, field: "direction" }),
                };
                let number = u32::try_from(number(C, "number", n)?)
                    .map_err(|_| ParseError::Invalid { command: C, field: "number" })?;
                Command::Direction { direction, number }
            }
            "Get" => {
                const C: &str = "$Get";
                let (path, offset) =
                    args.rsplit_once('$').ok_or(ParseError::Missing { command: C, field: "offset" })?;
                Command::Get { path: check_path(C, path)?, offset: number(C, "offset", offset)? }
            }
            "FileLength" => Command::FileLength(number("$FileLength", "length", args)?),
            "Send" => Command::Send,
            "ADCGET" => Command::AdcGet(AdcRequest::parse("$ADCGET", args)?),
            "ADCSND" => Command::AdcSnd(AdcRequest::parse("$ADCSND", args)?),
            // A position that is not a number is dropped, not an error: the meaning
            // (no slot now) does not depend on it.
            "MaxedOut" => Command::MaxedOut(args.trim().parse().ok()),
            "Error" => Command::Error(unescape(args)),
            _ => Command::Unknown { name: name.to_owned(), raw: raw.to_vec() },
        })
    }

    /// The command as sent, `|` included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = match self {
            Command::Lock { lock, pk } => {
                let mut v = b"$Lock ".to_vec();
                v.extend_from_slice(lock);
                if let Some(pk) = pk {
                    v.extend_from_slice(b" Pk=");
                    v.extend(text::encode(pk));
                }
                v
            }
            Command::Key(key) => {
                let mut v = b"$Key ".to_vec();
                v.extend_from_slice(key);
                v
            }
            Command::Unknown { raw, .. } => raw.clone(),
            other => text::encode(&other.body()),
        };
        // Nothing a caller put in a field may end the command early.
        if out.contains(&b'|') {
            out = out.iter().fold(Vec::with_capacity(out.len() + 8), |mut v, &b| {
                if b == b'|' {
                    v.extend_from_slice(b"&#124;");
                } else {
                    v.push(b);
                }
                v
            });
        }
        out.push(b'|');
        out
    }

    /// The command text without `|` for every variant except `Lock`, `Key`, `Unknown`.
    fn body(&self) -> String {
        let mut o = String::new();
        let simple = |name: &str, arg: &str| {
            if arg.is_empty() {
                format!("${name}")
            } else {
                format!("${name} {arg}")
            }
        };
        match self {
            Command::Lock { .. } | Command::Key(_) | Command::Unknown { .. } => {}
            Command::Supports { features, trailing_space } => {
                o.push_str("$Supports ");
                o.push_str(&features.join(" "));
                if *trailing_space {
                    o.push(' ');
                }
            }
            Command::ValidateNick(n) => o = simple("ValidateNick", n),
            Command::GetPass { salt } => o = simple("GetPass", salt.as_deref().unwrap_or("")),
            Command::MyPass(p) => o = simple("MyPass", p),
            Command::BadPass => o.push_str("$BadPass"),
            Command::Hello(n) => o = simple("Hello", n),
            Command::Version(v) => o = simple("Version", v),
            Command::MyInfo(i) => i.encode_into(&mut o),
            Command::GetNickList => o.push_str("$GetNickList"),
            Command::NickList(l) | Command::OpList(l) => {
                o.push_str(if matches!(self, Command::NickList(_)) { "$NickList " } else { "$OpList " });
                for n in l {
                    o.push_str(n);
                    o.push_str("$$");
                }
            }
            Command::UserIp(l) => {
                o.push_str("$UserIP ");
                for (n, ip) in l {
                    o.push_str(n);
                    if !ip.is_empty() {
                        o.push(' ');
                        o.push_str(ip);
                    }
                    o.push_str("$$");
                }
            }
            Command::HubName(n) => o = simple("HubName", &escape(n)),
            Command::HubTopic(t) => o = simple("HubTopic", &escape(t)),
            Command::HubIsFull => o.push_str("$HubIsFull"),
            Command::ValidateDenide(n) => o = simple("ValidateDenide", n),
            Command::LogedIn(n) => o = simple("LogedIn", n),
            Command::GetInfo { other, me } => o = format!("$GetINFO {other} {me}"),
            Command::To { to, from, speaker, text } => {
                o = format!("$To: {to} From: {from} $");
                if let Some(s) = speaker {
                    o.push_str(&format!("<{s}> "));
                }
                o.push_str(&escape(text));
            }
            Command::Chat { nick, text } => o = format!("<{nick}> {}", escape(text)),
            Command::Text(t) => o = escape(t),
            Command::ConnectToMe { target, host, port, tls } => {
                o = format!("$ConnectToMe {target} {host}:{port}{}", if *tls { "S" } else { "" })
            }
            Command::RevConnectToMe { from, target } => o = format!("$RevConnectToMe {from} {target}"),
            Command::Search { origin, query } => {
                o.push_str("$Search ");
                match origin {
                    SearchOrigin::Active { host, port } => o.push_str(&format!("{host}:{port}")),
                    SearchOrigin::Passive { nick } => o.push_str(&format!("Hub:{nick}")),
                }
                o.push(' ');
                query.encode_into(&mut o);
            }
            Command::Sr(r) => r.encode_into(&mut o),
            Command::Quit(n) => o = simple("Quit", n),
            Command::Kick(n) => o = simple("Kick", n),
            Command::OpForceMove { who, address, message } => {
                o = format!("$OpForceMove $Who:{who}$Where:{address}$Msg:{}", escape(message))
            }
            Command::ForceMove(a) => o = simple("ForceMove", a),
            Command::MyNick(n) => o = simple("MyNick", n),
            Command::Direction { direction, number } => o = format!("$Direction {} {number}", direction.as_str()),
            Command::Get { path, offset } => o = format!("$Get {}${offset}", escape(path)),
            Command::FileLength(n) => o = format!("$FileLength {n}"),
            Command::Send => o.push_str("$Send"),
            Command::AdcGet(r) | Command::AdcSnd(r) => {
                o.push_str(if matches!(self, Command::AdcGet(_)) { "$ADCGET " } else { "$ADCSND " });
                r.encode_into(&mut o);
            }
            Command::MaxedOut(None) => o.push_str("$MaxedOut"),
            Command::MaxedOut(Some(n)) => o = format!("$MaxedOut {n}"),
            Command::Error(e) => o = simple("Error", &escape(e)),
        }
        o
    }
}

fn parse_lock(rest: &[u8]) -> Result<Command> {
    const C: &str = "$Lock";
    let (lock, pk) = match rest.windows(4).position(|w| w == b" Pk=") {
        Some(i) => (&rest[..i], Some(text::decode(&rest[i + 4..]))),
        None => (rest, None),
    };
    if lock.is_empty() {
        return Err(ParseError::Missing { command: C, field: "lock" });
    }
    if lock.len() > MAX_LOCK {
        return Err(ParseError::FieldTooLong { command: C, field: "lock", limit: MAX_LOCK });
    }
    Ok(Command::Lock { lock: lock.to_vec(), pk })
}

fn parse_chat(s: &str) -> Command {
    if let Some(rest) = s.strip_prefix('<') {
        if let Some((nick, text)) = rest.split_once("> ") {
            // A nick holding an escape (`&#36;`) is an escaped `$`, which no nick has: such a
            // line is text, as it was before it was escaped.
            if is_valid_nick(nick) && !nick.contains("&#") {
                return Command::Chat { nick: nick.to_owned(), text: unescape(text) };
            }
        }
    }
    Command::Text(unescape(s))
}

fn parse_to(args: &str) -> Result<Command> {
    const C: &str = "$To:";
    let (to, rest) = args.split_once(" From: ").ok_or(ParseError::Missing { command: C, field: "From:" })?;
    let (from, body) = rest.split_once(" $").ok_or(ParseError::Missing { command: C, field: "message" })?;
    let to = check_nick(C, "to", to)?;
    let from = check_nick(C, "from", from)?;
    if let Some(inner) = body.strip_prefix('<') {
        if let Some((speaker, text)) = inner.split_once("> ") {
            if is_valid_nick(speaker) && !speaker.contains("&#") {
                return Ok(Command::To { to, from, speaker: Some(speaker.to_owned()), text: unescape(text) });
            }
        }
    }
    Ok(Command::To { to, from, speaker: None, text: unescape(body) })
}

fn parse_myinfo(args: &str) -> Result<MyInfo> {
    const C: &str = "$MyINFO";
    let rest = args.strip_prefix("$ALL ").ok_or(ParseError::Missing { command: C, field: "$ALL" })?;
    let (nick, rest) = rest.split_once(' ').ok_or(ParseError::Missing { command: C, field: "description" })?;
    let nick = check_nick(C, "nick", nick)?;
    let rest = rest.strip_suffix('$').unwrap_or(rest);
    // Split from the right: a description with a stray '$' keeps it.
    let mut fields = rest.rsplitn(5, '$');
    let share = fields.next().unwrap_or("");
    let email = fields.next().ok_or(ParseError::Missing { command: C, field: "e-mail" })?;
    let conn_flag = fields.next().ok_or(ParseError::Missing { command: C, field: "connection" })?;
    let _speed_class = fields.next().ok_or(ParseError::Missing { command: C, field: "connection" })?;
    let desc_tag = fields.next().ok_or(ParseError::Missing { command: C, field: "description" })?;
    let share_size = if share.is_empty() { 0 } else { number(C, "share size", share)? };
    let (connection, flag) = match conn_flag.chars().last() {
        Some(f) if (f as u32) <= 0xFF => (conn_flag[..conn_flag.len() - f.len_utf8()].to_owned(), f as u32 as u8),
        Some(_) => return Err(ParseError::Invalid { command: C, field: "flag" }),
        None => (String::new(), 0),
    };
    let (description, tag) = match desc_tag.rfind('<') {
        Some(i) if desc_tag.ends_with('>') => match Tag::parse(&desc_tag[i..]) {
            Some(tag) => (unescape(&desc_tag[..i]), Some(tag)),
            None => (unescape(desc_tag), None),
        },
        _ => (unescape(desc_tag), None),
    };
    Ok(MyInfo { nick, description, tag, connection, flag, email: unescape(email), share_size })
}

impl MyInfo {
    fn encode_into(&self, o: &mut String) {
        o.push_str("$MyINFO $ALL ");
        o.push_str(&self.nick);
        o.push(' ');
        o.push_str(&escape(&self.description));
        if let Some(t) = &self.tag {
            o.push_str(&t.to_string());
        }
        o.push_str("$ $");
        o.push_str(&self.connection);
        if !(self.connection.is_empty() && self.flag == 0) {
            // '$' (0x24) and '|' (0x7C) cannot be sent; real clients always set 0x01.
            let flag = if matches!(self.flag, b'$' | b'|') { self.flag | flags::NORMAL } else { self.flag };
            o.push(flag as char);
        }
        o.push('$');
        o.push_str(&escape(&self.email));
        o.push('$');
        o.push_str(&self.share_size.to_string());
        o.push('$');
    }
}

/// Strip the `\x05<target>` of a passive `$SR` (what a hub does before relaying it to the
/// target): the command to relay and the target, or `None` for a result without one.
pub fn sr_strip_target(raw: &[u8]) -> Result<Option<(Vec<u8>, String)>> {
    match Command::parse(raw)? {
        Command::Sr(r) => {
            let (r, target) = r.split_target();
            Ok(target.map(|t| (Command::Sr(r).encode(), t)))
        }
        _ => Err(ParseError::Invalid { command: "$SR", field: "command" }),
    }
}

#[cfg(test)]
mod tests;
