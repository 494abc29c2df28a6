//! `ServerRequest::decode` and `ServerResponse::decode` on an arbitrary code and body.
//!
//! The first byte picks the code: one of `server::REQUEST_CODES`, one of
//! `server::RESPONSE_CODES` (by the next byte), or any `u32` (the next four bytes). The
//! rest of the input is the body. Both decoders read it whole, and also its first
//! `4 * (first byte >> 2)` bytes (a body cut short at a field boundary).
//!
//! Checked for everything that decodes (see `slsk_common.rs`): it keeps its code,
//! `decode(code, encode_body(m)) == m` (a failure prints the exact bytes), encoding again
//! gives the same bytes, `encode()` is one frame that `FrameReader` reads back and
//! `from_frame` decodes to `m`. The distributed message inside an EmbeddedMessage(93) is
//! checked the same way. A known code never decodes as `Unknown`, and an unknown one always
//! does (with its body kept verbatim).
#![no_main]

mod common;
mod slsk_common;

use common::Input;
use libfuzzer_sys::fuzz_target;
use omnipeer_slsk::server::{REQUEST_CODES, RESPONSE_CODES};
use omnipeer_slsk::{ServerRequest, ServerResponse};
use slsk_common::{check_request, check_response, hex};

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let sel = inp.u8();
    let code = match sel % 4 {
        0 | 1 => REQUEST_CODES[usize::from(inp.u8()) % REQUEST_CODES.len()],
        2 => RESPONSE_CODES[usize::from(inp.u8()) % RESPONSE_CODES.len()],
        _ => inp.u32(),
    };
    let body = inp.rest();

    for body in [body, &body[..(usize::from(sel >> 2) * 4).min(body.len())]] {
        match check_request(code, body) {
            Some(ServerRequest::Unknown { code: c, body: b }) => {
                assert!(!REQUEST_CODES.contains(&code), "known request code {code} read as Unknown");
                assert_eq!((c, b.as_slice()), (code, body));
            }
            Some(_) => assert!(REQUEST_CODES.contains(&code), "request code {code} not in REQUEST_CODES"),
            None => {
                assert!(REQUEST_CODES.contains(&code), "unknown request code {code} failed to decode: {}", hex(body))
            }
        }
        match check_response(code, body) {
            Some(ServerResponse::Unknown { code: c, body: b }) => {
                assert!(!RESPONSE_CODES.contains(&code), "known response code {code} read as Unknown");
                assert_eq!((c, b.as_slice()), (code, body));
            }
            Some(_) => assert!(RESPONSE_CODES.contains(&code), "response code {code} not in RESPONSE_CODES"),
            None => {
                assert!(RESPONSE_CODES.contains(&code), "unknown response code {code} failed to decode: {}", hex(body))
            }
        }
    }
});
