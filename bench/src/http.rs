//! A minimal HTTP/1.1 client over one keep-alive TCP connection, for loopback load.
//!
//! It sends `GET` requests one at a time and reads each answer's status line, headers
//! and `Content-Length` body, reusing its buffers, so the load generator spends as little
//! of the shared CPU as possible. It reads only what ingest and the bare handler send:
//! bodies with a `Content-Length`; a chunked answer is an error.

use std::{io, net::SocketAddr};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// One keep-alive connection to a server on the loopback interface.
pub struct HttpConnection {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// Longest answer head accepted; ingest's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

impl HttpConnection {
    /// Connects with Nagle's algorithm off, as every request is one small write.
    pub async fn open(addr: SocketAddr) -> io::Result<HttpConnection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;

        Ok(HttpConnection {
            stream,
            request: Vec::with_capacity(512),
            response: Vec::with_capacity(1024),
        })
    }

    /// Sends `GET path` and returns the answer's status code once the whole body is in.
    pub async fn get(&mut self, path: &str) -> io::Result<u16> {
        self.request.clear();
        self.request.extend_from_slice(b"GET ");
        self.request.extend_from_slice(path.as_bytes());
        self.request
            .extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: dlr-bench\r\n\r\n");
        self.stream.write_all(&self.request).await?;

        self.response.clear();
        let head_len = loop {
            if let Some(end) = find_head_end(&self.response) {
                break end;
            }
            if self.response.len() > MAX_HEAD {
                return Err(invalid("the answer's head is too long"));
            }
            self.read_more().await?;
        };
        let head = parse_head(&self.response[..head_len])?;

        while self.response.len() < head_len + head.content_length {
            self.read_more().await?;
        }

        Ok(head.status)
    }

    async fn read_more(&mut self) -> io::Result<()> {
        let read = self.stream.read_buf(&mut self.response).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

/// Sends one `GET` on a fresh connection; used for readiness polls.
pub async fn get_once(addr: SocketAddr, path: &str) -> io::Result<u16> {
    HttpConnection::open(addr).await?.get(path).await
}

/// The status and body length of an answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// Bytes of body that follow the head.
    pub content_length: usize,
}

/// Where the head ends (just after the blank line), if it is complete.
pub fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Reads the status line and the headers that matter for framing.
pub fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("the answer's head is not text"))?;
    let mut lines = text.split("\r\n");

    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("the answer has no status code"))?;

    let mut content_length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| invalid("the answer's Content-Length is not a number"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked answers are not read by this client"));
        }
    }

    Ok(Head {
        status,
        content_length,
    })
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_gives_status_and_body_length() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 57\r\ncontent-type: x\r\n\r\n{";

        let end = find_head_end(answer).unwrap();
        let head = parse_head(&answer[..end]).unwrap();

        assert_eq!(end, answer.len() - 1);
        assert_eq!(
            head,
            Head {
                status: 200,
                content_length: 57
            }
        );
    }

    #[test]
    fn chunked_answers_are_refused() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

        assert!(parse_head(head).is_err());
    }
}
