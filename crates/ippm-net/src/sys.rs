//! Socket options, control messages and kernel clock state: the only place ippm talks to the
//! kernel below the standard library. Control messages go through `nix`, so the one `unsafe`
//! block here is the `ntp_adjtime` read.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrStorage, sockopt};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::ClockState;

/// Reads the kernel's NTP state without changing it.
#[allow(unsafe_code)]
pub(crate) fn ntp_state() -> Option<ClockState> {
    let mut tx: libc::timex = unsafe {
        // SAFETY: timex is a plain C struct of integers; all-zero is a valid value, and
        // modes = 0 makes ntp_adjtime read-only.
        std::mem::zeroed()
    };
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call.
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    if state < 0 {
        return None;
    }
    let unsync = state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0;
    let micros = if unsync { tx.maxerror } else { tx.esterror };
    Some(ClockState {
        synchronized: !unsync,
        error: Duration::from_micros(u64::try_from(micros).unwrap_or(16_000_000).max(1)),
    })
}

/// A UDP socket for test packets: non-blocking, kernel receive timestamps (SO_TIMESTAMPNS),
/// the received TTL / hop limit, and a large receive buffer.
pub(crate) fn test_socket(addr: SocketAddr) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    // Best effort: the kernel caps this at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    socket::setsockopt(&s, sockopt::ReceiveTimestampns, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true)?;
    } else {
        socket::setsockopt(&s, sockopt::Ipv4RecvTtl, &true)?;
    }
    Ok(s)
}

/// Sets the DSCP of outgoing packets (IP_TOS / IPV6_TCLASS; ECN bits zero).
pub(crate) fn set_dscp(s: &impl AsFd, v6: bool, dscp: u8) -> io::Result<()> {
    let tos = i32::from(dscp & 0x3f) << 2;
    if v6 {
        socket::setsockopt(s, sockopt::Ipv6TClass, &tos)?;
    } else {
        socket::setsockopt(s, sockopt::Ipv4Tos, &tos)?;
    }
    Ok(())
}

/// What came with a received datagram.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    /// Octets received.
    pub len: usize,
    /// Who sent it.
    pub from: SocketAddr,
    /// The kernel's receive time (since the Unix epoch), if it gave one.
    pub kernel_time: Option<Duration>,
    /// The IP TTL / hop limit the packet arrived with.
    pub ttl: Option<u8>,
}

/// One non-blocking `recvmsg` with control messages.
pub(crate) fn recv_with_meta(fd: RawFd, buf: &mut [u8]) -> io::Result<RecvMeta> {
    thread_local! {
        // The control-message buffer, allocated once per thread: the receive paths allocate
        // nothing per packet.
        static CMSG: std::cell::RefCell<Vec<u8>> =
            std::cell::RefCell::new(nix::cmsg_space!(TimeSpec, libc::c_int, libc::c_int));
    }
    CMSG.with(|c| recv_into(fd, buf, &mut c.borrow_mut()))
}

// nix wants the Vec itself: it sets its length to what the kernel wrote.
#[allow(clippy::ptr_arg)]
fn recv_into(fd: RawFd, buf: &mut [u8], cmsg: &mut Vec<u8>) -> io::Result<RecvMeta> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut kernel_time = None;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::ScmTimestampns(ts) => {
                kernel_time = Some(Duration::new(
                    u64::try_from(ts.tv_sec()).unwrap_or(0),
                    u32::try_from(ts.tv_nsec()).unwrap_or(0),
                ));
            }
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv6HopLimit(t) => ttl = u8::try_from(t).ok(),
            _ => {}
        }
    }
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                })
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok(RecvMeta {
        len: msg.bytes,
        from,
        kernel_time,
        ttl,
    })
}
