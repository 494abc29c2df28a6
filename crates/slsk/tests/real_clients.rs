//! Every frame aioslsk 1.7.1 and Nicotine+ 3.3.11 really sent (captured through the test
//! mock server's tap, `tests/fixtures/slsk/*.hex` at the repository root) decodes to a typed
//! message with the code the capture names, and re-encodes to the same bytes (zlib bodies:
//! the same inflated bytes).

use omnipeer_slsk::framing::{decode_file_offset, decode_file_transfer_init};
use omnipeer_slsk::{zlib, FrameKind, FrameReader, PeerInit, PeerMessage, ServerRequest};
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/slsk")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The code in a label such as `server Login (1) [...]`.
fn code_of(label: &str) -> u32 {
    let open = label.find('(').expect("code in label");
    let close = label[open..].find(')').unwrap() + open;
    label[open + 1..close].parse().unwrap()
}

#[derive(Default)]
struct Counts {
    server: usize,
    peer: usize,
    init: usize,
    raw: usize,
}

fn check_file(name: &str, text: &str, counts: &mut Counts) {
    let mut label = String::new();
    let mut inflated: Option<Vec<u8>> = None;
    let mut server_stream = Vec::new();
    let mut server_frames = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix("# ") {
            if let Some(body) = c.strip_prefix("zlib-decompressed body: ") {
                inflated = Some(hex(body.trim()));
            } else if c.starts_with("server ")
                || c.starts_with("peer ")
                || c.starts_with("peer-init ")
                || c.starts_with("F: ")
            {
                label = c.to_owned();
                inflated = None;
            }
            continue;
        }
        let bytes = hex(line);
        let what = format!("{name}: {label}");
        if label.starts_with("server ") {
            let code = code_of(&label);
            assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), code, "{what}");
            let m = ServerRequest::decode(code, &bytes[8..]).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!matches!(m, ServerRequest::Unknown { .. }), "{what}: unknown");
            assert_eq!(m.code(), code);
            assert_eq!(m.encode(), bytes, "{what}: re-encoding {m:?}");
            server_stream.extend_from_slice(&bytes);
            server_frames.push(m);
            counts.server += 1;
        } else if label.starts_with("peer-init ") {
            let m = PeerInit::decode(bytes[4], &bytes[5..]).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(m.code() as u32, code_of(&label), "{what}");
            assert_eq!(m.encode(), bytes, "{what}: re-encoding {m:?}");
            counts.init += 1;
        } else if label.starts_with("peer ") {
            let code = code_of(&label);
            assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), code, "{what}");
            let m = PeerMessage::decode(code, &bytes[8..]).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!matches!(m, PeerMessage::Unknown { .. }), "{what}: unknown");
            if m.is_compressed() {
                let plain = zlib::inflate(&bytes[8..], 1 << 24).unwrap();
                assert_eq!(Some(&plain), inflated.as_ref(), "{what}: capture's inflated body");
                assert_eq!(m.encode_plain_body(), plain, "{what}: re-encoding {m:?}");
            } else {
                assert_eq!(m.encode(), bytes, "{what}: re-encoding {m:?}");
            }
            counts.peer += 1;
        } else if label.starts_with("F: u32 token") {
            assert_eq!(decode_file_transfer_init(&bytes).map(|t| t.1), Some(4), "{what}");
            assert_eq!(bytes.len(), 4);
            counts.raw += 1;
        } else if label.starts_with("F: u64 offset") {
            assert_eq!(decode_file_offset(&bytes), Some((0, 8)), "{what}");
            counts.raw += 1;
        } else if label.starts_with("F: ") {
            // File data.
        } else {
            panic!("{what}: data line without a label");
        }
    }
    // The whole server conversation, as one stream, frames the same way.
    let mut r = FrameReader::new(FrameKind::Server);
    r.push(&server_stream);
    let mut again = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        again.push(ServerRequest::from_frame(&f).unwrap());
    }
    assert_eq!(again, server_frames, "{name}: stream framing");
}

#[test]
fn frames_sent_by_aioslsk_and_nicotine_decode_and_re_encode() {
    let dir = fixtures_dir();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    names.sort();
    assert!(names.len() >= 22, "captures missing: {names:?}");
    let mut counts = Counts::default();
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        check_file(name, &text, &mut counts);
    }
    assert!(counts.server >= 70, "server frames checked: {}", counts.server);
    assert!(counts.peer >= 12, "peer frames checked: {}", counts.peer);
    assert!(counts.init >= 10, "peer-init frames checked: {}", counts.init);
    assert!(counts.raw >= 4, "F fields checked: {}", counts.raw);
}
