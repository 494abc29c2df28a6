//! The Tox client driver: one UDP socket pumping an [`omnipeer_tox::tox::Tox`] machine,
//! plus the two programs built on it, `omnipeer tox echo` and `omnipeer tox send`
//! (README.md "## Tox"; no protocol page: the CLI is not a protocol).

use super::files::{file_id_for, Received, Receiver, Source};
use super::{os_seed, profile as profile_file, tokio_deadline};
use anyhow::{anyhow, bail, Context};
use omnipeer_tox::crypto::PublicKey;
use omnipeer_tox::file::{Control, Direction, FileEvent, KIND_DATA, MAX_FILENAME_LEN};
use omnipeer_tox::friend::Progress;
use omnipeer_tox::messenger::MessageKind;
pub use omnipeer_tox::messenger::MAX_MESSAGE_LEN;
use omnipeer_tox::profile::Profile;
use omnipeer_tox::tox::{Rendezvous, Tox, ToxEvent};
pub use omnipeer_tox::toxid::ToxId;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Largest datagram read (c-toxcore's MAX_UDP_PACKET_SIZE is 2048).
const RECV_BUF: usize = 4096;
/// Nickname of new profiles.
pub const DEFAULT_NICKNAME: &str = "omnipeer";
/// Friend request message of `tox send`.
pub const REQUEST_MESSAGE: &str = "omnipeer tox send";
/// While frames wait for room in a relay socket's queue, the driver looks again this often.
pub const RELAY_BACKLOG_POLL: Duration = Duration::from_millis(5);

/// A Tox client on a UDP socket.
pub struct ToxClient {
    sock: UdpSocket,
    tox: Tox,
    buf: Vec<u8>,
    /// TCP relays friends named (docs/protocols/tox.md#tcp-relays).
    relays: super::relay::Relays,
    /// UDP on/off and our own TCP relays.
    transport: super::relay::Transport,
    /// Bootstrap nodes given (their TCP ports are relay candidates too).
    boot: Vec<(SocketAddr, PublicKey)>,
    started: Instant,
}

/// UNIX seconds, the base of our DHT-PK no_replay counter (it must grow across restarts).
fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl ToxClient {
    /// Binds `listen` and builds the machine for `profile`, using `rendezvous` as the
    /// onion client.
    pub async fn bind(
        listen: SocketAddr,
        profile: &Profile,
        rendezvous: Box<dyn Rendezvous + Send>,
    ) -> anyhow::Result<Self> {
        let sock = UdpSocket::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        set_socket_buffers(&sock);
        let now = Instant::now();
        let mut tox =
            Tox::new(profile.keys.clone(), profile.nospam, &profile.nickname, unix_secs(), rendezvous, os_seed(), now);
        for f in &profile.friends {
            tox.add_friend(now, *f)?;
        }
        tox.set_self_addr(sock.local_addr().ok());
        let relays = super::relay::Relays::new(tox.dht().keys().clone());
        let mut c = ToxClient {
            sock,
            tox,
            buf: vec![0u8; RECV_BUF],
            relays,
            transport: Default::default(),
            boot: Vec::new(),
            started: now,
        };
        c.set_transport(super::relay::default_transport());
        Ok(c)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// The machine, for commands (sending happens on the next `next_event`).
    pub fn tox(&mut self) -> &mut Tox {
        &mut self.tox
    }

    pub fn bootstrap(&mut self, nodes: &[(SocketAddr, PublicKey)]) {
        let now = Instant::now();
        for (a, k) in nodes {
            self.tox.bootstrap(now, *a, *k);
            if !self.boot.contains(&(*a, *k)) {
                self.boot.push((*a, *k));
            }
        }
    }

    /// Kills every friend connection (kill packets sent) before the client goes away.
    pub async fn shutdown(&mut self) {
        self.tox.shutdown(Instant::now());
        self.flush().await;
    }

    async fn flush(&mut self) {
        let now = Instant::now();
        // A friend reachable only through a TCP relay it named: give the machine its
        // pseudo address (the first relay that takes the route).
        while let Some((friend, dht_pk, relays)) = self.tox.poll_relay_hint(now) {
            if let Some(a) = relays.iter().find_map(|r| self.relays.route(now, r.addr, r.pk, dht_pk)) {
                self.tox.relay_address(now, &friend, dht_pk, a);
            }
        }
        while let Some((to, p)) = self.tox.poll_transmit() {
            if super::relay::is_relay_addr(&to) {
                self.relays.send(&to, &p);
            } else if !self.transport.udp {
                // UDP switched off: nothing leaves by UDP.
            } else if let Err(e) = self.sock.send_to(&p, to).await {
                tracing::debug!("tox: send to {to}: {e}");
            }
        }
        while let Some((relay, p)) = self.tox.poll_tcp_onion() {
            tracing::trace!("tox: onion request of {} bytes through relay {}", p.len(), relay.to_hex());
            self.relays.onion_send(&relay, &p);
        }
        self.relays.flush();
    }

    /// Pumps the socket and timers until the machine reports an event or `until` passes
    /// (`None` then).
    pub async fn next_event(&mut self, until: Option<tokio::time::Instant>) -> Option<ToxEvent> {
        match self.pump::<()>(until, None).await {
            Wake::Event(e) => Some(e),
            _ => None,
        }
    }

    /// Like [`next_event`](Self::next_event), but also wakes for a command on `cmds`
    /// (the node's API asking the machine for something).
    pub async fn next_with<C>(
        &mut self,
        until: Option<tokio::time::Instant>,
        cmds: &mut tokio::sync::mpsc::UnboundedReceiver<C>,
    ) -> Wake<C> {
        self.pump(until, Some(cmds)).await
    }

    async fn pump<C>(
        &mut self,
        until: Option<tokio::time::Instant>,
        mut cmds: Option<&mut tokio::sync::mpsc::UnboundedReceiver<C>>,
    ) -> Wake<C> {
        loop {
            self.flush().await;
            if let Some(e) = self.tox.poll_event() {
                return Wake::Event(e);
            }
            if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
                return Wake::Timeout;
            }
            let floor = tokio::time::Instant::now() + Duration::from_millis(1);
            let mut deadline = tokio_deadline(self.tox.next_timeout()).max(floor);
            if !self.relays.is_empty() || self.wants_own_relays() {
                // Relay pings and our own relays: checked every second.
                deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            if self.relays.backlogged() {
                // Frames wait for room in a relay socket's queue.
                deadline = deadline.min(tokio::time::Instant::now() + RELAY_BACKLOG_POLL);
            }
            if let Some(u) = until {
                deadline = deadline.min(u);
            }
            let cmd = async {
                match cmds.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = cmd => return match c {
                    Some(c) => Wake::Command(c),
                    None => Wake::Closed,
                },
                r = self.sock.recv_from(&mut self.buf) => match r {
                    Ok(_) if !self.transport.udp => {}
                    Ok((n, from)) => {
                        if let Err(e) = self.tox.handle_packet(Instant::now(), from, &self.buf[..n]) {
                            tracing::trace!("tox: from {from}: {e}");
                        }
                    }
                    // ICMP errors from earlier sends surface here on Linux; not fatal.
                    Err(e) => tracing::trace!("tox: recv: {e}"),
                },
                (relay, bytes) = self.relays.recv() => {
                    let now = Instant::now();
                    for (from, p) in self.relays.handle(now, relay, bytes) {
                        if let Err(e) = self.tox.handle_packet(now, from, &p) {
                            tracing::trace!("tox: from relay {from}: {e}");
                        }
                    }
                    for (relay, p) in self.relays.take_onion() {
                        if let Err(e) = self.tox.handle_tcp_onion(now, relay, &p) {
                            tracing::trace!("tox: onion from relay {}: {e}", relay.to_hex());
                        }
                    }
                    self.relays_changed();
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.relays.tick(Instant::now());
                    self.keep_own_relays(Instant::now());
                    self.tox.tick(Instant::now());
                }
            }
        }
    }
}

impl ToxClient {
    /// UDP on/off and our own TCP relays (docs/protocols/tox.md#tcp-relays); `bind` starts
    /// with [`super::relay::default_transport`].
    pub fn set_transport(&mut self, t: super::relay::Transport) {
        if !t.udp {
            // Friends must not be told a UDP address we do not use.
            self.tox.set_self_addr(None);
        }
        // A relay is a DHT node too, with the same key at the same port (tox-bootstrapd,
        // `[tox_bootstrap]`): with no bootstrap node answering, the onion goes through the
        // relay to it (docs/protocols/tox.md#tcp-relays).
        let now = Instant::now();
        for (a, k) in &t.tcp_relays {
            self.tox.bootstrap(now, *a, *k);
        }
        self.transport = t;
    }

    /// Our own relays are wanted: UDP is off, or no DHT node answered over UDP within
    /// [`super::relay::UDP_FALLBACK`] (blocked by a firewall or NAT).
    fn wants_own_relays(&self) -> bool {
        let candidates = !self.transport.tcp_relays.is_empty() || !self.boot.is_empty();
        candidates
            && (!self.transport.udp
                || (self.started.elapsed() >= super::relay::UDP_FALLBACK && !self.tox.dht().is_connected()))
    }

    fn keep_own_relays(&mut self, now: Instant) {
        if !self.wants_own_relays() {
            return;
        }
        let mut cands = self.transport.tcp_relays.clone();
        for b in &self.boot {
            if !cands.contains(b) {
                cands.push(*b);
            }
        }
        self.relays.keep_own(now, &cands);
        self.relays_changed();
    }

    fn relays_changed(&mut self) {
        if self.relays.take_changed() {
            let list = self.relays.connected();
            tracing::info!("tox: {} TCP relays connected", list.len());
            self.tox.set_tcp_relays(list);
        }
    }
}

/// What woke [`ToxClient::next_with`].
pub enum Wake<C> {
    /// The machine reported something.
    Event(ToxEvent),
    /// A command arrived.
    Command(C),
    /// `until` passed.
    Timeout,
    /// The command channel closed.
    Closed,
}

/// tox-net's onion client for `profile`'s long-term keys.
pub fn onion_rendezvous(profile: &Profile) -> Box<dyn Rendezvous + Send> {
    Box::new(omnipeer_tox::onion_client::OnionClient::new(profile.keys.clone(), os_seed(), Instant::now()))
}

/// Loads the profile at `path`, creating it if missing.
pub fn load_profile(path: &Path) -> anyhow::Result<Profile> {
    let (p, created) =
        profile_file::load_or_create(path, DEFAULT_NICKNAME).with_context(|| format!("profile {}", path.display()))?;
    if created {
        tracing::info!("created Tox profile {}", path.display());
    }
    Ok(p)
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// `omnipeer tox echo`: prints our Tox ID, accepts every friend request (saving the friend
/// in the profile) and answers each message with `echo: <message>`. With `incoming`, saves
/// the files friends send there (resuming partial ones); without, refuses them. Joins every
/// conference it is invited to and echoes its lines (see [`echo_conference`]); creates one
/// and invites each friend of `conference_with` when it comes online. The same for NGC
/// groups (see [`echo_group`]) and `group_with`. Runs until `cancel`.
#[allow(clippy::too_many_arguments)] // the CLI's flags, passed through one by one
pub async fn run_echo(
    profile_path: &Path,
    listen: SocketAddr,
    bootstrap: &[(SocketAddr, PublicKey)],
    incoming: Option<&Path>,
    rendezvous: impl FnOnce(&Profile) -> Box<dyn Rendezvous + Send>,
    cancel: CancellationToken,
    conference_with: &[PublicKey],
    group_with: &[PublicKey],
) -> anyhow::Result<()> {
    let mut profile = load_profile(profile_path)?;
    let mut our_conference: Option<u32> = None;
    let mut our_group: Option<u32> = None;
    let mut receiver = match incoming {
        Some(d) => Some(Receiver::new(d).with_context(|| format!("--incoming {}", d.display()))?),
        None => None,
    };
    let mut c = ToxClient::bind(listen, &profile, rendezvous(&profile)).await?;
    c.bootstrap(bootstrap);
    out(&profile.tox_id().to_hex());
    eprintln!("listening on {}", c.local_addr()?);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => {
                c.shutdown().await;
                return Ok(());
            }
            ev = c.next_event(None) => ev,
        };
        let Some(ev) = ev else { continue };
        if let ToxEvent::FriendOnline { friend } = &ev {
            if conference_with.contains(friend) {
                echo_conference_invite(c.tox(), &mut our_conference, friend);
            }
            if group_with.contains(friend) {
                echo_group_invite(c.tox(), &mut our_group, friend);
            }
        }
        match ev {
            ToxEvent::FriendRequest { from, message } => {
                out(&format!("friend request from {}: {message}", from.to_hex()));
                c.tox().add_friend(Instant::now(), from)?;
                if profile.add_friend(from) {
                    profile_file::save(&profile, profile_path)
                        .with_context(|| format!("saving {}", profile_path.display()))?;
                }
            }
            ToxEvent::Message { friend, kind, text } => {
                out(&format!("message from {}: {text}", friend.to_hex()));
                let reply = format!("echo: {text}");
                let reply = truncate(&reply, omnipeer_tox::messenger::MAX_MESSAGE_LEN);
                if let Err(e) = c.tox().send_message(Instant::now(), &friend, kind, reply) {
                    tracing::warn!("echo to {}: {e}", friend.to_hex());
                }
            }
            ToxEvent::FriendOnline { friend } => out(&format!("friend {} online", friend.to_hex())),
            ToxEvent::FriendOffline { friend } => out(&format!("friend {} offline", friend.to_hex())),
            ToxEvent::Announced => tracing::info!("announced at a rendezvous node"),
            ToxEvent::Progress { friend, progress } => tracing::info!("friend {}: {progress}", friend.to_hex()),
            ToxEvent::File(fe) => match receiver.as_mut() {
                Some(r) => {
                    if let Some(what) = r.handle(c.tox(), &fe) {
                        out(&describe(&what));
                    }
                }
                None => {
                    if let FileEvent::Offer { friend, number, name, .. } = fe {
                        out(&format!("refused file {name:?} from {}: no --incoming", friend.to_hex()));
                        let _ =
                            c.tox().file_control(Instant::now(), &friend, Direction::Receiving, number, Control::Kill);
                    }
                }
            },
            ToxEvent::Conference(ce) => echo_conference(c.tox(), ce),
            ToxEvent::Group(ge) => echo_group(c.tox(), ge),
            other => tracing::debug!("{other:?}"),
        }
    }
}

/// A conference's id as printed (64 hex).
fn conference_hex(tox: &Tox, conference: u32) -> String {
    tox.conference_id(conference).map(|id| PublicKey(id).to_hex()).unwrap_or_default()
}

/// `tox echo --conference-with`: creates our conference on first need and invites `friend`.
fn echo_conference_invite(tox: &mut Tox, ours: &mut Option<u32>, friend: &PublicKey) {
    let now = Instant::now();
    let n = match *ours {
        Some(n) => n,
        None => match tox.conference_new(now) {
            Ok(n) => {
                out(&format!("conference {} created", conference_hex(tox, n)));
                *ours = Some(n);
                n
            }
            Err(e) => return tracing::warn!("conference: {e}"),
        },
    };
    match tox.conference_invite(now, n, friend) {
        Ok(()) => out(&format!("invited {} to conference {}", friend.to_hex(), conference_hex(tox, n))),
        Err(e) => tracing::warn!("conference invite to {}: {e}", friend.to_hex()),
    }
}

/// `tox echo` in conferences (docs/protocols/tox.md#conferences): joins on every invite,
/// prints the peer list on each change and every line, and answers each line that does
/// not start with "echo: " (so two echoes do not loop) with `echo: <line>`.
fn echo_conference(tox: &mut Tox, ev: omnipeer_tox::conference::ConferenceEvent) {
    use omnipeer_tox::conference::ConferenceEvent as E;
    let now = Instant::now();
    match ev {
        E::Invite { invite, friend, .. } => {
            out(&format!("conference invite from {}", friend.to_hex()));
            match tox.conference_join(now, invite) {
                Ok(n) => out(&format!("joined conference {}", conference_hex(tox, n))),
                Err(e) => tracing::warn!("conference join: {e}"),
            }
        }
        E::Connected { conference } => out(&format!("conference {} connected", conference_hex(tox, conference))),
        E::PeerList { conference } => {
            let mut names: Vec<String> =
                tox.conference_peers(conference).unwrap_or_default().into_iter().map(|p| p.name).collect();
            names.sort();
            out(&format!("conference {} peers: {}", conference_hex(tox, conference), names.join(", ")));
        }
        E::Title { conference, title } => {
            out(&format!("conference {} title: {title}", conference_hex(tox, conference)))
        }
        E::Message { conference, name, kind, text, .. } => {
            out(&format!("conference {} {name}: {text}", conference_hex(tox, conference)));
            if !text.starts_with("echo: ") {
                let reply = format!("echo: {text}");
                let reply = truncate(&reply, omnipeer_tox::conference::MAX_MESSAGE_DATA_LEN);
                if let Err(e) = tox.conference_send(now, conference, kind, reply) {
                    tracing::warn!("conference echo: {e}");
                }
            }
        }
    }
}

/// One output line for a receiving event.
fn describe(r: &Received) -> String {
    match r {
        Received::Accepted { friend, name, size, from } if *from > 0 => {
            format!("receiving {name:?} ({size} bytes) from {}, resuming at {from}", friend.to_hex())
        }
        Received::Accepted { friend, name, size, .. } => {
            format!("receiving {name:?} ({size} bytes) from {}", friend.to_hex())
        }
        Received::Complete { friend, path, size } => {
            format!("received {} ({size} bytes) from {}", path.display(), friend.to_hex())
        }
        Received::Refused { friend, name, why } => format!("refused file {name:?} from {}: {why}", friend.to_hex()),
        Received::Broken { friend, name, have } => {
            format!("file {name:?} from {} broken at {have} bytes (kept for a resume)", friend.to_hex())
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Options of `omnipeer tox send`.
pub struct SendOptions<'a> {
    pub profile: &'a Path,
    pub listen: SocketAddr,
    pub bootstrap: &'a [(SocketAddr, PublicKey)],
    pub to: ToxId,
    pub message: &'a str,
    pub timeout: Duration,
    pub linger: Duration,
}

/// What `run_send` measured (for the benchmark).
#[derive(Debug, Clone, Copy)]
pub struct SendReport {
    /// Start → friend connection (`Connected`).
    pub connected_after: Duration,
    /// Start → receipt of our message.
    pub delivered_after: Duration,
}

/// `omnipeer tox send`: befriends `to` (friend request through the onion), prints each
/// progress state as it is entered, sends the message once the friend is online, prints
/// every message the friend sends, and returns `linger` after the receipt arrived.
/// Errors on timeout, naming the state it was stuck in.
pub async fn run_send(
    o: SendOptions<'_>,
    rendezvous: impl FnOnce(&Profile) -> Box<dyn Rendezvous + Send>,
) -> anyhow::Result<SendReport> {
    let start = tokio::time::Instant::now();
    let mut profile = load_profile(o.profile)?;
    if o.to.pk == profile.keys.pk {
        bail!("--to is our own Tox ID");
    }
    let mut c = ToxClient::bind(o.listen, &profile, rendezvous(&profile)).await?;
    c.bootstrap(o.bootstrap);
    eprintln!("listening on {}", c.local_addr()?);
    let friend = o.to.pk;
    if profile.add_friend(friend) {
        profile_file::save(&profile, o.profile).with_context(|| format!("saving {}", o.profile.display()))?;
    }
    c.tox().send_friend_request(Instant::now(), &o.to, REQUEST_MESSAGE)?;
    let deadline = start + o.timeout;
    let mut state = Progress::AwaitingDhtKey;
    let mut receipt: Option<u32> = None;
    let mut connected_after = None;
    let mut delivered_at: Option<tokio::time::Instant> = None;
    loop {
        let until = match delivered_at {
            Some(t) => t + o.linger,
            None => deadline,
        };
        let Some(ev) = c.next_event(Some(until)).await else {
            c.shutdown().await;
            if let Some(t) = delivered_at {
                return Ok(SendReport {
                    connected_after: connected_after.unwrap_or_default(),
                    delivered_after: t - start,
                });
            }
            let what =
                if receipt.is_some() { "waiting for the receipt".to_string() } else { format!("in state {state}") };
            return Err(anyhow!("timed out after {} s {what}", o.timeout.as_secs()));
        };
        match ev {
            ToxEvent::Progress { friend: f, progress } if f == friend => {
                state = progress;
                out(progress.name());
                if progress == Progress::Connected && connected_after.is_none() {
                    connected_after = Some(start.elapsed());
                }
            }
            ToxEvent::FriendOnline { friend: f } if f == friend && receipt.is_none() => {
                receipt = Some(c.tox().send_message(Instant::now(), &friend, MessageKind::Normal, o.message)?);
            }
            ToxEvent::Receipt { friend: f, receipt: r } if f == friend && Some(r) == receipt => {
                if delivered_at.is_none() {
                    out("delivered");
                    delivered_at = Some(tokio::time::Instant::now());
                }
            }
            ToxEvent::Message { friend: f, text, .. } if f == friend => out(&format!("message: {text}")),
            ToxEvent::Announced => tracing::info!("announced at a rendezvous node"),
            ToxEvent::FriendFound { .. } => tracing::info!("friend found at a rendezvous node"),
            ToxEvent::FriendOffline { friend: f } if f == friend => {
                tracing::info!("friend went offline");
                if delivered_at.is_none() {
                    receipt = None; // resend once it is back
                }
            }
            other => tracing::debug!("{other:?}"),
        }
    }
}

/// Options of `omnipeer tox send-file`.
pub struct SendFileOptions<'a> {
    pub profile: &'a Path,
    pub listen: SocketAddr,
    pub bootstrap: &'a [(SocketAddr, PublicKey)],
    pub to: ToxId,
    pub file: &'a Path,
    pub timeout: Duration,
}

/// What `run_send_file` measured (for the benchmark).
#[derive(Debug, Clone, Copy)]
pub struct SendFileReport {
    /// Start → friend online.
    pub online_after: Duration,
    /// Friend's accept → the friend acknowledged the last byte.
    pub transfer: Duration,
    /// Bytes sent in this run (less than the size when resumed).
    pub bytes: u64,
}

/// `omnipeer tox send-file`: befriends `to` like `tox send`, offers the file once the friend
/// is online, sends it when accepted (from where the friend's partial copy ends, if it
/// resumes), and returns once the friend has every byte. A friend going offline mid-way
/// gets the same offer (same file id) when it is back. Prints the progress states, then
/// `offered`, `accepted` or `resumed at N`, `paused`/`resumed`, `sent N bytes`.
pub async fn run_send_file(
    o: SendFileOptions<'_>,
    rendezvous: impl FnOnce(&Profile) -> Box<dyn Rendezvous + Send>,
) -> anyhow::Result<SendFileReport> {
    let start = tokio::time::Instant::now();
    let meta = std::fs::metadata(o.file).with_context(|| format!("--file {}", o.file.display()))?;
    if !meta.is_file() {
        bail!("--file {} is not a regular file", o.file.display());
    }
    let name = o.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let name = truncate(&name, MAX_FILENAME_LEN).to_string();
    let file_id = file_id_for(o.file, &meta);
    let mut source = Source::open(o.file).with_context(|| format!("--file {}", o.file.display()))?;
    let mut profile = load_profile(o.profile)?;
    if o.to.pk == profile.keys.pk {
        bail!("--to is our own Tox ID");
    }
    let mut c = ToxClient::bind(o.listen, &profile, rendezvous(&profile)).await?;
    c.bootstrap(o.bootstrap);
    eprintln!("listening on {}", c.local_addr()?);
    let friend = o.to.pk;
    if profile.add_friend(friend) {
        profile_file::save(&profile, o.profile).with_context(|| format!("saving {}", o.profile.display()))?;
    }
    c.tox().send_friend_request(Instant::now(), &o.to, REQUEST_MESSAGE)?;
    let deadline = start + o.timeout;
    let mut state = Progress::AwaitingDhtKey;
    let mut number: Option<u8> = None;
    let mut online_after = None;
    let mut accepted_at: Option<(tokio::time::Instant, u64)> = None;
    loop {
        let Some(ev) = c.next_event(Some(deadline)).await else {
            c.shutdown().await;
            let what = match (number, accepted_at) {
                (None, _) => format!("in state {state}"),
                (Some(n), None) => format!("waiting for the friend to accept (file {n})"),
                (Some(n), Some(_)) => {
                    let (done, size) = c.tox().file_progress(&friend, Direction::Sending, n).unwrap_or_default();
                    format!("sending ({done} of {size} bytes)")
                }
            };
            return Err(anyhow!("timed out after {} s {what}", o.timeout.as_secs()));
        };
        match ev {
            ToxEvent::Progress { friend: f, progress } if f == friend => {
                state = progress;
                out(progress.name());
            }
            ToxEvent::FriendOnline { friend: f } if f == friend => {
                online_after.get_or_insert(start.elapsed());
                let n = c.tox().file_send(Instant::now(), &friend, KIND_DATA, meta.len(), file_id, &name)?;
                number = Some(n);
                accepted_at = None;
                out("offered");
            }
            ToxEvent::FriendOffline { friend: f } if f == friend => {
                if number.take().is_some() {
                    out("friend went offline; offering again when it is back");
                }
            }
            ToxEvent::File(fe) => match fe {
                FileEvent::Control { friend: f, direction: Direction::Sending, number: n, control }
                    if f == friend && Some(n) == number =>
                {
                    match control {
                        Control::Seek(pos) => out(&format!("resumed at {pos}")),
                        Control::Accept if accepted_at.is_none() => {
                            let from = c.tox().file_progress(&friend, Direction::Sending, n).map_or(0, |p| p.0);
                            accepted_at = Some((tokio::time::Instant::now(), from));
                            out("accepted");
                        }
                        Control::Accept => out("resumed"),
                        Control::Pause => out("paused"),
                        Control::Kill => {
                            c.shutdown().await;
                            bail!("the friend cancelled the transfer");
                        }
                    }
                }
                FileEvent::ChunkRequest { friend: f, number: n, position, length } if f == friend => {
                    if length == 0 {
                        let (t0, from) = accepted_at.unwrap_or((tokio::time::Instant::now(), 0));
                        let report = SendFileReport {
                            online_after: online_after.unwrap_or_default(),
                            transfer: t0.elapsed(),
                            bytes: meta.len() - from,
                        };
                        out(&format!("sent {} bytes", meta.len()));
                        // Let the last acknowledgements and our kill go out.
                        c.shutdown().await;
                        return Ok(report);
                    }
                    let data =
                        source.read(position, length).with_context(|| format!("reading {}", o.file.display()))?;
                    if let Err(e) = c.tox().file_chunk(Instant::now(), &friend, n, position, &data) {
                        tracing::debug!("chunk at {position}: {e}");
                    }
                }
                other => tracing::debug!("{other:?}"),
            },
            ToxEvent::Announced => tracing::info!("announced at a rendezvous node"),
            ToxEvent::FriendFound { .. } => tracing::info!("friend found at a rendezvous node"),
            other => tracing::debug!("{other:?}"),
        }
    }
}

/// A group's chat id as printed (64 hex).
fn group_hex(tox: &Tox, group: u32) -> String {
    tox.group_chat_id(group).map(|id| PublicKey(id).to_hex()).unwrap_or_default()
}

/// `tox echo` in NGC groups (docs/protocols/tox.md#ngc-group-chats): joins on every
/// invite, prints the peer list (sorted names, us included) on every change and each
/// line, and echoes lines as "echo: <line>" (not lines that are echoes themselves).
fn echo_group(tox: &mut Tox, ev: omnipeer_tox::ngc::GroupEvent) {
    use omnipeer_tox::ngc::GroupEvent as E;
    let now = Instant::now();
    let peers = |tox: &Tox, group: u32| {
        let mut names: Vec<String> = tox.group_peers(group).unwrap_or_default().into_iter().map(|p| p.name).collect();
        names.sort();
        out(&format!("group {} peers: {}", group_hex(tox, group), names.join(", ")));
    };
    match ev {
        E::Invite { invite, friend, name, .. } => {
            out(&format!("group invite from {} to {name:?}", friend.to_hex()));
            match tox.group_join_invite(now, invite) {
                Ok(n) => out(&format!("joined group {}", group_hex(tox, n))),
                Err(e) => tracing::warn!("group join: {e}"),
            }
        }
        E::SelfJoin { group } => out(&format!("group {} connected", group_hex(tox, group))),
        E::PeerJoin { group, .. } | E::PeerName { group, .. } | E::PeerExit { group, .. } => peers(tox, group),
        E::Topic { group, topic } => out(&format!("group {} topic: {topic}", group_hex(tox, group))),
        E::Rejected { group, reason } => out(&format!("group {} refused us ({reason})", group_hex(tox, group))),
        E::Message { group, name, action, text, .. } => {
            out(&format!("group {} {name}: {text}", group_hex(tox, group)));
            if !text.starts_with("echo: ") {
                let reply = format!("echo: {text}");
                let reply = truncate(&reply, omnipeer_tox::ngc::MAX_MESSAGE_SIZE);
                if let Err(e) = tox.group_send(now, group, action, reply) {
                    tracing::warn!("group echo: {e}");
                }
            }
        }
    }
}

/// `tox echo --group-with`: founds our NGC group on first need and invites `friend`.
fn echo_group_invite(tox: &mut Tox, ours: &mut Option<u32>, friend: &PublicKey) {
    let now = Instant::now();
    let n = match *ours {
        Some(n) => n,
        None => match tox.group_new(now, "omnipeer") {
            Ok(n) => {
                out(&format!("group {} created", group_hex(tox, n)));
                *ours = Some(n);
                n
            }
            Err(e) => return tracing::warn!("group: {e}"),
        },
    };
    match tox.group_invite_friend(now, n, friend) {
        Ok(()) => out(&format!("invited {} to group {}", friend.to_hex(), group_hex(tox, n))),
        Err(e) => tracing::warn!("group invite to {}: {e}", friend.to_hex()),
    }
}

/// Kernel buffer asked for on the client's UDP socket, each way (c-toxcore asks for 2 MiB
/// too): a congestion window's burst of file packets must fit in the receiver's socket
/// while its loop is busy, or the burst is lost and the window collapses. With Linux's
/// default (~208 KiB) omnipeer → omnipeer files ran at 5.1 MiB/s, a third of c-toxcore's
/// own pace (bench tox-files).
pub const UDP_SOCKET_BUFFER: usize = 2 << 20;

/// Sets [`UDP_SOCKET_BUFFER`] both ways; the kernel may cap it (net.core.rmem_max), which
/// is no error. tokio's socket has no setter for it, hence setsockopt.
#[allow(unsafe_code)]
fn set_socket_buffers(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let n = UDP_SOCKET_BUFFER as libc::c_int;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: a valid socket fd and a pointer to a c_int of the size passed.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&n as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!("tox: setsockopt({opt}) failed: {}", std::io::Error::last_os_error());
        }
    }
}
