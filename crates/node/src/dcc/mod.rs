//! mIRC DCC Server: the server driver and the client commands.

pub mod client;
pub mod server;

pub use client::{ClientOptions, GetSummary, SendSummary};
pub use server::{DccServer, DccServerConfig, DccServerHandle, ServerEvent};

use omnipeer_dcc::{limits, LineReader};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Write text lines, each ended with `\n`, in one write.
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(w: &mut W, lines: &[String]) -> io::Result<()> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    w.write_all(&out).await
}

/// Reads protocol text lines (chat and fserve output) from a socket, bounded by
/// [`limits::MAX_CHAT_LINE`]. Cancel-safe: usable in `select!`.
pub(crate) struct ChatLineReader {
    lines: LineReader,
    buf: Box<[u8]>,
    eof: bool,
}

impl ChatLineReader {
    pub(crate) fn new(leftover: Vec<u8>) -> Self {
        let mut lines = LineReader::new(limits::MAX_CHAT_LINE);
        lines.push(&leftover);
        ChatLineReader { lines, buf: vec![0u8; 8192].into_boxed_slice(), eof: false }
    }

    /// The next line, `None` at the end of the stream (an unterminated last line is
    /// returned first).
    pub(crate) async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> io::Result<Option<String>> {
        loop {
            match self.lines.next_line() {
                Ok(Some(l)) => return Ok(Some(omnipeer_dcc::decode_text(&l))),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.eof {
                let rest = self.lines.take_rest();
                return Ok((!rest.is_empty()).then(|| omnipeer_dcc::decode_text(&rest)));
            }
            let n = rd.read(&mut self.buf).await?;
            if n == 0 {
                self.eof = true;
            } else {
                self.lines.push(&self.buf[..n]);
            }
        }
    }
}
