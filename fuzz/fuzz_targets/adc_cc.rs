//! The ADC client-to-client machine (`omnipeer_adc::transfer::Connection`,
//! docs/protocols/adc.md#cc) on arbitrary peer bytes, in both roles.
//!
//! The input is the peer's byte stream (plain protocol text from `fuzz/seeds/adc_cc` works
//! as it is), fed whole and in chunks cut where its first byte says. Checked: no panic; a
//! `Snd`'s leftover is never longer than the bytes announced; `Closed` comes at most once
//! and nothing follows it; after a `Snd` the machine takes no more lines until
//! the transfer is done; every line it writes ends with one `\n` and parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_adc::message::Message;
use omnipeer_adc::transfer::{Connection, Event, Output, Role};
use std::time::{Duration, Instant};

fn check(c: &mut Connection, closed: &mut bool, in_data: &mut bool) {
    while let Some(o) = c.poll_output() {
        match o {
            Output::Transmit(b) => {
                assert_eq!(b.last(), Some(&b'\n'));
                assert!(Message::parse(&b[..b.len() - 1]).is_ok(), "{:?}", b.escape_ascii().to_string());
            }
            Output::Event(e) => {
                assert!(!*closed, "an event after Closed: {e:?}");
                match e {
                    Event::Closed(_) => *closed = true,
                    Event::Snd { len, leftover, .. } => {
                        assert!(leftover.len() as u64 <= len);
                        *in_data = true;
                    }
                    _ => {}
                }
            }
            Output::Timeout(_) => break,
        }
    }
}

fn run(data: &[u8], role: Role, step: usize) {
    let now = Instant::now();
    let mut c = Connection::new(role, "CID", Some("tok"), now);
    let (mut closed, mut in_data) = (false, false);
    check(&mut c, &mut closed, &mut in_data);
    for chunk in data.chunks(step.max(1)) {
        if in_data {
            // The driver moves the raw bytes, then hands the connection back.
            c.transfer_done(now);
            in_data = false;
        }
        c.handle_input(now, chunk);
        check(&mut c, &mut closed, &mut in_data);
    }
    c.handle_timeout(now + Duration::from_secs(3600));
    check(&mut c, &mut closed, &mut in_data);
    c.handle_eof();
    check(&mut c, &mut closed, &mut in_data);
}

fuzz_target!(|data: &[u8]| {
    let step = data.first().map_or(1, |b| usize::from(*b % 32) + 1);
    for role in [Role::Connector, Role::Listener] {
        run(data, role, data.len().max(1));
        run(data, role, step);
    }
});
