//! Sans-IO Tox. No sockets, no clock: packets and `Instant`-like times are inputs,
//! packets to send and events are outputs. Drivers live in `omnipeer-node`.

pub mod crypto;
pub mod dht;
pub mod friend;
pub mod messenger;
pub mod net_crypto;
pub mod onion;
pub mod onion_client;
pub mod packet;
pub mod profile;
pub mod tox;
pub mod toxid;
