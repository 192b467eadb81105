//! Socket options, control messages, batched datagram I/O, timers and kernel clock state: the
//! only place ippm talks to the kernel below the standard library. Most of it goes through
//! `nix`; the `unsafe` here is the `ntp_adjtime` read and `recvmmsg` (whose nix wrapper does
//! not reset its headers between calls), each with its SAFETY argument.

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

/// TTL / Hop Limit of every test packet: RFC 4656 §4.1.2 and RFC 5357 §4.2.1 want 255, so a
/// receiver can tell the hop count from the TTL it sees.
pub(crate) const TEST_TTL: u32 = 255;

/// A UDP socket for test packets: non-blocking, kernel receive timestamps (SO_TIMESTAMPNS),
/// the received TTL / hop limit, TTL 255 on what it sends, and a large receive buffer.
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
        s.set_unicast_hops_v6(TEST_TTL)?;
    } else {
        socket::setsockopt(&s, sockopt::Ipv4RecvTtl, &true)?;
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
    let mut kernel_time = None;
    let mut ttl = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::ScmTimestampns(ts) => kernel_time = Some(duration_of(ts)),
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
            ControlMessageOwned::Ipv6HopLimit(t) => ttl = u8::try_from(t).ok(),
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
    })
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

/// Largest datagram a batch slot holds: any UDP payload.
pub(crate) const SLOT: usize = 65_536;
/// Datagrams per recvmmsg/sendmmsg call.
pub(crate) const BATCH: usize = 32;

/// Room for the control messages one datagram can bring (see [`CMSG_WORDS`]).
fn cmsg_room() -> Vec<u8> {
    nix::cmsg_space!(TimeSpec, [TimeSpec; 3], libc::c_int, libc::c_int)
}

/// Control-message room per datagram, in u64 words (cmsghdr alignment): SO_TIMESTAMPNS,
/// SCM_TIMESTAMPING (delivered too once a socket asks for transmit stamps), TTL or hop limit
/// take about 120 octets.
const CMSG_WORDS: usize = 32;

/// Buffers for receiving up to [`BATCH`] datagrams with one `recvmmsg`, allocated once per
/// engine thread. Written here over libc rather than with nix's `recvmmsg`, which does not
/// reset each header's address and control lengths between calls: after an IPv4 datagram a
/// slot would cut the next IPv6 source address short, and one datagram's control messages
/// would shrink the room for the next one's.
pub(crate) struct RecvBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    bufs: Vec<u8>,
    metas: Vec<RecvMeta>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("received", &self.metas.len())
            .finish()
    }
}

impl RecvBatch {
    #[allow(unsafe_code)]
    pub(crate) fn new() -> Self {
        // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C structs of integers and
        // pointers; all-zero is a valid (empty) value of each, and every pointer is set
        // before each use in `recv`.
        let (hdr, iov, name) = unsafe {
            (
                std::mem::zeroed::<libc::mmsghdr>(),
                std::mem::zeroed::<libc::iovec>(),
                std::mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        Self {
            hdrs: vec![hdr; BATCH],
            iovs: vec![iov; BATCH],
            names: vec![name; BATCH],
            cmsgs: vec![[0u64; CMSG_WORDS]; BATCH],
            bufs: vec![0u8; BATCH * SLOT],
            metas: Vec::with_capacity(BATCH),
        }
    }

    /// One non-blocking `recvmmsg` on `fd`: how many datagrams arrived (0: none waiting).
    /// Fewer than [`BATCH`] means the socket was empty when the kernel looked.
    #[allow(unsafe_code)]
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.metas.clear();
        let n = self.recvmmsg(fd, libc::MSG_DONTWAIT)?;
        for i in 0..n {
            let meta = self.meta(i);
            self.metas.push(meta);
        }
        Ok(n)
    }

    /// One non-blocking `recvmmsg` on `fd`'s error queue: the transmit stamps in it go to
    /// `out` (other entries, ICMP errors, are consumed and skipped). Returns how many entries
    /// were read; fewer than [`BATCH`] means the queue is empty now.
    pub(crate) fn recv_stamps(&mut self, fd: RawFd, out: &mut Vec<TxStamp>) -> io::Result<usize> {
        let n = self.recvmmsg(fd, libc::MSG_DONTWAIT | libc::MSG_ERRQUEUE)?;
        out.extend((0..n).filter_map(|i| self.stamp(i)));
        Ok(n)
    }

    /// One `recvmmsg` into every slot, each header reset first (the kernel shortens the name
    /// and control lengths it writes back).
    #[allow(unsafe_code)]
    fn recvmmsg(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                // SAFETY: i * SLOT + SLOT <= bufs.len(): the slot is inside the buffer.
                iov_base: unsafe { base.add(i * SLOT) }.cast(),
                iov_len: SLOT,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut self.names[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; CMSG_WORDS]>() as _;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self` that outlive the call:
        // its name (sockaddr_storage, with its size), one iovec of SLOT octets inside `bufs`,
        // and its control buffer (u64-aligned, with its size); BATCH headers are passed.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        Ok(usize::try_from(n).unwrap_or(0).min(BATCH))
    }

    /// The transmit stamp in slot `i`'s error-queue entry, if it is one.
    #[allow(unsafe_code)]
    fn stamp(&self, i: usize) -> Option<TxStamp> {
        let hdr = &self.hdrs[i];
        let mut time = None;
        let mut id = None;
        // SAFETY: as in `meta`: the kernel has just written msg_controllen octets of cmsgs,
        // walked with CMSG_FIRSTHDR/CMSG_NXTHDR; each read is unaligned-safe and of the size
        // the cmsg's type has (three timespecs; a sock_extended_err).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr.msg_hdr);
            while let Some(cm) = c.as_ref() {
                let data = libc::CMSG_DATA(cm);
                match (cm.cmsg_level, cm.cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPING) => {
                        // [software, (deprecated), hardware]: the first is ours.
                        let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                        time = Some(duration_of(TimeSpec::from(ts)));
                    }
                    (libc::IPPROTO_IP, libc::IP_RECVERR)
                    | (libc::IPPROTO_IPV6, libc::IPV6_RECVERR) => {
                        let e = std::ptr::read_unaligned(data.cast::<libc::sock_extended_err>());
                        if e.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING {
                            id = Some(e.ee_data);
                        }
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&hdr.msg_hdr, cm);
            }
        }
        Some(TxStamp {
            id: id?,
            time: time.filter(|t| !t.is_zero())?,
        })
    }

    /// What came with slot `i`'s datagram (just received).
    #[allow(unsafe_code)]
    fn meta(&self, i: usize) -> RecvMeta {
        let hdr = &self.hdrs[i];
        let mut kernel_time = None;
        let mut ttl = None;
        // SAFETY: the kernel has just filled this header: its control buffer holds
        // msg_controllen octets of well-formed cmsgs, which CMSG_FIRSTHDR/CMSG_NXTHDR walk
        // without leaving it; each data read is unaligned-safe and of the size its type says.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&hdr.msg_hdr);
            while let Some(cm) = c.as_ref() {
                let data = libc::CMSG_DATA(cm);
                match (cm.cmsg_level, cm.cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                        kernel_time = Some(duration_of(TimeSpec::from(ts)));
                    }
                    (libc::IPPROTO_IP, libc::IP_TTL)
                    | (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                        let t = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                        ttl = u8::try_from(t).ok();
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&hdr.msg_hdr, cm);
            }
        }
        let from = sockaddr_of(&self.names[i], hdr.msg_hdr.msg_namelen);
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        RecvMeta {
            // A datagram without a usable source, or cut short, is kept as length 0: skipped.
            len: if from.is_some() && !truncated {
                hdr.msg_len as usize
            } else {
                0
            },
            from: from.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            kernel_time,
            ttl,
        }
    }

    /// The `i`th datagram of the last `recv`: its octets (writable, for in-place decryption)
    /// and what came with it.
    pub(crate) fn get(&mut self, i: usize) -> Option<(&mut [u8], RecvMeta)> {
        let meta = *self.metas.get(i)?;
        let at = i * SLOT;
        let len = meta.len.min(SLOT);
        Some((&mut self.bufs[at..at + len], meta))
    }
}

/// A socket address the kernel wrote.
#[allow(unsafe_code)]
fn sockaddr_of(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    let p = std::ptr::from_ref(s);
    match i32::from(s.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // and aligned enough for.
            let a = unsafe { std::ptr::read_unaligned(p.cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::from((
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { std::ptr::read_unaligned(p.cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Up to [`BATCH`] datagrams queued for one `sendmmsg`, allocated once per engine thread.
pub(crate) struct SendBatch {
    headers: socket::MultiHeaders<SockaddrStorage>,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<Option<SockaddrStorage>>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.lens.len())
            .finish()
    }
}

impl SendBatch {
    pub(crate) fn new() -> Self {
        Self {
            headers: socket::MultiHeaders::preallocate(BATCH, None),
            bufs: vec![0u8; BATCH * SLOT],
            lens: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
        }
    }

    /// Datagrams queued.
    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether another datagram fits.
    pub(crate) fn has_room(&self) -> bool {
        self.lens.len() < BATCH
    }

    /// The next free slot (all of its [`SLOT`] octets), or `None` when the batch is full.
    pub(crate) fn slot(&mut self) -> Option<&mut [u8]> {
        let i = self.lens.len();
        (i < BATCH).then(|| &mut self.bufs[i * SLOT..(i + 1) * SLOT])
    }

    /// Queues the slot `slot` returned last: its first `len` octets, to `to`.
    pub(crate) fn commit(&mut self, len: usize, to: SocketAddr) {
        if self.lens.len() < BATCH {
            self.lens.push(len.min(SLOT));
            self.addrs.push(Some(SockaddrStorage::from(to)));
        }
    }

    /// The queued datagrams, writable (for the last stamp and protection before the send).
    pub(crate) fn queued_mut(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        self.bufs
            .chunks_exact_mut(SLOT)
            .zip(&self.lens)
            .map(|(b, &n)| &mut b[..n])
    }

    /// Sends everything queued with one `sendmmsg` (more if the kernel takes only part) and
    /// empties the batch. Returns how many the kernel took; the rest are dropped (a full send
    /// buffer: for test traffic, the same as loss on the path) and the error is returned with
    /// the count.
    pub(crate) fn send(&mut self, fd: RawFd) -> (usize, Option<io::Error>) {
        let total = self.lens.len();
        let mut done = 0;
        let mut err = None;
        while done < total {
            let mut slices = self.bufs.chunks_exact(SLOT).zip(&self.lens).skip(done);
            let ios: [[io::IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| match slices.next() {
                Some((b, &n)) => [io::IoSlice::new(&b[..n])],
                None => [io::IoSlice::new(&[])],
            });
            let n = total - done;
            let r = socket::sendmmsg(
                fd,
                &mut self.headers,
                ios[..n].iter(),
                &self.addrs[done..],
                NO_CMSGS,
                MsgFlags::MSG_DONTWAIT,
            );
            match r {
                Ok(res) => {
                    let k = res.count();
                    if k == 0 {
                        break;
                    }
                    done += k;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    err = Some(e.into());
                    break;
                }
            }
        }
        self.lens.clear();
        self.addrs.clear();
        (done, err)
    }
}

const NO_CMSGS: [socket::ControlMessage<'static>; 0] = [];

/// One transmit timestamp read back from a socket's error queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxStamp {
    /// The datagram's index on its socket (SOF_TIMESTAMPING_OPT_ID), from 0.
    pub(crate) id: u32,
    /// The kernel's software transmit time, since the Unix epoch.
    pub(crate) time: Duration,
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
