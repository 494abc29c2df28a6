//! Peer messages: the peer-init frame that opens every peer socket ([`PeerInit`],
//! `u32 len, u8 code`) and the messages of `P` connections ([`PeerMessage`],
//! `u32 len, u32 code`).
//!
//! Bodies of 5 (shares), 9 (search results) and 37 (folder contents) are one zlib stream
//! (see [`crate::zlib`]); [`PeerMessage::decode`] inflates them with the output capped at
//! [`MAX_SHARE_LIST_DECOMPRESSED`] (code 5) or [`MAX_DECOMPRESSED`] (codes 9 and 37), and
//! [`PeerMessage::encode`] compresses them. Unknown codes become [`PeerMessage::Unknown`].
//!
//! The transfer flow (docs/protocols/soulseek.md#transfer): the downloader sends [`PeerMessage::QueueUpload`]; the
//! uploader answers [`PeerMessage::TransferRequest`] with [`TransferDirection::Upload`] and
//! the size; the downloader replies [`PeerMessage::TransferResponse`] allowed, without a
//! size; the uploader opens an `F` connection.

use crate::framing::{frame_u32, frame_u8, Frame};
use crate::limits::{MAX_DECOMPRESSED, MAX_SHARE_LIST_DECOMPRESSED};
use crate::shares::{read_directories, read_files, write_directories, write_files};
use crate::shares::{SharedDirectory, SharedFile};
use crate::wire::{DecodeError, Reader, Result, Writer};
use crate::zlib;

/// The first frame on every peer socket (`u32 len, u8 code, body`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerInit {
    /// 0 `u32 token` — answers a ConnectToPeer(18) from the server with its token.
    PierceFireWall {
        /// Token from ConnectToPeer.
        token: u32,
    },
    /// 1 `str user, str type, u32 token` — opens a direct connection. Nicotine+ sends
    /// token 0, aioslsk a ticket number; a body without the token reads as token 0.
    PeerInit {
        /// The connecting user's own name.
        user: String,
        /// `P`, `F` or `D` (see [`crate::PeerConnectionType`]).
        conn_type: String,
        /// Token.
        token: u32,
    },
}

impl PeerInit {
    /// The message code.
    pub fn code(&self) -> u8 {
        match self {
            PeerInit::PierceFireWall { .. } => 0,
            PeerInit::PeerInit { .. } => 1,
        }
    }

    /// Decode a body with this code. Codes other than 0 and 1 are an error: the socket
    /// cannot be used.
    pub fn decode(code: u8, body: &[u8]) -> Result<Self> {
        let r = &mut Reader::new(body);
        match code {
            0 => Ok(PeerInit::PierceFireWall { token: r.u32()? }),
            1 => Ok(PeerInit::PeerInit {
                user: r.str()?,
                conn_type: r.str()?,
                token: if r.remaining() >= 4 { r.u32()? } else { 0 },
            }),
            c => Err(DecodeError::UnknownCode(c as u32)),
        }
    }

    /// Decode a frame read with [`crate::FrameKind::PeerInit`].
    pub fn from_frame(frame: &Frame) -> Result<Self> {
        let code = u8::try_from(frame.code).map_err(|_| DecodeError::UnknownCode(frame.code))?;
        Self::decode(code, &frame.body)
    }

    /// The body (everything after the code).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            PeerInit::PierceFireWall { token } => {
                w.u32(*token);
            }
            PeerInit::PeerInit { user, conn_type, token } => {
                w.str(user).str(conn_type).u32(*token);
            }
        }
        w.into_inner()
    }

    /// The whole frame: `u32 len, u8 code, body`.
    pub fn encode(&self) -> Vec<u8> {
        frame_u8(self.code(), &self.encode_body())
    }
}

/// Direction field of TransferRequest(40), read as "what the sender of the message will do".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferDirection {
    /// 0 "please let me download" — legacy, sent by the downloader (slskd, Seeker).
    Download,
    /// 1 "I will upload to you" — modern, sent by the uploader; carries the size.
    Upload,
}

impl TransferDirection {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            TransferDirection::Download => 0,
            TransferDirection::Upload => 1,
        }
    }

    /// From the wire value; anything but 0 and 1 is `None`.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(TransferDirection::Download),
            1 => Some(TransferDirection::Upload),
            _ => None,
        }
    }
}

/// The answer in a TransferResponse(41).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransferReply {
    /// `bool 1[, u64 size]`: the size is sent only when answering a legacy direction-0
    /// request (download allowed, here is the size); answering an upload it is absent.
    Allowed {
        /// File size, for the legacy download answer.
        size: Option<u64>,
    },
    /// `bool 0, str reason` (see [`reject_reason`]). A refusal without a reason reads as an
    /// empty reason.
    Denied {
        /// Why.
        reason: String,
    },
}

/// Transfer rejection reasons, exactly as the clients send them (note the dots).
pub mod reject_reason {
    /// Banned.
    pub const BANNED: &str = "Banned";
    /// Cancelled.
    pub const CANCELLED: &str = "Cancelled";
    /// Already complete.
    pub const COMPLETE: &str = "Complete";
    /// Not shared.
    pub const FILE_NOT_SHARED: &str = "File not shared.";
    /// Read error.
    pub const FILE_READ_ERROR: &str = "File read error.";
    /// Uploader is shutting down.
    pub const PENDING_SHUTDOWN: &str = "Pending shutdown.";
    /// Queued: the answer to a legacy direction-0 request.
    pub const QUEUED: &str = "Queued";
    /// Queue limit (files).
    pub const TOO_MANY_FILES: &str = "Too many files";
    /// Queue limit (size).
    pub const TOO_MANY_MEGABYTES: &str = "Too many megabytes";
    /// Legacy: country blocked.
    pub const BLOCKED_COUNTRY: &str = "Blocked country";
    /// Legacy: extension not allowed.
    pub const DISALLOWED_EXTENSION: &str = "Disallowed extension";
    /// Legacy spelling without the dot.
    pub const FILE_NOT_SHARED_LEGACY: &str = "File not shared";
    /// Legacy.
    pub const REMOTE_FILE_ERROR: &str = "Remote file error";
}

/// Upload permission values of [`UserInfo::upload_permitted`].
pub mod upload_permission {
    /// Nobody.
    pub const NOBODY: u32 = 0;
    /// Everyone.
    pub const EVERYONE: u32 = 1;
    /// Users in my list.
    pub const USERS_IN_LIST: u32 = 2;
    /// Permitted users.
    pub const PERMITTED_USERS: u32 = 3;
}

/// SharedFileListResponse(5), inflated:
/// `u32 ndirs, DIRECTORY*ndirs[, u32 unknown(0)[, u32 nprivdirs, DIRECTORY*nprivdirs]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SharedFileList {
    /// Public directories.
    pub dirs: Vec<SharedDirectory>,
    /// The `unknown` field (always 0); `None` when the body ended before it.
    pub unknown: Option<u32>,
    /// Directories shared with this peer only; `None` when absent (Nicotine+ omits the
    /// count when it has none). Writing `Some` with `unknown: None` writes `unknown` as 0.
    pub private_dirs: Option<Vec<SharedDirectory>>,
}

/// FileSearchResponse(9), inflated: `str user, u32 token, u32 n, FILE*n, bool slotfree,
/// u32 avgspeed, u32 queue_len[, u32 unknown(0)[, u32 n, FILE*n (private)]]`.
///
/// Accepted ends: after `queue_len` (old clients), after `unknown` (Nicotine+ without
/// private results), or after the private list (aioslsk, which sends a count of 0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchResponse {
    /// The responder's name.
    pub user: String,
    /// Token of the search.
    pub token: u32,
    /// Matching files, full virtual paths.
    pub files: Vec<SharedFile>,
    /// Whether an upload slot is free.
    pub slot_free: bool,
    /// Average upload speed, bytes/s.
    pub avg_speed: u32,
    /// Upload queue length.
    pub queue_len: u32,
    /// The `unknown` field (0); `None` when the body ended after `queue_len`.
    pub unknown: Option<u32>,
    /// Private results; `None` when absent. Writing `Some` with `unknown: None` writes
    /// `unknown` as 0.
    pub private_files: Option<Vec<SharedFile>>,
}

/// UserInfoResponse(16): `str descr, bool has_pic, [bytes pic], u32 totalupl,
/// u32 queuesize, bool slotsfree[, u32 upload_permitted]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// Free text.
    pub description: String,
    /// Picture bytes, when `has_pic`.
    pub picture: Option<Vec<u8>>,
    /// Total uploads.
    pub total_uploads: u32,
    /// Upload queue size.
    pub queue_size: u32,
    /// Whether upload slots are free.
    pub slots_free: bool,
    /// Who may upload to us (see [`upload_permission`]); SoulseekQt omits it. Read only when
    /// four bytes remain (Museek+ sends garbage there).
    pub upload_permitted: Option<u32>,
}

/// A message on a `P` connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// 4 empty — GetSharedFileList.
    SharedFileListRequest,
    /// 5 zlib — see [`SharedFileList`].
    SharedFileListResponse(SharedFileList),
    /// 8 `u32 token, str query` (obsolete).
    FileSearchRequest {
        /// Token.
        token: u32,
        /// Query.
        query: String,
    },
    /// 9 zlib — see [`SearchResponse`].
    FileSearchResponse(SearchResponse),
    /// 15 empty.
    UserInfoRequest,
    /// 16 see [`UserInfo`].
    UserInfoResponse(UserInfo),
    /// 22 `u32 id, u32 timestamp, str user, str msg` (obsolete private message).
    PrivateMessage {
        /// Id.
        id: u32,
        /// Timestamp.
        timestamp: u32,
        /// Sender.
        user: String,
        /// Text.
        message: String,
    },
    /// 36 `u32 token, str folder`.
    FolderContentsRequest {
        /// Token.
        token: u32,
        /// Virtual folder path.
        folder: String,
    },
    /// 37 zlib{`u32 token, str folder, u32 ndirs, DIRECTORY*ndirs`}.
    FolderContentsResponse {
        /// Token from the request.
        token: u32,
        /// The folder asked for.
        folder: String,
        /// It and its subdirectories.
        dirs: Vec<SharedDirectory>,
    },
    /// 40 `u32 direction, u32 token, str filename[, u64 size if direction == 1]`.
    /// Decoding gives `size: Some` exactly for [`TransferDirection::Upload`]; encoding writes
    /// the size (0 if `None`) exactly for Upload.
    TransferRequest {
        /// Direction, from the sender's point of view.
        direction: TransferDirection,
        /// Transfer token.
        token: u32,
        /// Virtual path.
        filename: String,
        /// File size (Upload only).
        size: Option<u64>,
    },
    /// 41 `u32 token, bool allowed` + see [`TransferReply`].
    TransferResponse {
        /// Token from the request.
        token: u32,
        /// The answer.
        reply: TransferReply,
    },
    /// 42 `str filename` (obsolete).
    UploadPlacehold {
        /// Virtual path.
        filename: String,
    },
    /// 43 `str filename` — please queue this file for me.
    QueueUpload {
        /// Virtual path.
        filename: String,
    },
    /// 44 `str filename, u32 place`.
    PlaceInQueueResponse {
        /// Virtual path.
        filename: String,
        /// Place in the queue.
        place: u32,
    },
    /// 46 `str filename` — the `F` connection of an active upload dropped.
    UploadFailed {
        /// Virtual path.
        filename: String,
    },
    /// 50 `str filename, str reason` — queueing refused.
    UploadDenied {
        /// Virtual path.
        filename: String,
        /// Why (see [`reject_reason`]).
        reason: String,
    },
    /// 51 `str filename`.
    PlaceInQueueRequest {
        /// Virtual path.
        filename: String,
    },
    /// 52 empty (deprecated).
    UploadQueueNotification,
    /// Any other code, body kept as is.
    Unknown {
        /// Code.
        code: u32,
        /// Body.
        body: Vec<u8>,
    },
}

impl PeerMessage {
    /// The message code.
    pub fn code(&self) -> u32 {
        use PeerMessage::*;
        match self {
            SharedFileListRequest => 4,
            SharedFileListResponse(_) => 5,
            FileSearchRequest { .. } => 8,
            FileSearchResponse(_) => 9,
            UserInfoRequest => 15,
            UserInfoResponse(_) => 16,
            PrivateMessage { .. } => 22,
            FolderContentsRequest { .. } => 36,
            FolderContentsResponse { .. } => 37,
            TransferRequest { .. } => 40,
            TransferResponse { .. } => 41,
            UploadPlacehold { .. } => 42,
            QueueUpload { .. } => 43,
            PlaceInQueueResponse { .. } => 44,
            UploadFailed { .. } => 46,
            UploadDenied { .. } => 50,
            PlaceInQueueRequest { .. } => 51,
            UploadQueueNotification => 52,
            Unknown { code, .. } => *code,
        }
    }

    /// Decode a body with this code (inflating 5, 9 and 37).
    pub fn decode(code: u32, body: &[u8]) -> Result<Self> {
        Self::decode_limited(code, body, usize::MAX)
    }

    /// [`PeerMessage::decode`] with the inflated size of 5, 9 and 37 capped at
    /// `max_inflated` as well as at their own limits: a program that only ever expects
    /// small ones (search results) need not hold 128 MiB per message of a zlib bomb.
    pub fn decode_limited(code: u32, body: &[u8], max_inflated: usize) -> Result<Self> {
        use PeerMessage::*;
        let inflated;
        let r = &mut Reader::new(match code {
            5 => {
                inflated = zlib::inflate(body, MAX_SHARE_LIST_DECOMPRESSED.min(max_inflated))?;
                &inflated
            }
            9 | 37 => {
                inflated = zlib::inflate(body, MAX_DECOMPRESSED.min(max_inflated))?;
                &inflated
            }
            _ => body,
        });
        Ok(match code {
            4 => SharedFileListRequest,
            5 => {
                let dirs = read_directories(r)?;
                let unknown = if r.remaining() >= 4 { Some(r.u32()?) } else { None };
                let private_dirs = if unknown.is_some() && !r.is_empty() { Some(read_directories(r)?) } else { None };
                SharedFileListResponse(SharedFileList { dirs, unknown, private_dirs })
            }
            8 => FileSearchRequest { token: r.u32()?, query: r.str()? },
            9 => {
                let user = r.str()?;
                let token = r.u32()?;
                let files = read_files(r)?;
                let slot_free = r.bool()?;
                let avg_speed = r.u32()?;
                let queue_len = r.u32()?;
                let unknown = if r.remaining() >= 4 { Some(r.u32()?) } else { None };
                let private_files = if unknown.is_some() && !r.is_empty() { Some(read_files(r)?) } else { None };
                FileSearchResponse(SearchResponse {
                    user,
                    token,
                    files,
                    slot_free,
                    avg_speed,
                    queue_len,
                    unknown,
                    private_files,
                })
            }
            15 => UserInfoRequest,
            16 => {
                let description = r.str()?;
                let picture = if r.bool()? { Some(r.bytes()?) } else { None };
                let total_uploads = r.u32()?;
                let queue_size = r.u32()?;
                let slots_free = r.bool()?;
                let upload_permitted = if r.remaining() >= 4 { Some(r.u32()?) } else { None };
                UserInfoResponse(UserInfo {
                    description,
                    picture,
                    total_uploads,
                    queue_size,
                    slots_free,
                    upload_permitted,
                })
            }
            22 => PrivateMessage { id: r.u32()?, timestamp: r.u32()?, user: r.str()?, message: r.str()? },
            36 => FolderContentsRequest { token: r.u32()?, folder: r.str()? },
            37 => FolderContentsResponse { token: r.u32()?, folder: r.str()?, dirs: read_directories(r)? },
            40 => {
                let raw = r.u32()?;
                let direction = TransferDirection::from_u32(raw)
                    .ok_or(DecodeError::Invalid { field: "transfer direction", value: raw as u64 })?;
                let token = r.u32()?;
                let filename = r.str()?;
                let size = match direction {
                    TransferDirection::Upload => Some(r.u64()?),
                    TransferDirection::Download => None,
                };
                TransferRequest { direction, token, filename, size }
            }
            41 => {
                let token = r.u32()?;
                let reply = if r.bool()? {
                    TransferReply::Allowed { size: if r.is_empty() { None } else { Some(r.u64()?) } }
                } else {
                    TransferReply::Denied { reason: if r.is_empty() { String::new() } else { r.str()? } }
                };
                TransferResponse { token, reply }
            }
            42 => UploadPlacehold { filename: r.str()? },
            43 => QueueUpload { filename: r.str()? },
            44 => PlaceInQueueResponse { filename: r.str()?, place: r.u32()? },
            46 => UploadFailed { filename: r.str()? },
            50 => UploadDenied { filename: r.str()?, reason: r.str()? },
            51 => PlaceInQueueRequest { filename: r.str()? },
            52 => UploadQueueNotification,
            _ => Unknown { code, body: body.to_vec() },
        })
    }

    /// Decode a frame read with [`crate::FrameKind::Peer`].
    pub fn from_frame(frame: &Frame) -> Result<Self> {
        Self::decode(frame.code, &frame.body)
    }

    /// The uncompressed body: for 5, 9 and 37 this is what gets zlib-compressed.
    pub fn encode_plain_body(&self) -> Vec<u8> {
        use PeerMessage::*;
        let mut w = Writer::new();
        match self {
            SharedFileListRequest | UserInfoRequest | UploadQueueNotification => {}
            SharedFileListResponse(l) => {
                write_directories(&mut w, &l.dirs);
                if l.unknown.is_some() || l.private_dirs.is_some() {
                    w.u32(l.unknown.unwrap_or(0));
                }
                if let Some(p) = &l.private_dirs {
                    write_directories(&mut w, p);
                }
            }
            FileSearchRequest { token, query } => {
                w.u32(*token).str(query);
            }
            FileSearchResponse(s) => {
                w.str(&s.user).u32(s.token);
                write_files(&mut w, &s.files);
                w.bool(s.slot_free).u32(s.avg_speed).u32(s.queue_len);
                if s.unknown.is_some() || s.private_files.is_some() {
                    w.u32(s.unknown.unwrap_or(0));
                }
                if let Some(p) = &s.private_files {
                    write_files(&mut w, p);
                }
            }
            UserInfoResponse(u) => {
                w.str(&u.description);
                match &u.picture {
                    Some(p) => {
                        w.bool(true).bytes(p);
                    }
                    None => {
                        w.bool(false);
                    }
                }
                w.u32(u.total_uploads).u32(u.queue_size).bool(u.slots_free);
                if let Some(p) = u.upload_permitted {
                    w.u32(p);
                }
            }
            PrivateMessage { id, timestamp, user, message } => {
                w.u32(*id).u32(*timestamp).str(user).str(message);
            }
            FolderContentsRequest { token, folder } => {
                w.u32(*token).str(folder);
            }
            FolderContentsResponse { token, folder, dirs } => {
                w.u32(*token).str(folder);
                write_directories(&mut w, dirs);
            }
            TransferRequest { direction, token, filename, size } => {
                w.u32(direction.to_u32()).u32(*token).str(filename);
                if *direction == TransferDirection::Upload {
                    w.u64(size.unwrap_or(0));
                }
            }
            TransferResponse { token, reply } => {
                w.u32(*token);
                match reply {
                    TransferReply::Allowed { size } => {
                        w.bool(true);
                        if let Some(s) = size {
                            w.u64(*s);
                        }
                    }
                    TransferReply::Denied { reason } => {
                        w.bool(false).str(reason);
                    }
                }
            }
            UploadPlacehold { filename }
            | QueueUpload { filename }
            | UploadFailed { filename }
            | PlaceInQueueRequest { filename } => {
                w.str(filename);
            }
            PlaceInQueueResponse { filename, place } => {
                w.str(filename).u32(*place);
            }
            UploadDenied { filename, reason } => {
                w.str(filename).str(reason);
            }
            Unknown { body, .. } => {
                w.raw(body);
            }
        }
        w.into_inner()
    }

    /// Whether the body travels zlib-compressed (codes 5, 9, 37).
    pub fn is_compressed(&self) -> bool {
        matches!(self.code(), 5 | 9 | 37) && !matches!(self, PeerMessage::Unknown { .. })
    }

    /// The body as sent: compressed for 5, 9 and 37.
    pub fn encode_body(&self) -> Vec<u8> {
        let plain = self.encode_plain_body();
        if self.is_compressed() {
            zlib::deflate(&plain)
        } else {
            plain
        }
    }

    /// The whole frame: `u32 len, u32 code, body`.
    pub fn encode(&self) -> Vec<u8> {
        frame_u32(self.code(), &self.encode_body())
    }
}

/// Every code [`PeerMessage::decode`] knows.
pub const CODES: &[u32] = &[4, 5, 8, 9, 15, 16, 22, 36, 37, 40, 41, 42, 43, 44, 46, 50, 51, 52];
