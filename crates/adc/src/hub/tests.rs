//! The ADC hub machine under simulated time: logins as ncdc and EiskaltDC++ make them,
//! the checks of docs/protocols/adc.md#hub-checks, relay and limits.

use super::*;
use crate::message::Cid;

struct T {
    hub: Hub,
    now: Instant,
    /// Everything each connection was sent, as text.
    inbox: HashMap<ConnId, String>,
    closed: Vec<ConnId>,
    events: Vec<HubEvent>,
    joined: HashMap<ConnId, u8>,
    /// Outputs made (to count broadcasts).
    broadcasts: usize,
}

fn pid_of(n: u8) -> Cid {
    Cid([n; 24])
}

fn cid_of(n: u8) -> Cid {
    Cid::from_pid(&pid_of(n))
}

impl T {
    fn new(cfg: HubConfig) -> T {
        T {
            hub: Hub::new(cfg),
            now: Instant::now(),
            inbox: HashMap::new(),
            closed: Vec::new(),
            events: Vec::new(),
            joined: HashMap::new(),
            broadcasts: 0,
        }
    }

    fn pump(&mut self) {
        while let Some(o) = self.hub.poll_output() {
            match o {
                Output::Send { conn, data } => {
                    self.inbox.entry(conn).or_default().push_str(std::str::from_utf8(&data).unwrap())
                }
                Output::Broadcast { data, except, skip } => {
                    self.broadcasts += 1;
                    for (&c, &tags) in &self.joined {
                        if Some(c) != except && tags & skip == 0 {
                            self.inbox.entry(c).or_default().push_str(std::str::from_utf8(&data).unwrap());
                        }
                    }
                }
                Output::Join { conn, tags } => {
                    self.joined.insert(conn, tags);
                }
                Output::Leave { conn } => {
                    self.joined.remove(&conn);
                }
                Output::Close { conn } => self.closed.push(conn),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn accept(&mut self, conn: ConnId, ip: &str) {
        self.hub.accept(self.now, conn, ip.parse().unwrap(), [conn as u8; CHALLENGE_LEN]);
        self.pump();
    }

    fn input(&mut self, conn: ConnId, s: &str) {
        self.hub.handle_input(self.now, conn, s.as_bytes());
        self.pump();
    }

    fn take(&mut self, conn: ConnId) -> String {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// `HSUP` as EiskaltDC++ sends it; returns the SID given.
    fn hello(&mut self, conn: ConnId, ip: &str) -> String {
        self.accept(conn, ip);
        self.input(conn, "HSUP ADBAS0 ADBASE ADTIGR ADUCM0 ADBLO0\n");
        let got = self.take(conn);
        let sid = got.lines().find_map(|l| l.strip_prefix("ISID ")).unwrap_or_else(|| panic!("no ISID in {got:?}"));
        sid.to_owned()
    }

    /// A whole login (unregistered); returns the SID.
    fn login(&mut self, conn: ConnId, nick: &str, su: &str) -> String {
        self.login_from(conn, nick, su, "127.0.0.1")
    }

    fn login_from(&mut self, conn: ConnId, nick: &str, su: &str, ip: &str) -> String {
        let sid = self.hello(conn, ip);
        let n = conn as u8;
        self.input(
            conn,
            &format!(
                "BINF {sid} ID{} PD{} NI{nick} SL3 SS1000 SF2 HN1 HR0 HO0 VEncdc\\s1.23 I40.0.0.0 U41234 SU{su}\n",
                cid_of(n),
                pid_of(n)
            ),
        );
        sid
    }
}

fn t() -> T {
    T::new(HubConfig::default())
}

#[test]
fn login_gives_sup_sid_inf_then_the_user_list_ending_with_ones_own() {
    let mut t = t();
    t.accept(1, "10.0.0.1");
    assert_eq!(t.take(1), "", "the client speaks first");
    t.input(1, "HSUP ADBASE ADTIGR\n");
    let got = t.take(1);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], "ISUP ADBASE ADTIGR");
    assert_eq!(lines[1], "ISID AAAB");
    assert!(lines[2].starts_with("IINF CT32 NIomnipeer\\sADC\\shub VEomnipeer"), "{got}");

    t.input(1, &format!("BINF AAAB ID{} PD{} NIalice I40.0.0.0 SUTCP4,UDP4\n", cid_of(1), pid_of(1)));
    let alice_list = t.take(1);
    // Alone: the list is her own INF only, the PID stripped, her real address filled in.
    assert_eq!(alice_list, format!("BINF AAAB ID{} NIalice I410.0.0.1 SUTCP4,UDP4\n", cid_of(1)));
    assert!(t.events.iter().any(|e| matches!(e, HubEvent::LoggedIn { nick, .. } if nick == "alice")));

    let bob = t.login_from(2, "bob", "TCP4", "10.0.0.2");
    assert_eq!(bob, "AAAC");
    let bob_got = t.take(2);
    let l: Vec<&str> = bob_got.lines().collect();
    assert!(l[0].starts_with("BINF AAAB ") && l[0].contains("NIalice"), "{bob_got}");
    assert!(l[1].starts_with("BINF AAAC ") && l[1].contains("NIbob"), "own INF last: {bob_got}");
    assert_eq!(l.len(), 2);
    // Alice learns of bob, without his PID.
    let a = t.take(1);
    assert!(a.starts_with("BINF AAAC ") && a.contains("NIbob") && a.contains("I410.0.0.2"), "{a}");
    assert!(!a.contains(&pid_of(2).to_string()) && !a.contains(" PD"), "PID relayed: {a}");
    assert_eq!(t.hub.online_nicks(), ["alice", "bob"]);
}

#[test]
fn hsup_must_offer_base_and_tigr() {
    let mut t = t();
    t.accept(1, "127.0.0.1");
    t.input(1, "HSUP ADTIGR\n");
    assert!(t.take(1).starts_with("ISTA 245 "));
    assert_eq!(t.closed, [1]);
    t.accept(2, "127.0.0.1");
    t.input(2, "HSUP ADBASE\n");
    assert!(t.take(2).starts_with("ISTA 247 "));
    t.accept(3, "127.0.0.1");
    t.input(3, "HMSG hi\n");
    assert!(t.take(3).starts_with("ISTA 244 "));
    assert_eq!(t.closed, [1, 2, 3]);
}

#[test]
fn a_cid_that_is_not_tiger_of_the_pid_is_refused() {
    let mut t = t();
    t.login(1, "alice", "TCP4");
    t.take(1);
    // Mallory claims alice's CID with a PID of her own.
    let sid = t.hello(2, "127.0.0.1");
    t.input(2, &format!("BINF {sid} ID{} PD{} NImallory\n", cid_of(1), pid_of(9)));
    assert!(t.take(2).starts_with("ISTA 227 "), "refused as a bad PID");
    assert!(t.closed.contains(&2));
    assert_eq!(t.take(1), "", "alice saw nothing of it");
    // The same CID with its right PID but while in use: CID taken.
    let sid = t.hello(3, "127.0.0.1");
    t.input(3, &format!("BINF {sid} ID{} PD{} NIalice2\n", cid_of(1), pid_of(1)));
    assert!(t.take(3).starts_with("ISTA 224 "));
    // No PD at all.
    let sid = t.hello(4, "127.0.0.1");
    t.input(4, &format!("BINF {sid} ID{} NIx\n", cid_of(4)));
    assert!(t.take(4).starts_with("ISTA 243 "));
    assert_eq!(t.hub.online_nicks(), ["alice"]);
}

#[test]
fn a_spoofed_sid_is_refused_and_disconnects() {
    let mut t = t();
    let a = t.login(1, "alice", "TCP4");
    let b = t.login(2, "bob", "TCP4");
    t.take(1);
    t.take(2);
    // Bob speaks as alice.
    t.input(2, &format!("BMSG {a} I\\sam\\salice\n"));
    assert!(t.take(2).starts_with("ISTA 240 Spoofed\\sSID"));
    assert!(t.closed.contains(&2));
    let a_got = t.take(1);
    assert!(!a_got.contains("I\\sam\\salice"), "relayed: {a_got}");
    assert!(a_got.contains(&format!("IQUI {b}")), "bob's leave announced: {a_got}");
    // In IDENTIFY too: a BINF with somebody else's SID.
    let _ = t.hello(3, "127.0.0.1");
    t.input(3, &format!("BINF {a} ID{} PD{} NIcarol\n", cid_of(3), pid_of(3)));
    assert!(t.take(3).starts_with("ISTA 240 "));
    // And in D/E/F headers.
    let c = t.login(4, "dave", "TCP4");
    t.take(4);
    t.input(4, &format!("DCTM {a} {c} ADC/1.0 3000 tok\n"));
    assert!(t.take(4).starts_with("ISTA 240 "));
    assert_eq!(t.take(1).matches("DCTM").count(), 0);
}

#[test]
fn nicks_are_unique_and_valid() {
    let mut t = t();
    t.login(1, "alice", "");
    for (conn, nick, code) in [(2, "Alice", "222"), (3, "a\\sb", "221"), (4, "hub", "221")] {
        t.login(conn, nick, "");
        let got = t.take(conn);
        assert!(got.starts_with(&format!("ISTA {code} ")), "{nick}: {got}");
    }
    assert_eq!(t.hub.online_nicks(), ["alice"]);
}

#[test]
fn the_hub_sets_ct_and_the_address() {
    let mut t = t();
    let sid = t.hello(1, "::ffff:192.168.1.5");
    t.input(1, &format!("BINF {sid} ID{} PD{} NIx CT4 I41.2.3.4 I6::1\n", cid_of(1), pid_of(1)));
    let got = t.take(1);
    assert!(got.contains("I4192.168.1.5"), "{got}");
    assert!(!got.contains("CT4") && !got.contains("I6"), "claimed op / unverifiable I6 relayed: {got}");
}

#[test]
fn registered_users_prove_their_password_with_salted_tiger() {
    let mut t = t();
    t.hub.set_registered("op", "s3cret", true);
    let sid = t.hello(1, "127.0.0.1");
    t.input(1, &format!("BINF {sid} ID{} PD{} NIop\n", cid_of(1), pid_of(1)));
    let got = t.take(1);
    let challenge = got.strip_prefix("IGPA ").unwrap().trim_end();
    let salt = decode_challenge(challenge).unwrap();
    assert_eq!(salt, [1u8; CHALLENGE_LEN]);
    assert!(t.hub.online_nicks().is_empty(), "not in before HPAS");
    t.input(1, &format!("HPAS {}\n", password_hash("s3cret", &salt)));
    let got = t.take(1);
    assert!(got.contains("NIop") && got.contains(" CT6"), "registered operator flags: {got}");
    assert_eq!(t.hub.online_nicks(), ["op"]);

    // A wrong password (or the right one hashed without the challenge) is refused.
    let sid = t.hello(2, "127.0.0.1");
    t.hub.set_registered("reg", "pw", false);
    t.input(2, &format!("BINF {sid} ID{} PD{} NIreg\n", cid_of(2), pid_of(2)));
    t.take(2);
    t.input(2, &format!("HPAS {}\n", password_hash("pw", &[])));
    assert!(t.take(2).starts_with("ISTA 223 "));
    assert!(t.closed.contains(&2));
}

#[test]
fn chat_goes_to_everybody_pms_to_their_target() {
    let mut t = t();
    let a = t.login(1, "alice", "TCP4");
    let b = t.login(2, "bob", "TCP4");
    let c = t.login(3, "carol", "TCP4");
    for i in 1..=3 {
        t.take(i);
    }
    t.input(1, &format!("BMSG {a} hello\\sall\n"));
    for i in 1..=3 {
        assert_eq!(t.take(i), format!("BMSG {a} hello\\sall\n"), "conn {i} (the sender too)");
    }
    t.input(1, &format!("EMSG {a} {b} psst PM{a}\n"));
    assert_eq!(t.take(2), format!("EMSG {a} {b} psst PM{a}\n"));
    assert_eq!(t.take(1), format!("EMSG {a} {b} psst PM{a}\n"), "E echoes to the sender");
    assert_eq!(t.take(3), "");
    t.input(1, &format!("DMSG {a} {c} direct PM{a}\n"));
    assert_eq!(t.take(3), format!("DMSG {a} {c} direct PM{a}\n"));
    assert_eq!(t.take(1), "");
    assert_eq!(t.take(2), "");
    // To nobody: a warning.
    t.input(1, &format!("DMSG {a} ZZZZ x\n"));
    assert!(t.take(1).starts_with("ISTA 140 "));
}

#[test]
fn chat_flood_is_dropped_then_allowed_again() {
    let mut t = t();
    let a = t.login(1, "alice", "");
    t.take(1);
    for _ in 0..5 {
        t.input(1, &format!("BMSG {a} x\n"));
    }
    assert_eq!(t.take(1).matches("BMSG").count(), 5);
    t.input(1, &format!("BMSG {a} x\n"));
    assert!(t.take(1).starts_with("ISTA 140 "), "the 6th in a second is dropped");
    t.now += Duration::from_secs(2);
    t.input(1, &format!("BMSG {a} x\n"));
    assert_eq!(t.take(1), format!("BMSG {a} x\n"));
}

#[test]
fn hub_commands_count_as_chat() {
    let mut t = t();
    let a = t.login(1, "alice", "");
    t.take(1);
    for _ in 0..5 {
        t.input(1, &format!("BMSG {a} !help\n"));
    }
    assert_eq!(t.take(1).matches("IMSG Commands:").count(), 5);
    t.input(1, &format!("BMSG {a} !help\n"));
    assert!(t.take(1).starts_with("ISTA 140 "), "the 6th in a second is dropped");
}

#[test]
fn searches_follow_feature_selectors() {
    let mut t = t();
    let a = t.login(1, "active", "TCP4,UDP4");
    let p = t.login(2, "passive", "");
    let _s = t.login(3, "sega", "TCP4,SEGA");
    for i in 1..=3 {
        t.take(i);
    }
    // A B search goes to everybody but the searcher.
    t.input(2, &format!("BSCH {p} ANfoo TOt1\n"));
    assert!(t.take(1).contains("BSCH"));
    assert!(t.take(3).contains("BSCH"));
    assert_eq!(t.take(2), "");
    // A passive user's search: only to active users, as one broadcast.
    let before = t.broadcasts;
    t.input(2, &format!("FSCH {p} +TCP4 ANfoo TOt2\n"));
    assert_eq!(t.broadcasts, before + 1);
    assert!(t.take(1).contains("FSCH"));
    assert!(t.take(3).contains("FSCH"));
    t.input(1, &format!("FSCH {a} -TCP4 ANbar\n"));
    assert!(t.take(2).contains("FSCH"), "-TCP4 reaches the passive user");
    assert_eq!(t.take(3), "");
    // A feature without a tag: sent to the matching users one by one.
    t.input(1, &format!("FSCH {a} +SEGA ANbaz\n"));
    assert!(t.take(3).contains("FSCH"));
    assert_eq!(t.take(2), "");
    // Results go to their target only.
    t.input(1, &format!("DRES {a} {p} FN/foo SI3 SL1 TOt1\n"));
    assert!(t.take(2).starts_with("DRES"));
    assert_eq!(t.take(3), "");
}

#[test]
fn inf_updates_carry_only_what_changed() {
    let mut t = t();
    let a = t.login(1, "alice", "TCP4");
    t.login(2, "bob", "TCP4");
    t.take(1);
    t.take(2);
    t.input(1, &format!("BINF {a} SS2000 SL3 NIalice HN1\n"));
    assert_eq!(t.take(2), format!("BINF {a} SS2000\n"));
    // Nothing new: nothing relayed.
    t.input(1, &format!("BINF {a} SS2000\n"));
    assert_eq!(t.take(2), "");
    // A field cleared.
    t.input(1, &format!("BINF {a} U4\n"));
    assert_eq!(t.take(2), format!("BINF {a} U4\n"));
    // A newcomer gets the updated whole INF.
    t.login(3, "carol", "");
    let got = t.take(3);
    let alice_line = got.lines().find(|l| l.starts_with(&format!("BINF {a}"))).unwrap();
    assert!(alice_line.contains("SS2000") && !alice_line.contains("U4"), "{alice_line}");
    // A PID in an update is not relayed, a changed CID ends the session.
    t.take(1);
    t.take(2);
    t.input(1, &format!("BINF {a} PD{} DEx\n", pid_of(1)));
    assert_eq!(t.take(2), format!("BINF {a} DEx\n"));
    t.input(1, &format!("BINF {a} ID{}\n", cid_of(7)));
    assert!(t.take(1).contains("ISTA 240 "));
}

#[test]
fn leaving_and_kicking_send_qui() {
    let mut t = t();
    t.hub.set_registered("op", "pw", true);
    let sid = t.hello(1, "127.0.0.1");
    t.input(1, &format!("BINF {sid} ID{} PD{} NIop\n", cid_of(1), pid_of(1)));
    t.take(1);
    t.input(1, &format!("HPAS {}\n", password_hash("pw", &[1u8; CHALLENGE_LEN])));
    let v = t.login(2, "victim", "");
    let b = t.login(3, "bob", "");
    for i in 1..=3 {
        t.take(i);
    }
    t.hub.disconnect(3);
    t.pump();
    assert_eq!(t.take(1), format!("IQUI {b}\n"));
    // Bob cannot kick; the op can.
    let b2 = t.login(4, "bob2", "");
    t.take(4);
    t.input(4, &format!("BMSG {b2} !kick\\svictim\n"));
    assert!(t.take(4).starts_with("ISTA 125 "));
    t.input(1, &format!("BMSG {sid} !kick\\svictim\\sspam\n"));
    let want = format!("IQUI {v} ID{sid} MSspam\n");
    assert!(t.take(2).ends_with(&want), "the victim is told");
    assert!(t.take(4).contains(&want));
    assert!(t.closed.contains(&2));
    assert_eq!(t.hub.online_nicks(), ["op", "bob2"]);
}

#[test]
fn slow_logins_time_out() {
    let mut t = t();
    t.hello(1, "127.0.0.1");
    assert_eq!(t.hub.poll_timeout(), Some(t.now + LOGIN_TIMEOUT));
    t.now += LOGIN_TIMEOUT;
    t.hub.handle_timeout(t.now);
    t.pump();
    assert!(t.take(1).starts_with("ISTA 220 "));
    assert_eq!(t.closed, [1]);
    // A logged-in user has no deadline.
    t.login(2, "alice", "");
    assert_eq!(t.hub.poll_timeout(), None);
}

#[test]
fn before_binf_only_a_short_line_is_buffered() {
    let mut t = t();
    t.hello(1, "127.0.0.1");
    t.input(1, &"x".repeat(MAX_LINE_LOGIN + 1));
    assert!(t.take(1).starts_with("ISTA 240 "));
    assert_eq!(t.closed, [1]);
    // Once identified a longer line is fine.
    let a = t.login(2, "alice", "");
    t.take(2);
    t.input(2, &format!("BMSG {a} {}\n", "y".repeat(MAX_MESSAGE)));
    assert!(t.take(2).starts_with("BMSG"));
}

#[test]
fn one_address_cannot_fill_the_hub() {
    let mut t = T::new(HubConfig { max_users_per_ip: 2, ..HubConfig::default() });
    t.login_from(1, "a", "", "10.1.1.1");
    t.login_from(2, "b", "", "10.1.1.1");
    t.login_from(3, "c", "", "10.1.1.1");
    assert!(t.take(3).starts_with("ISTA 211 "));
    t.login_from(4, "d", "", "10.1.1.2");
    assert_eq!(t.hub.online_nicks(), ["a", "b", "d"]);
    // When one leaves, another may come.
    t.hub.disconnect(1);
    t.login_from(5, "e", "", "10.1.1.1");
    assert_eq!(t.hub.online_nicks(), ["b", "d", "e"]);
}

#[test]
fn logins_per_address_are_rate_limited() {
    let mut t = T::new(HubConfig { max_logins_per_ip_per_minute: 3, max_users_per_ip: 0, ..HubConfig::default() });
    for i in 1..=3 {
        t.login_from(i, &format!("u{i}"), "", "10.2.2.2");
    }
    t.login_from(4, "u4", "", "10.2.2.2");
    assert!(t.take(4).starts_with("ISTA 220 "));
    t.now += Duration::from_secs(20);
    t.login_from(5, "u5", "", "10.2.2.2");
    assert_eq!(t.hub.online_nicks().len(), 4);
}

#[test]
fn banned_addresses_and_nicks_are_refused() {
    let mut t = t();
    t.hub.add_ban(Ban { nick: None, ip: Some("10.9.9.9".parse().unwrap()), until: None, reason: "spam".into() });
    t.accept(1, "10.9.9.9");
    assert!(t.take(1).starts_with("ISTA 231 "));
    t.hub.add_ban(Ban {
        nick: Some("evil".into()),
        ip: None,
        until: Some(t.now + Duration::from_secs(60)),
        reason: "x".into(),
    });
    t.login(2, "Evil", "");
    assert!(t.take(2).starts_with("ISTA 232 "));
}

#[test]
fn a_login_costs_one_broadcast_whatever_the_number_of_users() {
    let mut t = T::new(HubConfig { max_logins_per_ip_per_minute: 0, max_users_per_ip: 0, ..HubConfig::default() });
    for i in 1..=50 {
        t.login(i, &format!("u{i}"), "TCP4");
    }
    let before = t.broadcasts;
    t.login(51, "late", "TCP4");
    assert_eq!(t.broadcasts, before + 1);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Accept(u8),
        Disconnect(u8),
        Line(u8, String),
        Bytes(u8, Vec<u8>),
        Wait(u16),
    }

    /// Plausible lines with fuzzed pieces: SIDs that are or are not the sender's, INF fields,
    /// commands of every type.
    fn line() -> impl Strategy<Value = String> {
        let sid = prop_oneof![Just("AAAB"), Just("AAAC"), Just("AAAD"), Just("ZZZZ")];
        let field = prop_oneof![
            Just("NIa".to_owned()),
            Just("NIb".to_owned()),
            Just(format!("ID{}", cid_of(1))),
            Just(format!("PD{}", pid_of(1))),
            Just(format!("ID{}", cid_of(2))),
            Just(format!("PD{}", pid_of(2))),
            Just("SUTCP4,UDP4".to_owned()),
            Just("SU".to_owned()),
            Just("I40.0.0.0".to_owned()),
            Just("CT4".to_owned()),
            "[A-Z][A-Z0-9][a-z\\\\ ]{0,4}",
        ];
        let cmd = prop_oneof![
            Just("HSUP ADBASE ADTIGR".to_owned()),
            Just("HPAS AAAA".to_owned()),
            (sid.clone(), proptest::collection::vec(field, 0..5))
                .prop_map(|(s, f)| format!("BINF {s} {}", f.join(" "))),
            sid.clone().prop_map(|s| format!("BMSG {s} hi")),
            sid.clone().prop_map(|s| format!("BMSG {s} !kick\\sa")),
            (sid.clone(), sid.clone()).prop_map(|(a, b)| format!("EMSG {a} {b} x PM{a}")),
            (sid.clone(), sid.clone()).prop_map(|(a, b)| format!("DCTM {a} {b} ADC/1.0 1 t")),
            sid.clone().prop_map(|s| format!("FSCH {s} +TCP4-SEGA ANx")),
            sid.prop_map(|s| format!("BSCH {s} ANx")),
            "[A-Z]{4}[ -~]{0,12}",
        ];
        cmd
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..5).prop_map(Op::Accept),
            (1u8..5).prop_map(Op::Disconnect),
            (1u8..5, line()).prop_map(|(c, l)| Op::Line(c, l)),
            (1u8..5, line()).prop_map(|(c, l)| Op::Line(c, l)),
            (1u8..5, line()).prop_map(|(c, l)| Op::Line(c, l)),
            (1u8..5, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(c, b)| Op::Bytes(c, b)),
            any::<u16>().prop_map(Op::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_input_never_panics_and_keeps_nicks_unique(ops in proptest::collection::vec(op(), 0..40)) {
            let mut t = T::new(HubConfig { max_logins_per_ip_per_minute: 0, ..HubConfig::default() });
            t.hub.set_registered("b", "pw", true);
            let mut open = HashSet::new();
            for op in ops {
                match op {
                    Op::Accept(c) if !open.contains(&c) => {
                        open.insert(c);
                        t.accept(u64::from(c), "127.0.0.1");
                    }
                    Op::Disconnect(c) if open.remove(&c) => {
                        t.hub.disconnect(u64::from(c));
                        t.joined.remove(&u64::from(c));
                        t.pump();
                    }
                    Op::Line(c, l) if open.contains(&c) => t.input(u64::from(c), &format!("{l}\n")),
                    Op::Bytes(c, b) if open.contains(&c) => {
                        t.hub.handle_input(t.now, u64::from(c), &b);
                        t.pump();
                    }
                    Op::Wait(ms) => {
                        t.now += Duration::from_millis(u64::from(ms) * 10);
                        t.hub.handle_timeout(t.now);
                        t.pump();
                    }
                    _ => {}
                }
                let nicks = t.hub.online_nicks();
                let unique: HashSet<String> = nicks.iter().map(|n| n.to_lowercase()).collect();
                prop_assert_eq!(unique.len(), nicks.len());
                // Nothing ever carries a PID to anybody.
                for inbox in t.inbox.values() {
                    prop_assert!(!inbox.contains(" PD"), "a PID was sent: {inbox}");
                }
                t.inbox.clear();
            }
        }
    }
}
