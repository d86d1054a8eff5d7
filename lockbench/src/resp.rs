//! A minimal async RESP2 client: one TCP connection, one command at a time (plus a simple
//! pipeline for setup work). Blocking commands (BLPOP, LOCK.ACQUIRE) need a connection each,
//! which is why the benchmark opens one connection per simulated client.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn is_null(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Status(s) if s == "OK")
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    pub fn as_string(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Appends one command in RESP2 multi-bulk form.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    (from..buf.len() - 1).find(|&i| buf[i] == b'\r' && buf[i + 1] == b'\n')
}

fn parse_int(b: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("bad integer in reply: {:?}", String::from_utf8_lossy(b)))
}

/// Parses one reply from the start of `buf`. `Ok(None)` means: incomplete, read more.
/// On success returns the reply and how many bytes it used. Understands RESP2 and the
/// RESP3 types a server might send anyway (null, boolean, double, map, set, push as arrays).
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], pos: usize) -> Result<Option<(Reply, usize)>, String> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some(eol) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let next = eol + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match buf[pos] {
        b'+' => Ok(Some((Reply::Status(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Int(parse_int(line)?), next))),
        b'_' => Ok(Some((Reply::Bulk(None), next))),
        b'#' => Ok(Some((Reply::Int((line == b"t") as i64), next))),
        b',' => Ok(Some((Reply::Status(text()), next))),
        b'$' | b'=' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err("bulk string not terminated by CRLF".into());
            }
            Ok(Some((
                Reply::Bulk(Some(buf[next..next + n].to_vec())),
                next + n + 2,
            )))
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let count = if buf[pos] == b'%' {
                n as usize * 2
            } else {
                n as usize
            };
            let mut items = Vec::with_capacity(count.min(1024));
            let mut at = next;
            for _ in 0..count {
                match parse_at(buf, at)? {
                    Some((r, used)) => {
                        items.push(r);
                        at = used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(format!("unexpected reply type byte {:?}", other as char)),
    }
}

pub struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    wbuf: Vec<u8>,
}

fn proto_err(e: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            rbuf: vec![0; 512],
            start: 0,
            end: 0,
            wbuf: Vec::with_capacity(128),
        })
    }

    /// Writes one command without waiting for its reply.
    pub async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.wbuf.clear();
        encode(&mut self.wbuf, args);
        self.stream.write_all(&self.wbuf).await
    }

    /// Reads the next reply.
    pub async fn read_reply(&mut self) -> io::Result<Reply> {
        loop {
            if self.end > self.start {
                if let Some((r, used)) =
                    parse(&self.rbuf[self.start..self.end]).map_err(proto_err)?
                {
                    self.start += used;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                    }
                    return Ok(r);
                }
            }
            if self.start > 0 {
                self.rbuf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.rbuf.len() {
                let n = self.rbuf.len() * 2;
                self.rbuf.resize(n, 0);
            }
            let n = self.stream.read(&mut self.rbuf[self.end..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.end += n;
        }
    }

    pub async fn cmd(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send(args).await?;
        self.read_reply().await
    }

    /// Like `cmd` but turns an error reply into an `Err`.
    pub async fn cmd_ok(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let r = self.cmd(args).await.map_err(|e| e.to_string())?;
        if let Some(e) = r.error() {
            return Err(format!(
                "{} -> {}",
                String::from_utf8_lossy(&args.join(&b' ')),
                e
            ));
        }
        Ok(r)
    }

    /// Sends many commands, then reads all replies (in chunks, to bound buffering).
    pub async fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::with_capacity(cmds.len());
        for chunk in cmds.chunks(1000) {
            self.wbuf.clear();
            for c in chunk {
                let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
                encode(&mut self.wbuf, &args);
            }
            self.stream.write_all(&self.wbuf).await?;
            for _ in chunk {
                out.push(self.read_reply().await?);
            }
        }
        Ok(out)
    }

    /// True when nothing is buffered (no stray reply waiting to be read).
    pub fn is_clean(&self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_multibulk() {
        let mut v = Vec::new();
        encode(&mut v, &[b"SET", b"k", b""]);
        assert_eq!(v, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_simple_types() {
        assert_eq!(
            parse(b"+OK\r\n").unwrap(),
            Some((Reply::Status("OK".into()), 5))
        );
        assert_eq!(
            parse(b"-ERR x y\r\n").unwrap(),
            Some((Reply::Error("ERR x y".into()), 10))
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Some((Reply::Int(-42), 6)));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Reply::Bulk(None), 5)));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Some((Reply::Array(None), 5)));
        assert_eq!(parse(b"_\r\n").unwrap(), Some((Reply::Bulk(None), 3)));
        assert_eq!(
            parse(b"$3\r\na\r\n\r\n").unwrap(),
            Some((Reply::Bulk(Some(b"a\r\n".to_vec())), 9))
        );
        assert_eq!(
            parse(b"$0\r\n\r\n").unwrap(),
            Some((Reply::Bulk(Some(vec![])), 6))
        );
    }

    #[test]
    fn parses_arrays_and_leaves_rest() {
        let buf = b"*2\r\n$14\r\nlock-signal:ab\r\n$1\r\n1\r\n+NEXT\r\n";
        let (r, used) = parse(buf).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"lock-signal:ab".to_vec())),
                Reply::Bulk(Some(b"1".to_vec()))
            ]))
        );
        assert_eq!(&buf[used..], b"+NEXT\r\n");
        // nested + RESP3 map flattened
        let (r, _) = parse(b"%1\r\n+owner\r\n*1\r\n:1\r\n").unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Status("owner".into()),
                Reply::Array(Some(vec![Reply::Int(1)]))
            ]))
        );
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        for partial in [
            &b""[..],
            b"+O",
            b"+OK\r",
            b"$5\r\nab",
            b"$5\r\nabcde\r",
            b"*2\r\n:1\r\n",
            b"*2\r\n:1\r\n$1\r\n",
        ] {
            assert_eq!(parse(partial).unwrap(), None, "{:?}", partial);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":abc\r\n").is_err());
        assert!(parse(b"$2\r\nabXY").is_err());
    }
}
