//! Where the Soulseek server core's memory goes per user, and that it is given back when
//! the users leave (issue 14: "RSS after they go within 10% of before"). Measured with a
//! counting allocator, in a test binary of its own (one test: nothing else allocates
//! beside it). The driver's share (a task, socket and queue per connection) is measured by
//! bench/src/slsk_server.rs on the real server.

use omnipeer_slsk::central::{Central, CentralConfig, CentralEvent, ConnId, LoginDecision, Output};
use omnipeer_slsk::ServerRequest;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

/// Live heap bytes (what was allocated and not yet freed).
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
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
fn users_who_leave_give_their_memory_back() {
    const N: u64 = 2000;
    let now = Instant::now();
    let mut c = Central::new(CentralConfig::new(now, 1_700_000_000));
    // The accounts exist already (a server loads them at start): what is measured is
    // what being online costs.
    for u in 1..=N {
        c.add_known_user(&format!("user{u:05}"));
    }
    // A few who stay, in the room, so it is not dropped when the others go.
    let addr = |conn: ConnId| Ipv4Addr::new(10, 1, (conn >> 8) as u8, conn as u8);
    let join = |c: &mut Central, conn: ConnId, user: &str| {
        c.accept(now, conn, addr(conn));
        c.handle_input(now, conn, &ServerRequest::login(user, "pw", 160, 2).encode());
        pump(c, now);
        c.handle_input(now, conn, &ServerRequest::SetWaitPort { port: 2234, obfuscation: None }.encode());
        c.handle_input(now, conn, &ServerRequest::JoinRoom { room: "bench".into(), private: false }.encode());
        pump(c, now);
    };
    for conn in 1..=5 {
        join(&mut c, 100_000 + conn, &format!("stay{conn}"));
    }
    let before = live();
    for conn in 1..=N {
        join(&mut c, conn, &format!("user{conn:05}"));
    }
    let with = live();
    let per_user = (with - before) as f64 / N as f64;
    for conn in 1..=N {
        c.disconnect(conn);
        pump(&mut c, now);
    }
    // Batched room announcements go out.
    c.handle_timeout(now + Duration::from_secs(1));
    pump(&mut c, now);
    let after = live();
    eprintln!(
        "central: {before} B before, {with} B with {N} users in one room ({per_user:.0} B per user), {after} B after \
         they left ({:+} B)",
        after - before
    );
    assert_eq!(c.online_users().len(), 5);
    // Within 10% of what the users took (maps and queues that grew for them shrink back).
    let kept = after - before;
    assert!(kept * 10 <= with - before, "{kept} B of {} B kept after everybody left", with - before);
}
