//! Server messages: [`ServerRequest`] (client → server) and [`ServerResponse`]
//! (server → client), framed `u32 len, u32 code, body`.
//!
//! Each variant's doc gives its body. Decoding ignores bytes after the last field it knows
//! (newer servers may append fields) and turns codes it does not know into `Unknown`, which
//! re-encodes verbatim; Nicotine+ likewise ignores unknown server messages and keeps the
//! connection. Fields that Nicotine+ 3.3.11 only reads "if bytes remain" are `Option`s here
//! and are written only when `Some`; all other fields are required.
//!
//! ```
//! use omnipeer_slsk::server::{ServerRequest, ServerResponse};
//!
//! let login = ServerRequest::login("username", "password", 160, 2);
//! let frame = login.encode();
//! assert_eq!(&frame[..8], [0x48, 0, 0, 0, 1, 0, 0, 0]);
//! assert_eq!(ServerRequest::decode(1, &frame[8..]).unwrap(), login);
//!
//! let reply = ServerResponse::LoginFailure { reason: "INVALIDPASS".into(), detail: None };
//! assert_eq!(ServerResponse::decode(1, &reply.encode()[8..]).unwrap(), reply);
//! ```

use crate::distributed::DistributedMessage;
use crate::framing::{frame_u32, Frame};
use crate::limits::MAX_LIST_ITEMS;
use crate::wire::{DecodeError, Reader, Result, Writer};
use crate::UserStatus;
use std::net::Ipv4Addr;

/// Upload statistics of a user: `u32 avgspeed, u32 uploadnum, u32 unknown, u32 files, u32 dirs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UserStats {
    /// Average upload speed in bytes/s.
    pub avg_speed: u32,
    /// Number of uploads measured.
    pub upload_num: u32,
    /// Unknown, 0.
    pub unknown: u32,
    /// Shared files.
    pub files: u32,
    /// Shared directories.
    pub dirs: u32,
}

impl UserStats {
    const WIRE_SIZE: usize = 20;

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(UserStats { avg_speed: r.u32()?, upload_num: r.u32()?, unknown: r.u32()?, files: r.u32()?, dirs: r.u32()? })
    }

    fn write(&self, w: &mut Writer) {
        w.u32(self.avg_speed).u32(self.upload_num).u32(self.unknown).u32(self.files).u32(self.dirs);
    }
}

/// A user in a room (JoinRoom, UserJoinedRoom, GlobalUserList).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomUser {
    /// User name.
    pub name: String,
    /// Online status.
    pub status: UserStatus,
    /// Upload statistics.
    pub stats: UserStats,
    /// Whether all upload slots are taken (u32 0/1).
    pub slots_full: u32,
    /// Country code, e.g. `DE`, or empty.
    pub country: String,
}

/// What WatchUser(5) tells about an existing user: `u32 status, stats[, str country]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchedUser {
    /// Online status.
    pub status: UserStatus,
    /// Upload statistics.
    pub stats: UserStats,
    /// Country code; the server sends it when the user is away or online.
    pub country: Option<String>,
}

/// Owner and operators of a private room, at the end of a JoinRoom(14) reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PrivateRoomInfo {
    /// Owner's name.
    pub owner: String,
    /// Operators' names.
    pub operators: Vec<String>,
}

/// A room and its user count in a RoomList(64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomEntry {
    /// Room name.
    pub name: String,
    /// Number of users in it.
    pub users: u32,
}

/// The RoomList(64) reply.
///
/// `u32 n, str room*n, u32 n, u32 users*n` for public rooms, the same for owned private
/// rooms and for other private rooms, then `u32 n, str room*n` for operated private rooms
/// (names only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RoomList {
    /// Public rooms.
    pub public: Vec<RoomEntry>,
    /// Private rooms we own.
    pub owned_private: Vec<RoomEntry>,
    /// Private rooms we are a member of.
    pub other_private: Vec<RoomEntry>,
    /// Private rooms we are an operator of.
    pub operated_private: Vec<String>,
}

/// A candidate parent in PossibleParents(102): `str user, ip, u32 port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PossibleParent {
    /// User name.
    pub user: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Listening port.
    pub port: u32,
}

/// An item and its score in the (deprecated) recommendation messages: `str item, i32 score`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recommendation {
    /// The liked or recommended item.
    pub item: String,
    /// Its score (negative for unrecommendations).
    pub score: i32,
}

/// The obfuscated listening port in SetWaitPort(2): `u32 obf_type, u32 obf_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObfuscatedPort {
    /// Obfuscation type: 0 none, 1 rotated.
    pub obf_type: u32,
    /// The obfuscated listening port (0 = none).
    pub port: u32,
}

/// Login failure reasons (the `reason` of [`ServerResponse::LoginFailure`]).
pub mod login_failure {
    /// Bad user name; the `detail` says why (see [`crate::login::UsernameError::detail`]).
    pub const INVALIDUSERNAME: &str = "INVALIDUSERNAME";
    /// Empty password.
    pub const EMPTYPASSWORD: &str = "EMPTYPASSWORD";
    /// Existing user, wrong password.
    pub const INVALIDPASS: &str = "INVALIDPASS";
    /// Client version refused.
    pub const INVALIDVERSION: &str = "INVALIDVERSION";
    /// Server full.
    pub const SVRFULL: &str = "SVRFULL";
    /// Server private.
    pub const SVRPRIVATE: &str = "SVRPRIVATE";
    /// Our server: a new name from an address that created too many accounts lately. A
    /// sentence, not a token: Nicotine+ shows an unknown reason as "Unable to connect to
    /// the server. Reason: …" and aioslsk puts it in its AuthenticationError.
    pub const TOO_MANY_REGISTRATIONS: &str =
        "Too many new accounts from your address. Log in to an existing account, or try again later.";
    /// Our server: one session too many from the same address.
    pub const TOO_MANY_SESSIONS: &str = "Too many sessions from your address.";
}

fn read_recommendations(r: &mut Reader<'_>) -> Result<Vec<Recommendation>> {
    r.list(MAX_LIST_ITEMS, 8, |r| Ok(Recommendation { item: r.str()?, score: r.i32()? }))
}

fn write_recommendations(w: &mut Writer, v: &[Recommendation]) {
    w.list(v, |w, x| {
        w.str(&x.item).i32(x.score);
    });
}

fn read_str_u32_list(r: &mut Reader<'_>) -> Result<Vec<(String, u32)>> {
    r.list(MAX_LIST_ITEMS, 8, |r| Ok((r.str()?, r.u32()?)))
}

fn write_str_u32_list(w: &mut Writer, v: &[(String, u32)]) {
    w.list(v, |w, (s, n)| {
        w.str(s).u32(*n);
    });
}

fn read_status(r: &mut Reader<'_>) -> Result<UserStatus> {
    Ok(UserStatus::from(r.u32()?))
}

/// The parallel user lists of JoinRoom(14) and GlobalUserList(67):
/// `u32 n, str user*n, u32 n, u32 status*n, u32 n, stats*n, u32 n, u32 slotsfull*n,
/// u32 n, str country*n`. Every list must have one entry per user.
fn read_room_users(r: &mut Reader<'_>) -> Result<Vec<RoomUser>> {
    let names = r.str_list(MAX_LIST_ITEMS)?;
    let n = names.len();
    let check = |field: &'static str, got: usize| {
        if got == n {
            Ok(())
        } else {
            Err(DecodeError::CountMismatch { field, expected: n, got })
        }
    };
    let statuses = r.list(MAX_LIST_ITEMS, 4, read_status)?;
    check("status", statuses.len())?;
    let stats = r.list(MAX_LIST_ITEMS, UserStats::WIRE_SIZE, UserStats::read)?;
    check("stats", stats.len())?;
    let slots = r.list(MAX_LIST_ITEMS, 4, |r| r.u32())?;
    check("slotsfull", slots.len())?;
    let countries = r.str_list(MAX_LIST_ITEMS)?;
    check("country", countries.len())?;
    Ok(names
        .into_iter()
        .zip(statuses)
        .zip(stats)
        .zip(slots)
        .zip(countries)
        .map(|((((name, status), stats), slots_full), country)| RoomUser { name, status, stats, slots_full, country })
        .collect())
}

fn write_room_users(w: &mut Writer, users: &[RoomUser]) {
    w.list(users, |w, u| {
        w.str(&u.name);
    });
    w.list(users, |w, u| {
        w.u32(u.status.into());
    });
    w.list(users, |w, u| u.stats.write(w));
    w.list(users, |w, u| {
        w.u32(u.slots_full);
    });
    w.list(users, |w, u| {
        w.str(&u.country);
    });
}

fn read_room_entries(r: &mut Reader<'_>) -> Result<Vec<RoomEntry>> {
    let names = r.str_list(MAX_LIST_ITEMS)?;
    let counts = r.list(MAX_LIST_ITEMS, 4, |r| r.u32())?;
    if counts.len() != names.len() {
        return Err(DecodeError::CountMismatch { field: "room user count", expected: names.len(), got: counts.len() });
    }
    Ok(names.into_iter().zip(counts).map(|(name, users)| RoomEntry { name, users }).collect())
}

fn write_room_entries(w: &mut Writer, v: &[RoomEntry]) {
    w.list(v, |w, e| {
        w.str(&e.name);
    });
    w.list(v, |w, e| {
        w.u32(e.users);
    });
}

impl RoomList {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(RoomList {
            public: read_room_entries(r)?,
            owned_private: read_room_entries(r)?,
            other_private: read_room_entries(r)?,
            operated_private: r.str_list(MAX_LIST_ITEMS)?,
        })
    }

    fn write(&self, w: &mut Writer) {
        write_room_entries(w, &self.public);
        write_room_entries(w, &self.owned_private);
        write_room_entries(w, &self.other_private);
        w.str_list(&self.operated_private);
    }
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRequest {
    /// 1 `str user, str pass, u32 major, str md5hex(user+pass), u32 minor`.
    /// Build with [`ServerRequest::login`]; the server does not check `hash`.
    Login {
        /// User name.
        username: String,
        /// Password in clear.
        password: String,
        /// Major version (160 Nicotine+, 175 aioslsk, 177 experimental).
        major: u32,
        /// md5 hex of user name + password, as sent.
        hash: String,
        /// Minor version.
        minor: u32,
    },
    /// 2 `u32 port[, u32 obf_type, u32 obf_port]` (Nicotine+ sends the port only, aioslsk
    /// `port, 0, 0`).
    SetWaitPort {
        /// Listening port.
        port: u32,
        /// Obfuscated port fields, when sent.
        obfuscation: Option<ObfuscatedPort>,
    },
    /// 3 `str user`.
    GetPeerAddress {
        /// Whose address.
        user: String,
    },
    /// 5 `str user`.
    WatchUser {
        /// Whom to watch.
        user: String,
    },
    /// 6 `str user`.
    UnwatchUser {
        /// Whom to stop watching.
        user: String,
    },
    /// 7 `str user`.
    GetUserStatus {
        /// Whose status.
        user: String,
    },
    /// 11 `str user` (obsolete).
    IgnoreUser {
        /// User.
        user: String,
    },
    /// 12 `str user` (obsolete).
    UnignoreUser {
        /// User.
        user: String,
    },
    /// 13 `str room, str msg`.
    SayChatroom {
        /// Room.
        room: String,
        /// Text.
        message: String,
    },
    /// 14 `str room, u32 private`. A body without the `private` field (old clients) reads as
    /// public.
    JoinRoom {
        /// Room (created if it does not exist).
        room: String,
        /// Create it as a private room.
        private: bool,
    },
    /// 15 `str room`.
    LeaveRoom {
        /// Room.
        room: String,
    },
    /// 18 `u32 token, str user, str type`.
    ConnectToPeer {
        /// Token the target sends back in PierceFireWall.
        token: u32,
        /// Target user.
        user: String,
        /// Connection type `P`, `F` or `D` (see [`crate::PeerConnectionType`]).
        conn_type: String,
    },
    /// 22 `str user, str msg`.
    MessageUser {
        /// Recipient.
        user: String,
        /// Text.
        message: String,
    },
    /// 23 `u32 id`.
    MessageAcked {
        /// Id from MessageUser.
        id: u32,
    },
    /// 25 `u32 token, u32 room_id, str query` (obsolete).
    FileSearchRoom {
        /// Search token.
        token: u32,
        /// Room id.
        room_id: u32,
        /// Query.
        query: String,
    },
    /// 26 `u32 token, str query`.
    FileSearch {
        /// Search token.
        token: u32,
        /// Query.
        query: String,
    },
    /// 28 `i32 status` (1 away, 2 online).
    SetStatus {
        /// New status.
        status: UserStatus,
    },
    /// 32 empty.
    ServerPing,
    /// 33 `str user, u32 token` (obsolete).
    SendConnectToken {
        /// User.
        user: String,
        /// Token.
        token: u32,
    },
    /// 34 `str user, u32 speed` (obsolete).
    SendDownloadSpeed {
        /// User.
        user: String,
        /// Speed.
        speed: u32,
    },
    /// 35 `u32 dirs, u32 files`.
    SharedFoldersFiles {
        /// Shared directories.
        dirs: u32,
        /// Shared files.
        files: u32,
    },
    /// 36 `str user`.
    GetUserStats {
        /// Whose stats.
        user: String,
    },
    /// 40 `u32 full` (obsolete).
    UploadSlotsFull {
        /// Whether all slots are taken.
        full: u32,
    },
    /// 42 `str user, u32 token, str query`.
    UserSearch {
        /// Whose shares to search.
        user: String,
        /// Search token.
        token: u32,
        /// Query.
        query: String,
    },
    /// 50 `str item` (obsolete).
    SimilarRecommendations {
        /// Item.
        item: String,
    },
    /// 51 `str item`.
    AddThingILike {
        /// Item.
        item: String,
    },
    /// 52 `str item`.
    RemoveThingILike {
        /// Item.
        item: String,
    },
    /// 54 empty.
    Recommendations,
    /// 55 empty (obsolete).
    MyRecommendations,
    /// 56 empty.
    GlobalRecommendations,
    /// 57 `str user`.
    UserInterests {
        /// Whose interests.
        user: String,
    },
    /// 58 `str cmd, u32 n, str arg*n` (obsolete).
    AdminCommand {
        /// Command.
        command: String,
        /// Arguments.
        args: Vec<String>,
    },
    /// 59 `str user, u32 token` (obsolete).
    PlaceInLineRequest {
        /// User.
        user: String,
        /// Token.
        token: u32,
    },
    /// 60 `str user, u32 token, u32 place` (obsolete).
    PlaceInLineResponse {
        /// User.
        user: String,
        /// Token.
        token: u32,
        /// Place.
        place: u32,
    },
    /// 64 empty.
    RoomList,
    /// 65 `u32 token, str name, str path, u64 size, u32 checksum, u8 unknown` (obsolete).
    ExactFileSearch {
        /// Token.
        token: u32,
        /// File name.
        name: String,
        /// Folder.
        path: String,
        /// Size.
        size: u64,
        /// Checksum.
        checksum: u32,
        /// Unknown byte.
        unknown: u8,
    },
    /// 67 empty (obsolete).
    GlobalUserList,
    /// 68 `str user, u32 token, u32 code, str msg` (obsolete).
    TunneledMessage {
        /// Recipient.
        user: String,
        /// Token.
        token: u32,
        /// Code.
        code: u32,
        /// Message.
        message: String,
    },
    /// 71 `bool no_parent`.
    HaveNoParent {
        /// True when we have no distributed parent.
        no_parent: bool,
    },
    /// 73 `ip` (deprecated).
    ParentIp {
        /// Parent's address.
        ip: Ipv4Addr,
    },
    /// 92 empty.
    CheckPrivileges,
    /// 100 `bool`.
    AcceptChildren {
        /// Whether we accept distributed children.
        accept: bool,
    },
    /// 103 `u32 token, str query`.
    WishlistSearch {
        /// Search token.
        token: u32,
        /// Query.
        query: String,
    },
    /// 110 empty.
    SimilarUsers,
    /// 111 `str item`.
    ItemRecommendations {
        /// Item.
        item: String,
    },
    /// 112 `str item`.
    ItemSimilarUsers {
        /// Item.
        item: String,
    },
    /// 116 `str room, str ticker` (empty ticker removes ours). A.k.a. SetRoomTicker.
    RoomTickerSet {
        /// Room.
        room: String,
        /// Ticker text.
        ticker: String,
    },
    /// 117 `str item`.
    AddThingIHate {
        /// Item.
        item: String,
    },
    /// 118 `str item`.
    RemoveThingIHate {
        /// Item.
        item: String,
    },
    /// 120 `str room, u32 token, str query`.
    RoomSearch {
        /// Room whose members to search.
        room: String,
        /// Search token.
        token: u32,
        /// Query.
        query: String,
    },
    /// 121 `u32 speed` (bytes/s of the upload just finished).
    SendUploadSpeed {
        /// Speed.
        speed: u32,
    },
    /// 122 `str user` (deprecated).
    UserPrivileged {
        /// User.
        user: String,
    },
    /// 123 `str user, u32 days`.
    GivePrivileges {
        /// Recipient.
        user: String,
        /// Days.
        days: u32,
    },
    /// 124 `u32 token, str user` (deprecated).
    NotifyPrivileges {
        /// Token.
        token: u32,
        /// User.
        user: String,
    },
    /// 125 `u32 token` (deprecated).
    AckNotifyPrivileges {
        /// Token.
        token: u32,
    },
    /// 126 `u32 level`.
    BranchLevel {
        /// Our level in the distributed tree.
        level: u32,
    },
    /// 127 `str root`.
    BranchRoot {
        /// Our branch root.
        root: String,
    },
    /// 129 `u32 depth` (obsolete).
    ChildDepth {
        /// Depth.
        depth: u32,
    },
    /// 134 `str room, str user`.
    AddRoomMember {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 135 `str room, str user`.
    RemoveRoomMember {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 136 `str room`.
    CancelRoomMembership {
        /// Private room.
        room: String,
    },
    /// 137 `str room`.
    CancelRoomOwnership {
        /// Private room.
        room: String,
    },
    /// 138 `str room` (obsolete).
    RoomSomething {
        /// Room.
        room: String,
    },
    /// 141 `bool` — EnableRoomInvitations, a.k.a. PrivateRoomToggle.
    EnableRoomInvitations {
        /// Whether others may add us to private rooms.
        enabled: bool,
    },
    /// 142 `str pass`.
    ChangePassword {
        /// New password.
        password: String,
    },
    /// 143 `str room, str user`.
    AddRoomOperator {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 144 `str room, str user`.
    RemoveRoomOperator {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 149 `u32 n, str user*n, str msg`.
    MessageUsers {
        /// Recipients.
        users: Vec<String>,
        /// Text.
        message: String,
    },
    /// 150 empty.
    JoinGlobalRoom,
    /// 151 empty.
    LeaveGlobalRoom,
    /// 153 `str query` (obsolete).
    RelatedSearch {
        /// Query.
        query: String,
    },
    /// 1001 `u32 token, str user`.
    CantConnectToPeer {
        /// Token from ConnectToPeer.
        token: u32,
        /// The user who asked for the connection.
        user: String,
    },
    /// Any other code, body kept as is.
    Unknown {
        /// Code.
        code: u32,
        /// Body.
        body: Vec<u8>,
    },
}

impl ServerRequest {
    /// A Login request with `hash = md5hex(username + password)`.
    pub fn login(username: &str, password: &str, major: u32, minor: u32) -> Self {
        ServerRequest::Login {
            username: username.to_owned(),
            password: password.to_owned(),
            major,
            hash: crate::login::login_hash(username, password),
            minor,
        }
    }

    /// The message code.
    pub fn code(&self) -> u32 {
        use ServerRequest::*;
        match self {
            Login { .. } => 1,
            SetWaitPort { .. } => 2,
            GetPeerAddress { .. } => 3,
            WatchUser { .. } => 5,
            UnwatchUser { .. } => 6,
            GetUserStatus { .. } => 7,
            IgnoreUser { .. } => 11,
            UnignoreUser { .. } => 12,
            SayChatroom { .. } => 13,
            JoinRoom { .. } => 14,
            LeaveRoom { .. } => 15,
            ConnectToPeer { .. } => 18,
            MessageUser { .. } => 22,
            MessageAcked { .. } => 23,
            FileSearchRoom { .. } => 25,
            FileSearch { .. } => 26,
            SetStatus { .. } => 28,
            ServerPing => 32,
            SendConnectToken { .. } => 33,
            SendDownloadSpeed { .. } => 34,
            SharedFoldersFiles { .. } => 35,
            GetUserStats { .. } => 36,
            UploadSlotsFull { .. } => 40,
            UserSearch { .. } => 42,
            SimilarRecommendations { .. } => 50,
            AddThingILike { .. } => 51,
            RemoveThingILike { .. } => 52,
            Recommendations => 54,
            MyRecommendations => 55,
            GlobalRecommendations => 56,
            UserInterests { .. } => 57,
            AdminCommand { .. } => 58,
            PlaceInLineRequest { .. } => 59,
            PlaceInLineResponse { .. } => 60,
            RoomList => 64,
            ExactFileSearch { .. } => 65,
            GlobalUserList => 67,
            TunneledMessage { .. } => 68,
            HaveNoParent { .. } => 71,
            ParentIp { .. } => 73,
            CheckPrivileges => 92,
            AcceptChildren { .. } => 100,
            WishlistSearch { .. } => 103,
            SimilarUsers => 110,
            ItemRecommendations { .. } => 111,
            ItemSimilarUsers { .. } => 112,
            RoomTickerSet { .. } => 116,
            AddThingIHate { .. } => 117,
            RemoveThingIHate { .. } => 118,
            RoomSearch { .. } => 120,
            SendUploadSpeed { .. } => 121,
            UserPrivileged { .. } => 122,
            GivePrivileges { .. } => 123,
            NotifyPrivileges { .. } => 124,
            AckNotifyPrivileges { .. } => 125,
            BranchLevel { .. } => 126,
            BranchRoot { .. } => 127,
            ChildDepth { .. } => 129,
            AddRoomMember { .. } => 134,
            RemoveRoomMember { .. } => 135,
            CancelRoomMembership { .. } => 136,
            CancelRoomOwnership { .. } => 137,
            RoomSomething { .. } => 138,
            EnableRoomInvitations { .. } => 141,
            ChangePassword { .. } => 142,
            AddRoomOperator { .. } => 143,
            RemoveRoomOperator { .. } => 144,
            MessageUsers { .. } => 149,
            JoinGlobalRoom => 150,
            LeaveGlobalRoom => 151,
            RelatedSearch { .. } => 153,
            CantConnectToPeer { .. } => 1001,
            Unknown { code, .. } => *code,
        }
    }

    /// Decode the body of a frame with this code.
    pub fn decode(code: u32, body: &[u8]) -> Result<Self> {
        use ServerRequest::*;
        let r = &mut Reader::new(body);
        Ok(match code {
            1 => Login { username: r.str()?, password: r.str()?, major: r.u32()?, hash: r.str()?, minor: r.u32()? },
            2 => {
                let port = r.u32()?;
                let obfuscation =
                    if r.remaining() >= 8 { Some(ObfuscatedPort { obf_type: r.u32()?, port: r.u32()? }) } else { None };
                SetWaitPort { port, obfuscation }
            }
            3 => GetPeerAddress { user: r.str()? },
            5 => WatchUser { user: r.str()? },
            6 => UnwatchUser { user: r.str()? },
            7 => GetUserStatus { user: r.str()? },
            11 => IgnoreUser { user: r.str()? },
            12 => UnignoreUser { user: r.str()? },
            13 => SayChatroom { room: r.str()?, message: r.str()? },
            14 => JoinRoom { room: r.str()?, private: if r.remaining() >= 4 { r.u32()? != 0 } else { false } },
            15 => LeaveRoom { room: r.str()? },
            18 => ConnectToPeer { token: r.u32()?, user: r.str()?, conn_type: r.str()? },
            22 => MessageUser { user: r.str()?, message: r.str()? },
            23 => MessageAcked { id: r.u32()? },
            25 => FileSearchRoom { token: r.u32()?, room_id: r.u32()?, query: r.str()? },
            26 => FileSearch { token: r.u32()?, query: r.str()? },
            28 => SetStatus { status: UserStatus::from(r.i32()? as u32) },
            32 => ServerPing,
            33 => SendConnectToken { user: r.str()?, token: r.u32()? },
            34 => SendDownloadSpeed { user: r.str()?, speed: r.u32()? },
            35 => SharedFoldersFiles { dirs: r.u32()?, files: r.u32()? },
            36 => GetUserStats { user: r.str()? },
            40 => UploadSlotsFull { full: r.u32()? },
            42 => UserSearch { user: r.str()?, token: r.u32()?, query: r.str()? },
            50 => SimilarRecommendations { item: r.str()? },
            51 => AddThingILike { item: r.str()? },
            52 => RemoveThingILike { item: r.str()? },
            54 => Recommendations,
            55 => MyRecommendations,
            56 => GlobalRecommendations,
            57 => UserInterests { user: r.str()? },
            58 => AdminCommand { command: r.str()?, args: r.str_list(MAX_LIST_ITEMS)? },
            59 => PlaceInLineRequest { user: r.str()?, token: r.u32()? },
            60 => PlaceInLineResponse { user: r.str()?, token: r.u32()?, place: r.u32()? },
            64 => RoomList,
            65 => ExactFileSearch {
                token: r.u32()?,
                name: r.str()?,
                path: r.str()?,
                size: r.u64()?,
                checksum: r.u32()?,
                unknown: r.u8()?,
            },
            67 => GlobalUserList,
            68 => TunneledMessage { user: r.str()?, token: r.u32()?, code: r.u32()?, message: r.str()? },
            71 => HaveNoParent { no_parent: r.bool()? },
            73 => ParentIp { ip: r.ip()? },
            92 => CheckPrivileges,
            100 => AcceptChildren { accept: r.bool()? },
            103 => WishlistSearch { token: r.u32()?, query: r.str()? },
            110 => SimilarUsers,
            111 => ItemRecommendations { item: r.str()? },
            112 => ItemSimilarUsers { item: r.str()? },
            116 => RoomTickerSet { room: r.str()?, ticker: r.str()? },
            117 => AddThingIHate { item: r.str()? },
            118 => RemoveThingIHate { item: r.str()? },
            120 => RoomSearch { room: r.str()?, token: r.u32()?, query: r.str()? },
            121 => SendUploadSpeed { speed: r.u32()? },
            122 => UserPrivileged { user: r.str()? },
            123 => GivePrivileges { user: r.str()?, days: r.u32()? },
            124 => NotifyPrivileges { token: r.u32()?, user: r.str()? },
            125 => AckNotifyPrivileges { token: r.u32()? },
            126 => BranchLevel { level: r.u32()? },
            127 => BranchRoot { root: r.str()? },
            129 => ChildDepth { depth: r.u32()? },
            134 => AddRoomMember { room: r.str()?, user: r.str()? },
            135 => RemoveRoomMember { room: r.str()?, user: r.str()? },
            136 => CancelRoomMembership { room: r.str()? },
            137 => CancelRoomOwnership { room: r.str()? },
            138 => RoomSomething { room: r.str()? },
            141 => EnableRoomInvitations { enabled: r.bool()? },
            142 => ChangePassword { password: r.str()? },
            143 => AddRoomOperator { room: r.str()?, user: r.str()? },
            144 => RemoveRoomOperator { room: r.str()?, user: r.str()? },
            149 => MessageUsers { users: r.str_list(MAX_LIST_ITEMS)?, message: r.str()? },
            150 => JoinGlobalRoom,
            151 => LeaveGlobalRoom,
            153 => RelatedSearch { query: r.str()? },
            1001 => CantConnectToPeer { token: r.u32()?, user: r.str()? },
            _ => Unknown { code, body: body.to_vec() },
        })
    }

    /// Decode a frame read with [`crate::FrameKind::Server`].
    pub fn from_frame(frame: &Frame) -> Result<Self> {
        Self::decode(frame.code, &frame.body)
    }

    /// The body (everything after the code).
    pub fn encode_body(&self) -> Vec<u8> {
        use ServerRequest::*;
        let mut w = Writer::new();
        match self {
            Login { username, password, major, hash, minor } => {
                w.str(username).str(password).u32(*major).str(hash).u32(*minor);
            }
            SetWaitPort { port, obfuscation } => {
                w.u32(*port);
                if let Some(o) = obfuscation {
                    w.u32(o.obf_type).u32(o.port);
                }
            }
            GetPeerAddress { user }
            | WatchUser { user }
            | UnwatchUser { user }
            | GetUserStatus { user }
            | IgnoreUser { user }
            | UnignoreUser { user }
            | GetUserStats { user }
            | UserInterests { user }
            | UserPrivileged { user } => {
                w.str(user);
            }
            SayChatroom { room, message } => {
                w.str(room).str(message);
            }
            JoinRoom { room, private } => {
                w.str(room).u32(*private as u32);
            }
            LeaveRoom { room }
            | CancelRoomMembership { room }
            | CancelRoomOwnership { room }
            | RoomSomething { room } => {
                w.str(room);
            }
            ConnectToPeer { token, user, conn_type } => {
                w.u32(*token).str(user).str(conn_type);
            }
            MessageUser { user, message } => {
                w.str(user).str(message);
            }
            MessageAcked { id } => {
                w.u32(*id);
            }
            FileSearchRoom { token, room_id, query } => {
                w.u32(*token).u32(*room_id).str(query);
            }
            FileSearch { token, query } | WishlistSearch { token, query } => {
                w.u32(*token).str(query);
            }
            SetStatus { status } => {
                w.i32(u32::from(*status) as i32);
            }
            ServerPing
            | Recommendations
            | MyRecommendations
            | GlobalRecommendations
            | RoomList
            | GlobalUserList
            | CheckPrivileges
            | SimilarUsers
            | JoinGlobalRoom
            | LeaveGlobalRoom => {}
            SendConnectToken { user, token } | PlaceInLineRequest { user, token } => {
                w.str(user).u32(*token);
            }
            SendDownloadSpeed { user, speed } => {
                w.str(user).u32(*speed);
            }
            SharedFoldersFiles { dirs, files } => {
                w.u32(*dirs).u32(*files);
            }
            UploadSlotsFull { full } => {
                w.u32(*full);
            }
            UserSearch { user, token, query } => {
                w.str(user).u32(*token).str(query);
            }
            SimilarRecommendations { item }
            | AddThingILike { item }
            | RemoveThingILike { item }
            | ItemRecommendations { item }
            | ItemSimilarUsers { item }
            | AddThingIHate { item }
            | RemoveThingIHate { item } => {
                w.str(item);
            }
            AdminCommand { command, args } => {
                w.str(command).str_list(args);
            }
            PlaceInLineResponse { user, token, place } => {
                w.str(user).u32(*token).u32(*place);
            }
            ExactFileSearch { token, name, path, size, checksum, unknown } => {
                w.u32(*token).str(name).str(path).u64(*size).u32(*checksum).u8(*unknown);
            }
            TunneledMessage { user, token, code, message } => {
                w.str(user).u32(*token).u32(*code).str(message);
            }
            HaveNoParent { no_parent } => {
                w.bool(*no_parent);
            }
            ParentIp { ip } => {
                w.ip(*ip);
            }
            AcceptChildren { accept } => {
                w.bool(*accept);
            }
            RoomTickerSet { room, ticker } => {
                w.str(room).str(ticker);
            }
            RoomSearch { room, token, query } => {
                w.str(room).u32(*token).str(query);
            }
            SendUploadSpeed { speed } => {
                w.u32(*speed);
            }
            GivePrivileges { user, days } => {
                w.str(user).u32(*days);
            }
            NotifyPrivileges { token, user } | CantConnectToPeer { token, user } => {
                w.u32(*token).str(user);
            }
            AckNotifyPrivileges { token } => {
                w.u32(*token);
            }
            BranchLevel { level } => {
                w.u32(*level);
            }
            BranchRoot { root } => {
                w.str(root);
            }
            ChildDepth { depth } => {
                w.u32(*depth);
            }
            AddRoomMember { room, user }
            | RemoveRoomMember { room, user }
            | AddRoomOperator { room, user }
            | RemoveRoomOperator { room, user } => {
                w.str(room).str(user);
            }
            EnableRoomInvitations { enabled } => {
                w.bool(*enabled);
            }
            ChangePassword { password } => {
                w.str(password);
            }
            MessageUsers { users, message } => {
                w.str_list(users).str(message);
            }
            RelatedSearch { query } => {
                w.str(query);
            }
            Unknown { body, .. } => {
                w.raw(body);
            }
        }
        w.into_inner()
    }

    /// The whole frame: `u32 len, u32 code, body`.
    pub fn encode(&self) -> Vec<u8> {
        frame_u32(self.code(), &self.encode_body())
    }
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerResponse {
    /// 1 success: `bool 1, str greet, ip own_ip, str md5hex(password), bool supporter`.
    LoginSuccess {
        /// Greeting (message of the day).
        greet: String,
        /// The client's address as the server sees it.
        own_ip: Ipv4Addr,
        /// md5 hex of the password (see [`crate::login::password_hash`]).
        password_hash: String,
        /// Whether the user has ever had privileges.
        supporter: bool,
    },
    /// 1 failure: `bool 0, str reason[, str detail]` (reasons in [`login_failure`]).
    LoginFailure {
        /// Reason, e.g. `INVALIDPASS`.
        reason: String,
        /// Detail, sent with `INVALIDUSERNAME` (e.g. `Nick too long.`).
        detail: Option<String>,
    },
    /// 3 `str user, ip, u32 port, u32 obf_type, u16 obf_port`; ip 0.0.0.0 = user offline.
    GetPeerAddress {
        /// User.
        user: String,
        /// Address (0.0.0.0 when offline).
        ip: Ipv4Addr,
        /// Listening port.
        port: u32,
        /// Obfuscation type.
        obf_type: u32,
        /// Obfuscated port — a `u16` here.
        obf_port: u16,
    },
    /// 5 `str user, bool exists[, u32 status, stats[, str country]]`.
    WatchUser {
        /// User.
        user: String,
        /// Whether the user exists.
        exists: bool,
        /// Status and stats, sent when the user exists.
        details: Option<WatchedUser>,
    },
    /// 7 `str user, u32 status, bool privileged`.
    GetUserStatus {
        /// User.
        user: String,
        /// Status.
        status: UserStatus,
        /// Whether the user has privileges.
        privileged: bool,
    },
    /// 11 `str user` (obsolete).
    IgnoreUser {
        /// User.
        user: String,
    },
    /// 12 `str user` (obsolete).
    UnignoreUser {
        /// User.
        user: String,
    },
    /// 13 `str room, str user, str msg`.
    SayChatroom {
        /// Room.
        room: String,
        /// Speaker.
        user: String,
        /// Text.
        message: String,
    },
    /// 14 `str room`, the user lists (see [`RoomUser`]) `[, str owner, u32 n, str operator*n]`.
    JoinRoom {
        /// Room.
        room: String,
        /// Everyone in it.
        users: Vec<RoomUser>,
        /// Owner and operators, for a private room.
        private: Option<PrivateRoomInfo>,
    },
    /// 15 `str room`.
    LeaveRoom {
        /// Room.
        room: String,
    },
    /// 16 `str room, str user, u32 status, stats, u32 slotsfull, str country`.
    UserJoinedRoom {
        /// Room.
        room: String,
        /// The user who joined.
        user: RoomUser,
    },
    /// 17 `str room, str user`.
    UserLeftRoom {
        /// Room.
        room: String,
        /// User.
        user: String,
    },
    /// 18 `str user, str type, ip, u32 port, u32 token, bool privileged, u32 obf_type,
    /// u32 obf_port`.
    ConnectToPeer {
        /// Who wants the connection.
        user: String,
        /// `P`, `F` or `D`.
        conn_type: String,
        /// Their address.
        ip: Ipv4Addr,
        /// Their listening port.
        port: u32,
        /// Token to send back in PierceFireWall.
        token: u32,
        /// Whether they have privileges.
        privileged: bool,
        /// Obfuscation type.
        obf_type: u32,
        /// Obfuscated port — a `u32` here.
        obf_port: u32,
    },
    /// 22 `u32 id, u32 timestamp, str user, str msg, bool new`.
    MessageUser {
        /// Id to acknowledge with MessageAcked.
        id: u32,
        /// Unix time.
        timestamp: u32,
        /// Sender.
        user: String,
        /// Text.
        message: String,
        /// False for messages queued while offline.
        new_message: bool,
    },
    /// 26 `str user, u32 token, str query` — a search to run on our shares.
    FileSearch {
        /// Searcher.
        user: String,
        /// Token for the results.
        token: u32,
        /// Query.
        query: String,
    },
    /// 32 empty (obsolete).
    ServerPing,
    /// 33 `str user, u32 token` (obsolete).
    SendConnectToken {
        /// User.
        user: String,
        /// Token.
        token: u32,
    },
    /// 36 `str user, stats`.
    GetUserStats {
        /// User.
        user: String,
        /// Stats.
        stats: UserStats,
    },
    /// 40 `str user, u32 full` (obsolete).
    UploadSlotsFull {
        /// User.
        user: String,
        /// Whether all slots are taken.
        full: u32,
    },
    /// 41 empty: someone else logged in with our name; the server closes us.
    Relogged,
    /// 50 `str item, u32 n, str*n` (obsolete).
    SimilarRecommendations {
        /// Item.
        item: String,
        /// Similar items.
        similar: Vec<String>,
    },
    /// 54 `u32 n, (str item, i32 score)*n, u32 n, (str item, i32 score)*n`.
    Recommendations {
        /// Recommendations.
        recommendations: Vec<Recommendation>,
        /// Unrecommendations.
        unrecommendations: Vec<Recommendation>,
    },
    /// 55 `u32 n, str*n` (obsolete).
    MyRecommendations {
        /// Items.
        items: Vec<String>,
    },
    /// 56 as 54.
    GlobalRecommendations {
        /// Recommendations.
        recommendations: Vec<Recommendation>,
        /// Unrecommendations.
        unrecommendations: Vec<Recommendation>,
    },
    /// 57 `str user, u32 n, str liked*n, u32 n, str hated*n`.
    UserInterests {
        /// User.
        user: String,
        /// Liked.
        liked: Vec<String>,
        /// Hated.
        hated: Vec<String>,
    },
    /// 59 `str user, u32 token` (obsolete).
    PlaceInLineRequest {
        /// User.
        user: String,
        /// Token.
        token: u32,
    },
    /// 60 `str user, u32 token, u32 place` (obsolete).
    PlaceInLineResponse {
        /// User.
        user: String,
        /// Token.
        token: u32,
        /// Place.
        place: u32,
    },
    /// 62 `str room` (obsolete).
    RoomAdded {
        /// Room.
        room: String,
    },
    /// 63 `str room` (obsolete).
    RoomRemoved {
        /// Room.
        room: String,
    },
    /// 64 see [`RoomList`].
    RoomList(RoomList),
    /// 65 `str user, u32 token, str name, str path, u64 size, u32 checksum` (obsolete).
    ExactFileSearch {
        /// User.
        user: String,
        /// Token.
        token: u32,
        /// File name.
        name: String,
        /// Folder.
        path: String,
        /// Size.
        size: u64,
        /// Checksum.
        checksum: u32,
    },
    /// 66 `str msg`.
    AdminMessage {
        /// Text.
        message: String,
    },
    /// 67 the user lists as in JoinRoom (obsolete).
    GlobalUserList {
        /// Users.
        users: Vec<RoomUser>,
    },
    /// 68 `str user, u32 code, u32 token, ip, u32 port, str msg` (obsolete).
    TunneledMessage {
        /// Sender.
        user: String,
        /// Code.
        code: u32,
        /// Token.
        token: u32,
        /// Address.
        ip: Ipv4Addr,
        /// Port.
        port: u32,
        /// Message.
        message: String,
    },
    /// 69 `u32 n, str user*n`.
    PrivilegedUsers {
        /// Users with privileges.
        users: Vec<String>,
    },
    /// 83 `u32` (kB/s).
    ParentMinSpeed {
        /// Minimum speed to be a parent.
        speed: u32,
    },
    /// 84 `u32`.
    ParentSpeedRatio {
        /// Ratio.
        ratio: u32,
    },
    /// 86 `u32` (obsolete).
    ParentInactivityTimeout {
        /// Seconds.
        seconds: u32,
    },
    /// 87 `u32` (obsolete).
    SearchInactivityTimeout {
        /// Seconds.
        seconds: u32,
    },
    /// 88 `u32` (obsolete).
    MinParentsInCache {
        /// Count.
        count: u32,
    },
    /// 90 `u32` (obsolete).
    DistribPingInterval {
        /// Seconds.
        seconds: u32,
    },
    /// 91 `str user` (obsolete).
    AddToPrivileged {
        /// User.
        user: String,
    },
    /// 92 `u32 seconds_left` of privileges.
    CheckPrivileges {
        /// Seconds left.
        seconds_left: u32,
    },
    /// 93 `u8 distrib_code` + the distributed message body to the end of the frame (no
    /// length prefix). See [`ServerResponse::embedded`].
    EmbeddedMessage {
        /// Distributed code (3 = search).
        code: u8,
        /// Distributed body.
        body: Vec<u8>,
    },
    /// 102 `u32 n, (str user, ip, u32 port)*n`.
    PossibleParents {
        /// Candidates (at most 10 from the real server).
        parents: Vec<PossibleParent>,
    },
    /// 104 `u32 seconds`.
    WishlistInterval {
        /// Seconds between wishlist searches.
        seconds: u32,
    },
    /// 110 `u32 n, (str user, u32 rating)*n`.
    SimilarUsers {
        /// Users and ratings.
        users: Vec<(String, u32)>,
    },
    /// 111 `str item, u32 n, (str rec, i32 score)*n`.
    ItemRecommendations {
        /// Item.
        item: String,
        /// Recommendations.
        recommendations: Vec<Recommendation>,
    },
    /// 112 `str item, u32 n, str user*n`.
    ItemSimilarUsers {
        /// Item.
        item: String,
        /// Users.
        users: Vec<String>,
    },
    /// 113 `str room, u32 n, (str user, str ticker)*n`.
    RoomTickers {
        /// Room.
        room: String,
        /// (user, ticker) pairs.
        tickers: Vec<(String, String)>,
    },
    /// 114 `str room, str user, str ticker`.
    RoomTickerAdd {
        /// Room.
        room: String,
        /// User.
        user: String,
        /// Ticker.
        ticker: String,
    },
    /// 115 `str room, str user`.
    RoomTickerRemove {
        /// Room.
        room: String,
        /// User.
        user: String,
    },
    /// 122 `str user, bool` (deprecated).
    UserPrivileged {
        /// User.
        user: String,
        /// Privileged.
        privileged: bool,
    },
    /// 124 `u32 token, str user` (deprecated).
    NotifyPrivileges {
        /// Token.
        token: u32,
        /// User.
        user: String,
    },
    /// 125 `u32 token` (deprecated).
    AckNotifyPrivileges {
        /// Token.
        token: u32,
    },
    /// 130 empty.
    ResetDistributed,
    /// 133 `str room, u32 n, str user*n`.
    RoomMembers {
        /// Private room.
        room: String,
        /// Members (owner excluded).
        members: Vec<String>,
    },
    /// 134 `str room, str user`.
    AddRoomMember {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 135 `str room, str user`.
    RemoveRoomMember {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 138 `str room` (obsolete).
    RoomSomething {
        /// Room.
        room: String,
    },
    /// 139 `str room`.
    RoomMembershipGranted {
        /// Private room.
        room: String,
    },
    /// 140 `str room`.
    RoomMembershipRevoked {
        /// Private room.
        room: String,
    },
    /// 141 `bool`.
    EnableRoomInvitations {
        /// Whether invitations are enabled.
        enabled: bool,
    },
    /// 142 `str pass`.
    ChangePassword {
        /// The new password.
        password: String,
    },
    /// 143 `str room, str user`.
    AddRoomOperator {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 144 `str room, str user`.
    RemoveRoomOperator {
        /// Private room.
        room: String,
        /// User.
        user: String,
    },
    /// 145 `str room`.
    RoomOperatorshipGranted {
        /// Private room.
        room: String,
    },
    /// 146 `str room`.
    RoomOperatorshipRevoked {
        /// Private room.
        room: String,
    },
    /// 148 `str room, u32 n, str user*n`.
    RoomOperators {
        /// Private room.
        room: String,
        /// Operators.
        operators: Vec<String>,
    },
    /// 152 `str room, str user, str msg`.
    GlobalRoomMessage {
        /// Room.
        room: String,
        /// Speaker.
        user: String,
        /// Text.
        message: String,
    },
    /// 153 `str query, u32 n, (str term, u32 score)*n` (obsolete).
    RelatedSearch {
        /// Query.
        query: String,
        /// Terms and scores.
        terms: Vec<(String, u32)>,
    },
    /// 160 `u32 n, str phrase*n`.
    ExcludedSearchPhrases {
        /// Paths containing one of these must not be returned in search results.
        phrases: Vec<String>,
    },
    /// 1001 `u32 token`.
    CantConnectToPeer {
        /// Token of our ConnectToPeer.
        token: u32,
    },
    /// 1003 `str room`.
    CantCreateRoom {
        /// Room.
        room: String,
    },
    /// Any other code, body kept as is.
    Unknown {
        /// Code.
        code: u32,
        /// Body.
        body: Vec<u8>,
    },
}

impl ServerResponse {
    /// An EmbeddedMessage(93) carrying a distributed message (3 = search).
    pub fn embedded(message: &DistributedMessage) -> Self {
        ServerResponse::EmbeddedMessage { code: message.code(), body: message.encode_body() }
    }

    /// The message code.
    pub fn code(&self) -> u32 {
        use ServerResponse::*;
        match self {
            LoginSuccess { .. } | LoginFailure { .. } => 1,
            GetPeerAddress { .. } => 3,
            WatchUser { .. } => 5,
            GetUserStatus { .. } => 7,
            IgnoreUser { .. } => 11,
            UnignoreUser { .. } => 12,
            SayChatroom { .. } => 13,
            JoinRoom { .. } => 14,
            LeaveRoom { .. } => 15,
            UserJoinedRoom { .. } => 16,
            UserLeftRoom { .. } => 17,
            ConnectToPeer { .. } => 18,
            MessageUser { .. } => 22,
            FileSearch { .. } => 26,
            ServerPing => 32,
            SendConnectToken { .. } => 33,
            GetUserStats { .. } => 36,
            UploadSlotsFull { .. } => 40,
            Relogged => 41,
            SimilarRecommendations { .. } => 50,
            Recommendations { .. } => 54,
            MyRecommendations { .. } => 55,
            GlobalRecommendations { .. } => 56,
            UserInterests { .. } => 57,
            PlaceInLineRequest { .. } => 59,
            PlaceInLineResponse { .. } => 60,
            RoomAdded { .. } => 62,
            RoomRemoved { .. } => 63,
            RoomList(_) => 64,
            ExactFileSearch { .. } => 65,
            AdminMessage { .. } => 66,
            GlobalUserList { .. } => 67,
            TunneledMessage { .. } => 68,
            PrivilegedUsers { .. } => 69,
            ParentMinSpeed { .. } => 83,
            ParentSpeedRatio { .. } => 84,
            ParentInactivityTimeout { .. } => 86,
            SearchInactivityTimeout { .. } => 87,
            MinParentsInCache { .. } => 88,
            DistribPingInterval { .. } => 90,
            AddToPrivileged { .. } => 91,
            CheckPrivileges { .. } => 92,
            EmbeddedMessage { .. } => 93,
            PossibleParents { .. } => 102,
            WishlistInterval { .. } => 104,
            SimilarUsers { .. } => 110,
            ItemRecommendations { .. } => 111,
            ItemSimilarUsers { .. } => 112,
            RoomTickers { .. } => 113,
            RoomTickerAdd { .. } => 114,
            RoomTickerRemove { .. } => 115,
            UserPrivileged { .. } => 122,
            NotifyPrivileges { .. } => 124,
            AckNotifyPrivileges { .. } => 125,
            ResetDistributed => 130,
            RoomMembers { .. } => 133,
            AddRoomMember { .. } => 134,
            RemoveRoomMember { .. } => 135,
            RoomSomething { .. } => 138,
            RoomMembershipGranted { .. } => 139,
            RoomMembershipRevoked { .. } => 140,
            EnableRoomInvitations { .. } => 141,
            ChangePassword { .. } => 142,
            AddRoomOperator { .. } => 143,
            RemoveRoomOperator { .. } => 144,
            RoomOperatorshipGranted { .. } => 145,
            RoomOperatorshipRevoked { .. } => 146,
            RoomOperators { .. } => 148,
            GlobalRoomMessage { .. } => 152,
            RelatedSearch { .. } => 153,
            ExcludedSearchPhrases { .. } => 160,
            CantConnectToPeer { .. } => 1001,
            CantCreateRoom { .. } => 1003,
            Unknown { code, .. } => *code,
        }
    }

    /// Decode the body of a frame with this code.
    pub fn decode(code: u32, body: &[u8]) -> Result<Self> {
        use ServerResponse::*;
        let r = &mut Reader::new(body);
        Ok(match code {
            1 => {
                if r.bool()? {
                    LoginSuccess { greet: r.str()?, own_ip: r.ip()?, password_hash: r.str()?, supporter: r.bool()? }
                } else {
                    let reason = r.str()?;
                    let detail = if r.is_empty() { None } else { Some(r.str()?) };
                    LoginFailure { reason, detail }
                }
            }
            3 => GetPeerAddress { user: r.str()?, ip: r.ip()?, port: r.u32()?, obf_type: r.u32()?, obf_port: r.u16()? },
            5 => {
                let user = r.str()?;
                let exists = r.bool()?;
                let details = if r.is_empty() {
                    None
                } else {
                    let status = read_status(r)?;
                    let stats = UserStats::read(r)?;
                    let country = if r.is_empty() { None } else { Some(r.str()?) };
                    Some(WatchedUser { status, stats, country })
                };
                WatchUser { user, exists, details }
            }
            7 => GetUserStatus { user: r.str()?, status: read_status(r)?, privileged: r.bool()? },
            11 => IgnoreUser { user: r.str()? },
            12 => UnignoreUser { user: r.str()? },
            13 => SayChatroom { room: r.str()?, user: r.str()?, message: r.str()? },
            14 => {
                let room = r.str()?;
                let users = read_room_users(r)?;
                let private = if r.is_empty() {
                    None
                } else {
                    let owner = r.str()?;
                    let operators = if r.is_empty() { Vec::new() } else { r.str_list(MAX_LIST_ITEMS)? };
                    Some(PrivateRoomInfo { owner, operators })
                };
                JoinRoom { room, users, private }
            }
            15 => LeaveRoom { room: r.str()? },
            16 => UserJoinedRoom {
                room: r.str()?,
                user: {
                    let name = r.str()?;
                    let status = read_status(r)?;
                    let stats = UserStats::read(r)?;
                    let slots_full = r.u32()?;
                    let country = r.str()?;
                    RoomUser { name, status, stats, slots_full, country }
                },
            },
            17 => UserLeftRoom { room: r.str()?, user: r.str()? },
            18 => ConnectToPeer {
                user: r.str()?,
                conn_type: r.str()?,
                ip: r.ip()?,
                port: r.u32()?,
                token: r.u32()?,
                privileged: r.bool()?,
                obf_type: r.u32()?,
                obf_port: r.u32()?,
            },
            22 => MessageUser {
                id: r.u32()?,
                timestamp: r.u32()?,
                user: r.str()?,
                message: r.str()?,
                new_message: r.bool()?,
            },
            26 => FileSearch { user: r.str()?, token: r.u32()?, query: r.str()? },
            32 => ServerPing,
            33 => SendConnectToken { user: r.str()?, token: r.u32()? },
            36 => GetUserStats { user: r.str()?, stats: UserStats::read(r)? },
            40 => UploadSlotsFull { user: r.str()?, full: r.u32()? },
            41 => Relogged,
            50 => SimilarRecommendations { item: r.str()?, similar: r.str_list(MAX_LIST_ITEMS)? },
            54 | 56 => {
                let recommendations = read_recommendations(r)?;
                let unrecommendations = read_recommendations(r)?;
                if code == 54 {
                    Recommendations { recommendations, unrecommendations }
                } else {
                    GlobalRecommendations { recommendations, unrecommendations }
                }
            }
            55 => MyRecommendations { items: r.str_list(MAX_LIST_ITEMS)? },
            57 => {
                UserInterests { user: r.str()?, liked: r.str_list(MAX_LIST_ITEMS)?, hated: r.str_list(MAX_LIST_ITEMS)? }
            }
            59 => PlaceInLineRequest { user: r.str()?, token: r.u32()? },
            60 => PlaceInLineResponse { user: r.str()?, token: r.u32()?, place: r.u32()? },
            62 => RoomAdded { room: r.str()? },
            63 => RoomRemoved { room: r.str()? },
            64 => RoomList(self::RoomList::read(r)?),
            65 => ExactFileSearch {
                user: r.str()?,
                token: r.u32()?,
                name: r.str()?,
                path: r.str()?,
                size: r.u64()?,
                checksum: r.u32()?,
            },
            66 => AdminMessage { message: r.str()? },
            67 => GlobalUserList { users: read_room_users(r)? },
            68 => TunneledMessage {
                user: r.str()?,
                code: r.u32()?,
                token: r.u32()?,
                ip: r.ip()?,
                port: r.u32()?,
                message: r.str()?,
            },
            69 => PrivilegedUsers { users: r.str_list(MAX_LIST_ITEMS)? },
            83 => ParentMinSpeed { speed: r.u32()? },
            84 => ParentSpeedRatio { ratio: r.u32()? },
            86 => ParentInactivityTimeout { seconds: r.u32()? },
            87 => SearchInactivityTimeout { seconds: r.u32()? },
            88 => MinParentsInCache { count: r.u32()? },
            90 => DistribPingInterval { seconds: r.u32()? },
            91 => AddToPrivileged { user: r.str()? },
            92 => CheckPrivileges { seconds_left: r.u32()? },
            93 => EmbeddedMessage { code: r.u8()?, body: r.rest().to_vec() },
            102 => PossibleParents {
                parents: r
                    .list(MAX_LIST_ITEMS, 12, |r| Ok(PossibleParent { user: r.str()?, ip: r.ip()?, port: r.u32()? }))?,
            },
            104 => WishlistInterval { seconds: r.u32()? },
            110 => SimilarUsers { users: read_str_u32_list(r)? },
            111 => ItemRecommendations { item: r.str()?, recommendations: read_recommendations(r)? },
            112 => ItemSimilarUsers { item: r.str()?, users: r.str_list(MAX_LIST_ITEMS)? },
            113 => RoomTickers { room: r.str()?, tickers: r.list(MAX_LIST_ITEMS, 8, |r| Ok((r.str()?, r.str()?)))? },
            114 => RoomTickerAdd { room: r.str()?, user: r.str()?, ticker: r.str()? },
            115 => RoomTickerRemove { room: r.str()?, user: r.str()? },
            122 => UserPrivileged { user: r.str()?, privileged: r.bool()? },
            124 => NotifyPrivileges { token: r.u32()?, user: r.str()? },
            125 => AckNotifyPrivileges { token: r.u32()? },
            130 => ResetDistributed,
            133 => RoomMembers { room: r.str()?, members: r.str_list(MAX_LIST_ITEMS)? },
            134 => AddRoomMember { room: r.str()?, user: r.str()? },
            135 => RemoveRoomMember { room: r.str()?, user: r.str()? },
            138 => RoomSomething { room: r.str()? },
            139 => RoomMembershipGranted { room: r.str()? },
            140 => RoomMembershipRevoked { room: r.str()? },
            141 => EnableRoomInvitations { enabled: r.bool()? },
            142 => ChangePassword { password: r.str()? },
            143 => AddRoomOperator { room: r.str()?, user: r.str()? },
            144 => RemoveRoomOperator { room: r.str()?, user: r.str()? },
            145 => RoomOperatorshipGranted { room: r.str()? },
            146 => RoomOperatorshipRevoked { room: r.str()? },
            148 => RoomOperators { room: r.str()?, operators: r.str_list(MAX_LIST_ITEMS)? },
            152 => GlobalRoomMessage { room: r.str()?, user: r.str()?, message: r.str()? },
            153 => RelatedSearch { query: r.str()?, terms: read_str_u32_list(r)? },
            160 => ExcludedSearchPhrases { phrases: r.str_list(MAX_LIST_ITEMS)? },
            1001 => CantConnectToPeer { token: r.u32()? },
            1003 => CantCreateRoom { room: r.str()? },
            _ => Unknown { code, body: body.to_vec() },
        })
    }

    /// Decode a frame read with [`crate::FrameKind::Server`].
    pub fn from_frame(frame: &Frame) -> Result<Self> {
        Self::decode(frame.code, &frame.body)
    }

    /// The body (everything after the code).
    pub fn encode_body(&self) -> Vec<u8> {
        use ServerResponse::*;
        let mut w = Writer::new();
        match self {
            LoginSuccess { greet, own_ip, password_hash, supporter } => {
                w.bool(true).str(greet).ip(*own_ip).str(password_hash).bool(*supporter);
            }
            LoginFailure { reason, detail } => {
                w.bool(false).str(reason);
                if let Some(d) = detail {
                    w.str(d);
                }
            }
            GetPeerAddress { user, ip, port, obf_type, obf_port } => {
                w.str(user).ip(*ip).u32(*port).u32(*obf_type).u16(*obf_port);
            }
            WatchUser { user, exists, details } => {
                w.str(user).bool(*exists);
                if let Some(d) = details {
                    w.u32(d.status.into());
                    d.stats.write(&mut w);
                    if let Some(c) = &d.country {
                        w.str(c);
                    }
                }
            }
            GetUserStatus { user, status, privileged } => {
                w.str(user).u32((*status).into()).bool(*privileged);
            }
            IgnoreUser { user } | UnignoreUser { user } | AddToPrivileged { user } => {
                w.str(user);
            }
            SayChatroom { room, user, message } | GlobalRoomMessage { room, user, message } => {
                w.str(room).str(user).str(message);
            }
            JoinRoom { room, users, private } => {
                w.str(room);
                write_room_users(&mut w, users);
                if let Some(p) = private {
                    w.str(&p.owner).str_list(&p.operators);
                }
            }
            LeaveRoom { room }
            | RoomAdded { room }
            | RoomRemoved { room }
            | RoomSomething { room }
            | RoomMembershipGranted { room }
            | RoomMembershipRevoked { room }
            | RoomOperatorshipGranted { room }
            | RoomOperatorshipRevoked { room }
            | CantCreateRoom { room } => {
                w.str(room);
            }
            UserJoinedRoom { room, user } => {
                w.str(room).str(&user.name).u32(user.status.into());
                user.stats.write(&mut w);
                w.u32(user.slots_full).str(&user.country);
            }
            UserLeftRoom { room, user }
            | RoomTickerRemove { room, user }
            | AddRoomMember { room, user }
            | RemoveRoomMember { room, user }
            | AddRoomOperator { room, user }
            | RemoveRoomOperator { room, user } => {
                w.str(room).str(user);
            }
            ConnectToPeer { user, conn_type, ip, port, token, privileged, obf_type, obf_port } => {
                w.str(user)
                    .str(conn_type)
                    .ip(*ip)
                    .u32(*port)
                    .u32(*token)
                    .bool(*privileged)
                    .u32(*obf_type)
                    .u32(*obf_port);
            }
            MessageUser { id, timestamp, user, message, new_message } => {
                w.u32(*id).u32(*timestamp).str(user).str(message).bool(*new_message);
            }
            FileSearch { user, token, query } => {
                w.str(user).u32(*token).str(query);
            }
            ServerPing | Relogged | ResetDistributed => {}
            SendConnectToken { user, token } | PlaceInLineRequest { user, token } => {
                w.str(user).u32(*token);
            }
            GetUserStats { user, stats } => {
                w.str(user);
                stats.write(&mut w);
            }
            UploadSlotsFull { user, full } => {
                w.str(user).u32(*full);
            }
            SimilarRecommendations { item, similar } => {
                w.str(item).str_list(similar);
            }
            Recommendations { recommendations, unrecommendations }
            | GlobalRecommendations { recommendations, unrecommendations } => {
                write_recommendations(&mut w, recommendations);
                write_recommendations(&mut w, unrecommendations);
            }
            MyRecommendations { items } => {
                w.str_list(items);
            }
            UserInterests { user, liked, hated } => {
                w.str(user).str_list(liked).str_list(hated);
            }
            PlaceInLineResponse { user, token, place } => {
                w.str(user).u32(*token).u32(*place);
            }
            RoomList(list) => list.write(&mut w),
            ExactFileSearch { user, token, name, path, size, checksum } => {
                w.str(user).u32(*token).str(name).str(path).u64(*size).u32(*checksum);
            }
            AdminMessage { message } => {
                w.str(message);
            }
            GlobalUserList { users } => write_room_users(&mut w, users),
            TunneledMessage { user, code, token, ip, port, message } => {
                w.str(user).u32(*code).u32(*token).ip(*ip).u32(*port).str(message);
            }
            PrivilegedUsers { users } => {
                w.str_list(users);
            }
            ParentMinSpeed { speed: v }
            | ParentSpeedRatio { ratio: v }
            | ParentInactivityTimeout { seconds: v }
            | SearchInactivityTimeout { seconds: v }
            | MinParentsInCache { count: v }
            | DistribPingInterval { seconds: v }
            | CheckPrivileges { seconds_left: v }
            | WishlistInterval { seconds: v }
            | AckNotifyPrivileges { token: v }
            | CantConnectToPeer { token: v } => {
                w.u32(*v);
            }
            EmbeddedMessage { code, body } => {
                w.u8(*code).raw(body);
            }
            PossibleParents { parents } => {
                w.list(parents, |w, p| {
                    w.str(&p.user).ip(p.ip).u32(p.port);
                });
            }
            SimilarUsers { users } => write_str_u32_list(&mut w, users),
            ItemRecommendations { item, recommendations } => {
                w.str(item);
                write_recommendations(&mut w, recommendations);
            }
            ItemSimilarUsers { item, users } => {
                w.str(item).str_list(users);
            }
            RoomTickers { room, tickers } => {
                w.str(room).list(tickers, |w, (u, t)| {
                    w.str(u).str(t);
                });
            }
            RoomTickerAdd { room, user, ticker } => {
                w.str(room).str(user).str(ticker);
            }
            UserPrivileged { user, privileged } => {
                w.str(user).bool(*privileged);
            }
            NotifyPrivileges { token, user } => {
                w.u32(*token).str(user);
            }
            RoomMembers { room, members: users } | RoomOperators { room, operators: users } => {
                w.str(room).str_list(users);
            }
            EnableRoomInvitations { enabled } => {
                w.bool(*enabled);
            }
            ChangePassword { password } => {
                w.str(password);
            }
            RelatedSearch { query, terms } => {
                w.str(query);
                write_str_u32_list(&mut w, terms);
            }
            ExcludedSearchPhrases { phrases } => {
                w.str_list(phrases);
            }
            Unknown { body, .. } => {
                w.raw(body);
            }
        }
        w.into_inner()
    }

    /// The whole frame: `u32 len, u32 code, body`.
    pub fn encode(&self) -> Vec<u8> {
        frame_u32(self.code(), &self.encode_body())
    }
}

/// Every code [`ServerRequest::decode`] knows.
pub const REQUEST_CODES: &[u32] = &[
    1, 2, 3, 5, 6, 7, 11, 12, 13, 14, 15, 18, 22, 23, 25, 26, 28, 32, 33, 34, 35, 36, 40, 42, 50, 51, 52, 54, 55, 56,
    57, 58, 59, 60, 64, 65, 67, 68, 71, 73, 92, 100, 103, 110, 111, 112, 116, 117, 118, 120, 121, 122, 123, 124, 125,
    126, 127, 129, 134, 135, 136, 137, 138, 141, 142, 143, 144, 149, 150, 151, 153, 1001,
];

/// Every code [`ServerResponse::decode`] knows.
pub const RESPONSE_CODES: &[u32] = &[
    1, 3, 5, 7, 11, 12, 13, 14, 15, 16, 17, 18, 22, 26, 32, 33, 36, 40, 41, 50, 54, 55, 56, 57, 59, 60, 62, 63, 64, 65,
    66, 67, 68, 69, 83, 84, 86, 87, 88, 90, 91, 92, 93, 102, 104, 110, 111, 112, 113, 114, 115, 122, 124, 125, 130,
    133, 134, 135, 138, 139, 140, 141, 142, 143, 144, 145, 146, 148, 152, 153, 160, 1001, 1003,
];
