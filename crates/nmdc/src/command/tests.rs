use super::*;
use crate::lock::lock_to_key;
use proptest::prelude::*;

fn p(line: &[u8]) -> Command {
    Command::parse(line).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)))
}

/// Parse a full wire line (with `|`) and check it re-encodes byte-exactly.
fn golden(line: &[u8]) -> Command {
    assert_eq!(line.last(), Some(&b'|'));
    let cmd = p(&line[..line.len() - 1]);
    assert_eq!(
        cmd.encode(),
        line,
        "re-encoding {:?} gave {:?}",
        String::from_utf8_lossy(line),
        String::from_utf8_lossy(&cmd.encode())
    );
    cmd
}

const ROOT: &str = "LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ";

/// Every wire line of docs/protocols/nmdc.md (and of the old research notes) (placeholders filled in with concrete
/// values), grouped by section.
const NOTES_LINES: &[&[u8]] = &[
    // client-client handshake (docs/protocols/nmdc.md#cc-handshake)
    b"$MyNick carol|",
    b"$MyNick bob|",
    b"$Lock EXTENDEDPROTOCOLABCABCABCABCABCABC Pk=DCPLUSPLUS2.4.2Ref=dchub://127.0.0.1:4120|",
    b"$Lock EXTENDEDPROTOCOL/wut? Pk=ncdc-1.23.1,Ref=127.0.0.1:4120|",
    b"$Lock EXTENDEDPROTOCOLABCABCABCABCABCABCA Pk=MICRODCABCABCABCABCAB|",
    b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF ZLIG |",
    b"$Direction Download 3924|",
    b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF|",
    b"$Direction Download 26242|",
    b"$Direction Upload 0|",
    b"$Supports MiniSlots XmlBZList ADCGet TTHF|",
    b"$Direction Download 17767|",
    b"$Error Secure connection required!|",
    // hub login (docs/protocols/nmdc.md#hub-login)
    b"$HubName omnipeer test hub|",
    b"$Supports NoGetINFO NoHello UserIP2|",
    b"$ValidateNick alice|",
    b"$GetPass|",
    b"$MyPass secret|",
    b"$BadPass|",
    b"$ValidateDenide alice|",
    b"$HubIsFull|",
    b"$Hello alice|",
    b"$Version 1,0091|",
    b"$GetNickList|",
    b"$NickList a$$b$$|",
    b"$OpList op1$$op2$$|",
    b"$OpList |",
    b"$UserIP alice 127.0.0.1$$bob 127.0.0.2$$|",
    b"$UserIP alice 127.0.0.1$$|",
    b"$LogedIn alice|",
    b"$Supports NoGetINFO NoHello UserIP2 TLS|",
    b"$Supports UserCommand NoGetINFO NoHello UserIP2 TTHSearch ZPipe0 DHT0 |",
    b"$Supports TTHSearch NoGetINFO NoHello|",
    b"$MyINFO $ALL alice rust-nmdc-test<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$3084$|",
    b"$MyINFO $ALL bob eiskalt-test <EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x01$$5025$|",
    b"$MyINFO $ALL carol microdc2-test<microdc2 V:0.15.6,M:A,H:1/0/0,S:3>$ $LAN(T1)\x01$$3084$|",
    b"$HubTopic welcome to the test hub|",
    b"$Quit bob|",
    b"$ForceMove dchub://127.0.0.1:4112|",
    b"$To: bob From: alice $<alice> hello there|",
    b"$GetPass MFRGGZDFMZTWQ2LK|",
    b"$MyPass KND4PAISRXWKPFWNUC5NJDGCX2ON77YTRMEVWBQ|",
    // relay rules (docs/protocols/nmdc.md#hub-relay)
    b"<alice> hello everybody|",
    b"$ConnectToMe bob 127.0.0.1:3010|",
    b"$ConnectToMe bob 127.0.0.1:3011S|",
    b"$RevConnectToMe carol alice|",
    b"$GetINFO bob alice|",
    b"$Kick bob|",
    b"$OpForceMove $Who:bob$Where:dchub://127.0.0.1:4112$Msg:go there|",
    // search (docs/protocols/nmdc.md#search)
    b"$Search 127.0.0.1:3000 F?T?0?1?test|",
    b"$Search Hub:bob F?T?0?9?TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ|",
    b"$Search Hub:carol F?F?0?1?test|",
    b"$SR alice share\\dir\\test.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)|",
    b"$SR alice share\\dir\\test.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)\x05bob|",
    b"$SR alice share\\dir 2/3\x05test hub (127.0.0.1:4111)|",
    b"$SR alice share\\dir 2/3\x05test hub (127.0.0.1:4111)\x05bob|",
    b"$SA LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ 127.0.0.1:3000|",
    b"$SP LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ bob|",
    // transfers (docs/protocols/nmdc.md#adcget)
    b"$ADCGET file files.xml.bz2 0 -1|",
    b"$ADCSND file files.xml.bz2 0 350|",
    b"$ADCGET file TTH/BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY 0 5000|",
    b"$ADCSND file TTH/BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY 0 5000|",
    b"$ADCGET tthl TTH/BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY 0 -1|",
    b"$ADCSND tthl TTH/BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY 0 1176|",
    b"$ADCGET file /share2/ektest.txt 0 -1|",
    b"$Error File Not Available|",
    b"$MaxedOut|",
    b"$MaxedOut 3|",
    b"$Get files.xml.bz2$1|",
    b"$Get d\\cdab03.bin$1|",
    b"$FileLength 153798|",
    b"$Send|",
    b"$GetListLen|",
    b"$ListLen 153798|",
];

#[test]
fn every_notes_line_round_trips_byte_exactly() {
    for line in NOTES_LINES {
        golden(line);
    }
}

#[test]
fn real_keys_round_trip() {
    for lock in [
        &b"EXTENDEDPROTOCOLABCABCABCABCABCABC"[..],
        b"EXTENDEDPROTOCOLABCABCABCABCABCABCA",
        b"EXTENDEDPROTOCOL/wut?",
        b"EXTENDEDPROTOCOL_probe",
        b"EXTENDEDPROTOCOLAAa#AGa1xyz",
    ] {
        let key = lock_to_key(lock).unwrap();
        let mut line = b"$Key ".to_vec();
        line.extend_from_slice(&key);
        line.push(b'|');
        assert_eq!(golden(&line), Command::Key(key.clone()));
        assert!(crate::lock::key_matches(lock, &key));
    }
}

#[test]
fn handshake_fields() {
    match golden(b"$Lock EXTENDEDPROTOCOL/wut? Pk=ncdc-1.23.1,Ref=127.0.0.1:4120|") {
        Command::Lock { lock, pk } => {
            assert_eq!(lock, b"EXTENDEDPROTOCOL/wut?");
            assert_eq!(pk.as_deref(), Some("ncdc-1.23.1,Ref=127.0.0.1:4120"));
        }
        c => panic!("{c:?}"),
    }
    assert_eq!(golden(b"$Lock OLDLOCK|"), Command::Lock { lock: b"OLDLOCK".to_vec(), pk: None });
    let s = golden(b"$Supports MiniSlots XmlBZList ADCGet TTHL TTHF ZLIG |");
    assert!(s.has_feature("ADCGet") && s.has_feature("ZLIG") && !s.has_feature("TLS"));
    assert_eq!(
        Command::supports(&["NoGetINFO", "NoHello", "UserIP2"]).encode(),
        b"$Supports NoGetINFO NoHello UserIP2|"
    );
    assert_eq!(
        golden(b"$Direction Download 26242|"),
        Command::Direction { direction: Direction::Download, number: 26242 }
    );
    assert!(Command::parse(b"$Direction Sideways 1").is_err());
    assert!(Command::parse(b"$Direction Upload 99999999999").is_err());
    assert!(Command::parse(b"$Direction Upload").is_err());
}

#[test]
fn direction_rule() {
    use Direction::*;
    assert_eq!(resolve_direction(Download, 3924, Download, 17767), DirectionOutcome::TheyDownload);
    assert_eq!(resolve_direction(Download, 26242, Download, 17767), DirectionOutcome::WeDownload);
    assert_eq!(resolve_direction(Download, 5, Download, 5), DirectionOutcome::Tie);
    assert_eq!(resolve_direction(Upload, 0, Download, 1), DirectionOutcome::TheyDownload);
    assert_eq!(resolve_direction(Download, 0, Upload, 9), DirectionOutcome::WeDownload);
    assert_eq!(resolve_direction(Upload, 0, Upload, 0), DirectionOutcome::Nobody);
}

#[test]
fn myinfo_fields() {
    let Command::MyInfo(i) =
        golden(b"$MyINFO $ALL bob eiskalt-test <EiskaltDC++ V:2.4.2,M:A,H:1/0/0,S:3>$ $100\x01$$5025$|")
    else {
        panic!()
    };
    assert_eq!(i.nick, "bob");
    assert_eq!(i.description, "eiskalt-test ");
    let tag = i.tag.unwrap();
    assert_eq!(tag.client, "EiskaltDC++");
    assert_eq!(tag.version.as_deref(), Some("2.4.2"));
    assert_eq!(tag.mode, Some(Mode::Active));
    assert_eq!(tag.hubs, Some(HubCounts { normal: 1, registered: 0, op: 0 }));
    assert_eq!(tag.slots, Some(3));
    assert_eq!(i.connection, "100");
    assert_eq!(i.flag, flags::NORMAL);
    assert_eq!(i.email, "");
    assert_eq!(i.share_size, 5025);

    let Command::MyInfo(i) =
        golden(b"$MyINFO $ALL carol microdc2-test<microdc2 V:0.15.6,M:A,H:1/0/0,S:3>$ $LAN(T1)\x01$$3084$|")
    else {
        panic!()
    };
    assert_eq!(i.description, "microdc2-test");
    assert_eq!(i.connection, "LAN(T1)");
    assert_eq!(i.tag.unwrap().client, "microdc2");
}

#[test]
fn myinfo_odd_shapes_still_round_trip() {
    for line in [
        // No tag, empty description, empty connection and flag, empty share.
        &b"$MyINFO $ALL bot $ $$$0$|"[..],
        b"$MyINFO $ALL bot Hub bot$ $\x05$bot@example.org$0$|",
        // Passive, open-slot field and extra fields after S.
        b"$MyINFO $ALL dave hi<++ V:0.868,M:P,H:3/1/2,S:4,O:2,L:512>$ $0.005\x11$$123456789012$|",
        // A tag this crate cannot re-encode exactly stays in the description.
        b"$MyINFO $ALL erin x<++ V:0.7,H:3,M:A,S:1>$ $DSL\x01$$0$|",
        b"$MyINFO $ALL erin <3 you <not a tag>$ $DSL\x03$$0$|",
        // Latin-1 description, away flag, escapes in description and e-mail.
        b"$MyINFO $ALL fr\xe9d caf\xe9 &#36;5 &amp;#36; a&b$ $Cable\x02$me&#124;x$7$|",
        // TLS + IPv4 flag bits.
        b"$MyINFO $ALL gail <ncdc V:1.23.1,M:A,H:0/1/0,S:2>$ $10\x51$$0$|",
    ] {
        golden(line);
    }
    let Command::MyInfo(i) = p(b"$MyINFO $ALL erin x<++ V:0.7,H:3,M:A,S:1>$ $DSL\x01$$0$") else { panic!() };
    assert_eq!(i.tag, None);
    assert_eq!(i.description, "x<++ V:0.7,H:3,M:A,S:1>");
    let Command::MyInfo(i) = p(b"$MyINFO $ALL fr\xe9d caf\xe9 &#36;5 &amp;#36; a&b$ $Cable\x02$me&#124;x$7$") else {
        panic!()
    };
    assert_eq!(i.nick, "fréd");
    assert_eq!(i.description, "café $5 &#36; a&b");
    assert_eq!(i.email, "me|x");
    assert_eq!(i.flag, flags::AWAY);
    let Command::MyInfo(i) =
        p(b"$MyINFO $ALL dave hi<++ V:0.868,M:P,H:3/1/2,S:4,O:2,L:512>$ $0.005\x11$$123456789012$")
    else {
        panic!()
    };
    let t = i.tag.unwrap();
    assert_eq!(t.mode, Some(Mode::Passive));
    assert_eq!(t.extra, vec![("O".into(), "2".into()), ("L".into(), "512".into())]);
    assert_eq!(i.flag, flags::NORMAL | flags::TLS);
    assert_eq!(i.share_size, 123456789012);
}

#[test]
fn myinfo_flag_that_cannot_be_sent() {
    let mut i = MyInfo {
        nick: "a".into(),
        description: String::new(),
        tag: None,
        connection: "100".into(),
        flag: flags::AWAY | 0x20 | 0x04,
        email: String::new(),
        share_size: 0,
    };
    i.flag = 0x24;
    assert_eq!(Command::MyInfo(i.clone()).encode(), b"$MyINFO $ALL a $ $100\x25$$0$|");
    i.flag = 0x7c;
    assert_eq!(Command::MyInfo(i).encode(), b"$MyINFO $ALL a $ $100\x7d$$0$|");
}

#[test]
fn myinfo_errors() {
    for bad in [
        &b"$MyINFO alice x$ $1\x01$$0$"[..],
        b"$MyINFO $ALL alice",
        b"$MyINFO $ALL alice x$ $1\x01$$12x$",
        b"$MyINFO $ALL alice x$$",
        b"$MyINFO $ALL  x$ $1\x01$$0$",
    ] {
        assert!(Command::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn chat_and_private_messages() {
    assert_eq!(
        golden(b"<alice> hi &#36;5 &#124; a&b|"),
        Command::Chat { nick: "alice".into(), text: "hi $5 | a&b".into() }
    );
    assert_eq!(golden(b"<alice> |"), Command::Chat { nick: "alice".into(), text: "".into() });
    assert_eq!(golden(b"Welcome to the hub|"), Command::Text("Welcome to the hub".into()));
    assert_eq!(golden(b"<a b> x|"), Command::Text("<a b> x".into()));
    assert_eq!(
        golden(b"$To: bob From: #room $<alice> hi all|"),
        Command::To { to: "bob".into(), from: "#room".into(), speaker: Some("alice".into()), text: "hi all".into() }
    );
    assert_eq!(
        golden(b"$To: bob From: alice $no speaker|"),
        Command::To { to: "bob".into(), from: "alice".into(), speaker: None, text: "no speaker".into() }
    );
    assert!(Command::parse(b"$To: bob alice $<alice> x").is_err());
    assert!(Command::parse(b"$To: bob From: alice").is_err());
    // Chat text a caller builds is escaped so it cannot end the command.
    let c = Command::Chat { nick: "alice".into(), text: "a|b$c".into() };
    assert_eq!(c.encode(), b"<alice> a&#124;b&#36;c|");
}

#[test]
fn lists() {
    assert_eq!(golden(b"$NickList a$$b$$|"), Command::NickList(vec!["a".into(), "b".into()]));
    assert_eq!(golden(b"$OpList |"), Command::OpList(vec![]));
    assert_eq!(p(b"$OpList"), Command::OpList(vec![]));
    assert_eq!(
        golden(b"$UserIP alice 127.0.0.1$$bob$$|"),
        Command::UserIp(vec![("alice".into(), "127.0.0.1".into()), ("bob".into(), "".into())])
    );
    let many = format!("$NickList {}", "x$$".repeat(crate::limits::MAX_LIST_ITEMS + 1));
    assert!(matches!(Command::parse(many.as_bytes()), Err(ParseError::FieldTooLong { .. })));
    let long = format!("$NickList {}$$", "n".repeat(crate::limits::MAX_NICK + 1));
    assert!(matches!(Command::parse(long.as_bytes()), Err(ParseError::FieldTooLong { .. })));
}

#[test]
fn connect_to_me() {
    assert_eq!(
        golden(b"$ConnectToMe bob 127.0.0.1:3011S|"),
        Command::ConnectToMe { target: "bob".into(), host: "127.0.0.1".into(), port: 3011, tls: true }
    );
    assert_eq!(
        golden(b"$ConnectToMe bob [::1]:3011|"),
        Command::ConnectToMe { target: "bob".into(), host: "[::1]".into(), port: 3011, tls: false }
    );
    for bad in [
        &b"$ConnectToMe bob"[..],
        b"$ConnectToMe bob 127.0.0.1",
        b"$ConnectToMe bob 127.0.0.1:70000",
        b"$ConnectToMe bob :3000",
        b"$ConnectToMe bob 1.2.3.4:30x0",
        b"$ConnectToMe  1.2.3.4:3000",
    ] {
        assert!(Command::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn search_queries() {
    let Command::Search { origin, query } = golden(b"$Search 127.0.0.1:3000 F?T?0?1?test|") else { panic!() };
    assert_eq!(origin, SearchOrigin::Active { host: "127.0.0.1".into(), port: 3000 });
    assert_eq!(query, SearchQuery::text("test"));
    let Command::Search { origin, query } =
        golden(b"$Search Hub:bob F?T?0?9?TTH:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ|")
    else {
        panic!()
    };
    assert_eq!(origin, SearchOrigin::Passive { nick: "bob".into() });
    assert_eq!(query.tth_root(), Some(Tth::from_base32(ROOT).unwrap()));
    assert_eq!(query, SearchQuery::tth(&Tth::from_base32(ROOT).unwrap()));
    // Spaces as '$', an escaped '$', size bounds, other types.
    let Command::Search { query, .. } = golden(b"$Search Hub:bob T?F?1048576?7?big$movie$&#36;5$a?b|") else {
        panic!()
    };
    assert!(query.size_restricted && !query.is_max);
    assert_eq!(query.size, 1 << 20);
    assert_eq!(query.file_type, FileType::Video);
    assert_eq!(query.pattern, "big movie $5 a?b");
    assert!(query.size_matches(1 << 20) && query.size_matches(u64::MAX) && !query.size_matches(5));
    assert_eq!(query.tth_root(), None);
    for bad in [
        &b"$Search 127.0.0.1:3000"[..],
        b"$Search 127.0.0.1:3000 X?T?0?1?test",
        b"$Search 127.0.0.1:3000 F?T?x?1?test",
        b"$Search 127.0.0.1:3000 F?T?0?14?test",
        b"$Search 127.0.0.1:3000 F?T?0?0?test",
        b"$Search 127.0.0.1:3000 F?T?0?1",
        b"$Search Hub: F?T?0?1?test",
        b"$Search nowhere F?T?0?1?test",
    ] {
        assert!(Command::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    for n in 1..=13u8 {
        assert_eq!(FileType::from_number(n).unwrap().number(), n);
    }
}

#[test]
fn search_results() {
    let tth = Tth::from_base32("ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI").unwrap();
    let Command::Sr(r) = golden(
        b"$SR alice share\\dir\\test.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)\x05bob|",
    ) else {
        panic!()
    };
    assert_eq!(r.nick, "alice");
    assert_eq!(r.path, "share\\dir\\test.txt");
    assert_eq!(r.size, Some(25));
    assert_eq!((r.free_slots, r.total_slots), (2, 3));
    assert_eq!(r.tth(), Some(tth));
    assert_eq!(r.hub_addr, "127.0.0.1:4111");
    assert_eq!(r.target.as_deref(), Some("bob"));
    let (stripped, target) = r.clone().split_target();
    assert_eq!(target.as_deref(), Some("bob"));
    assert_eq!(
        Command::Sr(stripped.clone()).encode(),
        b"$SR alice share\\dir\\test.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (127.0.0.1:4111)|"
    );
    assert_eq!(stripped.with_target("bob"), r);

    let Command::Sr(d) = golden(b"$SR alice share\\my dir 0/3\x05test hub (127.0.0.1:4111)\x05bob|") else { panic!() };
    assert!(d.is_dir());
    assert_eq!(d.path, "share\\my dir");
    assert_eq!(d.tag, ResultTag::HubName("test hub".into()));
    assert_eq!(d.target.as_deref(), Some("bob"));

    // A path with spaces, '$' and a '\x05'-free layout; sizes up to u64::MAX.
    golden(b"$SR alice a b\\c &#36; d.mkv\x0518446744073709551615 0/0\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI (hub.example:411)|");

    let (relay, target) =
        sr_strip_target(b"$SR alice share\\dir 2/3\x05test hub (127.0.0.1:4111)\x05bob").unwrap().unwrap();
    assert_eq!(relay, b"$SR alice share\\dir 2/3\x05test hub (127.0.0.1:4111)|");
    assert_eq!(target, "bob");
    assert_eq!(sr_strip_target(b"$SR alice share\\dir 2/3\x05test hub (127.0.0.1:4111)").unwrap(), None);
    assert!(sr_strip_target(b"$Send").is_err());

    for bad in [
        &b"$SR alice"[..],
        b"$SR alice x.txt\x0525 2/3\x05TTH:SHORT (1.2.3.4:411)",
        b"$SR alice x.txt\x0525 2/3\x05TTH:ZFGQBMTR2KHGNDPMBI3WCXKG7PPZCMY6C23ABDI",
        b"$SR alice dir 2/3",
        b"$SR alice dir x/3\x05hub (1.2.3.4:411)",
        b"$SR alice x.txt\x0525 2/3\x05hub (1.2.3.4:411)\x05bob\x05extra",
        b"$SR alice  2/3\x05hub (1.2.3.4:411)",
    ] {
        assert!(Command::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn transfers() {
    let root = Tth::from_base32("BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY").unwrap();
    assert_eq!(
        golden(b"$ADCGET file files.xml.bz2 0 -1|"),
        Command::AdcGet(AdcRequest {
            kind: AdcKind::File,
            identifier: AdcIdentifier::FileListBz2,
            start: 0,
            bytes: -1,
            zlib: false
        })
    );
    let Command::AdcSnd(r) = golden(b"$ADCSND file TTH/BELWMSTZFUZXMBVSY7NBFTVRX5TGUCTKZLFDNBY 0 5000|") else {
        panic!()
    };
    assert_eq!(r.identifier, AdcIdentifier::Tth(root));
    assert_eq!(r.length(), Some(5000));
    let Command::AdcGet(r) = golden(b"$ADCGET file /my\\ dir/a\\\\b\\nc 100 -1 ZL1|") else { panic!() };
    assert_eq!(r.identifier, AdcIdentifier::Path("/my dir/a\\b\nc".into()));
    assert_eq!((r.start, r.length(), r.zlib), (100, None, true));
    // ADC-style `\s` is accepted and re-sent NMDC style.
    assert_eq!(p(b"$ADCGET list /my\\sdir/ 0 -1").encode(), b"$ADCGET list /my\\ dir/ 0 -1|");
    for bad in [
        &b"$ADCGET file files.xml.bz2 0"[..],
        b"$ADCGET blob files.xml.bz2 0 -1",
        b"$ADCGET file files.xml.bz2 0 -2",
        b"$ADCGET file files.xml.bz2 x -1",
        b"$ADCGET file TTH/XYZ 0 -1",
        b"$ADCGET file a\\qb 0 -1",
        b"$ADCGET file a\\ 0 -1",
        b"$ADCGET file files.xml.bz2 0 -1 ZL2",
        b"$ADCGET file  0 -1",
        b"$ADCGET file x 0 9223372036854775808",
    ] {
        assert!(Command::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }

    let g = golden(b"$Get d\\cdab03.bin$1|");
    assert_eq!(g, Command::Get { path: "d\\cdab03.bin".into(), offset: 1 });
    assert_eq!(g.get_start(), Some(0));
    assert_eq!(Command::get("files.xml.bz2", 40906).encode(), b"$Get files.xml.bz2$40907|");
    assert_eq!(golden(b"$Get a&#36;b$7|"), Command::Get { path: "a$b".into(), offset: 7 });
    assert!(Command::parse(b"$Get files.xml.bz2").is_err());
    assert!(Command::parse(b"$Get $1").is_err());
    assert_eq!(golden(b"$FileLength 153798|"), Command::FileLength(153798));
    assert!(Command::parse(b"$FileLength -1").is_err());
    assert_eq!(golden(b"$Error File Not Available|"), Command::Error("File Not Available".into()));
}

#[test]
fn unknown_commands_are_kept_verbatim() {
    assert_eq!(
        golden(b"$SA LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ 127.0.0.1:3000|"),
        Command::Unknown {
            name: "SA".into(),
            raw: b"$SA LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ 127.0.0.1:3000".to_vec()
        }
    );
    assert_eq!(golden(b"$ZOn|").name(), "ZOn");
    assert_eq!(golden(b"$|").name(), "");
    assert_eq!(golden(b"$BotList a$$|").name(), "BotList");
}

#[test]
fn limits_and_empty() {
    assert_eq!(Command::parse(b""), Err(ParseError::Empty));
    let big = vec![b'x'; crate::limits::MAX_LIST_COMMAND + 1];
    assert!(matches!(Command::parse(&big), Err(ParseError::TooLong { .. })));
    let lock = format!("$Lock {} Pk=x", "A".repeat(crate::limits::MAX_LOCK + 1));
    assert!(matches!(Command::parse(lock.as_bytes()), Err(ParseError::FieldTooLong { .. })));
    assert!(Command::parse(b"$Lock  Pk=x").is_err());
    let nick = format!("$Hello {}", "n".repeat(crate::limits::MAX_NICK + 1));
    assert!(matches!(Command::parse(nick.as_bytes()), Err(ParseError::FieldTooLong { .. })));
    assert!(Command::parse(b"$Hello").is_err());
    assert!(Command::parse(b"$Hello a b").is_err());
    assert!(Command::parse(b"$MyNick a\x01").is_err());
    let path = format!("$Get {}$1", "p".repeat(crate::limits::MAX_PATH + 1));
    assert!(matches!(Command::parse(path.as_bytes()), Err(ParseError::FieldTooLong { .. })));
    let many = format!("$Supports {}", "F ".repeat(crate::limits::MAX_SUPPORTS + 1));
    assert!(matches!(Command::parse(many.as_bytes()), Err(ParseError::FieldTooLong { .. })));
}

#[test]
fn encode_never_emits_a_bar_inside() {
    let cmds = [
        Command::Hello("a|b".into()),
        Command::MyPass("p|w".into()),
        Command::Key(b"k|y".to_vec()),
        Command::Lock { lock: b"L|K".to_vec(), pk: Some("p|k".into()) },
        Command::Unknown { name: "X".into(), raw: b"$X a|b".to_vec() },
        Command::Sr(SearchResult {
            nick: "a".into(),
            path: "x|y".into(),
            size: None,
            free_slots: 1,
            total_slots: 1,
            tag: ResultTag::HubName("h|n".into()),
            hub_addr: "1|2".into(),
            target: Some("t|t".into()),
        }),
    ];
    for c in cmds {
        let e = c.encode();
        assert_eq!(e.iter().filter(|&&b| b == b'|').count(), 1, "{c:?}");
        assert_eq!(e.last(), Some(&b'|'));
    }
}

// ---- property tests ----

fn nick() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\[\\]\\-.#\u{e0}-\u{ff}]{1,20}"
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 $|&#;<>:?,.!\u{a0}-\u{ff}]{0,40}"
}

fn tth_s() -> impl Strategy<Value = Tth> {
    any::<[u8; 24]>().prop_map(Tth)
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[::1]".to_owned()),
        "[a-z]{1,10}\\.example",
    ]
}

fn path() -> impl Strategy<Value = String> {
    // Share paths: no '\x05' (the $SR separator), never empty.
    "[a-zA-Z0-9 $|&#;._\\-\\\\\u{a0}-\u{ff}]{0,30}[a-zA-Z0-9_\u{c0}-\u{ff}]"
}

fn tag() -> impl Strategy<Value = Tag> {
    (
        "[a-zA-Z+]{1,12}",
        proptest::option::of("[0-9.]{1,8}"),
        proptest::option::of(prop_oneof![Just(Mode::Active), Just(Mode::Passive), Just(Mode::Socks5)]),
        proptest::option::of((0u32..100, 0u32..100, 0u32..100)),
        proptest::option::of(0u32..1000),
        proptest::collection::vec(("[A-Z]", "[0-9]{1,4}"), 0..3),
    )
        .prop_filter("a tag needs a field", |t| {
            t.1.is_some() || t.2.is_some() || t.3.is_some() || t.4.is_some() || !t.5.is_empty()
        })
        .prop_filter("extra keys must not be V/M/H/S", |t| {
            t.5.iter().all(|(k, _)| !matches!(k.as_str(), "V" | "M" | "H" | "S"))
        })
        .prop_map(|(client, version, mode, hubs, slots, extra)| Tag {
            client,
            version,
            mode,
            hubs: hubs.map(|(normal, registered, op)| HubCounts { normal, registered, op }),
            slots,
            extra,
        })
}

fn myinfo() -> impl Strategy<Value = MyInfo> {
    (
        nick(),
        "[a-zA-Z0-9 $|&#;.!\u{a0}-\u{ff}]{0,30}",
        proptest::option::of(tag()),
        "[a-zA-Z0-9().]{1,10}",
        (1u8..=255).prop_filter("$ and | cannot be sent", |f| *f != b'$' && *f != b'|'),
        "[a-z0-9@.$|&]{0,20}",
        any::<u64>(),
    )
        .prop_filter("a description ending in a tag-like text is not canonical", |t| {
            t.2.is_some() || !t.1.ends_with('>')
        })
        .prop_map(|(nick, description, tag, connection, flag, email, share_size)| MyInfo {
            nick,
            description,
            tag,
            connection,
            flag,
            email,
            share_size,
        })
}

fn query() -> impl Strategy<Value = SearchQuery> {
    prop_oneof![
        (any::<bool>(), any::<bool>(), any::<u64>(), 1u8..=13, "[a-zA-Z0-9 $|&#;?.\u{a0}-\u{ff}]{1,30}").prop_map(
            |(size_restricted, is_max, size, t, pattern)| SearchQuery {
                size_restricted,
                is_max,
                size,
                file_type: FileType::from_number(t).unwrap(),
                pattern,
            }
        ),
        tth_s().prop_map(|t| SearchQuery::tth(&t)),
    ]
}

fn adc() -> impl Strategy<Value = AdcRequest> {
    (
        prop_oneof![Just(AdcKind::File), Just(AdcKind::Tthl), Just(AdcKind::List)],
        prop_oneof![
            Just(AdcIdentifier::FileListBz2),
            tth_s().prop_map(AdcIdentifier::Tth),
            "/[a-zA-Z0-9 \\\\\n/._\u{e0}-\u{ff}]{0,30}".prop_map(AdcIdentifier::Path),
        ],
        any::<u64>(),
        prop_oneof![Just(-1i64), 0i64..=i64::MAX],
        any::<bool>(),
    )
        .prop_map(|(kind, identifier, start, bytes, zlib)| AdcRequest { kind, identifier, start, bytes, zlib })
}

fn search_result() -> impl Strategy<Value = SearchResult> {
    (
        nick(),
        path(),
        proptest::option::of(any::<u64>()),
        any::<u32>(),
        any::<u32>(),
        prop_oneof![tth_s().prop_map(ResultTag::Tth), "[a-zA-Z0-9 $|&#;!]{0,20}[a-z]".prop_map(ResultTag::HubName),],
        (host(), any::<u16>()).prop_map(|(h, p)| format!("{h}:{p}")),
        proptest::option::of(nick()),
    )
        .prop_map(|(nick, path, size, free_slots, total_slots, tag, hub_addr, target)| SearchResult {
            nick,
            path,
            size,
            free_slots,
            total_slots,
            tag,
            hub_addr,
            target,
        })
}

fn command() -> impl Strategy<Value = Command> {
    let a = prop_oneof![
        (
            proptest::collection::vec(any::<u8>().prop_filter("lock byte", |b| *b != b' ' && *b != b'|'), 1..40),
            proptest::option::of("[a-zA-Z0-9=.,:/\u{a0}-\u{ff}]{0,30}")
        )
            .prop_map(|(lock, pk)| Command::Lock { lock, pk }),
        proptest::collection::vec(any::<u8>().prop_filter("no bar", |b| *b != b'|'), 0..40).prop_map(Command::Key),
        (proptest::collection::vec("[a-zA-Z0-9]{1,12}", 0..8), any::<bool>())
            .prop_map(|(features, trailing_space)| Command::Supports { features, trailing_space }),
        nick().prop_map(Command::ValidateNick),
        proptest::option::of("[A-Z2-7]{1,40}").prop_map(|salt| Command::GetPass { salt }),
        "[a-zA-Z0-9 $&]{1,20}".prop_map(Command::MyPass),
        Just(Command::BadPass),
        nick().prop_map(Command::Hello),
        "[0-9,.]{1,10}".prop_map(Command::Version),
        myinfo().prop_map(Command::MyInfo),
        Just(Command::GetNickList),
        proptest::collection::vec(nick(), 0..10).prop_map(Command::NickList),
        proptest::collection::vec(nick(), 0..10).prop_map(Command::OpList),
        proptest::collection::vec((nick(), prop_oneof![Just(String::new()), host()]), 0..10).prop_map(Command::UserIp),
    ];
    let b = prop_oneof![
        text().prop_map(Command::HubName),
        text().prop_map(Command::HubTopic),
        Just(Command::HubIsFull),
        nick().prop_map(Command::ValidateDenide),
        nick().prop_map(Command::LogedIn),
        (nick(), nick()).prop_map(|(other, me)| Command::GetInfo { other, me }),
        (nick(), nick(), nick(), text()).prop_map(|(to, from, s, text)| Command::To {
            to,
            from,
            speaker: Some(s),
            text
        }),
        (nick(), nick(), "[a-zA-Z0-9 ][a-zA-Z0-9 $|&]{0,20}")
            .prop_map(|(to, from, text)| { Command::To { to, from, speaker: None, text } }),
        (nick(), text()).prop_map(|(nick, text)| Command::Chat { nick, text }),
        "[a-zA-Z0-9][a-zA-Z0-9 <>$|&]{0,30}".prop_map(Command::Text),
        (nick(), host(), any::<u16>(), any::<bool>())
            .prop_map(|(target, host, port, tls)| { Command::ConnectToMe { target, host, port, tls } }),
        (nick(), nick()).prop_map(|(from, target)| Command::RevConnectToMe { from, target }),
        (
            prop_oneof![
                (host(), any::<u16>()).prop_map(|(host, port)| SearchOrigin::Active { host, port }),
                nick().prop_map(|nick| SearchOrigin::Passive { nick }),
            ],
            query()
        )
            .prop_map(|(origin, query)| Command::Search { origin, query }),
        search_result().prop_map(Command::Sr),
    ];
    let c = prop_oneof![
        nick().prop_map(Command::Quit),
        nick().prop_map(Command::Kick),
        (nick(), "[a-z:/0-9.]{1,30}", text())
            .prop_map(|(who, address, message)| { Command::OpForceMove { who, address, message } }),
        "[a-z:/0-9.]{1,30}".prop_map(Command::ForceMove),
        nick().prop_map(Command::MyNick),
        (any::<bool>(), any::<u32>()).prop_map(|(d, number)| Command::Direction {
            direction: if d { Direction::Download } else { Direction::Upload },
            number
        }),
        (path(), any::<u64>()).prop_map(|(path, offset)| Command::Get { path, offset }),
        any::<u64>().prop_map(Command::FileLength),
        Just(Command::Send),
        adc().prop_map(Command::AdcGet),
        adc().prop_map(Command::AdcSnd),
        proptest::option::of(any::<u32>()).prop_map(Command::MaxedOut),
        text().prop_map(Command::Error),
        "[A-Z][a-zA-Z]{0,10}"
            .prop_filter("not a known name", |n| {
                matches!(Command::parse(format!("${n} x").as_bytes()), Ok(Command::Unknown { .. }))
            })
            .prop_map(|n| Command::Unknown { name: n.clone(), raw: format!("${n} x").into_bytes() }),
    ];
    prop_oneof![a, b, c]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip(cmd in command()) {
        let wire = cmd.encode();
        prop_assert_eq!(wire.last(), Some(&b'|'));
        prop_assert_eq!(wire.iter().filter(|&&b| b == b'|').count(), 1);
        let back = Command::parse(&wire[..wire.len() - 1]);
        prop_assert_eq!(back.as_ref(), Ok(&cmd), "wire {:?}", String::from_utf8_lossy(&wire));
        prop_assert_eq!(back.unwrap().encode(), wire);
    }

    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(c) = Command::parse(&bytes) {
            let _ = c.encode();
            let _ = c.name();
        }
    }

    #[test]
    fn never_panics_on_known_prefixes(
        prefix in prop_oneof![
            Just("$MyINFO $ALL "), Just("$SR "), Just("$Search "), Just("$ADCGET "), Just("$ADCSND "),
            Just("$To: "), Just("$Get "), Just("$ConnectToMe "), Just("$Direction "), Just("$UserIP "),
            Just("$OpForceMove $Who:"), Just("<"), Just("$Lock "), Just("$Supports "), Just("$GetINFO "),
        ],
        rest in proptest::collection::vec(prop_oneof![
            any::<u8>(), Just(b'$'), Just(b' '), Just(5u8), Just(b'?'), Just(b'<'), Just(b'>'),
            Just(b':'), Just(b'\\'), Just(b'/'), Just(b'('), Just(b')'), Just(b'1'), Just(b'T')
        ], 0..80),
    ) {
        let mut line = prefix.as_bytes().to_vec();
        line.extend(rest);
        if let Ok(c) = Command::parse(&line) {
            let _ = c.encode();
        }
    }

    /// Whatever parses re-encodes to something that parses to the same command.
    #[test]
    fn encode_of_parse_is_stable(bytes in proptest::collection::vec(prop_oneof![
        any::<u8>().prop_filter("no bar", |b| *b != b'|'), Just(b'$'), Just(b' '), Just(5u8)], 0..80),
        prefix in prop_oneof![Just("$SR a "), Just("$MyINFO $ALL a "), Just("$Search Hub:a "), Just("<a> "), Just("")],
    ) {
        let mut line = prefix.as_bytes().to_vec();
        line.extend(bytes);
        if let Ok(c) = Command::parse(&line) {
            let wire = c.encode();
            let again = Command::parse(&wire[..wire.len() - 1]);
            prop_assert_eq!(again, Ok(c));
        }
    }
}
