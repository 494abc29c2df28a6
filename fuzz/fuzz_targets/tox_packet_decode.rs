//! `omnipeer_tox::packet` decoders on arbitrary input: packed nodes, the 19-byte onion
//! IP_Port, DHT packet headers, ping / nodes plaintexts, DHT requests, DHT-PK announces, bootstrap info replies.
//!
//! Checked: nothing panics; whatever decodes re-encodes to bytes that decode to the same
//! value (UDP entries; TCP entries are dropped by design).
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipeer_tox::packet::*;

fuzz_target!(|data: &[u8]| {
    if let Ok((e, n)) = PackedNode::decode_entry(data) {
        let mut v = Vec::new();
        encode_node_entry(&e, &mut v);
        assert_eq!(v.len(), n);
        assert_eq!(PackedNode::decode_entry(&v), Ok((e, n)));
    }
    if let Ok(a) = decode_ip_port(data) {
        assert_eq!(decode_ip_port(&encode_ip_port(&a)), Ok(a));
    }
    let _ = DhtPacket::parse(data);
    let _ = DhtRequest::parse(data);
    if let Ok(p) = PingPlain::decode(data) {
        assert_eq!(&p.encode()[..], data);
    }
    if let Ok(r) = NodesRequestPlain::decode(data) {
        assert_eq!(&r.encode()[..], data);
    }
    if let Ok(r) = NodesResponsePlain::decode(data) {
        assert_eq!(NodesResponsePlain::decode(&r.encode()), Ok(r));
    }
    if let Ok(a) = DhtPkAnnounce::decode(data) {
        assert_eq!(DhtPkAnnounce::decode(&a.encode()), Ok(a));
    }
    // The TCP relays a DHT-PK packet lists (our client dials them): never panics.
    let _ = DhtPkAnnounce::decode_relays(data);
    let _ = decode_node_entries_all(data, 4);
    if let Ok(i) = BootstrapInfo::decode(data) {
        assert_eq!(&i.encode()[..], data);
    }
});
