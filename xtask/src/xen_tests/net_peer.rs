//! The far end of QEMU's `-netdev socket,udp=...` tunnel for the Xen network
//! test: a host at 10.0.2.2 that answers ARP requests and ICMP echo requests.
//! QEMU sends each Ethernet frame as one UDP datagram; replies go back to the
//! address it came from (QEMU's `localaddr`). 127.0.0.1 only; std only.
use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The peer's IPv4 address inside the tunnel.
pub const PEER_IP: [u8; 4] = [10, 0, 2, 2];
/// The peer's MAC address (locally administered).
pub const PEER_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

const ETH_HDR: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const IPPROTO_ICMP: u8 = 1;

/// What the peer saw and answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetCounts {
    /// Datagrams (frames) received.
    pub frames: u64,
    /// ARP requests for [`PEER_IP`] answered.
    pub arp_requests: u64,
    /// ICMP echo requests to [`PEER_IP`] answered.
    pub echo_requests: u64,
    /// Frames with a bad IPv4 header checksum or ICMP checksum (not answered).
    pub bad_checksums: u64,
}

/// The peer, on its own thread.
pub struct NetPeer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<NetCounts>,
}

impl NetPeer {
    /// Binds 127.0.0.1 on a free port; answers for at most `life`.
    pub fn start(life: Duration) -> Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the network peer")?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let port = sock.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + life;
            let mut counts = NetCounts::default();
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) if from.ip() == Ipv4Addr::LOCALHOST => {
                        counts.frames += 1;
                        if let Some(reply) = answer(&buf[..n], &mut counts) {
                            let _ = sock.send_to(&reply, from);
                        }
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {}
                }
            }
            counts
        });
        Ok(Self { port, stop, thread })
    }

    /// The port QEMU sends its frames to (`udp=127.0.0.1:PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the peer; what it counted.
    pub fn finish(self) -> NetCounts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        let word = if pair.len() == 2 {
            u16::from_be_bytes([pair[0], pair[1]])
        } else {
            u16::from_be_bytes([pair[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The reply to one frame, if it is an ARP request or ICMP echo request for us.
pub fn answer(frame: &[u8], counts: &mut NetCounts) -> Option<Vec<u8>> {
    if frame.len() < ETH_HDR {
        return None;
    }
    let payload = &frame[ETH_HDR..];
    match be16(frame, 12) {
        ETHERTYPE_ARP => {
            let reply = arp_reply(frame, payload)?;
            counts.arp_requests += 1;
            Some(reply)
        }
        ETHERTYPE_IPV4 => match icmp_echo_reply(frame, payload) {
            Ok(Some(reply)) => {
                counts.echo_requests += 1;
                Some(reply)
            }
            Ok(None) => None,
            Err(()) => {
                counts.bad_checksums += 1;
                None
            }
        },
        _ => None,
    }
}

fn eth_header(dst: &[u8], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HDR + 64);
    f.extend_from_slice(dst);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn arp_reply(frame: &[u8], arp: &[u8]) -> Option<Vec<u8>> {
    // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, oper 1 (request).
    if arp.len() < 28
        || be16(arp, 0) != 1
        || be16(arp, 2) != ETHERTYPE_IPV4
        || arp[4] != 6
        || arp[5] != 4
        || be16(arp, 6) != 1
        || arp[24..28] != PEER_IP
    {
        return None;
    }
    let (sha, spa) = (&arp[8..14], &arp[14..18]);
    let mut f = eth_header(&frame[6..12], ETHERTYPE_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&PEER_IP);
    f.extend_from_slice(sha);
    f.extend_from_slice(spa);
    Some(f)
}

/// `Ok(None)`: not an echo request for us; `Err(())`: a checksum is wrong.
fn icmp_echo_reply(frame: &[u8], ip: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Ok(None);
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < 20 || total < ihl + 8 || total > ip.len() {
        return Ok(None);
    }
    // Not fragmented, ICMP, to us, echo request.
    let fragmented = be16(ip, 6) & 0x3fff != 0;
    let icmp = &ip[ihl..total];
    if fragmented || ip[9] != IPPROTO_ICMP || ip[16..20] != PEER_IP || icmp[0] != 8 || icmp[1] != 0
    {
        return Ok(None);
    }
    if checksum(&ip[..ihl]) != 0 || checksum(icmp) != 0 {
        return Err(());
    }
    let mut f = eth_header(&frame[6..12], ETHERTYPE_IPV4);
    // IPv4 header: no options, fresh id, TTL 64, addresses swapped.
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&ip[4..6]);
    h[8] = 64;
    h[9] = IPPROTO_ICMP;
    h[12..16].copy_from_slice(&PEER_IP);
    h[16..20].copy_from_slice(&ip[12..16]);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    // ICMP echo reply: same id, sequence and data.
    let at = f.len();
    f.extend_from_slice(icmp);
    f[at] = 0;
    f[at + 2] = 0;
    f[at + 3] = 0;
    let c = checksum(&f[at..]);
    f[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const GUEST_IP: [u8; 4] = [10, 0, 2, 15];

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&GUEST_IP);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    fn echo_request(seq: u16, corrupt: bool) -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz!");
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 0, 0xab, 0xcd, 0x40, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&GUEST_IP);
        ip.extend_from_slice(&PEER_IP);
        let len = (ip.len() + icmp.len()) as u16;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        if corrupt {
            icmp[10] ^= 1;
        }
        let mut f = PEER_MAC.to_vec();
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn answers_arp_for_its_address_only() {
        let mut c = NetCounts::default();
        let r = answer(&arp_request(PEER_IP), &mut c).unwrap();
        assert_eq!(&r[0..6], &GUEST_MAC);
        assert_eq!(&r[6..12], &PEER_MAC);
        assert_eq!(be16(&r, 12), ETHERTYPE_ARP);
        assert_eq!(be16(&r, 20), 2);
        assert_eq!(&r[22..28], &PEER_MAC);
        assert_eq!(&r[28..32], &PEER_IP);
        assert_eq!(&r[32..38], &GUEST_MAC);
        assert_eq!(&r[38..42], &GUEST_IP);
        assert!(answer(&arp_request([10, 0, 2, 3]), &mut c).is_none());
        assert_eq!(c.arp_requests, 1);
    }

    #[test]
    fn answers_echo_with_valid_checksums() {
        let mut c = NetCounts::default();
        let req = echo_request(7, false);
        let r = answer(&req, &mut c).unwrap();
        assert_eq!(c.echo_requests, 1);
        assert_eq!(&r[0..6], &GUEST_MAC);
        let ip = &r[ETH_HDR..];
        assert_eq!(checksum(&ip[..20]), 0);
        assert_eq!(&ip[12..16], &PEER_IP);
        assert_eq!(&ip[16..20], &GUEST_IP);
        let icmp = &ip[20..];
        assert_eq!(icmp[0], 0);
        assert_eq!(checksum(icmp), 0);
        assert_eq!(&icmp[4..], &req[ETH_HDR + 20 + 4..]);
        assert!(answer(&echo_request(8, true), &mut c).is_none());
        assert_eq!(c.bad_checksums, 1);
    }

    #[test]
    fn peer_answers_over_udp() {
        let peer = NetPeer::start(Duration::from_secs(5)).unwrap();
        let me = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        me.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        me.send_to(&arp_request(PEER_IP), (Ipv4Addr::LOCALHOST, peer.port()))
            .unwrap();
        let mut buf = [0u8; 128];
        let (n, _) = me.recv_from(&mut buf).unwrap();
        assert_eq!(n, 42);
        let c = peer.finish();
        assert_eq!((c.frames, c.arp_requests), (1, 1));
    }
}
