//! Soulseek wire helpers for the TEST FIXTURES (mock server, tap): little-endian integers,
//! `u32`-length strings, frame builders and a bounds-checked reader. Written from the byte
//! layouts in docs/protocols/soulseek.md#framing and #server-codes; plus the MD5 the Login reply needs and the
//! SHA-256 the harness checks downloads with (both std-only, checked against RFC vectors in
//! the self-test).

/// Body builder.
#[derive(Default, Clone, Debug)]
pub struct W(pub Vec<u8>);

impl W {
    pub fn new() -> W {
        W(Vec::new())
    }
    pub fn u8(mut self, v: u8) -> W {
        self.0.push(v);
        self
    }
    pub fn bool(self, v: bool) -> W {
        self.u8(v as u8)
    }
    pub fn u16(mut self, v: u16) -> W {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> W {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> W {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn str(mut self, s: &str) -> W {
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// IPv4 as the `u32` LE of the numeric address (127.0.0.1 → `01 00 00 7f`).
    pub fn ip(self, ip: [u8; 4]) -> W {
        self.u32(u32::from_be_bytes(ip))
    }
    pub fn bytes(mut self, b: &[u8]) -> W {
        self.0.extend_from_slice(b);
        self
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// A server or peer frame: `u32 len, u32 code, body` (`len` counts the code).
pub fn frame(code: u32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
    f.extend_from_slice(&code.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// A peer-init or distributed frame: `u32 len, u8 code, body`.
pub fn frame8(code: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + body.len());
    f.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
    f.push(code);
    f.extend_from_slice(body);
    f
}

/// Bounds-checked little-endian reader; every getter returns None past the end.
pub struct R<'a> {
    pub b: &'a [u8],
    pub pos: usize,
}

impl<'a> R<'a> {
    pub fn new(b: &'a [u8]) -> R<'a> {
        R { b, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    pub fn bool(&mut self) -> Option<bool> {
        self.u8().map(|v| v != 0)
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    }
    pub fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.take(n).map(|s| String::from_utf8_lossy(s).into_owned())
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.pos.min(self.b.len())..];
        self.pos = self.b.len();
        s
    }
    pub fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }
}

/// Lower-case hex, no separators.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex with a space between bytes (as in docs/protocols/soulseek.md#test-vectors).
pub fn hex_spaced(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

/// Parses hex, ignoring whitespace. None on odd length or a bad digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if digits.len() & 1 != 0 {
        return None;
    }
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect()
}

/// MD5 (RFC 1321) digest.
pub fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
        20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6,
        10, 15, 21,
    ];
    // K[i] = floor(|sin(i + 1)| * 2^32)
    let k: Vec<u32> = (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32).collect();
    let (mut a0, mut b0, mut c0, mut d0) = (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = data.to_vec();
    let bitlen = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bitlen.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk.chunks(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f2 = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f2.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// MD5 as lower-case hex (what Login carries).
pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5(data))
}

/// SHA-256 (FIPS 180-4) digest.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let bitlen = (data.len() as u64).wrapping_mul(8);
    let mut tail = Vec::with_capacity(128);
    let full = data.len() / 64 * 64;
    tail.extend_from_slice(&data[full..]);
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&bitlen.to_be_bytes());
    let mut w = [0u32; 64];
    for chunk in data[..full].chunks(64).chain(tail.chunks(64)) {
        for i in 0..16 {
            w[i] = u32::from_be_bytes([chunk[4 * i], chunk[4 * i + 1], chunk[4 * i + 2], chunk[4 * i + 3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7].wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v[7] = v[6];
            v[6] = v[5];
            v[5] = v[4];
            v[4] = v[3].wrapping_add(t1);
            v[3] = v[2];
            v[2] = v[1];
            v[1] = v[0];
            v[0] = t1.wrapping_add(t2);
        }
        for i in 0..8 {
            h[i] = h[i].wrapping_add(v[i]);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

/// Server message names (for logs and golden-file comments); "?" when unknown.
pub fn server_code_name(code: u32) -> &'static str {
    match code {
        1 => "Login",
        2 => "SetWaitPort",
        3 => "GetPeerAddress",
        5 => "WatchUser",
        6 => "UnwatchUser",
        7 => "GetUserStatus",
        13 => "SayChatroom",
        14 => "JoinRoom",
        15 => "LeaveRoom",
        16 => "UserJoinedRoom",
        17 => "UserLeftRoom",
        18 => "ConnectToPeer",
        22 => "MessageUser",
        23 => "MessageAcked",
        26 => "FileSearch",
        28 => "SetStatus",
        32 => "ServerPing",
        35 => "SharedFoldersFiles",
        36 => "GetUserStats",
        41 => "Relogged",
        42 => "UserSearch",
        51 => "AddThingILike",
        52 => "RemoveThingILike",
        54 => "Recommendations",
        56 => "GlobalRecommendations",
        57 => "UserInterests",
        64 => "RoomList",
        66 => "AdminMessage",
        69 => "PrivilegedUsers",
        71 => "HaveNoParent",
        83 => "ParentMinSpeed",
        84 => "ParentSpeedRatio",
        92 => "CheckPrivileges",
        93 => "EmbeddedMessage",
        100 => "AcceptChildren",
        102 => "PossibleParents",
        103 => "WishlistSearch",
        104 => "WishlistInterval",
        110 => "SimilarUsers",
        120 => "RoomSearch",
        121 => "SendUploadSpeed",
        126 => "BranchLevel",
        127 => "BranchRoot",
        129 => "ChildDepth",
        130 => "ResetDistributed",
        141 => "EnableRoomInvitations",
        149 => "MessageUsers",
        150 => "JoinGlobalRoom",
        151 => "LeaveGlobalRoom",
        160 => "ExcludedSearchPhrases",
        1001 => "CantConnectToPeer",
        1003 => "CantCreateRoom",
        _ => "?",
    }
}

/// Peer (`P`) message names; "?" when unknown.
pub fn peer_code_name(code: u32) -> &'static str {
    match code {
        4 => "GetSharedFileList",
        5 => "SharedFileList",
        8 => "FileSearchRequest",
        9 => "FileSearchResponse",
        15 => "UserInfoRequest",
        16 => "UserInfoResponse",
        36 => "FolderContentsRequest",
        37 => "FolderContentsResponse",
        40 => "TransferRequest",
        41 => "TransferResponse",
        43 => "QueueUpload",
        44 => "PlaceInQueueResponse",
        46 => "UploadFailed",
        50 => "UploadDenied",
        51 => "PlaceInQueueRequest",
        _ => "?",
    }
}
