//! The three sample conversations of the 2004 text (docs/protocols/ministream.md#test-vectors) byte for byte, simulated-time timeouts, id rules,
//! backpressure, and never-panics on arbitrary input.

use omnipeer_ministream::manager::{Error, IdGen};
use omnipeer_ministream::{Config, Event, Id, Manager, Message, Output, ReadOutcome, Role, StreamId, MAX_PAYLOAD};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const KEY: [u8; 32] = [0x4b; 32];

fn fixed(ids: Vec<u32>) -> IdGen {
    let mut it = ids.into_iter().cycle();
    Box::new(move || it.next().unwrap())
}

fn counter(start: u32) -> IdGen {
    let mut n = start;
    Box::new(move || {
        n = n.wrapping_add(1);
        n
    })
}

fn mgr(ids: Vec<u32>, listening: bool) -> Manager {
    let mut m = Manager::new(Config::default(), KEY.to_vec(), fixed(ids));
    m.set_listening(listening);
    m
}

/// Drains outputs: (transmits, events).
fn drain(m: &mut Manager) -> (Vec<Vec<u8>>, Vec<Event>) {
    let (mut t, mut e) = (vec![], vec![]);
    while let Some(o) = m.poll_output() {
        match o {
            Output::Transmit(b) => t.push(b),
            Output::Event(ev) => e.push(ev),
            Output::Timeout(_) => break,
        }
    }
    (t, e)
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

fn with_key(s: &str) -> Vec<u8> {
    let mut v = hex(s);
    v.extend_from_slice(&KEY);
    v
}

fn read_all(m: &mut Manager, s: StreamId) -> (Vec<u8>, bool) {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match m.read(s, &mut buf).unwrap() {
            ReadOutcome::Data(n) => out.extend_from_slice(&buf[..n]),
            ReadOutcome::WouldBlock => return (out, false),
            ReadOutcome::Eof => return (out, true),
        }
    }
}

fn sid(role: Role, v: u32) -> StreamId {
    StreamId { role, id: Id::new(v).unwrap() }
}

#[test]
fn sample_a_service_not_available() {
    let now = Instant::now();
    let mut c = mgr(vec![0x123456], false);
    let mut s = mgr(vec![0x999999], false);
    let cs = c.connect(now).unwrap();
    let (t, _) = drain(&mut c);
    assert_eq!(t, vec![with_key("A1 12 34 56")]);
    s.handle_input(now, &t[0]);
    let (t, e) = drain(&mut s);
    assert_eq!(t, vec![hex("52 12 34 56")]);
    assert!(e.is_empty());
    c.handle_input(now, &t[0]);
    assert_eq!(drain(&mut c).1, vec![Event::Refused(cs)]);
    assert_eq!(c.stream_count(), 0);
}

#[test]
fn sample_b_server_sends_client_closes() {
    let now = Instant::now();
    let mut c = mgr(vec![0x234567], false);
    let mut s = mgr(vec![0x987654], true);
    let cs = c.connect(now).unwrap();
    let (t, _) = drain(&mut c);
    assert_eq!(t, vec![with_key("A1 23 45 67")]);
    s.handle_input(now, &t[0]);
    let (t, e) = drain(&mut s);
    assert!(t.is_empty(), "ACK only once accepted");
    let ss = sid(Role::Server, 0x987654);
    assert_eq!(e, vec![Event::Incoming { stream: ss, destination: KEY.to_vec() }]);
    s.accept(ss).unwrap();
    s.send(ss, b"hello").unwrap();
    let (t, _) = drain(&mut s);
    let mut data = hex("50 23 45 67");
    data.extend_from_slice(b"hello");
    assert_eq!(t, vec![hex("51 23 45 67 98 76 54"), data]);
    for m in &t {
        c.handle_input(now, m);
    }
    assert_eq!(drain(&mut c).1, vec![Event::Connected(cs), Event::Readable(cs)]);
    assert_eq!(read_all(&mut c, cs), (b"hello".to_vec(), false));
    c.close(cs).unwrap();
    let (t, _) = drain(&mut c);
    assert_eq!(t, vec![hex("A2 98 76 54")]);
    s.handle_input(now, &t[0]);
    assert_eq!(drain(&mut s).1, vec![Event::Closed(ss)]);
    assert_eq!(read_all(&mut s, ss), (vec![], true));
    assert_eq!(s.stream_count(), 0);
}

#[test]
fn sample_c_client_first_server_closes() {
    let now = Instant::now();
    let mut c = mgr(vec![0x111111], false);
    let mut s = mgr(vec![0xFFFFFF], true);
    let cs = c.connect(now).unwrap();
    let (t, _) = drain(&mut c);
    assert_eq!(t, vec![with_key("A1 11 11 11")]);
    s.handle_input(now, &t[0]);
    let ss = sid(Role::Server, 0xFFFFFF);
    drain(&mut s);
    s.accept(ss).unwrap();
    let (t, _) = drain(&mut s);
    assert_eq!(t, vec![hex("51 11 11 11 FF FF FF")]);
    c.handle_input(now, &t[0]);
    drain(&mut c);
    c.send(cs, b"GET /").unwrap();
    let (t, _) = drain(&mut c);
    let mut req = hex("A0 FF FF FF");
    req.extend_from_slice(b"GET /");
    assert_eq!(t, vec![req]);
    s.handle_input(now, &t[0]);
    assert_eq!(read_all(&mut s, ss).0, b"GET /");
    s.send(ss, b"d1").unwrap();
    s.send(ss, b"d2").unwrap();
    s.close(ss).unwrap();
    let (t, _) = drain(&mut s);
    let (mut a, mut b) = (hex("50 11 11 11"), hex("50 11 11 11"));
    a.extend_from_slice(b"d1");
    b.extend_from_slice(b"d2");
    // The 2004 text prints `51` for the final close (docs/protocols/ministream.md#old-document); close is 0x52.
    assert_eq!(t, vec![a, b, hex("52 11 11 11")]);
    for m in &t {
        c.handle_input(now, m);
    }
    assert_eq!(drain(&mut c).1, vec![Event::Readable(cs), Event::Closed(cs)]);
    assert_eq!(read_all(&mut c, cs), (b"d1d2".to_vec(), true));
    assert_eq!(c.read(cs, &mut [0; 4]), Err(Error::UnknownStream));
}

#[test]
fn close_with_three_byte_payload_refuses() {
    let now = Instant::now();
    let mut c = mgr(vec![0x123456], false);
    let cs = c.connect(now).unwrap();
    drain(&mut c);
    c.handle_input(now, &hex("52 12 34 56 AB CD EF"));
    assert_eq!(drain(&mut c).1, vec![Event::Refused(cs)]);
}

#[test]
fn connect_times_out_in_simulated_time() {
    let now = Instant::now();
    let mut c = mgr(vec![0x000001], false);
    let cs = c.connect(now).unwrap();
    drain(&mut c);
    assert_eq!(c.poll_output(), Some(Output::Timeout(now + Duration::from_secs(30))));
    c.handle_timeout(now + Duration::from_secs(29));
    assert_eq!(drain(&mut c).1, vec![]);
    c.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(drain(&mut c).1, vec![Event::ConnectTimedOut(cs)]);
    assert_eq!(c.poll_output(), None);
    // A late ACK is dropped.
    c.handle_input(now, &hex("51 00 00 01 00 00 02"));
    assert_eq!(drain(&mut c), (vec![], vec![]));
}

#[test]
fn unaccepted_syn_is_refused_after_accept_timeout() {
    let now = Instant::now();
    let mut s = mgr(vec![0x000007], true);
    s.handle_input(now, &with_key("A1 00 00 05"));
    drain(&mut s);
    s.handle_timeout(now + Duration::from_millis(4999));
    assert_eq!(drain(&mut s), (vec![], vec![]));
    s.handle_timeout(now + Duration::from_secs(5));
    let (t, e) = drain(&mut s);
    assert_eq!(t, vec![hex("52 00 00 05")]);
    assert_eq!(e, vec![Event::AcceptTimedOut(sid(Role::Server, 7))]);
    assert_eq!(s.stream_count(), 0);
}

#[test]
fn repeated_syn_is_idempotent() {
    let now = Instant::now();
    let mut s = Manager::new(Config::default(), KEY.to_vec(), counter(0));
    s.set_listening(true);
    s.handle_input(now, &with_key("A1 00 00 05"));
    let (_, e) = drain(&mut s);
    assert_eq!(e.len(), 1);
    s.handle_input(now, &with_key("A1 00 00 05"));
    assert_eq!(drain(&mut s), (vec![], vec![]), "pending: no second stream");
    s.accept(sid(Role::Server, 1)).unwrap();
    let (t1, _) = drain(&mut s);
    s.handle_input(now, &with_key("A1 00 00 05"));
    let (t2, e2) = drain(&mut s);
    assert_eq!(t1, t2);
    assert!(e2.is_empty());
    assert_eq!(s.stream_count(), 1);
}

#[test]
fn ids_are_nonzero_and_unique_per_role() {
    let now = Instant::now();
    // The generator repeats and yields zeros; the manager skips both.
    let mut c = Manager::new(Config::default(), KEY.to_vec(), fixed(vec![0, 0x0100_0000, 5, 5, 6]));
    let a = c.connect(now).unwrap();
    let b = c.connect(now).unwrap();
    assert_eq!((a.id.get(), b.id.get()), (5, 6));
    let mut d = Manager::new(Config::default(), KEY.to_vec(), fixed(vec![0]));
    assert_eq!(d.connect(now), Err(Error::NoFreeId));
    // A just-closed id is not drawn again.
    let mut f = Manager::new(Config::default(), KEY.to_vec(), fixed(vec![5, 5, 6]));
    let first = f.connect(now).unwrap();
    f.close(first).unwrap();
    assert_eq!(f.connect(now).unwrap().id.get(), 6);
    // The same id may be used in the other role.
    let mut e = Manager::new(Config::default(), KEY.to_vec(), fixed(vec![9]));
    e.set_listening(true);
    e.connect(now).unwrap();
    e.handle_input(now, &with_key("A1 00 00 01"));
    assert_eq!(drain(&mut e).1.len(), 1);
}

#[test]
fn unknown_ids_types_and_pings_are_dropped() {
    let now = Instant::now();
    let mut s = mgr(vec![3], true);
    for m in [
        hex("A0 00 00 09 01 02"),
        hex("A2 00 00 09"),
        hex("FF"),
        hex("A7 00 00 03 00"),
        hex("50 00 00 03 aa"),
        hex("00 00"),
    ] {
        s.handle_input(now, &m);
    }
    assert_eq!(drain(&mut s), (vec![], vec![]));
}

#[test]
fn payloads_are_cut_to_max_payload() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now, Config::default());
    let big = vec![7u8; MAX_PAYLOAD * 2 + 10];
    c.1.send(c.0, &big).unwrap();
    let (t, _) = drain(&mut c.1);
    assert_eq!(t.iter().map(|m| m.len() - 4).collect::<Vec<_>>(), vec![MAX_PAYLOAD, MAX_PAYLOAD, 10]);
    for m in &t {
        s.1.handle_input(now, m);
    }
    assert_eq!(read_all(&mut s.1, s.0).0, big);
}

type End = (StreamId, Manager);

fn pair(now: Instant, cfg: Config) -> (End, End) {
    let mut c = Manager::new(cfg.clone(), KEY.to_vec(), counter(100));
    let mut s = Manager::new(cfg, KEY.to_vec(), counter(200));
    s.set_listening(true);
    let cs = c.connect(now).unwrap();
    let (t, _) = drain(&mut c);
    s.handle_input(now, &t[0]);
    let Event::Incoming { stream: ss, .. } = drain(&mut s).1.remove(0) else { panic!() };
    s.accept(ss).unwrap();
    let (t, _) = drain(&mut s);
    c.handle_input(now, &t[0]);
    assert_eq!(drain(&mut c).1, vec![Event::Connected(cs)]);
    ((cs, c), (ss, s))
}

#[test]
fn receive_buffer_is_bounded_with_backpressure() {
    let now = Instant::now();
    let cfg = Config { recv_window: 1000, max_payload: 400, ..Config::default() };
    let ((cs, mut c), (ss, mut s)) = pair(now, cfg);
    c.send(cs, &[1u8; 1200]).unwrap();
    let (t, _) = drain(&mut c);
    for m in &t {
        s.handle_input(now, m);
    }
    assert!(s.receive_paused());
    assert_eq!(s.buffered(ss), 1200);
    s.read(ss, &mut [0u8; 500]).unwrap();
    assert!(!s.receive_paused());
    // A driver that ignores the pause: the stream is reset, memory stays bounded.
    let flood = Message::ClientData { server_id: ss.id, data: vec![0; MAX_PAYLOAD] }.encode();
    for _ in 0..10 {
        s.handle_input(now, &flood);
    }
    let (t, e) = drain(&mut s);
    assert!(e.contains(&Event::Overflow(ss)));
    assert_eq!(t.last().unwrap()[0], 0x52);
    assert_eq!(s.stream_count(), 0);
}

#[test]
fn transport_loss_ends_streams() {
    let now = Instant::now();
    let ((cs, mut c), _) = pair(now, Config::default());
    let pending = c.connect(now).unwrap();
    drain(&mut c);
    c.transport_closed();
    let (_, e) = drain(&mut c);
    assert!(e.contains(&Event::Closed(cs)) && e.contains(&Event::Refused(pending)));
}

proptest! {
    #[test]
    fn message_round_trips(ty in prop_oneof![Just(0xA0u8), Just(0xA1), Just(0xA2), Just(0x50), Just(0x51), Just(0x52), any::<u8>()],
                           id in 1u32..=0xFF_FFFF, id2 in 1u32..=0xFF_FFFF, payload in proptest::collection::vec(any::<u8>(), 0..200)) {
        let id = Id::new(id).unwrap();
        let m = match ty {
            0xA0 => Message::ClientData { server_id: id, data: payload },
            0xA1 => Message::Syn { client_id: id, destination: payload },
            0xA2 => Message::ClientClose { server_id: id },
            0x50 => Message::ServerData { client_id: id, data: payload },
            0x51 => Message::Ack { client_id: id, server_id: Id::new(id2).unwrap() },
            0x52 => Message::ServerClose { client_id: id, extra: (id2 % 2 == 0).then_some([1, 2, 3]) },
            0xFF => Message::Ping,
            t => Message::Unknown { ty: t, id: id.to_bytes(), payload },
        };
        prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn decode_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = Message::decode(&bytes) {
            let enc = m.encode();
            // A server close's extra bytes and a client close's tolerated payload differ.
            if !matches!(m, Message::ClientClose { .. }) {
                prop_assert_eq!(enc, bytes);
            }
        }
    }

    #[test]
    fn manager_never_panics(ops in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..12)), 0..60)) {
        let start = Instant::now();
        let mut m = Manager::new(Config { recv_window: 16, max_payload: 8, ..Config::default() }, KEY.to_vec(), counter(0));
        let mut now = start;
        let mut known: Vec<StreamId> = vec![];
        for (op, data) in ops {
            let pick = known.get(op as usize % known.len().max(1)).copied();
            match op % 9 {
                0 => { if let Ok(s) = m.connect(now) { known.push(s) } }
                1 => m.set_listening(op & 0x80 != 0),
                2 => { now += Duration::from_millis(u64::from(op) * 100); m.handle_timeout(now) }
                3 => if let Some(s) = pick { let _ = m.accept(s); },
                4 => if let Some(s) = pick { let _ = m.send(s, &data); },
                5 => if let Some(s) = pick { let _ = m.read(s, &mut [0; 5]); },
                6 => if let Some(s) = pick { let _ = m.close(s); },
                7 => m.transport_closed(),
                _ => {
                    let mut msg = data.clone();
                    if msg.len() >= 4 { msg[1] = 0; msg[2] = 0; msg[3] %= 4; }
                    m.handle_input(now, &msg)
                }
            }
            while let Some(o) = m.poll_output() {
                match o {
                    Output::Event(Event::Incoming { stream, .. }) => known.push(stream),
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
            prop_assert!(m.stream_count() <= known.len() + 1);
        }
    }
}

mod frames {
    use omnipeer_ministream::frame::{encode, FrameReader};
    use omnipeer_ministream::MAX_MESSAGE;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip_however_cut(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 0..10), cut in 1usize..50) {
            let wire: Vec<u8> = msgs.iter().flat_map(|m| encode(m)).collect();
            let mut r = FrameReader::new();
            let mut got = vec![];
            for c in wire.chunks(cut) {
                r.push(c);
                while let Some(m) = r.next_message().unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        for len in [MAX_MESSAGE as u32 + 1, u32::MAX] {
            let mut r = FrameReader::new();
            r.push(&len.to_be_bytes());
            assert!(r.next_message().is_err());
        }
    }

    /// Frames of 0 to 3 bytes are messages too short to mean anything, not broken
    /// framing: they come out as they are (the manager drops them) and the frames behind
    /// them are read.
    #[test]
    fn short_frames_are_messages_not_errors() {
        let mut r = FrameReader::new();
        for m in [&[][..], &[0x50], &[0x50, 1], &[0x50, 1, 2], &[0x50, 0, 0, 1, b'x']] {
            r.push(&encode(m));
        }
        let mut got = Vec::new();
        while let Some(m) = r.next_message().unwrap() {
            got.push(m);
        }
        assert_eq!(got, vec![vec![], vec![0x50], vec![0x50, 1], vec![0x50, 1, 2], vec![0x50, 0, 0, 1, b'x']]);
        assert_eq!(r.buffered(), 0);
    }
}

/// Over datagrams the first SYN is often lost: it is resent until the ACK, and the server
/// answers the copies without opening a second stream.
#[test]
fn syn_is_resent_until_acked_and_copies_are_harmless() {
    let now = Instant::now();
    let cfg = Config {
        syn_resend: Some(Duration::from_secs(3)),
        connect_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut c = Manager::new(cfg, KEY.to_vec(), fixed(vec![0x000005]));
    let s = c.connect(now).unwrap();
    let (t, _) = drain(&mut c);
    assert_eq!(t, vec![with_key("A1 00 00 05")]);
    // The next deadline is the resend, not the connect timeout.
    assert_eq!(c.poll_output(), Some(Output::Timeout(now + Duration::from_secs(3))));
    c.handle_timeout(now + Duration::from_millis(2999));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    c.handle_timeout(now + Duration::from_secs(3));
    assert_eq!(drain(&mut c).0, vec![with_key("A1 00 00 05")], "first resend");
    c.handle_timeout(now + Duration::from_secs(6));
    assert_eq!(drain(&mut c).0, vec![with_key("A1 00 00 05")], "second resend");

    // The server got the first and the second copy.
    let mut srv = Manager::new(Config::default(), KEY.to_vec(), fixed(vec![0x000009]));
    srv.set_listening(true);
    srv.handle_input(now, &with_key("A1 00 00 05"));
    let (_, e) = drain(&mut srv);
    assert_eq!(e.len(), 1);
    srv.accept(sid(Role::Server, 9)).unwrap();
    let (ack, _) = drain(&mut srv);
    assert_eq!(ack, vec![hex("51 00 00 05 00 00 09")]);
    srv.handle_input(now, &with_key("A1 00 00 05"));
    assert_eq!(drain(&mut srv), (ack.clone(), vec![]), "same ACK again, no new stream");
    assert_eq!(srv.stream_count(), 1);

    // The first ACK opens the stream; the second is ignored; no more resends.
    c.handle_input(now, &ack[0]);
    c.handle_input(now, &ack[0]);
    assert_eq!(drain(&mut c), (vec![], vec![Event::Connected(s)]));
    c.handle_timeout(now + Duration::from_secs(9));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    assert_eq!(c.poll_output(), None);
}

#[test]
fn resent_syn_still_times_out() {
    let now = Instant::now();
    let cfg = Config {
        syn_resend: Some(Duration::from_secs(4)),
        connect_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut c = Manager::new(cfg, KEY.to_vec(), fixed(vec![0x000005]));
    let s = c.connect(now).unwrap();
    drain(&mut c);
    let mut sent = 1;
    let t = loop {
        let Some(Output::Timeout(t)) = c.poll_output() else { panic!("expected a deadline") };
        c.handle_timeout(t);
        let (tx, ev) = drain(&mut c);
        sent += tx.len();
        if !ev.is_empty() {
            assert_eq!(ev, vec![Event::ConnectTimedOut(s)]);
            break t;
        }
    };
    assert_eq!(t, now + Duration::from_secs(10));
    assert_eq!(sent, 3, "at 0, 4 and 8 s");
}

#[test]
fn read_vec_takes_what_read_would() {
    let now = Instant::now();
    let mut s = Manager::new(Config::default(), KEY.to_vec(), fixed(vec![0x000009]));
    s.set_listening(true);
    s.handle_input(now, &with_key("A1 00 00 05"));
    drain(&mut s);
    let id = sid(Role::Server, 9);
    s.accept(id).unwrap();
    drain(&mut s);
    assert_eq!(s.read_vec(id, 10).unwrap(), omnipeer_ministream::manager::ReadVec::WouldBlock);
    s.handle_input(now, &hex("A0 00 00 09 01 02 03 04 05"));
    s.handle_input(now, &hex("A0 00 00 09 06 07"));
    use omnipeer_ministream::manager::ReadVec;
    assert_eq!(s.read_vec(id, 3).unwrap(), ReadVec::Data(vec![1, 2, 3]));
    assert_eq!(s.read_vec(id, 100).unwrap(), ReadVec::Data(vec![4, 5, 6, 7]));
    s.handle_input(now, &hex("A2 00 00 09"));
    assert_eq!(s.read_vec(id, 100).unwrap(), ReadVec::Eof);
    assert_eq!(s.read_vec(id, 100), Err(Error::UnknownStream));
}

/// `send_message` (the payload built in place behind four header bytes) puts exactly the
/// bytes `send` would on the wire, including the cut of a payload above the limit.
#[test]
fn send_message_is_send_without_the_copy() {
    let now = Instant::now();
    for len in [0, 1, 1000, MAX_PAYLOAD, MAX_PAYLOAD + 1, 2 * MAX_PAYLOAD + 10] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let ((cs, mut c), (ss, mut s)) = pair(now, Config::default());
        c.send(cs, &payload).unwrap();
        let by_send = drain(&mut c).0;
        c.send_message(cs, [vec![0xEE; 4], payload.clone()].concat()).unwrap();
        assert_eq!(drain(&mut c).0, by_send, "client, {len} bytes");
        s.send(ss, &payload).unwrap();
        let by_send = drain(&mut s).0;
        s.send_message(ss, [vec![0; 4], payload.clone()].concat()).unwrap();
        assert_eq!(drain(&mut s).0, by_send, "server, {len} bytes");
    }
    let ((cs, mut c), _) = pair(now, Config::default());
    c.close(cs).unwrap();
    assert_eq!(c.send_message(cs, vec![0; 10]), Err(Error::UnknownStream));
}

/// `read_chunk` hands the payloads over as they came (a whole message when it fits), and
/// the bytes are those `read` would give.
#[test]
fn read_chunk_gives_messages_whole() {
    use omnipeer_ministream::manager::ReadVec;
    let now = Instant::now();
    let ((cs, mut c), (ss, mut s)) = pair(now, Config::default());
    let data: Vec<u8> = (0..3 * MAX_PAYLOAD + 123).map(|i| (i % 251) as u8).collect();
    c.send(cs, &data).unwrap();
    for m in drain(&mut c).0 {
        s.handle_input(now, &m);
    }
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while let ReadVec::Data(v) = s.read_chunk(ss, MAX_PAYLOAD).unwrap() {
        sizes.push(v.len());
        got.extend_from_slice(&v);
    }
    assert_eq!(sizes, vec![MAX_PAYLOAD, MAX_PAYLOAD, MAX_PAYLOAD, 123]);
    assert!(got == data);
    // A smaller `max` cuts a message; the rest follows.
    c.send(cs, &data[..1000]).unwrap();
    for m in drain(&mut c).0 {
        s.handle_input(now, &m);
    }
    assert_eq!(s.read_chunk(ss, 600).unwrap(), ReadVec::Data(data[..600].to_vec()));
    assert_eq!(s.read_chunk(ss, 600).unwrap(), ReadVec::Data(data[600..1000].to_vec()));
    assert_eq!(s.read_chunk(ss, 600).unwrap(), ReadVec::WouldBlock);
    c.close(cs).unwrap();
    for m in drain(&mut c).0 {
        s.handle_input(now, &m);
    }
    assert_eq!(s.read_chunk(ss, 600).unwrap(), ReadVec::Eof);
}

/// A peer sending one-byte messages fills the window as any other: the stream pauses the
/// transport at the window, and what it holds is read back intact whatever the mix of
/// message sizes (small ones share buffers; `read` and `read_chunk` agree).
#[test]
fn tiny_messages_fill_the_window_like_big_ones() {
    let now = Instant::now();
    let cfg = Config { recv_window: 64 * 1024, ..Config::default() };
    let ((_, _), (ss, mut s)) = pair(now, cfg);
    let mut sent = Vec::new();
    let mut i = 0u32;
    while !s.receive_paused() {
        let len = [1usize, 3, 4096, 1, 5000, 2][i as usize % 6];
        let payload: Vec<u8> = (0..len).map(|k| (i as usize + k) as u8).collect();
        s.handle_input(now, &Message::ClientData { server_id: ss.id, data: payload.clone() }.encode());
        sent.extend_from_slice(&payload);
        i += 1;
        assert!(i < 100_000, "the window never filled");
    }
    assert_eq!(s.buffered(ss), sent.len());
    assert!(sent.len() < 64 * 1024 + 5000);
    let mut got = Vec::new();
    let mut buf = [0u8; 777];
    let mut turn = 0;
    loop {
        turn += 1;
        if turn % 2 == 0 {
            match s.read_chunk(ss, 10_000).unwrap() {
                omnipeer_ministream::manager::ReadVec::Data(v) => got.extend_from_slice(&v),
                _ => break,
            }
        } else {
            match s.read(ss, &mut buf).unwrap() {
                ReadOutcome::Data(n) => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    }
    assert!(got == sent, "bytes differ");
    assert!(!s.receive_paused());
}

mod frames_in_place {
    use omnipeer_ministream::frame::{encode, FrameReader};
    use proptest::prelude::*;

    proptest! {
        /// Reading straight into the reader's buffer (`spare`, `commit`) and taking
        /// borrowed frames gives the same messages as `push` and `next_message`.
        #[test]
        fn spare_and_commit_frame_like_push(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..12), cut in 1usize..7000, take_every in 1usize..4) {
            let wire: Vec<u8> = msgs.iter().flat_map(|m| encode(m)).collect();
            let mut r = FrameReader::new();
            let mut got: Vec<Vec<u8>> = vec![];
            for (i, c) in wire.chunks(cut).enumerate() {
                let room = r.spare(c.len());
                prop_assert!(room.len() >= c.len());
                room[..c.len()].copy_from_slice(c);
                r.commit(c.len());
                // Frames are not always taken at once: unread ones are moved, not lost.
                if i % take_every == 0 {
                    loop {
                        let has = r.has_frame();
                        let Some(m) = r.next_frame().unwrap() else {
                            prop_assert!(!has);
                            break;
                        };
                        prop_assert!(has);
                        got.push(m.to_vec());
                    }
                }
            }
            while let Some(m) = r.next_frame().unwrap() {
                got.push(m.to_vec());
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(r.buffered(), 0);
        }
    }
}
