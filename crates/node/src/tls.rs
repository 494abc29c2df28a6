//! TLS for Direct Connect: `nmdcs://` and `adcs://` hubs, TLS client-to-client transfers
//! (NMDC's `$ConnectToMe …S`, ADC's `ADCS`), and KEYP keyprints (docs/protocols/adc.md#tls).
//!
//! Direct Connect does not use certificate authorities: every hub and client makes its own
//! self-signed certificate, and trust comes from the keyprint (`SHA256/` + base32 of the
//! SHA-256 of the certificate's DER bytes) written in the hub address (`?kp=`) or sent in an
//! ADC `INF` (`KP`). So:
//!
//! - [`TlsIdentity::load_or_create`] gives this node's certificate and key, made once and kept
//!   in `<data_dir>/tls/cert.pem` and `<data_dir>/tls/key.pem` (mode 0600), the same across
//!   restarts so that a pinned keyprint stays valid. [`TlsIdentity::keyprint`] is what to
//!   print for users to pin (`adcs://host:port/?kp=…`).
//! - [`connect`] runs the client side of a handshake over any stream. With a keyprint
//!   (`pin`) it accepts only the certificate with that keyprint and fails with
//!   [`TlsError::KeyprintMismatch`] otherwise; without one it accepts any certificate, as
//!   ncdc and AirDC++ do for an address without `kp=` (the keyprint seen is logged and
//!   available from [`MaybeTls::peer_keyprint`]). Either way the peer must prove it holds the
//!   certificate's key (the handshake signature is checked).
//! - [`accept`] runs the server side with the kept certificate. A client may present its own
//!   certificate (DC++ does); it is not required, and its keyprint is in
//!   [`MaybeTls::peer_keyprint`].
//! - [`accept_plain_or_tls`] serves both on one port: it looks at the first byte the peer
//!   sends (a TLS handshake record starts with 0x16, an NMDC or ADC command with `$` or a
//!   letter) and runs [`accept`] or hands the stream on plain. Only for protocols where the
//!   connecting side speaks first (client-to-client NMDC and ADC), never for a hub port
//!   (an NMDC hub speaks first).
//! - [`MaybeTls`] is a plain or TLS stream implementing `AsyncRead + AsyncWrite`, so the
//!   protocol drivers stay generic over both.
//!
//! Both handshakes give up after [`HANDSHAKE_TIMEOUT`]: a peer that connects and sends
//! nothing holds a socket that long, never a login slot.
//!
//! This API is shared by the NMDC and ADC drivers: keep it stable.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a TLS handshake may take, either side, before the connection is dropped. It
/// runs before any login, so it bounds what a silent or slow peer costs.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest certificate or key file read from the data dir (ours are well under 2 KiB).
pub const MAX_PEM_FILE: u64 = 64 * 1024;

/// What every keyprint starts with (the hash name, docs/protocols/adc.md#tls).
pub const KEYPRINT_PREFIX: &str = "SHA256/";

/// The folder under the data dir holding the certificate and key.
pub const TLS_DIR: &str = "tls";

/// Why a TLS step failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer's certificate is not the pinned one.
    #[error("the peer's certificate has keyprint {seen}, not the pinned {expected}: refusing it (check the ?kp= of the address)")]
    KeyprintMismatch {
        /// The pinned keyprint.
        expected: String,
        /// The keyprint of the certificate the peer showed.
        seen: String,
    },
    /// No handshake within [`HANDSHAKE_TIMEOUT`].
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The handshake failed (not TLS, protocol error, connection closed).
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    /// The address has no usable server name.
    #[error("{0:?} is not a host name or IP address")]
    ServerName(String),
    /// Reading, writing or making the certificate or key.
    #[error("TLS certificate {path}: {why}")]
    Certificate {
        /// The file (or "generated").
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// The KEYP keyprint of a DER certificate: `SHA256/` + unpadded base32 of its SHA-256.
pub fn keyprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    format!("{KEYPRINT_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&digest))
}

/// Whether two keyprints name the same certificate: same hash name, same base32 digits
/// (case and `=` padding ignored, as users copy them from different clients).
pub fn keyprint_matches(a: &str, b: &str) -> bool {
    fn norm(k: &str) -> Option<String> {
        let (alg, digits) = k.trim().split_once('/')?;
        if !alg.eq_ignore_ascii_case("SHA256") {
            return None;
        }
        Some(digits.trim_end_matches('=').to_ascii_uppercase())
    }
    matches!((norm(a), norm(b)), (Some(x), Some(y)) if x == y && !x.is_empty())
}

// The workspace builds rustls with ring (no cmake, no C toolchain beyond cc); rustls 0.23.48
// deprecates ring's provider only because it lacks post-quantum key exchange, which no Direct
// Connect peer offers today.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// This node's certificate and private key, with the server config built from them.
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsIdentity {
    inner: Arc<IdentityInner>,
}

struct IdentityInner {
    cert: CertificateDer<'static>,
    certified: Arc<rustls::sign::CertifiedKey>,
    keyprint: String,
    server: Arc<ServerConfig>,
}

/// Always this certificate (server side, and client side when a server asks for one).
/// Through a resolver rather than `with_single_cert` / `with_client_auth_cert`, which parse
/// the certificate with webpki and so refuse the X.509 v1 certificates of DC++ clients.
#[derive(Debug)]
struct Always(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Always {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for Always {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("keyprint", &self.inner.keyprint).finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// The certificate kept in `<data_dir>/tls/`, made (self-signed, ECDSA P-256) on first use.
    /// A directory holding only one of the two files, or files that do not parse, is an
    /// error rather than a silent new certificate (that would break every pinned keyprint).
    pub fn load_or_create(data_dir: &Path) -> Result<TlsIdentity, TlsError> {
        // Sessions starting together (several hubs) must not each make a pair and leave
        // one's key beside another's certificate.
        static MAKING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = data_dir.join(TLS_DIR);
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        let cert_err = |path: &Path, why: String| TlsError::Certificate { path: path.display().to_string(), why };
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = read_small(&cert_path).map_err(|e| cert_err(&cert_path, e.to_string()))?;
                let key_pem = read_small(&key_path).map_err(|e| cert_err(&key_path, e.to_string()))?;
                let cert =
                    CertificateDer::from_pem_slice(&cert_pem).map_err(|e| cert_err(&cert_path, e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| cert_err(&key_path, e.to_string()))?;
                TlsIdentity::from_der(cert, key).map_err(|why| cert_err(&cert_path, why))
            }
            (false, false) => {
                let made = rcgen::generate_simple_self_signed(vec!["omnipeer".to_owned()])
                    .map_err(|e| cert_err(&cert_path, format!("cannot generate: {e}")))?;
                std::fs::create_dir_all(&dir).map_err(|e| cert_err(&dir, e.to_string()))?;
                write_file(&key_path, made.signing_key.serialize_pem().as_bytes(), 0o600)
                    .map_err(|e| cert_err(&key_path, e.to_string()))?;
                write_file(&cert_path, made.cert.pem().as_bytes(), 0o644)
                    .map_err(|e| cert_err(&cert_path, e.to_string()))?;
                let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                    .map_err(|e| cert_err(&key_path, e.to_string()))?;
                let identity =
                    TlsIdentity::from_der(made.cert.der().clone(), key).map_err(|why| cert_err(&cert_path, why))?;
                tracing::info!(keyprint = %identity.keyprint(), path = %cert_path.display(), "made a TLS certificate");
                Ok(identity)
            }
            (c, _) => {
                let (have, missing) = if c { (&cert_path, &key_path) } else { (&key_path, &cert_path) };
                Err(cert_err(missing, format!("missing while {} exists: restore it, or remove both", have.display())))
            }
        }
    }

    /// A certificate made now and kept only in memory (tests, one-off tools).
    pub fn generate() -> Result<TlsIdentity, TlsError> {
        let err = |why: String| TlsError::Certificate { path: "generated".into(), why };
        let made = rcgen::generate_simple_self_signed(vec!["omnipeer".to_owned()]).map_err(|e| err(e.to_string()))?;
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| err(e.to_string()))?;
        TlsIdentity::from_der(made.cert.der().clone(), key).map_err(err)
    }

    /// From a DER certificate (any X.509 version) and its key (which must match).
    pub fn from_der(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Result<TlsIdentity, String> {
        let provider = provider();
        let signing = provider.key_provider.load_private_key(key).map_err(|e| format!("the key: {e}"))?;
        let cert_spki = public_key(&cert).map(|(_, _, spki)| spki).ok_or("the certificate cannot be read")?;
        if signing.public_key().is_some_and(|k| k.as_ref() != cert_spki) {
            return Err("certificate and key do not go together".into());
        }
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert.clone()], signing));
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(AnyCertificate::new(None)))
            .with_cert_resolver(Arc::new(Always(certified.clone())));
        let keyprint = keyprint(&cert);
        Ok(TlsIdentity { inner: Arc::new(IdentityInner { cert, certified, keyprint, server: Arc::new(server) }) })
    }

    /// This certificate's keyprint (`SHA256/…`), for users to pin and for ADC's `KP` field.
    pub fn keyprint(&self) -> &str {
        &self.inner.keyprint
    }

    /// The DER certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.inner.cert
    }

    /// The server config [`accept`] uses.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server.clone()
    }
}

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(MAX_PEM_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_PEM_FILE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {MAX_PEM_FILE} bytes")));
    }
    Ok(buf)
}

/// Write through a temporary file and rename, so a crash never leaves half a key.
fn write_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Accepts any certificate whose holder proves it has the key, or, with a pin, only the
/// certificate with that keyprint. Records the keyprint seen for the error message.
#[derive(Debug)]
struct AnyCertificate {
    pin: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl AnyCertificate {
    fn new(pin: Option<String>) -> AnyCertificate {
        AnyCertificate { pin, seen: Mutex::new(None), provider: provider() }
    }

    /// The handshake signature, checked against the certificate's public key. Not with
    /// rustls's own helpers: they parse the certificate with webpki, which refuses the
    /// X.509 v1 certificates DC++-family clients make (EiskaltDC++ 2.4: "UnsupportedCertVersion").
    /// The key is read from the certificate here ([`public_key`]) and checked with the same
    /// algorithms rustls would use for the signature scheme.
    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
        let (alg_id, key, _) =
            public_key(cert).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let algs = self
            .provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme))?;
        let alg = algs.iter().find(|a| *a.public_key_alg_id() == *alg_id).ok_or_else(bad)?;
        alg.verify_signature(key, message, dss.signature()).map_err(|_| bad())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let seen = keyprint(end_entity);
        *self.seen.lock().expect("seen lock") = Some(seen.clone());
        match &self.pin {
            Some(pin) if !keyprint_matches(pin, &seen) => {
                Err(rustls::Error::General(format!("certificate keyprint {seen} is not the pinned {pin}")))
            }
            _ => Ok(()),
        }
    }
}

/// The handshake-signature methods [`ServerCertVerifier`] and [`ClientCertVerifier`] both
/// have, the same for either side: [`AnyCertificate::verify_signature`] for TLS 1.2 and
/// 1.3, and the provider's schemes.
macro_rules! signature_checks {
    () => {
        signature_check!(verify_tls12_signature);
        signature_check!(verify_tls13_signature);
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

/// One of `signature_checks`' two: `name` by [`AnyCertificate::verify_signature`].
macro_rules! signature_check {
    ($name:ident) => {
        fn $name(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.verify_signature(message, cert, dss)
        }
    };
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }
    signature_checks!();
}

impl ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The server config is shared by every connection: nothing recorded here (the
        // keyprint is read from the finished connection instead).
        let _ = end_entity;
        Ok(ClientCertVerified::assertion())
    }
    signature_checks!();
}

/// One DER element: (tag, contents, what follows). Lengths are checked against the input.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject public key of an X.509 certificate (any version): the contents of its
/// AlgorithmIdentifier, the key bits, and the whole SubjectPublicKeyInfo (RFC 5280 §4.1).
fn public_key(cert: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (0x30, cert, _) = der(cert)? else { return None };
    let (0x30, mut tbs, _) = der(cert)? else { return None };
    // [0] version is absent in v1 certificates.
    if let (0xa0, _, rest) = der(tbs)? {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = der(tbs)?.2;
    }
    let (0x30, spki, after) = der(tbs)? else { return None };
    let whole = &tbs[..tbs.len() - after.len()];
    let (0x30, alg, rest) = der(spki)? else { return None };
    let (0x03, bits, _) = der(rest)? else { return None };
    let (0, key) = bits.split_first()? else { return None };
    Some((alg, key, whole))
}

/// The server name for the handshake from `host`, `host:port`, `[v6]:port` or an IP.
fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let h = host.trim();
    let bare = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// The client side of a TLS handshake over `io` (already connected to `host`, written
/// `host`, `host:port` or an IP). With `pin`, only the certificate with that keyprint is
/// accepted ([`TlsError::KeyprintMismatch`] otherwise). With `identity`, our certificate is
/// shown if the server asks (DC++ does on client-to-client connections).
pub async fn connect<S>(
    io: S,
    host: &str,
    pin: Option<&str>,
    identity: Option<&TlsIdentity>,
) -> Result<MaybeTls<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = server_name(host)?;
    let verifier = Arc::new(AnyCertificate::new(pin.map(str::to_owned)));
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Handshake(io::Error::other(e)))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let config = match identity {
        Some(id) => builder.with_client_cert_resolver(Arc::new(Always(id.inner.certified.clone()))),
        None => builder.with_no_client_auth(),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, io)).await;
    let seen = verifier.seen.lock().expect("seen lock").clone();
    match result {
        Err(_) => Err(TlsError::Timeout(HANDSHAKE_TIMEOUT)),
        Ok(Err(e)) => match (pin, seen) {
            (Some(pin), Some(seen)) if !keyprint_matches(pin, &seen) => {
                Err(TlsError::KeyprintMismatch { expected: pin.to_owned(), seen })
            }
            _ => Err(TlsError::Handshake(e)),
        },
        Ok(Ok(stream)) => {
            let stream = MaybeTls::Client(Box::new(stream));
            tracing::debug!(%host, keyprint = ?stream.peer_keyprint(), pinned = pin.is_some(), "TLS connected");
            Ok(stream)
        }
    }
}

/// The server side of a TLS handshake over `io`, with `identity`'s certificate.
pub async fn accept<S>(io: S, identity: &TlsIdentity) -> Result<MaybeTls<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = TlsAcceptor::from(identity.server_config());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Err(_) => Err(TlsError::Timeout(HANDSHAKE_TIMEOUT)),
        Ok(Err(e)) => Err(TlsError::Handshake(e)),
        Ok(Ok(stream)) => Ok(MaybeTls::Server(Box::new(stream))),
    }
}

/// The first byte of a TLS handshake record (ClientHello): how [`accept_plain_or_tls`]
/// tells TLS from plain text.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The server side of a connection that may or may not be TLS: waits (up to
/// [`HANDSHAKE_TIMEOUT`]) for the peer's first byte, without consuming it, then runs
/// [`accept`] if it starts a TLS handshake and `identity` is given, else returns the
/// stream plain. A TLS peer when we have no `identity` gets the plain stream too (its
/// handshake then fails in the protocol's own parser).
pub async fn accept_plain_or_tls(
    stream: TcpStream,
    identity: Option<&TlsIdentity>,
) -> Result<MaybeTls<TcpStream>, TlsError> {
    let mut first = [0u8; 1];
    let n = match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Err(_) => return Err(TlsError::Timeout(HANDSHAKE_TIMEOUT)),
        Ok(Err(e)) => return Err(TlsError::Handshake(e)),
        Ok(Ok(n)) => n,
    };
    match identity {
        Some(id) if n == 1 && first[0] == TLS_HANDSHAKE_RECORD => accept(stream, id).await,
        _ => Ok(MaybeTls::Plain(stream)),
    }
}

/// A plain or TLS stream (client or server side): `AsyncRead + AsyncWrite` either way.
pub enum MaybeTls<S = TcpStream> {
    /// No TLS.
    Plain(S),
    /// TLS, we connected.
    Client(Box<tokio_rustls::client::TlsStream<S>>),
    /// TLS, we accepted.
    Server(Box<tokio_rustls::server::TlsStream<S>>),
}

impl<S> std::fmt::Debug for MaybeTls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaybeTls::Plain(_) => "MaybeTls::Plain",
            MaybeTls::Client(_) => "MaybeTls::Client",
            MaybeTls::Server(_) => "MaybeTls::Server",
        })
    }
}

impl<S> MaybeTls<S> {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, MaybeTls::Plain(_))
    }

    /// The keyprint of the certificate the peer showed (none when plain, or when a client
    /// connected to us without one).
    pub fn peer_keyprint(&self) -> Option<String> {
        let certs = match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Client(s) => s.get_ref().1.peer_certificates(),
            MaybeTls::Server(s) => s.get_ref().1.peer_certificates(),
        };
        certs.and_then(|c| c.first()).map(|c| keyprint(c))
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Client(s) => s.get_ref().0,
            MaybeTls::Server(s) => s.get_ref().0,
        }
    }
}

impl From<TcpStream> for MaybeTls<TcpStream> {
    fn from(s: TcpStream) -> Self {
        MaybeTls::Plain(s)
    }
}

impl MaybeTls<TcpStream> {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.get_ref().peer_addr()
    }

    /// Our end's address.
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.get_ref().local_addr()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Client(s) => s.is_write_vectored(),
            MaybeTls::Server(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The keyprint of a certificate made by openssl, checked against openssl's own
    /// SHA-256 of the DER bytes (so the encoding, not only the hash, is what KEYP says).
    #[test]
    fn keyprint_of_an_openssl_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hub"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed (scripts/install-test-deps.sh)");
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        let der = std::process::Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let fp = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        // "sha256 Fingerprint=AB:CD:..." (the label's case depends on the openssl version)
        let fp = String::from_utf8(fp).unwrap();
        let hex: String = fp.trim().rsplit('=').next().unwrap().replace(':', "");
        let digest = data_encoding::HEXUPPER.decode(hex.to_ascii_uppercase().as_bytes()).unwrap();
        let expected = format!("SHA256/{}", data_encoding::BASE32_NOPAD.encode(&digest));
        let pem = std::fs::read(&cert).unwrap();
        let parsed = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(parsed.as_ref(), der.as_slice());
        assert_eq!(keyprint(&parsed), expected);
        assert_eq!(expected.len(), "SHA256/".len() + 52);
    }

    /// A golden value: the SHA-256 of the empty input, base32 (RFC 4648 alphabet, no padding).
    #[test]
    fn keyprint_encoding_golden() {
        assert_eq!(keyprint(b""), "SHA256/4OYMIQUY7QOBJGX36TEJS35ZEQT24QPEMSNZGTFESWMRW6CSXBKQ");
        assert!(keyprint_matches(
            "sha256/4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq",
            "SHA256/4OYMIQUY7QOBJGX36TEJS35ZEQT24QPEMSNZGTFESWMRW6CSXBKQ===="
        ));
        assert!(!keyprint_matches("SHA256/", "SHA256/"));
        assert!(!keyprint_matches("SHA1/ABC", "SHA1/ABC"));
    }

    #[test]
    fn the_certificate_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsIdentity::load_or_create(dir.path()).unwrap();
        let b = TlsIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.keyprint(), b.keyprint());
        assert_eq!(a.certificate_der(), b.certificate_der());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        // Half a pair is refused, not silently replaced.
        std::fs::remove_file(dir.path().join("tls/key.pem")).unwrap();
        let e = TlsIdentity::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("key.pem") && e.contains("missing"), "{e}");
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        (c, l.accept().await.unwrap().0)
    }

    #[test]
    fn sessions_starting_together_get_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let kps: Vec<String> = (0..8)
            .map(|_| {
                let d = dir.path().to_owned();
                std::thread::spawn(move || TlsIdentity::load_or_create(&d).unwrap().keyprint().to_owned())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(kps.iter().all(|k| *k == kps[0]), "{kps:?}");
        assert_eq!(TlsIdentity::load_or_create(dir.path()).unwrap().keyprint(), kps[0]);
    }

    #[tokio::test]
    async fn round_trip_with_the_right_pin() {
        let server_id = TlsIdentity::generate().unwrap();
        let client_id = TlsIdentity::generate().unwrap();
        let (c, s) = pair().await;
        let sid = server_id.clone();
        let server = tokio::spawn(async move {
            let mut s = accept(s, &sid).await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong|").await.unwrap();
            s.flush().await.unwrap();
            (buf, s.peer_keyprint())
        });
        let mut c = connect(c, "127.0.0.1:411", Some(server_id.keyprint()), Some(&client_id)).await.unwrap();
        assert!(c.is_tls());
        assert_eq!(c.peer_keyprint().as_deref(), Some(server_id.keyprint()));
        c.write_all(b"ping|").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong|");
        let (got, client_kp) = server.await.unwrap();
        assert_eq!(&got, b"ping|");
        assert_eq!(client_kp.as_deref(), Some(client_id.keyprint()));
    }

    #[tokio::test]
    async fn no_pin_accepts_a_self_signed_certificate() {
        let server_id = TlsIdentity::generate().unwrap();
        let (c, s) = pair().await;
        let sid = server_id.clone();
        let server = tokio::spawn(async move { accept(s, &sid).await.map(|s| s.peer_keyprint()) });
        let c = connect(c, "localhost", None, None).await.unwrap();
        assert_eq!(c.peer_keyprint().as_deref(), Some(server_id.keyprint()));
        assert_eq!(server.await.unwrap().unwrap(), None);
    }

    #[tokio::test]
    async fn a_wrong_pin_is_refused() {
        let server_id = TlsIdentity::generate().unwrap();
        let other = TlsIdentity::generate().unwrap();
        let (c, s) = pair().await;
        let sid = server_id.clone();
        let server = tokio::spawn(async move { accept(s, &sid).await.is_ok() });
        let e = connect(c, "127.0.0.1", Some(other.keyprint()), None).await.unwrap_err();
        match &e {
            TlsError::KeyprintMismatch { expected, seen } => {
                assert_eq!(expected, other.keyprint());
                assert_eq!(seen, server_id.keyprint());
            }
            e => panic!("expected a keyprint mismatch, got {e}"),
        }
        assert!(e.to_string().contains("pinned"), "{e}");
        assert!(!server.await.unwrap(), "the server saw a finished handshake");
    }

    /// DC++-family clients (EiskaltDC++ 2.4) make X.509 v1 certificates, which webpki
    /// refuses to parse: a handshake with one, either side, must still work.
    #[tokio::test]
    async fn x509_v1_certificates_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let csr = dir.path().join("r.csr");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        let (k, c, r) = (key.to_str().unwrap(), cert.to_str().unwrap(), csr.to_str().unwrap());
        run(&["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=ABCDEF", "-keyout", k, "-out", r]);
        // `x509 -req` without extensions makes a version 1 certificate.
        run(&["x509", "-req", "-in", r, "-signkey", k, "-days", "2", "-out", c]);
        let text = std::process::Command::new("openssl").args(["x509", "-noout", "-text", "-in", c]).output().unwrap();
        assert!(String::from_utf8_lossy(&text.stdout).contains("Version: 1"), "not a v1 certificate");
        let v1 = TlsIdentity::from_der(
            CertificateDer::from_pem_slice(&std::fs::read(&cert).unwrap()).unwrap(),
            PrivateKeyDer::from_pem_slice(&std::fs::read(&key).unwrap()).unwrap(),
        )
        .unwrap();
        // v1 server, pinned.
        let (c, s) = pair().await;
        let sid = v1.clone();
        let server = tokio::spawn(async move { accept(s, &sid).await.map(|_| ()) });
        let c = connect(c, "127.0.0.1", Some(v1.keyprint()), None).await.unwrap();
        assert_eq!(c.peer_keyprint().as_deref(), Some(v1.keyprint()));
        server.await.unwrap().unwrap();
        // v1 client certificate.
        let ours = TlsIdentity::generate().unwrap();
        let (c, s) = pair().await;
        let sid = ours.clone();
        let server = tokio::spawn(async move { accept(s, &sid).await.map(|s| s.peer_keyprint()) });
        connect(c, "127.0.0.1", None, Some(&v1)).await.unwrap();
        assert_eq!(server.await.unwrap().unwrap().as_deref(), Some(v1.keyprint()));
        assert!(public_key(b"\x30\x03\x02\x01\x00").is_none());
    }

    /// A server showing the pinned certificate without holding its key (a copied
    /// certificate) fails the handshake signature check.
    #[tokio::test]
    async fn the_pinned_certificate_without_its_key_is_refused() {
        let real = TlsIdentity::generate().unwrap();
        let thief = TlsIdentity::generate().unwrap();
        let forged =
            Arc::new(rustls::sign::CertifiedKey::new(vec![real.inner.cert.clone()], thief.inner.certified.key.clone()));
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Always(forged)));
        let (c, s) = pair().await;
        tokio::spawn(async move { TlsAcceptor::from(Arc::new(server)).accept(s).await.is_ok() });
        let e = connect(c, "127.0.0.1", Some(real.keyprint()), None).await.unwrap_err();
        assert!(matches!(e, TlsError::Handshake(_)), "{e}");
    }

    #[tokio::test]
    async fn one_port_takes_plain_and_tls() {
        let id = TlsIdentity::generate().unwrap();
        // TLS
        let (c, s) = pair().await;
        let sid = id.clone();
        let server = tokio::spawn(async move {
            let mut s = accept_plain_or_tls(s, Some(&sid)).await.unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).await.unwrap();
            (s.is_tls(), buf)
        });
        let mut c = connect(c, "127.0.0.1", Some(id.keyprint()), None).await.unwrap();
        c.write_all(b"$MyNick|").await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(server.await.unwrap(), (true, *b"$MyNick|"));
        // Plain: the first byte is still there for the protocol.
        let (mut c, s) = pair().await;
        let sid = id.clone();
        let server = tokio::spawn(async move {
            let mut s = accept_plain_or_tls(s, Some(&sid)).await.unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).await.unwrap();
            (s.is_tls(), buf)
        });
        c.write_all(b"$MyNick|").await.unwrap();
        assert_eq!(server.await.unwrap(), (false, *b"$MyNick|"));
    }

    #[tokio::test]
    async fn a_plain_peer_fails_the_handshake_not_the_process() {
        let server_id = TlsIdentity::generate().unwrap();
        let (mut c, s) = pair().await;
        let sid = server_id.clone();
        let server = tokio::spawn(async move { accept(s, &sid).await });
        c.write_all(b"$MyNick alice|$Lock EXTENDEDPROTOCOL Pk=x|").await.unwrap();
        let e = server.await.unwrap().unwrap_err();
        assert!(matches!(e, TlsError::Handshake(_)), "{e}");
    }
}
