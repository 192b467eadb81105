//! Socket options, control messages, batched datagram I/O, timers and kernel clock state: the
//! only place ippm talks to the kernel below the standard library. Most of it goes through
//! `nix`; the `unsafe` here is the `ntp_adjtime` read and `recvmmsg` (whose nix wrapper does
//! not reset its headers between calls), each with its SAFETY argument.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrStorage, sockopt};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::ClockState;

mod batch;

pub(crate) use batch::{BATCH, RecvBatch, SendBatch, SendOpts, TxStamp};

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

/// TTL / Hop Limit of every test packet: RFC 4656 §4.1.2 and RFC 5357 §4.2.1 want 255, so a
/// receiver can tell the hop count from the TTL it sees.
pub(crate) const TEST_TTL: u32 = 255;

/// A UDP socket for test packets: non-blocking, kernel receive timestamps (SO_TIMESTAMPNS),
/// the received TTL / hop limit and TOS / traffic class, TTL 255 on what it sends, and a
/// large receive buffer. Bound to a wildcard address, it also reports each datagram's
/// destination address (IP_PKTINFO), so a reply can leave from the address it was sent to.
pub(crate) fn test_socket(addr: SocketAddr) -> io::Result<Socket> {
    test_socket_shared(addr, false)
}

/// [`test_socket`], with SO_REUSEPORT: several sockets on one address, among which the kernel
/// spreads datagrams by their 4-tuple (so one flow always reaches the same socket). How a
/// listening reflector uses every engine thread.
pub(crate) fn test_socket_shared(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
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
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    socket::setsockopt(&s, sockopt::ReceiveTimestampns, &true)?;
    let wildcard = addr.ip().is_unspecified();
    if addr.is_ipv6() {
        socket::setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true)?;
        socket::setsockopt(&s, sockopt::Ipv6RecvTClass, &true)?;
        if wildcard {
            socket::setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)?;
        }
        s.set_unicast_hops_v6(TEST_TTL)?;
    } else {
        socket::setsockopt(&s, sockopt::Ipv4RecvTtl, &true)?;
        socket::setsockopt(&s, sockopt::IpRecvTos, &true)?;
        if wildcard {
            socket::setsockopt(&s, sockopt::Ipv4PacketInfo, &true)?;
        }
        s.set_ttl_v4(TEST_TTL)?;
    }
    Ok(s)
}

/// Asks the kernel for a software transmit timestamp of every datagram sent on `s`
/// (SO_TIMESTAMPING with OPT_ID: each stamp comes back on the error queue with the datagram's
/// index on this socket, counted from 0; OPT_TSONLY: without the packet's bytes).
pub(crate) fn enable_tx_timestamps(s: &impl AsFd) -> io::Result<()> {
    use socket::TimestampingFlag as F;
    let flags = F::SOF_TIMESTAMPING_TX_SOFTWARE
        | F::SOF_TIMESTAMPING_SOFTWARE
        | F::SOF_TIMESTAMPING_OPT_ID
        | F::SOF_TIMESTAMPING_OPT_TSONLY;
    socket::setsockopt(s, sockopt::Timestamping, &flags)?;
    Ok(())
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
    /// The IPv4 TOS / IPv6 Traffic Class octet it arrived with (DSCP and ECN).
    pub tos: Option<u8>,
    /// The address it was sent to, on a socket bound to a wildcard address (IP_PKTINFO).
    pub dst: Option<IpAddr>,
    /// The interface it arrived on (0: not known), with `dst`.
    pub ifindex: u32,
}

/// One non-blocking `recvmsg` with control messages.
pub(crate) fn recv_with_meta(fd: RawFd, buf: &mut [u8]) -> io::Result<RecvMeta> {
    thread_local! {
        // The control-message buffer, allocated once per thread: the receive paths allocate
        // nothing per packet.
        static CMSG: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(cmsg_room());
    }
    CMSG.with(|c| recv_into(fd, buf, &mut c.borrow_mut()))
}

// nix wants the Vec itself: it sets its length to what the kernel wrote.
#[allow(clippy::ptr_arg)]
fn recv_into(fd: RawFd, buf: &mut [u8], cmsg: &mut Vec<u8>) -> io::Result<RecvMeta> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::empty())?;
    meta_of(&msg)
}

/// The length, source, kernel timestamp and TTL of one received datagram.
fn meta_of(msg: &socket::RecvMsg<'_, '_, SockaddrStorage>) -> io::Result<RecvMeta> {
    let (mut kernel_time, mut ttl, mut tos, mut dst, mut ifindex) = (None, None, None, None, 0);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::ScmTimestampns(ts) => kernel_time = Some(duration_of(ts)),
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv6HopLimit(t) => ttl = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv4Tos(t) => tos = Some(t),
            ControlMessageOwned::Ipv6TClass(t) => tos = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv4PacketInfo(p) => {
                (dst, ifindex) = pktinfo_v4(&p);
            }
            ControlMessageOwned::Ipv6PacketInfo(p) => {
                (dst, ifindex) = pktinfo_v6(&p);
            }
            _ => {}
        }
    }
    let from = msg
        .address
        .as_ref()
        .and_then(socket_addr)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok(RecvMeta {
        len: msg.bytes,
        from,
        kernel_time,
        ttl,
        tos,
        dst,
        ifindex,
    })
}

/// The destination address and interface of an IP_PKTINFO message.
fn pktinfo_v4(p: &libc::in_pktinfo) -> (Option<IpAddr>, u32) {
    let a = std::net::Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr));
    (Some(a.into()), u32::try_from(p.ipi_ifindex).unwrap_or(0))
}

/// The destination address and interface of an IPV6_PKTINFO message.
fn pktinfo_v6(p: &libc::in6_pktinfo) -> (Option<IpAddr>, u32) {
    let a = std::net::Ipv6Addr::from(p.ipi6_addr.s6_addr);
    (Some(a.into()), p.ipi6_ifindex)
}

/// Room for the control messages one datagram can bring: SO_TIMESTAMPNS, SCM_TIMESTAMPING
/// (delivered too once a socket asks for transmit stamps), TTL or hop limit, TOS or traffic
/// class, and the destination address.
fn cmsg_room() -> Vec<u8> {
    nix::cmsg_space!(
        TimeSpec,
        [TimeSpec; 3],
        libc::c_int,
        libc::c_int,
        libc::in6_pktinfo
    )
}

fn duration_of(ts: TimeSpec) -> Duration {
    Duration::new(
        u64::try_from(ts.tv_sec()).unwrap_or(0),
        u32::try_from(ts.tv_nsec()).unwrap_or(0),
    )
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    a.as_sockaddr_in()
        .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
        .or_else(|| {
            a.as_sockaddr_in6()
                .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
        })
}

/// A one-shot monotonic timer with nanosecond resolution (timerfd), which an engine thread
/// waits on with its sockets: epoll's own timeout counts whole milliseconds, too coarse to
/// pace packets microseconds apart.
#[derive(Debug)]
pub(crate) struct Timer(nix::sys::timerfd::TimerFd);

impl Timer {
    pub(crate) fn new() -> io::Result<Self> {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        Ok(Self(TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?))
    }

    /// Fires once, `after` from now (at least a nanosecond: zero would disarm it).
    pub(crate) fn arm(&self, after: Duration) -> io::Result<()> {
        use nix::sys::time::TimeValLike;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        let ns = i64::try_from(after.as_nanos()).unwrap_or(i64::MAX).max(1);
        self.0.set(
            Expiration::OneShot(TimeSpec::nanoseconds(ns)),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(())
    }
}

impl std::os::fd::AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now.
pub(crate) fn raise_nofile() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}
