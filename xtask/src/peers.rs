//! Host peers for standalone runs: a UDP echo behind QEMU's socket netdev and
//! a client for the virtconsole's TCP chardev. Both use 127.0.0.1 only, run
//! on their own thread, and stop by themselves at a deadline or when told.
use anyhow::{Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const TICK: Duration = Duration::from_millis(100);

/// A TCP port that was free a moment ago (for QEMU to listen on).
pub fn free_tcp_port() -> Result<u16> {
    let l = TcpListener::bind((LOCALHOST, 0)).context("finding a free TCP port")?;
    Ok(l.local_addr()?.port())
}

/// A UDP port that was free a moment ago (for QEMU to bind).
pub fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind((LOCALHOST, 0)).context("finding a free UDP port")?;
    Ok(s.local_addr()?.port())
}

/// Sends every datagram back to where it came from.
pub struct UdpEcho {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl UdpEcho {
    /// Binds 127.0.0.1 on a free port; echoes for at most `life`.
    pub fn start(life: Duration) -> Result<Self> {
        let sock = UdpSocket::bind((LOCALHOST, 0)).context("binding the UDP echo peer")?;
        sock.set_read_timeout(Some(TICK))?;
        let port = sock.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + life;
            let mut buf = vec![0u8; 65536];
            let mut echoed = 0u64;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) if from.ip() == LOCALHOST => {
                        if sock.send_to(&buf[..n], from).is_ok() {
                            echoed += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    // ICMP port unreachable from an earlier send shows up here; keep going.
                    Err(_) => {}
                }
            }
            echoed
        });
        Ok(Self { port, stop, thread })
    }

    /// The port QEMU sends its frames to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the peer; how many datagrams it echoed.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// What the console client saw.
#[derive(Debug, Default)]
pub struct ConsoleTalk {
    /// It connected to QEMU's chardev.
    pub connected: bool,
    /// It sent its line.
    pub sent: bool,
    /// Everything that came back, as text.
    pub received: String,
}

impl ConsoleTalk {
    /// Whether the frontend's `echo: <line>` came back whole.
    pub fn echoed(&self, line: &str) -> bool {
        self.received.contains(&format!("echo: {line}\n"))
    }
}

/// Connects to the console chardev, sends one line at once and collects what
/// comes back until the echo arrives. (The line waits in QEMU's socket until
/// the frontend's receive buffers are posted; waiting for the frontend's
/// prompt instead would lose it when QEMU drops the prompt written before
/// the client connected.)
pub struct ConsoleClient {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ConsoleTalk>,
}

impl ConsoleClient {
    /// Starts the client for 127.0.0.1:`port`; gives up after `life`.
    pub fn start(port: u16, line: &str, life: Duration) -> Self {
        Self::start_after(port, None, line, life)
    }

    /// As [`ConsoleClient::start`], but sends its line only once `prompt`
    /// has come from the other side (a frontend that says it listens).
    pub fn start_after(port: u16, prompt: Option<&str>, line: &str, life: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let line = line.to_string();
        let prompt = prompt.map(str::to_string);
        let thread = std::thread::spawn(move || talk(port, prompt.as_deref(), &line, life, &flag));
        Self { stop, thread }
    }

    /// Stops the client; what it saw.
    pub fn finish(self) -> ConsoleTalk {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn talk(
    port: u16,
    prompt: Option<&str>,
    line: &str,
    life: Duration,
    stop: &AtomicBool,
) -> ConsoleTalk {
    let deadline = Instant::now() + life;
    let mut out = ConsoleTalk::default();
    let addr = SocketAddr::from((LOCALHOST, port));
    let mut conn = loop {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return out;
        }
        match TcpStream::connect_timeout(&addr, TICK) {
            Ok(c) => break c,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    out.connected = true;
    if conn.set_read_timeout(Some(TICK)).is_err() {
        return out;
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    if let Some(prompt) = prompt {
        while !String::from_utf8_lossy(&bytes).contains(prompt) {
            if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                out.received = String::from_utf8_lossy(&bytes).into_owned();
                return out;
            }
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
    }
    if conn.write_all(format!("{line}\n").as_bytes()).is_err() {
        return out;
    }
    out.sent = true;
    let echo = format!("echo: {line}\n");
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if String::from_utf8_lossy(&bytes).contains(&echo) {
            break;
        }
    }
    out.received = String::from_utf8_lossy(&bytes).into_owned();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_echo_returns_datagrams() {
        let echo = UdpEcho::start(Duration::from_secs(5)).unwrap();
        let me = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        me.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        me.send_to(b"frame", (LOCALHOST, echo.port())).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = me.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"frame");
        assert_eq!(echo.finish(), 1);
    }

    #[test]
    fn console_client_sends_line_and_reads_echo() {
        let l = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let client = ConsoleClient::start(port, "hi there", Duration::from_secs(5));
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\n") {
            s.read_exact(&mut b).unwrap();
            got.push(b[0]);
        }
        assert_eq!(got, b"hi there\n");
        s.write_all(b"backplane console: send a line\necho: hi there\n")
            .unwrap();
        let t = client.finish();
        assert!(t.connected && t.sent && t.echoed("hi there"), "{t:?}");
    }

    #[test]
    fn console_client_gives_up_without_server() {
        let port = free_tcp_port().unwrap();
        let start = Instant::now();
        let t = ConsoleClient::start(port, "x", Duration::from_millis(300)).finish_after_life();
        assert!(!t.connected);
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    impl ConsoleClient {
        fn finish_after_life(self) -> ConsoleTalk {
            self.thread.join().unwrap()
        }
    }
}
