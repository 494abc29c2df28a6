//! Searching like Nicotine+, slskd and AirDC++ users do, in the web UI (Debian's headless
//! Chromium through playwright-core): node A (alice) runs the hub and the Soulseek server
//! and shares files; node B (bob) joins both, and B's page is driven.
//! - tests/web/search.mjs: the search's state ("searching…", "finished", "no results"),
//!   where it went (never Tox), each source on its own row with its own figures, and the
//!   filter bar narrowing results through the API.
//! - tests/web/wishlist.mjs: a search saved as a wishlist item from the Search view finds
//!   a file A shares afterwards, when run with its Run button, and downloads it by itself;
//!   here, in Rust: that file is in B's downloads with A's SHA-256, the one the item's
//!   filter refuses is not.
//!
//! Needs chromium and tests/web/node_modules (scripts/install-web-test-deps.sh); skipped
//! when they are missing, except on CI.

mod omni;

use omni::node::{content, free_port, joining_config, server_config, sha256_file, Node, Ports};
use std::path::Path;

fn two_nodes(t: &Path, files: &[(&str, Vec<u8>)]) -> (Node, Node) {
    let pa = Ports::free();
    let a_dir = t.join("a");
    for (rel, data) in files {
        let p = a_dir.join("share").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let b_api = free_port();
    let b = Node::start(&t.join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    (a, b)
}

#[test]
fn web_ui_search_shows_its_state_per_source_figures_and_filters() {
    if !omni::web::web_deps_or_skip("web_ui_search_shows_its_state_per_source_figures_and_filters") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_a, b) = two_nodes(
        t.path(),
        &[("docs/beta notes.txt", content(200_000, 2)), ("docs/beta notes.pdf", content(50_000, 3))],
    );
    let (ok, lines) = omni::web::run_web_script(
        "search.mjs",
        &[("OMNI_URL", format!("{}/", b.base)), ("OMNI_OUT", t.path().join("browser").display().to_string())],
        std::time::Duration::from_secs(300),
    );
    if !ok {
        let kept = t.keep();
        panic!("search.mjs failed; files kept in {}\n{}", kept.display(), lines.join("\n"));
    }
}

#[test]
fn web_ui_wishlist_item_downloads_a_file_shared_after_it_was_saved() {
    if !omni::web::web_deps_or_skip("web_ui_wishlist_item_downloads_a_file_shared_after_it_was_saved") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(t.path(), &[("docs/readme.txt", content(1_000, 1))]);
    let (ok, lines) = omni::web::run_web_script(
        "wishlist.mjs",
        &[
            ("OMNI_URL", format!("{}/", b.base)),
            ("OMNI_A_API", a.base.clone()),
            ("OMNI_A_TOKEN", a.token.clone().unwrap_or_default()),
            ("OMNI_A_SHARE", a.dir.join("share").display().to_string()),
            ("OMNI_OUT", t.path().join("browser").display().to_string()),
        ],
        std::time::Duration::from_secs(300),
    );
    if !ok {
        let kept = t.keep();
        panic!("wishlist.mjs failed; files kept in {}\n{}", kept.display(), lines.join("\n"));
    }
    // What the page showed happened: the FLAC is in B's downloads, byte for byte; the MP3
    // the item's filter refuses was not fetched.
    let downloads = b.dir.join("downloads");
    assert_eq!(
        sha256_file(&downloads.join("zeta track.flac")),
        sha256_file(&a.dir.join("share/music/zeta track.flac"))
    );
    assert!(!downloads.join("zeta track.mp3").exists());
    let w = b.get("/api/wishlist");
    assert_eq!(w.as_array().map(Vec::len), Some(1), "the second item was removed: {w}");
    assert_eq!(
        (&w[0]["query"], &w[0]["filters"]["ext"], &w[0]["auto_download"]),
        (&"zeta track".into(), &"flac".into(), &true.into())
    );
}
