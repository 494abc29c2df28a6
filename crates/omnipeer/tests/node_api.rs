//! The node's HTTP API: a bearer token off loopback, an OpenAPI document that lists every
//! route (and docs/api.md that describes each), every listed route served, JSON errors,
//! the WebSocket event stream, share rescans.

mod omni;

use omni::node::{server_config, wait_for, Node, Ports};
use serde_json::{json, Value};

#[test]
fn off_loopback_the_api_requires_the_generated_bearer_token() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = server_config("alice", p).replace(&format!("127.0.0.1:{}\"\n", p.api), &format!("0.0.0.0:{}\"\n", p.api));
    assert!(cfg.contains("0.0.0.0"), "{cfg}");
    let n = Node::start(t.path(), &cfg, p.api);
    let token = n.token.clone().expect("a token was generated into the data dir");
    assert!(token.len() >= 24, "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path().join("api-token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is private");
    }
    let (code, e) = n.get_with("/api/status", None);
    assert_eq!(code, 401);
    assert!(e["error"].as_str().unwrap().contains("bearer token"), "{e}");
    assert_eq!(n.get_with("/api/transfers", Some("wrong")).0, 401);
    assert_eq!(n.get_with("/api/status", Some(&token)).0, 200);
    assert_eq!(n.get_with(&format!("/api/networks?token={token}"), None).0, 200);
    // The WebSocket too.
    let url = format!("ws://127.0.0.1:{}/api/events", p.api);
    assert!(tungstenite::connect(url.as_str()).is_err());
    assert!(tungstenite::connect(format!("{url}?token={token}").as_str()).is_ok());
    // The description is public.
    assert_eq!(n.get_with("/api/openapi.json", None).0, 200);
    // The CLI finds the token in the data dir by itself.
    let api = format!("127.0.0.1:{}", p.api);
    let (code, out, err) = n.cli(&["status", "--api", &api]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node alice"), "{out}");
    let (code, _, err) = n.cli(&["status", "--api", &api, "--token", "wrong"]);
    assert_ne!(code, 0);
    assert!(err.contains("bearer token") && err.contains("--token"), "{err}");

    // On loopback with no token configured, none is asked for; a configured one is.
    let t2 = tempfile::tempdir().unwrap();
    let p2 = Ports::free();
    let cfg2 = format!("{}token = \"s3cret-token\"\n", server_config("carol", p2));
    std::fs::create_dir_all(t2.path()).unwrap();
    std::fs::write(t2.path().join("api-token"), "s3cret-token").unwrap();
    let n2 = Node::start(t2.path(), &cfg2, p2.api);
    assert_eq!(n2.get_with("/api/status", None).0, 401);
    assert_eq!(n2.get_with("/api/status", Some("s3cret-token")).0, 200);
}

#[test]
fn openapi_lists_every_route_docs_describe_them_and_each_is_served() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    std::fs::create_dir_all(t.path().join("share")).unwrap();
    std::fs::write(t.path().join("share/first.txt"), "one").unwrap();
    let n = Node::start(t.path(), &server_config("alice", p), p.api);
    assert_eq!(n.token, None);
    let (code, doc) = n.get_status("/api/openapi.json");
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, _) in omnipeer_node::api::ROUTES {
        let op = &paths[*path][*method];
        assert!(op.is_object(), "{method} {path} missing from openapi.json");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
        // Every $ref resolves.
        for r in op.to_string().split("#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        let last = path.rsplit('/').next().unwrap();
        assert!(
            docs.contains(&format!("### {} {path}", method.to_uppercase())) || docs.contains(&format!("/{last}")),
            "{path} not in docs/api.md"
        );
        if *path == "/api/events" {
            continue;
        }
        let concrete = path.replace("{id}", "999999");
        let (code, ct, body) = n.request(method, &concrete, "{}");
        assert_ne!(code, 405, "{method} {path}");
        assert!(ct.starts_with("application/json"), "{method} {path}: {ct} {body}");
        if code >= 400 {
            let v: Value = serde_json::from_str(&body).unwrap();
            let e = v["error"].as_str().unwrap_or_else(|| panic!("{method} {path}: {body}"));
            assert!(!e.starts_with("no route"), "{method} {path} is not routed");
        }
    }
    // And the router serves nothing the document does not list.
    let (code, _, body) = n.request("get", "/api/nothing", "");
    assert_eq!(code, 404);
    assert!(body.contains("no route"), "{body}");
    // Bad bodies are 400 with a JSON error.
    let (code, ct, body) = n.request("post", "/api/searches", "{\"nope\": 1}");
    assert_eq!((code, ct.as_str()), (400, "application/json"), "{body}");

    // Events: a chat line and a rescan arrive on the WebSocket.
    std::thread::sleep(std::time::Duration::from_millis(300));
    n.wait_online();
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/api/events", p.api).as_str()).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    }
    let mut next_event = |want: &dyn Fn(&Value) -> bool| loop {
        let m = ws.read().expect("an event within 30 s");
        let Ok(text) = m.to_text() else { continue };
        let Ok(ev) = serde_json::from_str::<Value>(text) else { continue };
        if want(&ev) {
            return ev;
        }
    };
    let (code, _) = n.post("/api/chats/messages", json!({"chat": "nmdc:hub", "text": "over the hub"}));
    assert_eq!(code, 201);
    let ev = next_event(&|ev| ev["type"] == "chat");
    assert_eq!(ev["message"]["text"], "over the hub", "{ev}");
    assert_eq!(ev["message"]["own"], true, "{ev}");
    std::fs::write(t.path().join("share/second.txt"), "two").unwrap();
    assert_eq!(n.post("/api/shares/rescan", json!({})).0, 202);
    next_event(&|ev| ev["type"] == "shares" && ev["files"] == 2);
    let files = wait_for("the rescanned index", 20, || {
        let f = n.get("/api/shares/files");
        (f.as_array()?.len() == 2).then_some(f)
    });
    assert!(files.as_array().unwrap().iter().all(|f| f["tth"].as_str().is_some_and(|t| t.len() == 39)), "{files}");
}

#[test]
fn a_file_added_to_the_share_is_picked_up_by_itself_without_rehashing_the_others() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    std::fs::create_dir_all(t.path().join("share/sub")).unwrap();
    std::fs::write(t.path().join("share/one.bin"), vec![1u8; 300_000]).unwrap();
    std::fs::write(t.path().join("share/sub/two.bin"), vec![2u8; 300_000]).unwrap();
    let cfg = format!("{}[share]\nwatch_delay_secs = 1\n", server_config("alice", p));
    let n = Node::start(t.path(), &cfg, p.api);
    assert_eq!(n.get("/api/shares")["files"], 2);
    std::fs::write(t.path().join("share/sub/three.bin"), vec![3u8; 300_000]).unwrap();
    let line = n.omni.wait_line_containing("share rescanned files=3 cached");
    assert!(line.contains("cached=2"), "only the new file is hashed: {line}");
    wait_for("the new file in the index", 20, || (n.get("/api/shares")["files"] == 3).then_some(()));
    let files = n.get("/api/shares/files");
    assert!(files.as_array().unwrap().iter().any(|f| f["path"].as_str().unwrap().ends_with("three.bin")), "{files}");
}

/// A POST whose body the handler ignores (the transfer actions) must not cost the client
/// its keep-alive connection: the body arriving after the headers, many requests in a
/// row on one connection all get their answer.
#[test]
fn requests_with_unread_bodies_keep_the_connection_alive() {
    use std::io::{Read, Write};
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let _n = Node::start(t.path(), &server_config("alice", p), p.api);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.api)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    for i in 0..40 {
        let action = ["pause", "resume", "cancel", "retry"][i % 4];
        let head = format!(
            "POST /api/transfers/999999/{action} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
            p.api
        );
        s.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.write_all(b"{}").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("no transfer 999999") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the node closed the connection after {i} requests: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
}

/// Settings changed through the API: validated all or nothing, kept across a restart
/// over the configuration file, and reset to the file's value with null.
#[test]
fn settings_change_persist_and_reset() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let cfg = format!("{}[transfers]\nmax_download_kib = 0\nglobal_slots = 3\n", server_config("alice", p));
    let n = Node::start(t.path(), &cfg, p.api);
    let get = |n: &Node, key: &str| -> serde_json::Value {
        n.get("/api/settings").as_array().unwrap().iter().find(|s| s["key"] == key).cloned().unwrap()
    };
    assert_eq!(get(&n, "global_slots")["value"], 3);
    assert_eq!(get(&n, "max_download_kib")["overridden"], false);

    let (code, _, body) = n.request("PUT", "/api/settings", r#"{"max_download_kib": 256, "global_slots": 2}"#);
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(&n, "max_download_kib")["value"], 256);
    assert_eq!(get(&n, "global_slots")["value"], 2);
    for bad in [r#"{"global_slots": 0}"#, r#"{"global_slots": 5, "bogus": 1}"#, r#"{"max_retries": "3"}"#] {
        let (code, _, body) = n.request("PUT", "/api/settings", bad);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    assert_eq!(get(&n, "global_slots")["value"], 2, "a refused change changes nothing");

    drop(n);
    let n = Node::restart(t.path(), p.api);
    let s = get(&n, "max_download_kib");
    assert_eq!(
        (s["value"].as_u64(), s["config"].as_u64(), s["overridden"].as_bool()),
        (Some(256), Some(0), Some(true)),
        "{s}"
    );
    let (code, _, _) = n.request("PUT", "/api/settings", r#"{"max_download_kib": null}"#);
    assert_eq!(code, 200);
    let s = get(&n, "max_download_kib");
    assert_eq!((s["value"].as_u64(), s["overridden"].as_bool()), (Some(0), Some(false)), "{s}");
    assert_eq!(get(&n, "global_slots")["value"], 2);
}
