//! Batched datagram I/O for the engine threads: `recvmmsg` and `sendmmsg` over libc, each
//! datagram with its own control messages (receive timestamp, TTL, TOS, destination address
//! in; source address and TOS out), and the transmit stamps read back from the error queue.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use nix::sys::time::TimeSpec;

use super::{RecvMeta, duration_of};

/// Largest datagram a batch slot holds: any UDP payload.
pub(crate) const SLOT: usize = 65_536;
/// Datagrams per recvmmsg/sendmmsg call.
pub(crate) const BATCH: usize = 32;

/// Control-message room per received datagram, in u64 words (cmsghdr alignment):
/// SO_TIMESTAMPNS, SCM_TIMESTAMPING (delivered too once a socket asks for transmit stamps),
/// TTL or hop limit, TOS or traffic class and IPV6_PKTINFO take under 200 octets.
const CMSG_WORDS: usize = 32;

/// Control-message room per sent datagram, in u64 words: a source address (IPV6_PKTINFO, 40
/// octets with its header) and a TOS / traffic class (24).
const TX_CMSG_WORDS: usize = 10;

/// The message headers, iovecs and addresses of [`BATCH`] datagrams, all zero.
#[allow(unsafe_code)]
fn slots() -> (
    Vec<libc::mmsghdr>,
    Vec<libc::iovec>,
    Vec<libc::sockaddr_storage>,
) {
    // SAFETY: mmsghdr, iovec and sockaddr_storage are plain C structs of integers and
    // pointers; all-zero is a valid (empty) value of each, and the batches set every pointer
    // before each call that uses it.
    let (hdr, iov, name) = unsafe {
        (
            std::mem::zeroed::<libc::mmsghdr>(),
            std::mem::zeroed::<libc::iovec>(),
            std::mem::zeroed::<libc::sockaddr_storage>(),
        )
    };
    (vec![hdr; BATCH], vec![iov; BATCH], vec![name; BATCH])
}

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
    pub(crate) fn new() -> Self {
        let (hdrs, iovs, names) = slots();
        Self {
            hdrs,
            iovs,
            names,
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
        let (mut kernel_time, mut ttl, mut tos, mut dst, mut ifindex) = (None, None, None, None, 0);
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
                    // IPv4 gives the TOS as one octet, IPv6 the traffic class as an int.
                    (libc::IPPROTO_IP, libc::IP_TOS) => tos = Some(*data),
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                        let t = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                        tos = u8::try_from(t).ok();
                    }
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let p = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                        (dst, ifindex) = super::pktinfo_v4(&p);
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let p = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                        (dst, ifindex) = super::pktinfo_v6(&p);
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
            tos,
            dst,
            ifindex,
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

/// How one queued datagram leaves, beyond its destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendOpts {
    /// Its source address and interface (IP_PKTINFO), for a socket bound to a wildcard
    /// address answering from the address a request came to; `None`: the kernel's choice.
    pub(crate) src: Option<(IpAddr, u32)>,
    /// Its TOS / traffic class octet; `None`: the socket's.
    pub(crate) tos: Option<u8>,
}

/// Up to [`BATCH`] datagrams queued for one `sendmmsg`, allocated once per engine thread.
/// Written over libc like [`RecvBatch`]: nix's `sendmmsg` gives every datagram the same
/// control messages, and a reflector's replies each need their own source and TOS.
pub(crate) struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    name_lens: Vec<libc::socklen_t>,
    cmsgs: Vec<[u64; TX_CMSG_WORDS]>,
    opts: Vec<SendOpts>,
    bufs: Vec<u8>,
    lens: Vec<usize>,
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
        let (hdrs, iovs, names) = slots();
        Self {
            hdrs,
            iovs,
            names,
            name_lens: vec![0; BATCH],
            cmsgs: vec![[0u64; TX_CMSG_WORDS]; BATCH],
            opts: Vec::with_capacity(BATCH),
            bufs: vec![0u8; BATCH * SLOT],
            lens: Vec::with_capacity(BATCH),
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
    pub(crate) fn commit(&mut self, len: usize, to: SocketAddr, opts: SendOpts) {
        let i = self.lens.len();
        if i < BATCH {
            self.name_lens[i] = write_sockaddr(&mut self.names[i], to);
            self.lens.push(len.min(SLOT));
            self.opts.push(opts);
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
    #[allow(unsafe_code)]
    pub(crate) fn send(&mut self, fd: RawFd) -> (usize, Option<io::Error>) {
        let total = self.lens.len();
        let base = self.bufs.as_mut_ptr();
        for i in 0..total {
            self.iovs[i] = libc::iovec {
                // SAFETY: i * SLOT + lens[i] <= bufs.len(): the datagram is inside its slot.
                iov_base: unsafe { base.add(i * SLOT) }.cast(),
                iov_len: self.lens[i],
            };
            let v6 = i32::from(self.names[i].ss_family) == libc::AF_INET6;
            let control = write_cmsgs(&mut self.cmsgs[i], self.opts[i], v6);
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut self.names[i]).cast();
            h.msg_namelen = self.name_lens[i];
            h.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            h.msg_iovlen = 1;
            if control == 0 {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            } else {
                h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
                h.msg_controllen = control as _;
            }
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        let mut done = 0;
        let mut err = None;
        while done < total {
            // SAFETY: headers done..total each point into buffers owned by `self` that
            // outlive the call: a sockaddr of the length given, one iovec inside `bufs`, and
            // control messages of the length given (or none); `total - done` are passed.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(done),
                    (total - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                err = Some(e);
                break;
            }
            if n == 0 {
                break;
            }
            done += usize::try_from(n).unwrap_or(0);
        }
        self.lens.clear();
        self.opts.clear();
        (done.min(total), err)
    }
}

/// Writes `to` into `s`; returns its length.
fn write_sockaddr(s: &mut libc::sockaddr_storage, to: SocketAddr) -> libc::socklen_t {
    let nix_addr = nix::sys::socket::SockaddrStorage::from(to);
    let len = nix::sys::socket::SockaddrLike::len(&nix_addr);
    let src = nix::sys::socket::SockaddrLike::as_ptr(&nix_addr).cast::<u8>();
    let n = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `src` points at a sockaddr of `len` octets inside `nix_addr`, alive here; `s`
    // has room for any sockaddr; the two do not overlap.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(src, std::ptr::from_mut(s).cast::<u8>(), n);
    }
    len
}

/// The octets of a plain C struct without padding.
#[allow(unsafe_code)]
fn as_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: `v` is a live, initialised value of `size_of::<T>()` octets; the callers pass
    // only C structs and integers without padding octets.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<T>()) }
}

/// Lays out `opts`' control messages in `buf` for a datagram on an IPv6 (`v6`) or IPv4
/// socket; returns their length (0: none).
#[allow(unsafe_code)]
fn write_cmsgs(buf: &mut [u64; TX_CMSG_WORDS], opts: SendOpts, v6: bool) -> usize {
    let room = size_of::<[u64; TX_CMSG_WORDS]>();
    // SAFETY: a msghdr whose control buffer is `buf` (u64-aligned, `room` octets) is walked
    // with CMSG_FIRSTHDR/CMSG_NXTHDR, each message written only after checking that its
    // CMSG_SPACE fits in what is left; writes are unaligned-safe.
    unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_control = buf.as_mut_ptr().cast();
        m.msg_controllen = room as _;
        let mut used = 0usize;
        let mut c = libc::CMSG_FIRSTHDR(&m);
        let mut put = |level: libc::c_int, ty: libc::c_int, data: &[u8]| {
            let space = libc::CMSG_SPACE(data.len() as u32) as usize;
            if c.is_null() || used + space > room {
                return;
            }
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            (*c).cmsg_len = libc::CMSG_LEN(data.len() as u32) as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(c), data.len());
            used += space;
            // NXTHDR reads the length just written to find the next header.
            m.msg_controllen = room as _;
            c = libc::CMSG_NXTHDR(&m, c);
        };
        match opts.src {
            Some((IpAddr::V4(a), ifindex)) => {
                let p = libc::in_pktinfo {
                    ipi_ifindex: libc::c_int::try_from(ifindex).unwrap_or(0),
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                put(libc::IPPROTO_IP, libc::IP_PKTINFO, as_bytes(&p));
            }
            Some((IpAddr::V6(a), ifindex)) => {
                let p = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: ifindex,
                };
                put(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, as_bytes(&p));
            }
            None => {}
        }
        if let Some(tos) = opts.tos {
            let v = libc::c_int::from(tos);
            let (level, ty) = if v6 {
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
            } else {
                (libc::IPPROTO_IP, libc::IP_TOS)
            };
            put(level, ty, as_bytes(&v));
        }
        used
    }
}

/// One transmit timestamp read back from a socket's error queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxStamp {
    /// The datagram's index on its socket (SOF_TIMESTAMPING_OPT_ID), from 0.
    pub(crate) id: u32,
    /// The kernel's software transmit time, since the Unix epoch.
    pub(crate) time: Duration,
}
