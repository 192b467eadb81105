//! The UDP socket the test engine sends and receives test packets on.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

pub use crate::sys::RecvMeta;

/// A test-packet socket: kernel receive timestamps, received TTL, DSCP on send.
#[derive(Debug)]
pub struct TestSocket {
    sock: UdpSocket,
    v6: bool,
}

impl TestSocket {
    /// Binds to `addr` (port 0: any free port). Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let s = crate::sys::test_socket(addr)?;
        let sock = UdpSocket::from_std(s.into())?;
        Ok(Self {
            sock,
            v6: addr.is_ipv6(),
        })
    }

    /// Binds to the first free port of `ports` on `ip` (or any port when `ports` is `None`).
    pub fn bind_in_range(
        ip: std::net::IpAddr,
        ports: Option<std::ops::RangeInclusive<u16>>,
    ) -> io::Result<Self> {
        bind_first(ip, ports, Self::bind)
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Sets the DSCP of the packets sent from now on.
    pub fn set_dscp(&self, dscp: u8) -> io::Result<()> {
        crate::sys::set_dscp(&self.sock, self.v6, dscp)
    }

    /// Receives one datagram with its kernel timestamp and TTL.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<RecvMeta> {
        let fd = self.sock.as_raw_fd();
        self.sock
            .async_io(Interest::READABLE, || crate::sys::recv_with_meta(fd, buf))
            .await
    }

    /// Sends one datagram: at once when the socket can take it (the usual case), else once
    /// it can.
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self.sock.try_send_to(buf, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.sock.send_to(buf, to).await,
            r => r,
        }
    }
}

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

/// A blocking socket with the same options as [`TestSocket`] (kernel receive timestamps,
/// received TTL), for baselines and tools that do not run in tokio.
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

    #[tokio::test]
    async fn kernel_timestamp_and_ttl_on_loopback() {
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let a = TestSocket::bind(SocketAddr::new(ip, 0)).unwrap();
            let b = TestSocket::bind(SocketAddr::new(ip, 0)).unwrap();
            b.set_dscp(46).unwrap();
            let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            b.send_to(b"hello", a.local_addr().unwrap()).await.unwrap();
            let mut buf = [0u8; 64];
            let m = a.recv(&mut buf).await.unwrap();
            let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            assert_eq!(&buf[..m.len], b"hello");
            assert_eq!(m.from, b.local_addr().unwrap());
            let t = m.kernel_time.expect("SO_TIMESTAMPNS");
            assert!(t + Duration::from_millis(1) >= before && t <= after, "{ip}");
            // Loopback: the default TTL / hop limit, unchanged.
            assert!(matches!(m.ttl, Some(64) | Some(255)), "{ip}: {:?}", m.ttl);
        }
    }

    #[tokio::test]
    async fn port_range() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = TestSocket::bind_in_range(ip, None).unwrap();
        let p = first.local_addr().unwrap().port();
        // The taken port is skipped.
        let s = TestSocket::bind_in_range(ip, Some(p..=p.saturating_add(50))).unwrap();
        assert_ne!(s.local_addr().unwrap().port(), p);
        assert!(TestSocket::bind_in_range(ip, Some(p..=p)).is_err());
    }
}
