//! What an account created in a run leaves behind in the Soulseek server core once its
//! user is gone (issue 14: "RSS after they go within 10% of before"). Every account that
//! logged in once stays known to the server; kept as one allocation per account (a name),
//! those small blocks, allocated among the connections' buffers during a login storm,
//! kept the heap's pages from going back to the system after everybody left (the server
//! stayed ~2 KiB per account above its RSS before: bench/src/slsk_server.rs). Counted with
//! a counting allocator, in a test binary of its own (one test: nothing else allocates
//! beside it).

use omnipeer_slsk::central::{Central, CentralConfig, CentralEvent, ConnId, LoginDecision, Output};
use omnipeer_slsk::ServerRequest;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Live heap bytes and blocks (allocated and not yet freed).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

/// Answer the machine's questions as the driver would (every password is right) and drop
/// what it sends.
fn pump(c: &mut Central, now: Instant) {
    while let Some(o) = c.poll_output() {
        if let Output::Event(CentralEvent::CheckLogin { conn, .. }) = o {
            c.login_result(now, conn, LoginDecision::Accept);
        }
    }
}

#[test]
fn accounts_created_in_a_run_leave_no_block_each_behind() {
    const N: u64 = 2000;
    let now = Instant::now();
    let mut cfg = CentralConfig::new(now, 1_700_000_000);
    cfg.max_registrations_per_ip_per_hour = 0;
    let mut c = Central::new(cfg);
    let addr = |conn: ConnId| Ipv4Addr::new(10, 1, (conn >> 8) as u8, conn as u8);
    let join = |c: &mut Central, conn: ConnId, user: &str| {
        c.accept(now, conn, addr(conn));
        c.handle_input(now, conn, &ServerRequest::login(user, "pw", 160, 2).encode());
        pump(c, now);
        c.handle_input(now, conn, &ServerRequest::SetWaitPort { port: 2234, obfuscation: None }.encode());
        c.handle_input(now, conn, &ServerRequest::JoinRoom { room: "bench".into(), private: false }.encode());
        pump(c, now);
    };
    // A few who stay, in the room, so it is not dropped when the others go.
    for conn in 1..=5 {
        join(&mut c, 100_000 + conn, &format!("stay{conn}"));
    }
    let (bytes_before, blocks_before) = live();
    // New accounts: their first login registers them.
    for conn in 1..=N {
        join(&mut c, conn, &format!("user{conn:05}"));
    }
    for conn in 1..=N {
        c.disconnect(conn);
        pump(&mut c, now);
    }
    c.handle_timeout(now + Duration::from_secs(1));
    pump(&mut c, now);
    let (bytes_after, blocks_after) = live();
    let (bytes, blocks) = (bytes_after - bytes_before, blocks_after - blocks_before);
    eprintln!(
        "central: {N} accounts created, their users gone: {bytes:+} B ({:.1} B per account) in {blocks:+} blocks",
        bytes as f64 / N as f64
    );
    assert_eq!(c.online_users().len(), 5);
    // The accounts stay known (a second login is no new registration, WatchUser says they
    // exist: unit tests in central.rs), in a few big blocks (a table), not one per account.
    assert!(blocks < 16, "{blocks} blocks kept for {N} accounts");
    // And little of it: 8 B per account in one sorted array with at most 1/8 of room
    // (`central::SORTED_SET_GROWTH`), and queues of a fixed size (458 B per account before
    // the names were hashed: the names, the maps and the room's list as large as the crowd;
    // 18.5 B with a hash set of 4,096 slots of 9 B, and 16,384 at 10,000 accounts).
    // The fixed part (the maps shrunk back to a few slots, the queues): ~29 KB.
    assert!(bytes <= 10 * N as isize + 32 * 1024, "{bytes} B kept for {N} accounts");
}
