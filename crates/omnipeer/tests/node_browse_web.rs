//! Browse and folder download in the web UI (tests/web/browse.mjs in Debian's headless
//! Chromium): node A (alice) runs the hub and the Soulseek server and shares an album
//! folder; node B (bob) joins both. Through B's page a user browses alice over NMDC,
//! downloads the Album folder whole, then browses her over Soulseek from a search
//! result's source, finds the folder, is warned that its files are on disk already, and
//! downloads it into another place by a destination template. Here, in Rust: the files
//! landed under the template paths with the shared files' SHA-256.
//!
//! Needs chromium and tests/web/node_modules (scripts/install-web-test-deps.sh); skipped
//! when they are missing, except on CI.

mod omni;

use omni::node::{content, free_port, joining_config, server_config, sha256_file, Node, Ports};

#[test]
fn web_ui_browses_a_user_on_both_networks_and_downloads_a_folder() {
    if !omni::web::web_deps_or_skip("web_ui_browses_a_user_on_both_networks_and_downloads_a_folder") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let pa = Ports::free();
    let a_dir = t.path().join("a");
    let files = [
        ("music/Album/01 Morning Intro.mp3", content(400_000, 21)),
        ("music/Album/02 Evening.mp3", content(250_000, 22)),
        ("music/Album/scans/cover.jpg", content(40_000, 23)),
        ("docs/readme.txt", content(1_000, 24)),
    ];
    for (rel, data) in &files {
        let p = a_dir.join("share").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let _a = Node::start(&a_dir, &server_config("alice", pa), pa.api);
    let b_api = free_port();
    let b = Node::start(&t.path().join("b"), &joining_config("bob", pa, b_api, ""), b_api);
    let (ok, lines) = omni::web::run_web_script(
        "browse.mjs",
        &[
            ("OMNI_URL", format!("{}/", b.base)),
            ("OMNI_QUERY", "morning intro".to_owned()),
            ("OMNI_DEST", "{network}/{user}/{folder}".to_owned()),
            ("OMNI_OUT", t.path().join("browser").display().to_string()),
        ],
        std::time::Duration::from_secs(240),
    );
    if !ok {
        let kept = t.keep();
        panic!("browse.mjs failed; files kept in {}\n{}", kept.display(), lines.join("\n"));
    }
    let downloads = b.dir.join("downloads");
    for (rel, _) in files.iter().filter(|(r, _)| r.starts_with("music/Album")) {
        let inside = rel.strip_prefix("music/").unwrap();
        let want = sha256_file(&a_dir.join("share").join(rel));
        for place in [downloads.join(inside), downloads.join("slsk/alice").join(inside)] {
            assert_eq!(sha256_file(&place), want, "{}", place.display());
        }
    }
}
