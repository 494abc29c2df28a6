//! Client-to-client connections over loopback: our downloader against our uploader
//! ($ADCGET by TTH, by path, the file list, resume, slots), and a raw legacy peer that
//! talks like microdc2 ($Get … $Send, one $Send only).

use omnipeer_nmdc::handshake::Role;
use omnipeer_nmdc::transfer::Identifier;
use omnipeer_nmdc::tth::Tth;
use omnipeer_node::nmdc::cc::{self, DownloadJob, UploadContext};
use omnipeer_node::nmdc::share::DcShare;
use omnipeer_node::store::Store;
use omnipeer_node::upload::Uploads;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 1000) as u8).collect()
}

fn sha(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

struct Sharer {
    dir: tempfile::TempDir,
    ctx: UploadContext,
    big_tth: Tth,
}

fn sharer(slots: usize) -> Sharer {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("pub");
    std::fs::create_dir_all(share.join("sub")).unwrap();
    std::fs::write(share.join("sub/big file.bin"), pattern(3_000_000)).unwrap();
    std::fs::write(share.join("small.txt"), b"tiny\n").unwrap();
    let mut store = Store::open(&dir.path().join("state.sqlite")).unwrap();
    let (s, _) = DcShare::build(&[share], &mut store, "CID").unwrap();
    let big_tth = s.by_path("pub\\sub\\big file.bin").unwrap().tth;
    let ctx = UploadContext {
        share: Arc::new(Mutex::new(Arc::new(s))),
        store: Arc::new(Mutex::new(store)),
        uploads: Uploads::new(slots, Default::default(), 0),
        channel: "nmdc".into(),
    };
    Sharer { dir, ctx, big_tth }
}

/// The sharer listens; the downloader connects (as after our `$RevConnectToMe`).
async fn fetch(ctx: UploadContext, what: Identifier, out: PathBuf) -> anyhow::Result<cc::Downloaded> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (peer, outcome, leftover) = cc::handshake(&mut s, Role::Listener, "sharer", false, None).await.unwrap();
        assert_eq!(outcome, omnipeer_nmdc::command::DirectionOutcome::TheyDownload);
        cc::serve_uploads(s, &peer, leftover, ctx).await
    });
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (peer, _, leftover) = cc::handshake(&mut s, Role::Connector, "getter", true, Some("sharer")).await?;
    let job = DownloadJob {
        what,
        out,
        progress: Arc::new(AtomicU64::new(0)),
        total: Arc::new(AtomicU64::new(0)),
        control: Default::default(),
    };
    let r = cc::download(s, &peer, leftover, &job).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_by_tth_path_and_file_list_with_resume() {
    let sh = sharer(2);
    let out = sh.dir.path().join("dl");
    std::fs::create_dir_all(&out).unwrap();
    let src = sh.dir.path().join("pub/sub/big file.bin");

    let d = fetch(sh.ctx.clone(), Identifier::Tth(sh.big_tth), out.join("a.bin")).await.unwrap();
    assert_eq!((d.size, d.resumed_from, d.peer.as_str()), (3_000_000, 0, "sharer"));
    assert_eq!(sha(&out.join("a.bin")), sha(&src));
    assert_eq!(cc::file_tth(&out.join("a.bin")).unwrap(), sh.big_tth);

    // Resume: a third of the file is already here.
    std::fs::write(out.join("b.bin"), &pattern(3_000_000)[..1_000_000]).unwrap();
    let d = fetch(sh.ctx.clone(), Identifier::Path("/pub/sub/big file.bin".into()), out.join("b.bin")).await.unwrap();
    assert_eq!(d.resumed_from, 1_000_000);
    assert_eq!(sha(&out.join("b.bin")), sha(&src));

    let d = fetch(sh.ctx.clone(), Identifier::FileList, out.join("files.xml.bz2")).await.unwrap();
    assert!(d.size > 0);
    let list = omnipeer_nmdc::filelist::FileList::from_bz2(&std::fs::read(out.join("files.xml.bz2")).unwrap()).unwrap();
    assert!(list.files().iter().any(|(p, f)| p.ends_with("big file.bin") && f.tth == sh.big_tth));

    let err = fetch(sh.ctx.clone(), Identifier::Path("/pub/nope.bin".into()), out.join("c.bin")).await.unwrap_err();
    assert!(format!("{err:#}").contains("File Not Available"), "{err:#}");
    let err = fetch(sh.ctx.clone(), Identifier::Path("/../../etc/passwd".into()), out.join("d.bin")).await.unwrap_err();
    assert!(format!("{err:#}").contains("Not Available"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_slot_means_maxed_out_but_small_files_still_go() {
    let sh = sharer(0);
    let out = sh.dir.path().join("dl");
    std::fs::create_dir_all(&out).unwrap();
    let err = fetch(sh.ctx.clone(), Identifier::Tth(sh.big_tth), out.join("a.bin")).await.unwrap_err();
    assert!(format!("{err:#}").contains("MaxedOut"), "{err:#}");
    // MiniSlots: the file list and small files need no slot.
    fetch(sh.ctx.clone(), Identifier::FileList, out.join("l.bz2")).await.unwrap();
    fetch(sh.ctx.clone(), Identifier::Path("/pub/small.txt".into()), out.join("s.txt")).await.unwrap();
    assert_eq!(std::fs::read(out.join("s.txt")).unwrap(), b"tiny\n");
}

/// microdc2 as a downloader: it connects, sends `$MyNick`/`$Lock`, `$Supports`,
/// `$Direction Download`, `$Key`, then `$Get path$1`, one `$Send`, and reads the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_get_with_a_single_send_streams_the_whole_file() {
    let sh = sharer(2);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ctx = sh.ctx.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (peer, _, leftover) = cc::handshake(&mut s, Role::Listener, "sharer", false, None).await.unwrap();
        cc::serve_uploads(s, &peer, leftover, ctx).await
    });
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"$MyNick carol|$Lock EXTENDEDPROTOCOLABCABCABCABCABCABCA Pk=MICRODCABCABCABCABCAB|").await.unwrap();
    // Read the sharer's $MyNick/$Lock and its $Supports/$Direction/$Key.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("$Key ") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("$MyNick sharer|$Lock EXTENDEDPROTOCOL"), "{text}");
    let lock = text.split("$Lock ").nth(1).unwrap().split(" Pk=").next().unwrap().to_owned();
    let key = omnipeer_nmdc::lock::lock_to_key(lock.as_bytes()).unwrap();
    let mut hello = b"$Supports MiniSlots XmlBZList ADCGet TTHF|$Direction Download 17767|$Key ".to_vec();
    hello.extend_from_slice(&key);
    hello.extend_from_slice(b"|$Get pub\\sub\\big file.bin$1|");
    s.write_all(&hello).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"|") || !String::from_utf8_lossy(&got).contains("$FileLength") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).ends_with("$FileLength 3000000|"));
    s.write_all(b"$Send|").await.unwrap();
    let mut data = vec![0u8; 3_000_000];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut data))
        .await
        .expect("whole file after one $Send")
        .unwrap();
    assert!(data == pattern(3_000_000));
    drop(s);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
