//! A minimal HTTP/1.1 keep-alive client for the load generators: one
//! request at a time per connection, bodies framed by `Content-Length` only.
//! Just enough to talk to `haechi serve` over a real socket without pulling
//! an HTTP client crate into the service.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The parts of a response head the load generators need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub content_length: usize,
    /// Bytes of the head, the blank line included: the body starts here.
    pub head_len: usize,
}

/// Parse a response head from the start of `buf`. `Ok(None)`: the blank line
/// that ends the head has not arrived yet.
///
/// # Errors
/// A malformed status line, a response without `Content-Length` (chunked
/// bodies are not supported), or a bad length.
pub fn parse_response_head(buf: &[u8]) -> io::Result<Option<ResponseHead>> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| malformed("response head is not UTF-8".to_owned()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(malformed(format!("bad status line `{status_line}`")));
    }
    let status: u16 = code.parse().map_err(|_| malformed(format!("bad status code in `{status_line}`")))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Err(malformed(format!("bad header line `{line}`"))) };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| malformed(format!("bad Content-Length `{value}`")))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            return Err(malformed(format!("Transfer-Encoding `{value}` is not supported")));
        }
    }
    let content_length = content_length.ok_or_else(|| malformed(format!("response {status} has no Content-Length")))?;
    Ok(Some(ResponseHead { status, content_length, head_len: end + 4 }))
}

fn malformed(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    host: String,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes at the start of `buf` that belong to the last response.
    consumed: usize,
}

impl Conn {
    /// Connect, with Nagle off (requests are written in one piece anyway).
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, host: addr.to_string(), out: Vec::with_capacity(4096), buf: Vec::with_capacity(16 << 10), consumed: 0 })
    }

    /// POST `body` and read the whole response: its status and body (valid
    /// until the next request).
    ///
    /// # Errors
    /// When the socket fails, the server closes it, or the response cannot be parsed.
    pub async fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> io::Result<(u16, &[u8])> {
        use std::io::Write;
        self.out.clear();
        write!(self.out, "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", self.host, body.len())?;
        self.out.extend_from_slice(body);
        // No pipelining: nothing after the last response belongs to a request.
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        self.stream.write_all(&self.out).await?;
        let head = loop {
            if let Some(h) = parse_response_head(&self.buf)? {
                break h;
            }
            self.fill().await?;
        };
        let total = head.head_len + head.content_length;
        while self.buf.len() < total {
            self.fill().await?;
        }
        self.consumed = total;
        Ok((head.status, &self.buf[head.head_len..total]))
    }

    async fn fill(&mut self) -> io::Result<()> {
        // Into spare capacity: nothing is zeroed per read.
        self.buf.reserve(16 << 10);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_head_gives_status_length_and_where_the_body_starts() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\ndate: x\r\n\r\n{\"verdict\":\"allow\"}";
        let h = parse_response_head(r).unwrap().unwrap();
        assert_eq!(h, ResponseHead { status: 200, content_length: 17, head_len: r.len() - 19 });
        assert_eq!(&r[h.head_len..h.head_len + 2], b"{\"");
    }

    #[test]
    fn header_names_are_case_insensitive_and_values_trimmed() {
        let h = parse_response_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length:  42 \r\n\r\n").unwrap().unwrap();
        assert_eq!((h.status, h.content_length), (503, 42));
    }

    #[test]
    fn a_partial_head_waits_for_more() {
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n").unwrap(), None);
        assert_eq!(parse_response_head(b"").unwrap(), None);
    }

    #[test]
    fn unframed_or_malformed_responses_are_refused() {
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err().to_string().contains("Content-Length"));
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").unwrap_err().to_string().contains("chunked"));
        assert!(parse_response_head(b"SSH-2.0 hello\r\n\r\n").unwrap_err().to_string().contains("status line"));
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n").unwrap_err().to_string().contains("Content-Length"));
    }
}
