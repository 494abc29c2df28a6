//! The DCC client commands against the DCC server over loopback, plus raw-socket probes for
//! what a misbehaving peer can send.

use omnipeer_dcc::Services;
use omnipeer_node::dcc::{self, ClientOptions, DccServer, DccServerConfig, DccServerHandle, ServerEvent};
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

struct Fixture {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    handle: DccServerHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Fixture {
    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }
    fn incoming(&self) -> PathBuf {
        self.dir.path().join("incoming")
    }
    fn out(&self) -> PathBuf {
        let p = self.dir.path().join("out");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn addr(&self) -> String {
        self.addr.to_string()
    }
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("server stops").unwrap().unwrap();
    }
}

async fn start_with(tweak: impl FnOnce(&mut DccServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(share.join("music")).unwrap();
    std::fs::write(share.join("readme.txt"), "hello\nworld\n").unwrap();
    std::fs::write(share.join("music/song one.mp3"), pattern(300_000)).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside the share").unwrap();
    let mut cfg = DccServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nick: "bob".into(),
        services: Services::ALL,
        share,
        incoming: dir.path().join("incoming"),
        max_connections: 16,
        handshake_timeout: Duration::from_secs(15),
        fserve_idle_timeout: Duration::from_secs(300),
        transfer_idle_timeout: Duration::from_secs(20),
        max_gets: 5,
        get_expiry: Duration::from_secs(60),
        welcome: None,
        max_incoming_bytes: omnipeer_dcc::limits::DEFAULT_MAX_INCOMING_BYTES,
    };
    tweak(&mut cfg);
    let server = DccServer::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Fixture { dir, addr, handle, shutdown, task }
}

async fn start() -> Fixture {
    start_with(|_| {}).await
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn sha(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn opts(nick: &str) -> ClientOptions {
    let mut o = ClientOptions::new(nick);
    o.reply_timeout = Duration::from_secs(5);
    o.idle_timeout = Duration::from_secs(10);
    o
}

/// Connect, write `line`, read whatever the server answers until it closes (or 3 s pass).
async fn probe(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    out
}

/// Read one `\n`-terminated line.
async fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_lines_flow_both_ways() {
    let f = start().await;
    let mut events = f.handle.take_events().unwrap();
    let handle = f.handle.clone();
    // The server answers every line it receives.
    let answerer = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = events.recv().await {
            if let ServerEvent::ChatLine { nick, text, .. } = ev {
                seen.push(format!("<{nick}> {text}"));
                handle.say(Some(&nick), &format!("you said: {text}"));
                if seen.len() == 2 {
                    return seen;
                }
            }
        }
        seen
    });
    let input = tokio::io::BufReader::new(&b"hello bob\r\n\x02bold\x02 and /me\n"[..]);
    let mut output = Vec::new();
    let server_nick =
        dcc::client::chat(&f.addr(), &opts("alice"), input, &mut output, Duration::from_millis(700)).await.unwrap();
    assert_eq!(server_nick, "bob");
    assert_eq!(answerer.await.unwrap(), vec!["<alice> hello bob", "<alice> \x02bold\x02 and /me"]);
    assert_eq!(String::from_utf8(output).unwrap(), "you said: hello bob\nyou said: \x02bold\x02 and /me\n");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_stores_the_file_and_resumes_a_partial_one() {
    let f = start().await;
    let src = f.dir.path().join("my file.bin");
    std::fs::write(&src, pattern(1_000_003)).unwrap();
    let s = dcc::client::send(&f.addr(), &opts("alice"), &src).await.unwrap();
    assert_eq!((s.resumed_from, s.size, s.name.as_str()), (0, 1_000_003, "my file.bin"));
    assert_eq!(sha(&f.incoming().join("my file.bin")), sha(&src));

    // An interrupted send left 400 000 bytes: the server says 121 bob 400000.
    let partial = f.incoming().join("again.bin");
    let src2 = f.dir.path().join("again.bin");
    std::fs::write(&src2, pattern(777_777)).unwrap();
    std::fs::write(&partial, &pattern(777_777)[..400_000]).unwrap();
    let s = dcc::client::send(&f.addr(), &opts("alice"), &src2).await.unwrap();
    assert_eq!(s.resumed_from, 400_000);
    assert_eq!(sha(&partial), sha(&src2));

    // Already complete: nothing left to send, still a success.
    let s = dcc::client::send(&f.addr(), &opts("alice"), &src2).await.unwrap();
    assert_eq!(s.resumed_from, 777_777);
    assert_eq!(sha(&partial), sha(&src2));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_send_names_quotes_paths_and_overrun() {
    let f = start().await;
    // A quoted name with spaces and a path part; the sender overruns by 5 bytes.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 alice 10 \"C:\\stuff\\two words.txt\"\r\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    s.write_all(b"0123456789ABCDE").await.unwrap();
    let mut acks = Vec::new();
    s.read_to_end(&mut acks).await.unwrap();
    assert_eq!(&acks[acks.len() - 4..], &10u32.to_be_bytes(), "final ack counts the whole file");
    assert_eq!(std::fs::read(f.incoming().join("two words.txt")).unwrap(), b"0123456789");

    // Path escapes: the directory part is stripped, nothing lands outside `incoming`.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 alice 3 ../../escaped.txt\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    s.write_all(b"abc").await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(std::fs::read(f.incoming().join("escaped.txt")).unwrap(), b"abc");
    assert!(!f.dir.path().join("escaped.txt").exists());
    assert!(!f.dir.path().parent().unwrap().join("escaped.txt").exists());

    // Names that are no file name are refused outright.
    for bad in [&b"120 alice 3 ..\n"[..], b"120 alice 3 ../\n", b"120 alice 3 \"\"\n"] {
        assert_eq!(probe(f.addr, bad).await, b"151 rejected\n");
    }
    // A partial file larger than the offered size is a different file: refused.
    std::fs::write(f.incoming().join("big.bin"), [0u8; 100]).unwrap();
    assert_eq!(probe(f.addr, b"120 alice 50 big.bin\n").await, b"151 rejected\n");
    assert_eq!(std::fs::metadata(f.incoming().join("big.bin")).unwrap().len(), 100);
    let entries: Vec<_> = std::fs::read_dir(f.incoming()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_send_of_the_same_name_is_refused_while_the_first_runs() {
    let f = start().await;
    let mut first = TcpStream::connect(f.addr).await.unwrap();
    first.write_all(b"120 alice 1000 same.bin\n").await.unwrap();
    assert_eq!(read_line(&mut first).await, "121 bob 0");
    first.write_all(&[1u8; 10]).await.unwrap();
    assert_eq!(probe(f.addr, b"120 carol 1000 SAME.bin\n").await, b"151 rejected\n");
    first.write_all(&[1u8; 990]).await.unwrap();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).await.unwrap();
    assert_eq!(std::fs::read(f.incoming().join("same.bin")).unwrap(), vec![1u8; 1000]);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fserve_session_lists_pages_and_gets() {
    let f = start().await;
    let cmds = vec![
        "dir".to_string(),
        "cd music".to_string(),
        "get song one.mp3".to_string(),
        "read ../readme.txt".to_string(),
        "cd ../..".to_string(),
        "get ../../secret.txt".to_string(),
    ];
    let mut output = Vec::new();
    let out = f.out();
    let summary = dcc::client::fserve(&f.addr(), &opts("alice"), &out, Some(cmds), tokio::io::empty(), &mut output)
        .await
        .unwrap();
    let text = String::from_utf8(output).unwrap();
    let expected = "Welcome to bob's file server. Type 'help' for commands.\n[\\]\n\
        Listing of \\\n  music\\\n  readme.txt  12\nEnd of list (1 dirs, 1 files)\n[\\]\n\
        [\\music]\n\
        Sending song one.mp3 (300000 bytes). Connect with 130 to receive it.\n[\\music]\n\
        hello\nworld\n-- end of readme.txt --\n[\\music]\n\
        Access denied\n[\\music]\n\
        Access denied\n[\\music]\n\
        Goodbye!\n";
    assert_eq!(text, expected);
    assert_eq!(summary.gets.len(), 1);
    assert_eq!(sha(&out.join("song one.mp3")), sha(&f.share().join("music/song one.mp3")));
    assert!(!out.join("secret.txt").exists());
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fserve_get_resumes_a_partial_download() {
    let f = start().await;
    let out = f.out();
    std::fs::write(out.join("song one.mp3"), &pattern(300_000)[..123_456]).unwrap();
    let summary = dcc::client::fserve(
        &f.addr(),
        &opts("alice"),
        &out,
        Some(vec!["cd music".into(), "get song one.mp3".into()]),
        tokio::io::empty(),
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.gets[0].resumed_from, 123_456);
    assert_eq!(sha(&out.join("song one.mp3")), sha(&f.share().join("music/song one.mp3")));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fserve_reads_commands_from_input_when_none_are_given() {
    let f = start().await;
    let input = tokio::io::BufReader::new(&b"cd music\nls\n"[..]);
    let mut output = Vec::new();
    dcc::client::fserve(&f.addr(), &opts("alice"), &f.out(), None, input, &mut output).await.unwrap();
    let text = String::from_utf8(output).unwrap();
    assert!(text.contains("  song one.mp3\n"), "{text}");
    assert!(text.ends_with("Goodbye!\n"), "{text}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_outside_fserve_is_ignored() {
    let f = start().await;
    // No fserve session ordered it: the server closes without a word.
    assert_eq!(probe(f.addr, b"130 alice readme.txt\n").await, b"");
    // Ordered by alice: carol cannot take it, alice can — once.
    let mut fs = TcpStream::connect(f.addr).await.unwrap();
    fs.write_all(b"110 alice\nget readme.txt\n").await.unwrap();
    let mut seen = String::new();
    while !seen.contains("Connect with 130") {
        seen.push_str(&read_line(&mut fs).await);
    }
    assert_eq!(probe(f.addr, b"130 carol readme.txt\n").await, b"");
    let mut g = TcpStream::connect(f.addr).await.unwrap();
    g.write_all(b"130 alice readme.txt\n").await.unwrap();
    assert_eq!(read_line(&mut g).await, "131 bob 12");
    g.write_all(b"132 alice 6\n").await.unwrap();
    let mut data = [0u8; 6];
    g.read_exact(&mut data).await.unwrap();
    assert_eq!(&data, b"world\n");
    g.write_all(&12u32.to_be_bytes()).await.unwrap();
    drop(g);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(probe(f.addr, b"130 alice readme.txt\n").await, b"", "a get is used once");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_off_and_full_server_answer_150() {
    let f = start_with(|c| {
        c.services = Services { chat: false, send: true, fserve: false };
        c.max_connections = 1;
    })
    .await;
    let err = dcc::client::chat(&f.addr(), &opts("alice"), tokio::io::empty(), &mut Vec::new(), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("150"), "{err}");
    assert_eq!(probe(f.addr, b"110 alice\n").await, b"150 unavailable\n");
    // One connection holds the only slot (once the refused connections above are gone);
    // the next gets 150 even for a service that is on.
    let mut holder = None;
    for _ in 0..50 {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"120 alice 100 slow.bin\n").await.unwrap();
        if read_line(&mut s).await == "121 bob 0" {
            holder = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holder = holder.expect("the slot frees once the refused connections closed");
    assert_eq!(probe(f.addr, b"120 carol 5 other.bin\n").await, b"150 unavailable\n");
    drop(holder);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 carol 5 other.bin\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0", "the slot is free again");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_garbage_connections_are_closed() {
    let f = start_with(|c| c.handshake_timeout = Duration::from_millis(400)).await;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"100 ali").await.unwrap(); // never finishes its line
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await.expect("closed").unwrap();
    assert!(out.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(probe(f.addr, b"GET / HTTP/1.0\r\n\r\n").await, b"");
    assert_eq!(probe(f.addr, &[b'9'; 5000]).await, b"");
    // The server still serves after all that.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"100 alice\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "101 bob");
    f.stop().await;
}

/// Files over 4 GiB: resume just below the 4 GiB mark so the acks wrap mid-transfer, using
/// sparse files so the test stays cheap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_across_the_4gib_mark() {
    let f = start().await;
    let size: u64 = (4 << 30) + (1 << 20);
    let resume: u64 = (4 << 30) - (1 << 20);
    let src = f.dir.path().join("huge.img");
    let tail = pattern(2 << 20);
    {
        let mut file = std::fs::File::create(&src).unwrap();
        file.set_len(size).unwrap();
        file.seek(SeekFrom::Start(resume)).unwrap();
        file.write_all(&tail).unwrap();
    }
    {
        let partial = std::fs::File::create(f.incoming().join("huge.img")).unwrap();
        partial.set_len(resume).unwrap();
    }
    let s = dcc::client::send(&f.addr(), &opts("alice"), &src).await.unwrap();
    assert_eq!(s.resumed_from, resume);
    let dst = f.incoming().join("huge.img");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), size);
    let mut got = vec![0u8; tail.len()];
    let mut file = std::fs::File::open(&dst).unwrap();
    file.seek(SeekFrom::Start(resume)).unwrap();
    std::io::Read::read_exact(&mut file, &mut got).unwrap();
    assert!(got == tail, "the bytes across the 4 GiB mark arrived intact");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_send_keeps_its_partial_file_for_a_resume() {
    let f = start().await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 alice 1000 cut.bin\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    s.write_all(&pattern(1000)[..300]).await.unwrap();
    let mut ack = [0u8; 4];
    loop {
        s.read_exact(&mut ack).await.unwrap();
        if u32::from_be_bytes(ack) == 300 {
            break;
        }
    }
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::metadata(f.incoming().join("cut.bin")).unwrap().len(), 300);
    let src = f.dir.path().join("cut.bin");
    std::fs::write(&src, pattern(1000)).unwrap();
    let sum = dcc::client::send(&f.addr(), &opts("alice"), &src).await.unwrap();
    assert_eq!(sum.resumed_from, 300);
    assert_eq!(sha(&f.incoming().join("cut.bin")), sha(&src));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_sessions() {
    let f = start().await;
    let mut chat = TcpStream::connect(f.addr).await.unwrap();
    chat.write_all(b"100 alice\n").await.unwrap();
    assert_eq!(read_line(&mut chat).await, "101 bob");
    let shutdown = f.shutdown.clone();
    shutdown.cancel();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), chat.read_to_end(&mut rest)).await.expect("closed").unwrap();
    tokio::time::timeout(Duration::from_secs(5), f.task).await.unwrap().unwrap().unwrap();
}

/// Old strict senders send one block and wait for its acknowledgement before the next:
/// every block must be acknowledged promptly, or both ends wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_sender_gets_an_ack_for_every_block() {
    let f = start().await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 oldclient 5000 strict.bin\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    let data = pattern(5000);
    for (i, block) in data.chunks(1024).enumerate() {
        s.write_all(block).await.unwrap();
        let expect = ((i * 1024) + block.len()) as u32;
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                s.read_exact(&mut ack).await.unwrap();
                if u32::from_be_bytes(ack) == expect {
                    break;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no ack for block {i} (expected {expect})"));
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(std::fs::read(f.incoming().join("strict.bin")).unwrap(), data);
    f.stop().await;
}

/// Item 9: a `120` announcing more than the node will take gets the spec's `151` and no
/// file is created (2^64−1 used to be answered `121 bob 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_larger_than_the_maximum_is_rejected() {
    let f = start().await;
    assert_eq!(probe(f.addr, b"120 alice 18446744073709551615 huge.bin\n").await, b"151 rejected\n");
    assert!(!f.incoming().join("huge.bin").exists());
    // A send of a reasonable size still goes through.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 alice 3 small.bin\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    s.write_all(b"abc").await.unwrap();
    let mut acks = Vec::new();
    s.read_to_end(&mut acks).await.unwrap();
    assert_eq!(std::fs::read(f.incoming().join("small.bin")).unwrap(), b"abc");
    f.stop().await;

    // A configured maximum: 1000 bytes pass, 1001 do not.
    let f = start_with(|c| c.max_incoming_bytes = 1000).await;
    assert_eq!(probe(f.addr, b"120 alice 1001 over.bin\n").await, b"151 rejected\n");
    assert!(!f.incoming().join("over.bin").exists());
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 alice 1000 at.bin\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    drop(s);
    f.stop().await;

    // No maximum, but 4 EiB is more than the incoming folder's disk has free.
    let f = start_with(|c| c.max_incoming_bytes = u64::MAX).await;
    assert_eq!(probe(f.addr, format!("120 alice {} disk.bin\n", 1u64 << 62).as_bytes()).await, b"151 rejected\n");
    assert!(!f.incoming().join("disk.bin").exists());
    // The refused name is free again for a send that fits.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"120 alice 2 disk.bin\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "121 bob 0");
    s.write_all(b"ok").await.unwrap();
    let mut acks = Vec::new();
    s.read_to_end(&mut acks).await.unwrap();
    assert_eq!(std::fs::read(f.incoming().join("disk.bin")).unwrap(), b"ok");
    f.stop().await;
}

/// Item 6: a client that trickles bytes of its opening line and never ends it is closed
/// at the handshake timeout (the deadline counts from the accept, not from the last byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_opening_line_is_closed_at_the_handshake_timeout() {
    let f = start_with(|c| c.handshake_timeout = Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    let mut closed = false;
    // One byte every 100 ms for up to 15 s: far longer than the timeout, far below the
    // line limit (so only the timeout can end it).
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(if sent == 0 { b"1" } else { b"0" }).await.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        let mut b = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => panic!("the server answered {:?}", &b[..n]),
            Err(_) => {}
        }
    }
    assert!(closed, "a connection trickling {sent} bytes stayed open for 15 s");
    assert!(sent < omnipeer_dcc::limits::MAX_LINE);
    assert!(started.elapsed() >= Duration::from_millis(900));
    f.stop().await;
}

/// A file server that prints no `[\dir]` prompt (mIRC's output is not ours): it answers
/// `dir` with a listing and `get` with the `Sending` line, then stays silent.
async fn promptless_fserve(files: Vec<(&'static str, Vec<u8>)>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let files = std::sync::Arc::new(files);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut rd = tokio::io::BufReader::new(rd);
                let mut line = String::new();
                use tokio::io::AsyncBufReadExt;
                if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let words: Vec<&str> = line.trim_end().splitn(3, ' ').collect();
                match words[..] {
                    ["110", _] => {
                        wr.write_all(b"111 fake\nWelcome to a file server without prompts.\n").await.unwrap();
                        loop {
                            line.clear();
                            if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let cmd = line.trim_end();
                            let reply = if cmd == "dir" {
                                files.iter().map(|(n, d)| format!("{n} {}\n", d.len())).collect::<String>()
                            } else if let Some(name) = cmd.strip_prefix("get ") {
                                match files.iter().find(|(n, _)| *n == name) {
                                    Some((n, d)) => {
                                        format!("Sending {n} ({} bytes). Connect with 130 to receive it.\n", d.len())
                                    }
                                    None => "No such file\n".into(),
                                }
                            } else if cmd == "exit" {
                                let _ = wr.write_all(b"Goodbye!\n").await;
                                return;
                            } else {
                                "Unknown command\n".into()
                            };
                            wr.write_all(reply.as_bytes()).await.unwrap();
                        }
                    }
                    ["130", _, name] => {
                        let Some((_, data)) = files.iter().find(|(n, _)| *n == name) else { return };
                        wr.write_all(format!("131 fake {}\n", data.len()).as_bytes()).await.unwrap();
                        line.clear();
                        rd.read_line(&mut line).await.unwrap();
                        let pos: usize = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
                        wr.write_all(&data[pos..]).await.unwrap();
                        // The receiver acks and closes.
                        let mut acks = Vec::new();
                        let _ = rd.read_to_end(&mut acks).await;
                    }
                    _ => {}
                }
            });
        }
    });
    addr
}

/// Item 13: `dcc fserve --cmd …` against a server that prints no prompt paces the
/// commands by a short quiet period and still fetches every `get`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fserve_commands_run_against_a_server_without_prompts() {
    let a = pattern(70_000);
    let b = b"just text\n".to_vec();
    let addr = promptless_fserve(vec![("a.bin", a.clone()), ("b.txt", b.clone())]).await;
    let dir = tempfile::tempdir().unwrap();
    let cmds = vec!["dir".to_owned(), "get a.bin".to_owned(), "get b.txt".to_owned()];
    let mut output = Vec::new();
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        dcc::client::fserve(&addr.to_string(), &opts("alice"), dir.path(), Some(cmds), &b""[..], &mut output),
    )
    .await
    .expect("the session ends")
    .expect("the session succeeds");
    let out = String::from_utf8(output).unwrap();
    assert!(out.contains("a.bin 70000") && out.contains("Sending b.txt (10 bytes)"), "{out}");
    assert_eq!(summary.gets.len(), 2, "{out}");
    assert!(std::fs::read(dir.path().join("a.bin")).unwrap() == a);
    assert_eq!(std::fs::read(dir.path().join("b.txt")).unwrap(), b);
}

/// A `[dcc].share` that does not exist is a warning, not a folder made for it (issue 12):
/// the server comes up, serves chats and sends, and leaves the path alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_share_folder_is_not_created_and_the_server_runs() {
    let missing = std::env::temp_dir().join(format!("omnipeer-no-such-share-{}", std::process::id()));
    let m = missing.clone();
    let f = start_with(move |c| c.share = m).await;
    assert!(!missing.exists(), "the missing share folder {} was created", missing.display());
    let input = tokio::io::BufReader::new(&b"hello\n"[..]);
    let mut output = Vec::new();
    let nick =
        dcc::client::chat(&f.addr(), &opts("alice"), input, &mut output, Duration::from_millis(300)).await.unwrap();
    assert_eq!(nick, "bob");
    assert!(!missing.exists());
    f.stop().await;
}
