//! What several benchmarks share: a payload file, the plain TCP copy baseline, and letting
//! the file system settle between measurements.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Buffer size for the baseline copy (the same the omnipeer data paths use).
pub const BUF: usize = 256 * 1024;

/// An incompressible payload (xorshift) of `size` bytes.
pub fn make_payload(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(BUF, std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; BUF];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(BUF as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Let the file system finish what the previous run left (freeing a deleted 1 GiB file,
/// writeback) before the next measurement starts.
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

/// The baseline: read the file, write it to a socket; the other end reads the socket and
/// writes a file. No protocol at all. Returns the seconds it took.
pub fn plain_tcp_copy(src: &Path, dst: &Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let dst = dst.to_path_buf();
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut out = std::fs::File::create(&dst)?;
        let mut buf = vec![0u8; BUF];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            out.write_all(&buf[..n])?;
            total += n as u64;
        }
    });
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut file = std::fs::File::open(src)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n])?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    receiver.join().expect("receiver thread")?;
    Ok(started.elapsed().as_secs_f64())
}
