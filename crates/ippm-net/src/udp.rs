//! The UDP sockets test packets travel on: kernel receive timestamps, the received TTL, TTL
//! 255 and DSCP on send. The engine takes them over (non-blocking) once a session starts.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

pub use crate::sys::RecvMeta;

/// Binds with `bind` to the first free port of `ports` on `ip` (any port when `None`).
pub fn bind_first<S>(
    ip: std::net::IpAddr,
    ports: Option<std::ops::RangeInclusive<u16>>,
    bind: impl Fn(SocketAddr) -> io::Result<S>,
) -> io::Result<S> {
    let Some(range) = ports else {
        return bind(SocketAddr::new(ip, 0));
    };
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "empty port range");
    for port in range {
        match bind(SocketAddr::new(ip, port)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sets the DSCP of packets sent from a blocking socket.
pub fn set_dscp_blocking(sock: &std::net::UdpSocket, dscp: u8) -> io::Result<()> {
    let v6 = sock.local_addr()?.is_ipv6();
    crate::sys::set_dscp(sock, v6, dscp)
}

/// A test-packet socket bound to `addr` (port 0: any free port), blocking: kernel receive
/// timestamps, the received TTL / hop limit, TTL 255 on what it sends.
pub fn blocking_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = crate::sys::test_socket(addr)?;
    s.set_nonblocking(false)?;
    Ok(s.into())
}

/// Receives on a [`blocking_socket`] with the kernel timestamp and TTL.
pub fn recv_blocking(sock: &std::net::UdpSocket, buf: &mut [u8]) -> io::Result<RecvMeta> {
    crate::sys::recv_with_meta(sock.as_raw_fd(), buf)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn kernel_timestamp_and_ttl_on_loopback() {
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let a = blocking_socket(SocketAddr::new(ip, 0)).unwrap();
            let b = blocking_socket(SocketAddr::new(ip, 0)).unwrap();
            set_dscp_blocking(&b, 46).unwrap();
            let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            b.send_to(b"hello", a.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 64];
            let m = recv_blocking(&a, &mut buf).unwrap();
            let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            assert_eq!(&buf[..m.len], b"hello");
            assert_eq!(m.from, b.local_addr().unwrap());
            let t = m.kernel_time.expect("SO_TIMESTAMPNS");
            assert!(t + Duration::from_millis(1) >= before && t <= after, "{ip}");
            // RFC 4656 §4.1.2 / RFC 5357 §4.2.1: test packets leave with TTL 255.
            assert_eq!(m.ttl, Some(255), "{ip}");
            // DSCP 46 (EF), ECN 0, as received; no destination for a socket bound to one
            // address.
            assert_eq!(m.tos, Some(46 << 2), "{ip}");
            assert_eq!(m.dst, None, "{ip}");
        }
    }

    #[test]
    fn port_range() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = bind_first(ip, None, blocking_socket).unwrap();
        let p = first.local_addr().unwrap().port();
        // The taken port is skipped.
        let s = bind_first(ip, Some(p..=p.saturating_add(50)), blocking_socket).unwrap();
        assert_ne!(s.local_addr().unwrap().port(), p);
        assert!(bind_first(ip, Some(p..=p), blocking_socket).is_err());
    }
}
