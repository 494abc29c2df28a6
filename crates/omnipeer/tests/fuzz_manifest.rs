//! The fuzz crate (`fuzz/`, excluded from the workspace and built only by cargo-fuzz)
//! must stay buildable: its manifest parses and every fuzz target in `fuzz/fuzz_targets`
//! has exactly one `[[bin]]` entry. (A bad merge once fused two entries, which broke every
//! `cargo fuzz run` while the workspace build stayed green.)

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn every_fuzz_target_has_one_bin_entry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("fuzz/Cargo.toml does not parse: {e}"));
    let bins = manifest.get("bin").and_then(|b| b.as_array()).expect("[[bin]] entries");
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in bins {
        let name = b.get("name").and_then(|v| v.as_str()).expect("bin name").to_owned();
        let path = b.get("path").and_then(|v| v.as_str()).expect("bin path").to_owned();
        assert!(root.join(&path).is_file(), "[[bin]] {name}: {path} does not exist");
        assert_eq!(path, format!("fuzz_targets/{name}.rs"), "[[bin]] {name} points at {path}");
        by_path.entry(path).or_default().push(name);
    }
    let mut targets = 0;
    for e in std::fs::read_dir(root.join("fuzz_targets")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue; // shared modules' folders
        }
        let src = std::fs::read_to_string(&p).unwrap();
        if !src.contains("fuzz_target!") {
            continue; // a shared module
        }
        targets += 1;
        let rel = format!("fuzz_targets/{}", p.file_name().unwrap().to_string_lossy());
        assert_eq!(by_path.get(&rel).map(Vec::len), Some(1), "{rel}: needs exactly one [[bin]] entry");
    }
    assert_eq!(targets, by_path.len(), "every [[bin]] is a fuzz target");
}
