//! The node's API against a web page on another site and against idle sockets
//! (docs/api.md "Who may call the API", "Connections"): a request naming another host
//! (DNS rebinding) is refused on every route, static files included; a state-changing
//! request or WebSocket from another origin is refused and changes nothing; same-origin
//! (the web UI) and header-less (curl, the CLI) requests work; a connection that sends no
//! complete request head is closed after `[api].header_timeout_secs`; beyond
//! `[api].max_connections` a new connection gets 503 and the ones in go on.
//!
//! Requests go over raw sockets: the point is the exact `Host`/`Origin` a browser sends.

mod omni;

use omni::node::{content, joining_config, server_config, wait_for, Node, Ports};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a read waits for the node (generous: the machine may be loaded).
const READ: Duration = Duration::from_secs(30);

/// A request as a browser (or curl) writes it, with `Connection: close`.
fn http(method: &str, path: &str, host: Option<&str>, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\n");
    if let Some(h) = host {
        r += &format!("Host: {h}\r\n");
    }
    for (k, v) in headers {
        r += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() || method != "GET" {
        r += &format!("Content-Length: {}\r\n", body.len());
    }
    r + "Connection: close\r\n\r\n" + body
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(READ)).unwrap();
    s
}

/// Send `req` on a new connection; (status, body) of the answer, read to the close.
fn send(port: u16, req: &str) -> (u16, String) {
    let mut s = connect(port);
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap_or_else(|e| panic!("no answer to {req:?}: {e}"));
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// One answer on a kept-alive connection (its body has a Content-Length).
fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
            if body.len() >= len {
                return (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned());
            }
        }
        let n = s.read(&mut buf).expect("an answer");
        assert!(n > 0, "the connection closed before the answer: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Read until the node closes `s`; what it sent. Panics if it is still open after `READ`.
fn wait_closed(s: &mut TcpStream, what: &str) -> String {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&got).into_owned()
            }
            Err(e) => {
                panic!("{what}: still open after {:?} ({e}); got {:?}", start.elapsed(), String::from_utf8_lossy(&got))
            }
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no JSON error in {body:?}"))
}

#[test]
fn a_foreign_host_is_refused_on_every_route_and_the_apis_own_names_work() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = format!("{}hosts = [\"mybox.lan\"]\n", server_config("alice", p));
    let _n = Node::start(t.path(), &cfg, p.api);
    let own = format!("127.0.0.1:{}", p.api);

    for host in ["evil.example".to_owned(), format!("evil.example:{}", p.api), format!("localhost:{}", p.api + 1)] {
        for (method, path) in [
            ("GET", "/"),
            ("GET", "/app.js"),
            ("GET", "/api/status"),
            ("GET", "/api/openapi.json"),
            ("POST", "/api/shares/rescan"),
        ] {
            let (code, body) = send(p.api, &http(method, path, Some(&host), &[], ""));
            assert_eq!(code, 421, "{method} {path} with Host {host}: {body}");
            assert!(error_of(&body).contains("[api].hosts"), "{body}");
        }
    }
    // HTTP/1.0 without a Host: refused too (docs/api.md).
    let (code, _) = send(p.api, "GET /api/status HTTP/1.0\r\n\r\n");
    assert_eq!(code, 421);
    // An absolute-form target names its host too.
    let (code, _) = send(p.api, &http("GET", "http://evil.example/api/status", Some(&own), &[], ""));
    assert_eq!(code, 421);

    // The API's own names, and the configured one on any port.
    for host in [
        own.clone(),
        format!("localhost:{}", p.api),
        format!("LOCALHOST:{}", p.api),
        format!("[::1]:{}", p.api),
        "mybox.lan".into(),
        "mybox.lan:9999".into(),
    ] {
        let (code, body) = send(p.api, &http("GET", "/api/status", Some(&host), &[], ""));
        assert_eq!(code, 200, "Host {host}: {body}");
        let (code, body) = send(p.api, &http("GET", "/", Some(&host), &[], ""));
        assert_eq!(code, 200, "Host {host}: {body}");
        assert!(body.contains("<html") || body.contains("<!doctype"), "{body}");
    }
}

#[test]
fn the_event_stream_opens_only_to_the_apis_own_origin() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let _n = Node::start(t.path(), &server_config("alice", p), p.api);
    let own = format!("127.0.0.1:{}", p.api);
    // WebSocket: a foreign Origin gets no 101; its own origin and no Origin (the CLI) do.
    use tungstenite::client::IntoClientRequest;
    let ws = |origin: Option<&str>, host: Option<&str>| {
        let mut req = format!("ws://127.0.0.1:{}/api/events", p.api).into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        if let Some(h) = host {
            req.headers_mut().insert("Host", h.parse().unwrap());
        }
        tungstenite::connect(req)
    };
    for (origin, host, want) in [
        (Some("http://evil.example"), None, 403),
        (Some("null"), None, 403),
        (Some(&*format!("http://127.0.0.1:{}", p.api + 1)), None, 403),
        (Some(&*format!("http://127.0.0.1:{}", p.api)), Some("evil.example"), 421),
    ] {
        match ws(origin, host) {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), want, "Origin {origin:?}")
            }
            Err(e) => panic!("Origin {origin:?}: {e}"),
            Ok((_, resp)) => panic!("Origin {origin:?} was let in: {}", resp.status()),
        }
    }
    let (mut sock, _) =
        ws(Some(&format!("http://127.0.0.1:{}", p.api)), None).expect("its own origin opens the event stream");
    assert!(ws(Some(&format!("http://localhost:{}", p.api)), Some(&format!("localhost:{}", p.api))).is_ok());
    assert!(ws(None, None).is_ok(), "a client without Origin (the CLI)");
    // The stream flows: a rescan shows on it.
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
        s.set_read_timeout(Some(READ)).unwrap();
    }
    let (code, body) =
        send(p.api, &http("POST", "/api/shares/rescan", Some(&own), &[("Origin", &format!("http://{own}"))], ""));
    assert_eq!(code, 202, "{body}");
    loop {
        let m = sock.read().expect("the rescan on the event stream");
        if let Ok(ev) = serde_json::from_str::<Value>(m.to_text().unwrap_or("")) {
            if ev["type"] == "shares" {
                break;
            }
        }
    }
}

#[test]
fn a_page_on_another_site_cannot_start_change_or_cancel_a_download() {
    let t = tempfile::tempdir().unwrap();
    let pa = Ports::free();
    let a_dir = t.path().join("a");
    std::fs::create_dir_all(a_dir.join("share")).unwrap();
    std::fs::write(a_dir.join("share/guarded download.bin"), content(4_000_000, 3)).unwrap();
    let _a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let b_api = omni::node::free_port();
    // Slow, so the download is still going while the page tries to cancel it.
    let b = Node::start(
        &t.path().join("b"),
        &joining_config("bob", pa, b_api, "[transfers]\nmax_download_kib = 64\n"),
        b_api,
    );
    let own = format!("127.0.0.1:{b_api}");
    let own_origin = format!("http://{own}");
    let evil = [("Origin", "http://evil.example"), ("Content-Type", "text/plain")];
    let json = ("Content-Type", "application/json");

    let r = b.search_until("guarded download", "guarded download.bin", &["nmdc"]);
    let add = format!("{{\"result\": {}, \"network\": \"nmdc\"}}", r["id"]);
    // The web UI (same origin) starts it.
    let (code, body) = send(
        b_api,
        &http(
            "POST",
            "/api/transfers",
            Some(&own),
            &[("Origin", &own_origin), ("Sec-Fetch-Site", "same-origin"), json],
            &add,
        ),
    );
    assert_eq!(code, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_i64().unwrap();
    wait_for("the download under way", 30, || {
        (b.get(&format!("/api/transfers/{id}"))["bytes"].as_u64()? > 0).then_some(())
    });

    // A cross-site text/plain POST, with a body or none, cannot cancel or pause it.
    let cancel = format!("/api/transfers/{id}/cancel");
    for (headers, body) in [
        (evil.to_vec(), "x"),
        (evil.to_vec(), ""),
        (vec![("Origin", "null")], ""),
        (vec![("Origin", &*format!("http://127.0.0.1:{}", b_api + 1))], ""),
        (vec![("Sec-Fetch-Site", "cross-site")], ""),
        (vec![("Sec-Fetch-Site", "same-site")], ""),
    ] {
        let (code, answer) = send(b_api, &http("POST", &cancel, Some(&own), &headers, body));
        assert_eq!(code, 403, "{headers:?}: {answer}");
        let (code, _) = send(b_api, &http("POST", &format!("/api/transfers/{id}/pause"), Some(&own), &headers, body));
        assert_eq!(code, 403, "{headers:?}");
    }
    let tr = b.get(&format!("/api/transfers/{id}"));
    assert_eq!(tr["state"], "running", "the download goes on: {tr}");
    let partial: u64 = walk(&b.dir.join("incomplete")).iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(partial > 0, "the partial file is kept");
    // A rebinding page (its own name for 127.0.0.1) sends JSON as "same origin".
    let (code, body) = send(
        b_api,
        &http("POST", "/api/transfers", Some("evil.example"), &[json, ("Origin", "http://evil.example")], &add),
    );
    assert_eq!(code, 421, "{body}");
    // A page on another site: refused whatever it sends.
    for headers in [
        vec![("Origin", "http://evil.example"), json],
        vec![("Origin", "null"), json],
        vec![("Sec-Fetch-Site", "cross-site"), json],
    ] {
        let (code, body) = send(b_api, &http("POST", "/api/transfers", Some(&own), &headers, &add));
        assert_eq!(code, 403, "{headers:?}: {body}");
        assert!(
            error_of(&body).contains("another site") || error_of(&body).contains("not this node's web UI"),
            "{body}"
        );
    }
    assert_eq!(b.get("/api/transfers").as_array().unwrap().len(), 1, "no other download was started");

    // Nor change settings, send chat, rescan, or answer a Tox request.
    for (method, path, body) in [
        ("PUT", "/api/settings", r#"{"max_download_kib": 1}"#),
        ("POST", "/api/chats/messages", r#"{"chat": "nmdc:hub", "text": "from evil"}"#),
        ("POST", "/api/shares/rescan", ""),
        ("DELETE", &*format!("/api/tox/requests/{}", "AB".repeat(32)), ""),
        ("POST", &*format!("/api/tox/requests/{}/accept", "AB".repeat(32)), ""),
    ] {
        let (code, answer) = send(b_api, &http(method, path, Some(&own), &evil, body));
        assert_eq!(code, 403, "{method} {path}: {answer}");
    }
    let limit =
        b.get("/api/settings").as_array().unwrap().iter().find(|s| s["key"] == "max_download_kib").cloned().unwrap();
    assert_eq!(limit["value"], 64, "{limit}");
    let lines = b.get("/api/chats/messages?chat=nmdc:hub");
    assert!(!lines.to_string().contains("from evil"), "{lines}");

    // Same-origin (as the page at 127.0.0.1 or localhost sends it) and header-less (curl,
    // the CLI) requests work.
    let (code, body) = send(b_api, &http("POST", &format!("/api/transfers/{id}/pause"), Some(&own), &[], ""));
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()["state"].as_str()),
        (200, Some("paused")),
        "{body}"
    );
    let (code, body) = send(
        b_api,
        &http(
            "POST",
            &format!("/api/transfers/{id}/resume"),
            Some(&own),
            &[("Origin", &own_origin), ("Sec-Fetch-Site", "same-origin")],
            "",
        ),
    );
    assert_eq!(code, 200, "{body}");
    let local = format!("localhost:{b_api}");
    let (code, body) = send(
        b_api,
        &http(
            "POST",
            &cancel,
            Some(&local),
            &[("Origin", &format!("http://{local}")), ("Sec-Fetch-Site", "same-origin")],
            "",
        ),
    );
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()["state"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    let (code, body) = send(
        b_api,
        &http("PUT", "/api/settings", Some(&own), &[("Origin", &own_origin), json], r#"{"max_download_kib": 128}"#),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = send(
        b_api,
        &http("DELETE", &format!("/api/tox/requests/{}", "AB".repeat(32)), Some(&own), &[("Origin", &own_origin)], ""),
    );
    assert_ne!(code, 403, "reaches the handler: {body}");
    // And the CLI.
    let (code, out, err) = b.cli(&["status", "--api", &own]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_connection_without_a_complete_request_head_is_closed_after_the_timeout() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = format!("{}header_timeout_secs = 2\n", server_config("alice", p));
    let _n = Node::start(t.path(), &cfg, p.api);
    let own = format!("127.0.0.1:{}", p.api);

    let mut silent = connect(p.api);
    let mut half = connect(p.api);
    half.write_all(format!("GET /api/status HTTP/1.1\r\nHost: {own}\r\nAccept: app").as_bytes()).unwrap();
    let mut kept = connect(p.api);
    kept.write_all(format!("GET /api/status HTTP/1.1\r\nHost: {own}\r\n\r\n").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut kept).0, 200, "a complete request is answered");

    let start = Instant::now();
    assert_eq!(wait_closed(&mut silent, "a connection that sent nothing"), "");
    wait_closed(&mut half, "a connection that sent half a request head");
    wait_closed(&mut kept, "a kept-alive connection idle after its answer");
    assert!(start.elapsed() >= Duration::from_secs(1), "closed by the timeout, not at once: {:?}", start.elapsed());
    // The API goes on.
    assert_eq!(send(p.api, &http("GET", "/api/status", Some(&own), &[], "")).0, 200);
}

#[test]
fn connections_beyond_the_cap_are_refused_and_those_in_go_on() {
    const CAP: usize = 8;
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    // A long header timeout: the idle sockets below stay in for the whole test.
    let cfg = format!("{}max_connections = {CAP}\nheader_timeout_secs = 600\n", server_config("alice", p));
    let _n = Node::start(t.path(), &cfg, p.api);
    let own = format!("127.0.0.1:{}", p.api);
    let status = format!("GET /api/status HTTP/1.1\r\nHost: {own}\r\n\r\n");

    let mut keeper = connect(p.api);
    keeper.write_all(status.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut keeper).0, 200);
    // More idle sockets than the cap holds (the keeper and the harness's pooled
    // connection are in already).
    let flood: Vec<TcpStream> = (0..CAP + 4).map(|_| connect(p.api)).collect();
    let mut probe = connect(p.api);
    let answer = wait_closed(&mut probe, "a connection beyond [api].max_connections");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer:?}");
    // The connection that was in goes on.
    keeper.write_all(status.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut keeper).0, 200, "a connection in before the flood");
    // Once the flood leaves, new connections are served again.
    drop(flood);
    wait_for("a new connection served after the flood left", 30, || {
        let mut s = connect(p.api);
        s.write_all(http("GET", "/api/status", Some(&own), &[], "").as_bytes()).ok()?;
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        got.starts_with("HTTP/1.1 200 ").then_some(())
    });

    // An open WebSocket keeps its place too: no more than the cap are let in.
    drop(keeper);
    let url = format!("ws://127.0.0.1:{}/api/events", p.api);
    let mut sockets = Vec::new();
    let refused = loop {
        assert!(sockets.len() <= CAP, "{} event streams open at once", sockets.len());
        match tungstenite::connect(url.as_str()) {
            Ok((ws, _)) => sockets.push(ws),
            Err(e) => break e,
        }
    };
    match refused {
        tungstenite::Error::Http(resp) => assert_eq!(resp.status().as_u16(), 503),
        e => panic!("the stream beyond the cap: {e}"),
    }
    assert!(sockets.len() + 2 >= CAP, "only {} event streams were let in", sockets.len());
    drop(sockets);
    wait_for("a new connection served after the streams closed", 30, || {
        let mut s = connect(p.api);
        s.write_all(http("GET", "/api/status", Some(&own), &[], "").as_bytes()).ok()?;
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        got.starts_with("HTTP/1.1 200 ").then_some(())
    });
}
