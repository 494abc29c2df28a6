//! Tox over UDP: tokio drivers for the sans-IO machines of `omnipeer-tox`.
//!
//! One UDP socket per node; incoming datagrams are dispatched by their first byte
//! ([`route`]); the machines' timers are driven from their `next_timeout`. This module
//! holds what every Tox driver shares: the keys file, `HOST:PORT:DHTKEY` node specs, the
//! dispatch table, and the OS randomness the machines are seeded with (they draw none
//! themselves). [`bootstrap`] is the bootstrap/DHT node (`omnipeer tox bootstrap`);
//! [`profile`] reads and writes the profile file.

pub mod bootstrap;
pub mod client;
pub mod files;
pub mod profile;
pub mod relay;

use anyhow::{anyhow, bail, Context};
pub use omnipeer_tox::crypto::{KeyPair, PublicKey};
use omnipeer_tox::crypto::{RngSeed, SecretKey};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// Which machine a datagram goes to (by its first byte; docs/protocols/tox.md#packet-kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// 0x00 0x01 0x02 0x04 0x20 0x21
    Dht,
    /// 0x80–0x83, 0x85, 0x8c–0x8e
    OnionNode,
    /// 0x84, 0x86 arriving at us (answers to our own onion requests)
    OnionClient,
    /// 0x18–0x1b
    NetCrypto,
    /// anything else (NGC 0x87–0x98, bootstrap info 0xf0, unknown)
    Drop,
}

/// The dispatch table.
pub fn route(first: u8) -> Route {
    match first {
        0x00 | 0x01 | 0x02 | 0x04 | 0x20 | 0x21 => Route::Dht,
        0x80..=0x83 | 0x85 | 0x8c..=0x8e => Route::OnionNode,
        0x84 | 0x86 => Route::OnionClient,
        0x18..=0x1b => Route::NetCrypto,
        _ => Route::Drop,
    }
}

/// `N` bytes from the OS random source (getrandom). Aborts if the OS cannot supply them:
/// keys and nonces must never come from anything weaker.
pub fn os_random<const N: usize>() -> [u8; N] {
    use rand::TryRngCore;
    let mut b = [0u8; N];
    rand::rngs::OsRng.try_fill_bytes(&mut b).expect("the OS random source failed");
    b
}

/// A seed for a Tox machine's generator, from the OS: what production machines run on
/// (tests seed them with constants instead).
pub fn os_seed() -> RngSeed {
    os_random()
}

/// A new key pair from the OS random source (a DHT identity).
pub fn new_keypair() -> KeyPair {
    KeyPair::from_secret(SecretKey(os_random()))
}

/// Size of a keys file: public key ‖ secret key, raw (as tox-bootstrapd writes it).
pub const KEYS_FILE_SIZE: usize = 64;

/// Loads the DHT key pair from `path` (pk ‖ sk, 64 raw bytes), or creates the file with a
/// new pair (mode 0600) if it does not exist.
pub fn load_or_create_keys(path: &Path) -> anyhow::Result<KeyPair> {
    match std::fs::read(path) {
        Ok(b) => {
            if b.len() != KEYS_FILE_SIZE {
                bail!("{}: keys file must be {KEYS_FILE_SIZE} bytes, is {}", path.display(), b.len());
            }
            let mut sk = [0u8; 32];
            sk.copy_from_slice(&b[32..]);
            let kp = KeyPair::from_secret(SecretKey(sk));
            if kp.pk.0[..] != b[..32] {
                bail!("{}: public key does not match the secret key", path.display());
            }
            Ok(kp)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = new_keypair();
            let mut f = {
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                o.open(path).with_context(|| format!("cannot create {}", path.display()))?
            };
            f.write_all(&kp.pk.0)?;
            f.write_all(&kp.sk.0)?;
            f.sync_all()?;
            Ok(kp)
        }
        Err(e) => Err(anyhow!(e).context(format!("cannot read {}", path.display()))),
    }
}

/// Parses `HOST:PORT:DHTKEY` (64 hex); HOST may be a name, resolved now (IPv4 preferred).
pub fn parse_node_spec(spec: &str) -> anyhow::Result<(SocketAddr, PublicKey)> {
    let (hostport, key) = spec.rsplit_once(':').ok_or_else(|| anyhow!("{spec:?}: expected HOST:PORT:DHTKEY"))?;
    let pk = PublicKey::from_hex(key).ok_or_else(|| anyhow!("{spec:?}: DHT key must be 64 hex digits"))?;
    let addrs: Vec<SocketAddr> =
        hostport.to_socket_addrs().with_context(|| format!("{spec:?}: cannot resolve {hostport:?}"))?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("{spec:?}: {hostport:?} has no address"))?;
    Ok((addr, pk))
}

/// Parses a comma-separated list of node specs.
pub fn parse_node_specs(list: &str) -> anyhow::Result<Vec<(SocketAddr, PublicKey)>> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(|s| parse_node_spec(s.trim())).collect()
}

/// An address as the machines should see it: IPv4-mapped IPv6 (`[::ffff:a.b.c.d]:p`, what
/// a dual-stack socket reports) becomes plain IPv4, so packed nodes carry IPv4 entries.
pub fn normalize_addr(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// The destination to pass to a socket bound to `local`: IPv4 destinations are mapped
/// into IPv6 when the socket is IPv6 (dual-stack).
pub fn socket_dest(local: SocketAddr, to: SocketAddr) -> SocketAddr {
    match (local, to) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        _ => to,
    }
}

/// Converts a `std` instant deadline into tokio's.
pub(crate) fn tokio_deadline(at: Option<std::time::Instant>) -> tokio::time::Instant {
    match at {
        Some(t) => tokio::time::Instant::from_std(t),
        None => tokio::time::Instant::now() + std::time::Duration::from_secs(3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(0x00), Route::Dht);
        assert_eq!(route(0x20), Route::Dht);
        assert_eq!(route(0x83), Route::OnionNode);
        assert_eq!(route(0x85), Route::OnionNode);
        assert_eq!(route(0x8e), Route::OnionNode);
        assert_eq!(route(0x84), Route::OnionClient);
        assert_eq!(route(0x86), Route::OnionClient);
        assert_eq!(route(0x1a), Route::NetCrypto);
        assert_eq!(route(0x87), Route::Drop);
        assert_eq!(route(0xf0), Route::Drop);
    }

    #[test]
    fn keys_file_created_then_reloaded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        let a = load_or_create_keys(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap().len(), 64);
        let b = load_or_create_keys(&p).unwrap();
        assert_eq!(a.pk, b.pk);
        std::fs::write(&p, [1u8; 10]).unwrap();
        assert!(load_or_create_keys(&p).is_err());
        let mut bad = b.pk.0.to_vec();
        bad.extend_from_slice(&[9u8; 32]);
        std::fs::write(&p, bad).unwrap();
        assert!(load_or_create_keys(&p).is_err());
    }

    #[test]
    fn mapped_addresses() {
        let m: SocketAddr = "[::ffff:127.0.0.1]:5".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert_eq!(normalize_addr(m), v4);
        assert_eq!(normalize_addr(v4), v4);
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        assert_eq!(normalize_addr(v6), v6);
        assert_eq!(socket_dest("[::]:1".parse().unwrap(), v4), m);
        assert_eq!(socket_dest("0.0.0.0:1".parse().unwrap(), v4), v4);
    }

    #[test]
    fn node_specs() {
        let k = "AB".repeat(32);
        let (a, pk) = parse_node_spec(&format!("127.0.0.1:33445:{k}")).unwrap();
        assert_eq!(a, "127.0.0.1:33445".parse().unwrap());
        assert_eq!(pk.0, [0xab; 32]);
        assert!(parse_node_spec("127.0.0.1:33445").is_err());
        assert!(parse_node_spec(&format!("127.0.0.1:x:{k}")).is_err());
        assert_eq!(parse_node_specs(&format!("localhost:1:{k},127.0.0.1:2:{k}")).unwrap().len(), 2);
    }
}
