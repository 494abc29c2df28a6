//! The golden frames of docs/protocols/soulseek.md#test-vectors (generated with the encoders and
//! parsers of pynicotine 3.3.11): each decodes to the expected fields and re-encodes byte
//! for byte.

use omnipeer_slsk::framing::{
    decode_file_offset, decode_file_transfer_init, encode_file_offset, encode_file_transfer_init,
};
use omnipeer_slsk::login::{login_hash, password_hash};
use omnipeer_slsk::shares::FileAttribute;
use omnipeer_slsk::{
    DistributedMessage, Frame, FrameKind, FrameReader, PeerInit, PeerMessage, SearchResponse, ServerRequest,
    ServerResponse, SharedFile, TransferDirection, TransferReply, UserStatus,
};
use std::net::Ipv4Addr;

const FILENAME: &str = r"@@lvhkp\Album\Kevin_MacLeod-Galway.mp3";

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}

/// Read exactly one frame of `kind` from `bytes`, checking the length field covers it all.
fn one_frame(kind: FrameKind, bytes: &[u8]) -> Frame {
    let mut r = FrameReader::new(kind);
    r.push(bytes);
    let f = r.next_frame().unwrap().expect("complete frame");
    assert_eq!(r.buffered(), 0, "frame length must cover the whole golden");
    f
}

fn request(golden: &str, want: ServerRequest) {
    let bytes = hex(golden);
    let frame = one_frame(FrameKind::Server, &bytes);
    assert_eq!(ServerRequest::from_frame(&frame).unwrap(), want);
    assert_eq!(want.encode(), bytes, "re-encoding {want:?}");
}

fn response(golden: &str, want: ServerResponse) {
    let bytes = hex(golden);
    let frame = one_frame(FrameKind::Server, &bytes);
    assert_eq!(ServerResponse::from_frame(&frame).unwrap(), want);
    assert_eq!(want.encode(), bytes, "re-encoding {want:?}");
}

fn peer(golden: &str, want: PeerMessage) {
    let bytes = hex(golden);
    let frame = one_frame(FrameKind::Peer, &bytes);
    assert_eq!(PeerMessage::from_frame(&frame).unwrap(), want);
    assert_eq!(want.encode(), bytes, "re-encoding {want:?}");
}

const LOGIN_160_2: &str = "
48 00 00 00 01 00 00 00 08 00 00 00 75 73 65 72 6e 61 6d 65 08 00 00 00 70 61 73 73
77 6f 72 64 a0 00 00 00 20 00 00 00 64 35 31 63 39 61 37 65 39 33 35 33 37 34 36 61
36 30 32 30 66 39 36 30 32 64 34 35 32 39 32 39 02 00 00 00";

#[test]
fn login_request() {
    assert_eq!(hex(LOGIN_160_2).len(), 76, "a Login frame of 76 bytes has len 72");
    request(
        LOGIN_160_2,
        ServerRequest::Login {
            username: "username".into(),
            password: "password".into(),
            major: 160,
            hash: "d51c9a7e9353746a6020f9602d452929".into(),
            minor: 2,
        },
    );
    assert_eq!(ServerRequest::login("username", "password", 160, 2).encode(), hex(LOGIN_160_2));
    assert_eq!(login_hash("username", "password"), "d51c9a7e9353746a6020f9602d452929");
}

#[test]
fn login_request_177_1() {
    // Same with major 177, minor 1: a0 → b1 and the final 02 → 01.
    let mut want = hex(LOGIN_160_2);
    assert_eq!(want[32..36], [0xa0, 0, 0, 0]);
    want[32] = 0xb1;
    let n = want.len();
    assert_eq!(want[n - 4..], [2, 0, 0, 0]);
    want[n - 4] = 1;
    assert_eq!(ServerRequest::login("username", "password", 177, 1).encode(), want);
}

#[test]
fn login_reply_success() {
    response(
        "
46 00 00 00 01 00 00 00 01 14 00 00 00 57 65 6c 63 6f 6d 65 20 74 6f 20 6d 79 20 73
65 72 76 65 72 01 00 00 7f 20 00 00 00 35 66 34 64 63 63 33 62 35 61 61 37 36 35 64
36 31 64 38 33 32 37 64 65 62 38 38 32 63 66 39 39 00",
        ServerResponse::LoginSuccess {
            greet: "Welcome to my server".into(),
            own_ip: Ipv4Addr::new(127, 0, 0, 1),
            password_hash: password_hash("password"),
            supporter: false,
        },
    );
    assert_eq!(password_hash("password"), "5f4dcc3b5aa765d61d8327deb882cf99");
}

#[test]
fn login_reply_failure() {
    response(
        "14 00 00 00 01 00 00 00 00 0b 00 00 00 49 4e 56 41 4c 49 44 50 41 53 53",
        ServerResponse::LoginFailure { reason: "INVALIDPASS".into(), detail: None },
    );
}

#[test]
fn file_search_both_directions() {
    request(
        "12 00 00 00 1a 00 00 00 d2 04 00 00 06 00 00 00 67 61 6c 77 61 79",
        ServerRequest::FileSearch { token: 1234, query: "galway".into() },
    );
    response(
        "19 00 00 00 1a 00 00 00 03 00 00 00 62 6f 62 d2 04 00 00 06 00 00 00 67 61 6c 77 61 79",
        ServerResponse::FileSearch { user: "bob".into(), token: 1234, query: "galway".into() },
    );
}

#[test]
fn connect_to_peer_both_directions() {
    request(
        "16 00 00 00 12 00 00 00 07 00 00 00 05 00 00 00 61 6c 69 63 65 01 00 00 00 50",
        ServerRequest::ConnectToPeer { token: 7, user: "alice".into(), conn_type: "P".into() },
    );
    response(
        "
25 00 00 00 12 00 00 00 03 00 00 00 62 6f 62 01 00 00 00 50 01 00 00 7f 28 a0 00 00
07 00 00 00 00 00 00 00 00 00 00 00 00",
        ServerResponse::ConnectToPeer {
            user: "bob".into(),
            conn_type: "P".into(),
            ip: Ipv4Addr::LOCALHOST,
            port: 41000,
            token: 7,
            privileged: false,
            obf_type: 0,
            obf_port: 0,
        },
    );
}

#[test]
fn get_peer_address_reply() {
    response(
        "
1b 00 00 00 03 00 00 00 05 00 00 00 61 6c 69 63 65 01 00 00 7f 40 9c 00 00 00 00 00
00 00 00",
        ServerResponse::GetPeerAddress {
            user: "alice".into(),
            ip: Ipv4Addr::LOCALHOST,
            port: 40000,
            obf_type: 0,
            obf_port: 0,
        },
    );
}

#[test]
fn transfer_request_upload() {
    peer(
        "
3e 00 00 00 28 00 00 00 01 00 00 00 03 00 00 00 26 00 00 00 40 40 6c 76 68 6b 70 5c
41 6c 62 75 6d 5c 4b 65 76 69 6e 5f 4d 61 63 4c 65 6f 64 2d 47 61 6c 77 61 79 2e 6d
70 33 cf e1 03 00 00 00 00 00",
        PeerMessage::TransferRequest {
            direction: TransferDirection::Upload,
            token: 3,
            filename: FILENAME.into(),
            size: Some(254_415),
        },
    );
}

#[test]
fn transfer_responses() {
    peer(
        "09 00 00 00 29 00 00 00 03 00 00 00 01",
        PeerMessage::TransferResponse { token: 3, reply: TransferReply::Allowed { size: None } },
    );
    peer(
        "13 00 00 00 29 00 00 00 03 00 00 00 00 06 00 00 00 51 75 65 75 65 64",
        PeerMessage::TransferResponse { token: 3, reply: TransferReply::Denied { reason: "Queued".into() } },
    );
}

#[test]
fn queue_upload() {
    peer(
        "
2e 00 00 00 2b 00 00 00 26 00 00 00 40 40 6c 76 68 6b 70 5c 41 6c 62 75 6d 5c 4b 65
76 69 6e 5f 4d 61 63 4c 65 6f 64 2d 47 61 6c 77 61 79 2e 6d 70 33",
        PeerMessage::QueueUpload { filename: FILENAME.into() },
    );
}

#[test]
fn peer_init_and_pierce_firewall() {
    let golden = hex("16 00 00 00 01 08 00 00 00 75 73 65 72 6e 61 6d 65 01 00 00 00 50 00 00 00 00");
    let want = PeerInit::PeerInit { user: "username".into(), conn_type: "P".into(), token: 0 };
    assert_eq!(PeerInit::from_frame(&one_frame(FrameKind::PeerInit, &golden)).unwrap(), want);
    assert_eq!(want.encode(), golden);

    let golden = hex("05 00 00 00 00 4d 00 00 00");
    let want = PeerInit::PierceFireWall { token: 77 };
    assert_eq!(PeerInit::from_frame(&one_frame(FrameKind::PeerInit, &golden)).unwrap(), want);
    assert_eq!(want.encode(), golden);
}

#[test]
fn file_connection_raw_fields() {
    assert_eq!(encode_file_transfer_init(3).to_vec(), hex("03 00 00 00"));
    assert_eq!(decode_file_transfer_init(&hex("03 00 00 00")), Some((3, 4)));
    assert_eq!(encode_file_offset(0).to_vec(), hex("00 00 00 00 00 00 00 00"));
    assert_eq!(decode_file_offset(&hex("00 00 00 00 00 00 00 00")), Some((0, 8)));
}

fn galway_search() -> DistributedMessage {
    DistributedMessage::Search { user: "bob".into(), token: 1234, query: "galway".into() }
}

#[test]
fn embedded_message_carrying_a_distributed_search() {
    let golden = "
1e 00 00 00 5d 00 00 00 03 31 00 00 00 03 00 00 00 62 6f 62 d2 04 00 00 06 00 00 00
67 61 6c 77 61 79";
    let want = ServerResponse::EmbeddedMessage {
        code: 3,
        body: hex("31 00 00 00 03 00 00 00 62 6f 62 d2 04 00 00 06 00 00 00 67 61 6c 77 61 79"),
    };
    response(golden, want.clone());
    assert_eq!(ServerResponse::embedded(&galway_search()), want);
    let ServerResponse::EmbeddedMessage { code, body } = want else { unreachable!() };
    assert_eq!(DistributedMessage::unembed(code, &body).unwrap(), galway_search());
}

#[test]
fn distributed_frames() {
    let golden = hex("1a 00 00 00 03 31 00 00 00 03 00 00 00 62 6f 62 d2 04 00 00 06 00 00 00 67 61 6c 77 61 79");
    let frame = one_frame(FrameKind::Distributed, &golden);
    assert_eq!(DistributedMessage::from_frame(&frame).unwrap(), galway_search());
    assert_eq!(galway_search().encode(), golden);

    let golden = hex("05 00 00 00 04 00 00 00 00");
    let frame = one_frame(FrameKind::Distributed, &golden);
    let want = DistributedMessage::BranchLevel { level: 0 };
    assert_eq!(DistributedMessage::from_frame(&frame).unwrap(), want);
    assert_eq!(want.encode(), golden);
}

#[test]
fn small_client_frames() {
    request("08 00 00 00 02 00 00 00 ba 08 00 00", ServerRequest::SetWaitPort { port: 2234, obfuscation: None });
    request("0c 00 00 00 23 00 00 00 01 00 00 00 01 00 00 00", ServerRequest::SharedFoldersFiles { dirs: 1, files: 1 });
    request("08 00 00 00 1c 00 00 00 02 00 00 00", ServerRequest::SetStatus { status: UserStatus::Online });
    request("05 00 00 00 47 00 00 00 01", ServerRequest::HaveNoParent { no_parent: true });
    request("04 00 00 00 5c 00 00 00", ServerRequest::CheckPrivileges);
    request("04 00 00 00 40 00 00 00", ServerRequest::RoomList);
    request(
        "14 00 00 00 0e 00 00 00 08 00 00 00 6e 69 63 6f 74 69 6e 65 00 00 00 00",
        ServerRequest::JoinRoom { room: "nicotine".into(), private: false },
    );
}

const SEARCH_RESPONSE_BODY: &str = "
05 00 00 00 61 6c 69 63 65 d2 04 00 00 01 00 00 00 01 26 00 00 00 40 40 6c 76 68 6b
70 5c 41 6c 62 75 6d 5c 4b 65 76 69 6e 5f 4d 61 63 4c 65 6f 64 2d 47 61 6c 77 61 79
2e 6d 70 33 cf e1 03 00 00 00 00 00 03 00 00 00 6d 70 33 02 00 00 00 00 00 00 00 80
00 00 00 01 00 00 00 0f 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";

fn galway_result() -> SearchResponse {
    SearchResponse {
        user: "alice".into(),
        token: 1234,
        files: vec![SharedFile {
            filename: FILENAME.into(),
            size: 254_415,
            extension: "mp3".into(),
            attributes: vec![FileAttribute { code: 0, value: 128 }, FileAttribute { code: 1, value: 15 }],
        }],
        slot_free: true,
        avg_speed: 0,
        queue_len: 0,
        unknown: Some(0),
        private_files: Some(vec![]),
    }
}

#[test]
fn file_search_response_body() {
    let body = hex(SEARCH_RESPONSE_BODY);
    let want = PeerMessage::FileSearchResponse(galway_result());
    // The plain body re-encodes byte for byte.
    assert_eq!(want.encode_plain_body(), body);
    // Compressed with any level, it decodes to the same message.
    for level in [0, 1, 6, 9] {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
        std::io::Write::write_all(&mut z, &body).unwrap();
        let compressed = z.finish().unwrap();
        let frame = omnipeer_slsk::framing::frame_u32(9, &compressed);
        let f = one_frame(FrameKind::Peer, &frame);
        assert_eq!(PeerMessage::from_frame(&f).unwrap(), want);
    }
    // Our own frame inflates to exactly the golden body.
    let ours = want.encode();
    assert_eq!(u32::from_le_bytes(ours[4..8].try_into().unwrap()), 9);
    assert_eq!(omnipeer_slsk::zlib::inflate(&ours[8..], 1 << 20).unwrap(), body);
}

#[test]
fn file_search_response_accepts_shorter_ends() {
    let body = hex(SEARCH_RESPONSE_BODY);
    // Nicotine+ omits the private count: the body ends after `unknown`.
    let without_private = &body[..body.len() - 4];
    let m = PeerMessage::decode(9, &omnipeer_slsk::zlib::deflate(without_private)).unwrap();
    let mut want = galway_result();
    want.private_files = None;
    assert_eq!(m, PeerMessage::FileSearchResponse(want.clone()));
    assert_eq!(m.encode_plain_body(), without_private);
    // Old clients end after `queue_len`.
    let old = &body[..body.len() - 8];
    let m = PeerMessage::decode(9, &omnipeer_slsk::zlib::deflate(old)).unwrap();
    want.unknown = None;
    assert_eq!(m, PeerMessage::FileSearchResponse(want));
    assert_eq!(m.encode_plain_body(), old);
}
