//! The ADC client's hub session (`omnipeer_adc::client::HubSession`,
//! docs/protocols/adc.md#client) on arbitrary hub bytes, and URES datagrams.
//!
//! The input is the hub's byte stream (plain protocol text from
//! `fuzz/seeds/adc_client_session` works as it is), fed in chunks cut where its first byte
//! says, passive and active. Checked: no panic; every line we write parses and ends with
//! one `\n`; the user list stays under `MAX_USERS`; once the session reports it is over,
//! nothing more is reported; commands after input never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_adc::client::{
    parse_result_datagram, Config, Event, HubSession, Mode, Output, Query, MAX_USERS,
};
use omnipeer_adc::message::Message;
use std::time::{Duration, Instant};

fn drain(s: &mut HubSession, over: &mut bool) {
    while let Some(o) = s.poll_output() {
        match o {
            Output::Transmit(b) => {
                assert_eq!(b.last(), Some(&b'\n'));
                if b.len() > 1 {
                    assert!(Message::parse(&b[..b.len() - 1]).is_ok(), "{:?}", b.escape_ascii().to_string());
                }
            }
            Output::Event(e) => {
                assert!(!*over, "an event after the end: {e:?}");
                if matches!(e, Event::Closed(_) | Event::LoginFailed(_)) {
                    *over = true;
                }
            }
            Output::Timeout(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_result_datagram(data);
    let step = data.first().map_or(1, |b| usize::from(*b % 64) + 1);
    for mode in [Mode::Passive, Mode::Active { tcp_port: 1, udp_port: 2 }] {
        let now = Instant::now();
        let cfg = Config {
            nick: "me".into(),
            pid: [1; 24],
            password: Some("pw".into()),
            description: String::new(),
            share_size: 0,
            shared_files: 0,
            slots: 1,
            mode,
            version: "fuzz".into(),
            keyprint: Some("SHA256/X".into()),
        };
        let mut s = HubSession::new(cfg, now);
        let mut over = false;
        drain(&mut s, &mut over);
        for chunk in data.chunks(step) {
            s.handle_input(now, chunk);
            drain(&mut s, &mut over);
            assert!(s.users().count() <= MAX_USERS);
        }
        let _ = s.say("hi /me");
        let _ = s.private_message("a", "b");
        let _ = s.search(&Query::text("x -y"));
        let _ = s.request_connection("a", "t");
        s.handle_timeout(now + Duration::from_secs(3600));
        drain(&mut s, &mut over);
        s.handle_eof();
        drain(&mut s, &mut over);
    }
});
