//! DCC chats in the node's chat model: someone runs `omnipeer dcc chat` (as mIRC's
//! `/dcc chat`) against the node's DCC server; the lines show up in `dcc:chat:NICK`
//! through the API, a line sent through the API reaches them, and the chat is listed as
//! open, then closed with its history kept.

mod omni;

use omni::node::{server_config, wait_for, Node, Ports};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

#[test]
fn a_dcc_chat_with_the_node_is_in_its_chat_model_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::free();
    let n = Node::start(t.path(), &server_config("alice", p), p.api);
    let nets = n.get("/api/status")["networks"].clone();
    let dcc =
        nets.as_array().unwrap().iter().find(|x| x["name"] == "dcc").unwrap()["address"].as_str().unwrap().to_owned();

    let mut bob = Command::new(omni::BIN)
        .args(["--data-dir"])
        .arg(t.path().join("bob"))
        .args(["dcc", "chat", &dcc, "--nick", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut bob_in = bob.stdin.take().unwrap();
    writeln!(bob_in, "hello from bob").unwrap();
    bob_in.flush().unwrap();

    let chat_of =
        |id: &str| -> Option<Value> { n.get("/api/chats").as_array()?.iter().find(|c| c["id"] == id).cloned() };
    let line = wait_for("bob's line in dcc:chat:bob", 20, || {
        let m = n.get("/api/chats/messages?chat=dcc:chat:bob");
        m.as_array()?.iter().find(|x| x["text"] == "hello from bob").cloned()
    });
    assert_eq!((line["nick"].as_str(), line["own"].as_bool()), (Some("bob"), Some(false)), "{line}");
    assert_eq!(chat_of("dcc:chat:bob").unwrap()["online"], true);

    let (code, m) = n.post("/api/chats/messages", json!({"chat": "dcc:chat:bob", "text": "hi bob, alice here"}));
    assert_eq!(code, 201, "{m}");
    assert_eq!(m["own"], true);
    let mut out = BufReader::new(bob.stdout.take().unwrap());
    let mut reply = String::new();
    out.read_line(&mut reply).unwrap();
    assert_eq!(reply, "hi bob, alice here\n");

    // bob leaves: the chat stays with its history, marked closed; saying more is refused
    drop(bob_in);
    assert!(bob.wait().unwrap().success());
    wait_for("the chat closed", 20, || (chat_of("dcc:chat:bob")?["online"] == false).then_some(()));
    let all = n.get("/api/chats/messages?chat=dcc:chat:bob");
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let (code, e) = n.post("/api/chats/messages", json!({"chat": "dcc:chat:bob", "text": "still there?"}));
    assert_eq!(code, 503, "{e}");
}
