//! Sans-IO Tox. No sockets, no clock, no file access, no ambient randomness: packets
//! and `Instant`-like times are inputs, packets to send and events are outputs. Every
//! machine draws its nonces, temporary keys and random choices from its own generator
//! ([`crypto::ToxRng`]), seeded by the caller, and identities are made by the caller: the
//! same seed, keys, inputs and `now`s give the same packets. Drivers (and the profile
//! file) live in `omnipeer-node`, which seeds the machines from the OS.

pub mod conference;
pub mod crypto;
pub mod dht;
pub mod file;
pub mod friend;
pub mod messenger;
pub mod net_crypto;
pub mod ngc;
pub mod onion;
pub mod onion_client;
pub mod packet;
pub mod profile;
pub mod savedata;
pub mod tcp_relay;
pub mod tox;
pub mod toxid;
