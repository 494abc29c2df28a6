//! Browsing a 100,000-file share: what the node adds to the raw file list before the web
//! UI can show the share's top level. An NMDC file list of FILES files (1,000 albums of
//! 100 tracks under 10 artists' folders, as `omnipeer_nmdc::filelist` writes it) is read
//! the way `GET /api/browse` reads it: decompressed and parsed within the parser's limits,
//! turned into the tree with folder sizes and counts (`app::browse::Folder`), and the
//! first answer the Browse view asks for (`depth=1`) serialized to JSON; then a folder
//! opened from the cached browse. The baseline, measured in the same run, is the bare
//! bzip2 decompression of the list (what any client must do with a list it downloaded);
//! on loopback the list's transfer itself is a few milliseconds.
//!
//! Usage: `cargo build --release -p omnipeer-bench && target/release/node-browse [FILES]`

use omnipeer_nmdc::filelist::{decompress_bz2, Directory, File, FileList, Limits};
use omnipeer_nmdc::tth::Tth;
use omnipeer_node::app::browse::Folder;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let files: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let mut list = FileList::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let albums = files.div_ceil(100);
    let mut artists: Vec<Directory> = (0..10)
        .map(|a| Directory { name: format!("Artist {a}"), incomplete: false, dirs: vec![], files: vec![] })
        .collect();
    let mut n = 0;
    for al in 0..albums {
        let mut d = Directory { name: format!("Album {al:05}"), incomplete: false, dirs: vec![], files: vec![] };
        for t in 0..100 {
            if n == files {
                break;
            }
            let mut h = [0u8; 24];
            h[..8].copy_from_slice(&(n as u64).to_le_bytes());
            d.files.push(File {
                name: format!("{t:02} Track number {n}.flac"),
                size: 20_000_000 + n as u64,
                tth: Tth(h),
            });
            n += 1;
        }
        artists[al % 10].dirs.push(d);
    }
    list.dirs.push(Directory { name: "music".into(), incomplete: false, dirs: artists, files: vec![] });
    let bz2 = list.to_bz2()?;
    eprintln!("a list of {files} files: {} KiB compressed", bz2.len() / 1024);

    let t = Instant::now();
    let xml = decompress_bz2(&bz2, &Limits::default())?;
    let baseline = t.elapsed();

    let t = Instant::now();
    let parsed = FileList::from_bz2(&bz2)?;
    let parse = t.elapsed();
    let t = Instant::now();
    let root = Folder::from_nmdc(&parsed);
    let tree = t.elapsed();
    let t = Instant::now();
    let first = serde_json::to_vec(&root.pruned(1))?;
    let answer = t.elapsed();
    let t = Instant::now();
    let album = root.find("music\\Artist 3\\Album 00013").map(|f| f.pruned(1));
    let folder = serde_json::to_vec(&album)?;
    let open = t.elapsed();
    anyhow::ensure!(root.files == files as u64, "the tree holds {} files", root.files);

    let total = parse + tree + answer;
    println!("browse of a {files}-file share ({} KiB of XML):", xml.len() / 1024);
    println!("  baseline: bzip2 decompression            {:>8.1} ms", ms(baseline));
    println!("  parse (decompress + XML, limits)         {:>8.1} ms  {:>5.1}x", ms(parse), ms(parse) / ms(baseline));
    println!("  tree with sizes and counts               {:>8.1} ms  {:>5.1}x", ms(tree), ms(tree) / ms(baseline));
    println!(
        "  first answer (depth=1, {:>6} bytes JSON) {:>8.1} ms  {:>5.1}x",
        first.len(),
        ms(answer),
        ms(answer) / ms(baseline)
    );
    println!("  list to first answer, in all             {:>8.1} ms  {:>5.1}x", ms(total), ms(total) / ms(baseline));
    println!("  a folder from the cached browse ({:>5} B) {:>8.3} ms", folder.len(), ms(open));
    Ok(())
}
