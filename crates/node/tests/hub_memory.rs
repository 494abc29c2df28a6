//! What a logged-in, idle user costs the hub in heap memory (issue 14: at most 4 KiB per
//! user in all, PtokaX's figure, of which the kernel's socket and the allocator's slack
//! take their share). In a test binary of its own, because it replaces the global
//! allocator with one that counts what the hub's threads hold.
//!
//! The hub runs on a runtime of its own whose threads are marked; the users run on the
//! test's runtime, so their buffers are not counted. 1,000 users log in (each reading
//! everything, as clients do), then the live heap the hub holds for them is divided by
//! their number. Before the driver wrote broadcasts itself, every connection's task (a
//! reader and a writer joined, with their wake-up futures and cancellation tokens) was a
//! 2.8 KiB allocation of its own, and a user cost about 3.9 KiB of heap.

use omnipeer_nmdc::hub::HubConfig;
use omnipeer_node::nmdc::{HubServer, HubServerConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Live heap bytes allocated (and not yet freed) by the hub's threads.
static HUB_BYTES: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// This thread is one of the hub runtime's.
    static ON_HUB: Cell<bool> = const { Cell::new(false) };
}

fn on_hub() -> bool {
    ON_HUB.try_with(Cell::get).unwrap_or(false)
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && on_hub() {
            HUB_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && on_hub() {
            HUB_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if on_hub() {
            HUB_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && on_hub() {
            HUB_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const USERS: usize = 1000;

async fn read_until(s: &mut TcpStream, needle: &[u8]) {
    let mut buf = vec![0u8; 1 << 16];
    let mut window: Vec<u8> = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed waiting for {}", String::from_utf8_lossy(needle));
            window.extend_from_slice(&buf[..n]);
            if window.windows(needle.len()).any(|w| w == needle) {
                return;
            }
            let keep = window.len().saturating_sub(needle.len());
            window.drain(..keep);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {} in time", String::from_utf8_lossy(needle)))
}

async fn login(addr: SocketAddr, nick: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    read_until(&mut s, b"$HubName").await;
    s.write_all(format!("$Supports NoGetINFO NoHello|$Key x|$ValidateNick {nick}|").as_bytes()).await.unwrap();
    read_until(&mut s, format!("$Hello {nick}|").as_bytes()).await;
    s.write_all(
        format!("$Version 1,0091|$MyINFO $ALL {nick} x<ncdc V:1.23.1,M:A,H:1/0/0,S:10>$ $100\x01$$0$|").as_bytes(),
    )
    .await
    .unwrap();
    s
}

#[test]
fn an_idle_logged_in_user_costs_the_hub_little_heap() {
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| ON_HUB.with(|h| h.set(true)))
        .enable_all()
        .build()
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let db = t.path().join("hub.sqlite");
    let hub_stop = stop.clone();
    let hub_task = hub_rt.spawn(async move {
        let server = HubServer::bind(HubServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            // Every user comes from 127.0.0.1 here.
            hub: HubConfig {
                max_users: USERS + 10,
                max_users_per_ip: 0,
                max_logins_per_ip_per_minute: 0,
                ..Default::default()
            },
            db,
            register: Vec::new(),
        })
        .await
        .unwrap();
        addr_tx.send(server.local_addr()).unwrap();
        server.run(hub_stop).await.unwrap();
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(60)).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // One user first: the hub's one-time allocations (buffers that grow once) are not
        // counted per user.
        let mut watcher = login(addr, "watcher").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = HUB_BYTES.load(Ordering::Relaxed);
        let mut readers = Vec::new();
        for i in 0..USERS {
            let mut s = login(addr, &format!("user{i:04}")).await;
            // Each reads everything, as a client does.
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
        read_until(&mut watcher, format!("$MyINFO $ALL user{:04} ", USERS - 1).as_bytes()).await;
        // Everything delivered and the broadcast log swept (at least once a second).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = HUB_BYTES.load(Ordering::Relaxed);
        let per_user = (after - before) as f64 / USERS as f64;
        eprintln!(
            "the hub's heap grew by {} KiB for {USERS} idle users: {per_user:.0} B per user",
            (after - before) / 1024
        );
        assert!(per_user < 2048.0, "an idle user costs the hub {per_user:.0} B of heap");
        drop(watcher);
        for r in readers {
            r.abort();
        }
    });
    stop.cancel();
    hub_rt.block_on(hub_task).unwrap();
}
