//! The batched raw baselines: UDP with `recvmmsg` / `sendmmsg` (through nix), up to
//! [`BATCH`] datagrams per system call, with the kernel's receive timestamps.
//!
//! - [`Echo`]: one thread, blocking `recvmmsg` (MSG_WAITFORONE: it waits for the first
//!   datagram only, then takes what is queued) and one `sendmmsg` of the whole batch back.
//! - [`send_paced`]: a sender that sends on a fixed schedule, a batch whenever enough packets
//!   are due (one at a time at low rates, so it is as precise as the unbatched sender there).
//! - [`receive`]: a receiver that takes batches until `n` datagrams or a silence.
//!
//! Packets carry T1 (the send time, ns since the epoch) at offset 0, T2 and T3 (the echo's
//! kernel receive time and its time right before the send) at 8 and 16, and a sequence number
//! at 24 when they are long enough.
//!
//! Edge cases handled: EINTR and EAGAIN (the socket's read timeout, used to look at the stop
//! flag) are retried; a `sendmmsg` that sends only part of the batch is called again for the
//! rest; a batch whose first datagram cannot be sent drops that one datagram and goes on;
//! truncated datagrams (MSG_TRUNC) and ones without a source address are not echoed; a
//! datagram whose control messages were cut (MSG_CTRUNC) gets the batch's read time instead
//! of the kernel's.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};

use super::{now_ns, pin};

/// Most datagrams per system call.
pub(crate) const BATCH: usize = 64;
/// Room for one datagram (the benchmarks' packets are at most a few hundred octets).
const BUF: usize = 2048;

/// One datagram of a received batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    /// Octets received.
    pub(crate) len: usize,
    /// The sender.
    pub(crate) from: Option<SockaddrStorage>,
    /// The kernel's receive time (SO_TIMESTAMPNS), ns since the epoch.
    pub(crate) time_ns: i64,
    /// Cut to the buffer (MSG_TRUNC).
    pub(crate) truncated: bool,
}

/// Buffers and message headers for batches of up to [`BATCH`] datagrams, allocated once.
pub(crate) struct Batch {
    bufs: Vec<[u8; BUF]>,
    rx: MultiHeaders<SockaddrStorage>,
    tx: MultiHeaders<SockaddrStorage>,
    metas: Vec<Meta>,
    addrs: Vec<Option<SockaddrStorage>>,
    lens: Vec<usize>,
}

/// What a `sendmmsg` round did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sent {
    /// Datagrams the kernel took.
    pub(crate) sent: usize,
    /// Datagrams given up on (an error on that datagram).
    pub(crate) dropped: usize,
}

impl Batch {
    pub(crate) fn new() -> Self {
        // Room for the two control messages a test socket gets: SO_TIMESTAMPNS and the TTL.
        let cmsg = nix::cmsg_space!(TimeSpec, i32, i32);
        Self {
            bufs: vec![[0u8; BUF]; BATCH],
            rx: MultiHeaders::preallocate(BATCH, Some(cmsg)),
            tx: MultiHeaders::preallocate(BATCH, None),
            metas: Vec::with_capacity(BATCH),
            addrs: vec![None; BATCH],
            lens: vec![0; BATCH],
        }
    }

    /// One blocking `recvmmsg`: waits for the first datagram (up to the socket's read
    /// timeout: EAGAIN), then takes whatever else is queued, up to [`BATCH`].
    pub(crate) fn recv(&mut self, fd: RawFd) -> Result<usize, Errno> {
        self.metas.clear();
        let mut bufs = self.bufs.iter_mut();
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                bufs.next().map(|b| &mut b[..]).unwrap_or_default(),
            )]
        });
        let got = socket::recvmmsg(
            fd,
            &mut self.rx,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        let read_at = now_ns();
        for m in got {
            let mut time_ns = None;
            if let Ok(cmsgs) = m.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        time_ns = Some(ts.tv_sec() * 1_000_000_000 + ts.tv_nsec());
                    }
                }
            }
            self.metas.push(Meta {
                len: m.bytes,
                from: m.address,
                time_ns: time_ns.unwrap_or(read_at),
                truncated: m.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(self.metas.len())
    }

    /// The datagrams of the last [`recv`](Self::recv).
    pub(crate) fn metas(&self) -> &[Meta] {
        &self.metas
    }

    /// Received datagram `i` (or buffer `i` to fill before a send).
    pub(crate) fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.metas.get(i).map_or(BUF, |m| m.len.min(BUF))]
    }

    /// Buffer `i`, whole.
    pub(crate) fn buf_mut(&mut self, i: usize) -> &mut [u8; BUF] {
        &mut self.bufs[i]
    }

    /// Sends every datagram of the last receive back to where it came from; truncated ones
    /// and ones without an address are left out (counted as dropped).
    pub(crate) fn echo(&mut self, fd: RawFd) -> Sent {
        let mut n = 0;
        let mut skipped = 0;
        for (i, m) in self.metas.iter().enumerate() {
            if m.truncated || m.from.is_none() {
                skipped += 1;
                continue;
            }
            if n != i {
                self.bufs.copy_within(i..i + 1, n);
            }
            self.addrs[n] = m.from;
            self.lens[n] = m.len;
            n += 1;
        }
        let mut r = self.send(fd, n);
        r.dropped += skipped;
        r
    }

    /// Sends the first `len` octets of buffers `0..count` to `to`.
    pub(crate) fn send_to(&mut self, fd: RawFd, count: usize, len: usize, to: SockaddrStorage) {
        for i in 0..count {
            self.addrs[i] = Some(to);
            self.lens[i] = len.min(BUF);
        }
        self.send(fd, count);
    }

    /// `sendmmsg` of buffers `0..n` (lengths and addresses from `lens` and `addrs`), called
    /// again for what a partial send left.
    fn send(&mut self, fd: RawFd, n: usize) -> Sent {
        let mut out = Sent::default();
        let (bufs, lens) = (&self.bufs, &self.lens);
        let iovs: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(&bufs[i][..lens[i]])]);
        let mut k = 0;
        let mut retries = 0;
        while k < n {
            let none: [ControlMessage<'_>; 0] = [];
            match socket::sendmmsg(
                fd,
                &mut self.tx,
                iovs[k..n].iter(),
                &self.addrs[k..n],
                none,
                MsgFlags::empty(),
            ) {
                Ok(r) => {
                    let sent = r.count();
                    k += sent;
                    out.sent += sent;
                }
                Err(Errno::EINTR | Errno::EAGAIN | Errno::ENOBUFS) if retries < 1000 => {
                    retries += 1;
                }
                // The first datagram of what is left failed: give it up.
                Err(_) => {
                    k += 1;
                    out.dropped += 1;
                }
            }
        }
        out
    }
}

/// A thread's CPU time (user and system), ns.
pub(crate) fn thread_cpu_ns() -> i64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

/// What the echo thread did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EchoStats {
    /// Datagrams received.
    pub(crate) received: u64,
    /// Datagrams sent back.
    pub(crate) echoed: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub(crate) batches: u64,
    /// The thread's CPU time (user and system) over its life, ns.
    pub(crate) cpu_ns: i64,
    /// How long it ran.
    pub(crate) wall: Duration,
}

/// The batched echo: one thread pinned to `cpu`, blocking `recvmmsg` and `sendmmsg`.
pub(crate) struct Echo {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<EchoStats>>,
}

impl Echo {
    /// Starts it on `sock` (a blocking socket, as `ippm_net::udp::blocking_socket` makes);
    /// with `stamp` it writes T2 and T3 into each packet at offsets 8 and 16.
    pub(crate) fn start(sock: UdpSocket, cpu: usize, stamp: bool) -> Self {
        // The read timeout is how often the thread looks at the stop flag.
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            pin(cpu);
            let t0 = Instant::now();
            let cpu0 = thread_cpu_ns();
            let fd = sock.as_raw_fd();
            let mut b = Batch::new();
            let mut st = EchoStats::default();
            while !stop2.load(Ordering::Relaxed) {
                let n = match b.recv(fd) {
                    Ok(n) => n,
                    Err(Errno::EINTR | Errno::EAGAIN) => continue,
                    // ECONNREFUSED and the like, left by an ICMP error: go on, without
                    // spinning should it persist.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                };
                st.received += n as u64;
                st.batches += 1;
                if stamp {
                    for i in 0..n {
                        let t2 = b.metas()[i].time_ns;
                        b.buf_mut(i)[8..16].copy_from_slice(&t2.to_be_bytes());
                    }
                    let t3 = now_ns();
                    for i in 0..n {
                        b.buf_mut(i)[16..24].copy_from_slice(&t3.to_be_bytes());
                    }
                }
                st.echoed += b.echo(fd).sent as u64;
            }
            st.cpu_ns = thread_cpu_ns() - cpu0;
            st.wall = t0.elapsed();
            st
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread and says what it did.
    pub(crate) fn finish(mut self) -> EchoStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `n` packets of `len` octets to `to` at `rate` per second on a fixed schedule,
/// stamping T1 (and the sequence number, from octet 24 on) right before each `sendmmsg`; a
/// batch goes out when `rate * tick` packets are due (at least one, at most [`BATCH`]).
/// Returns the achieved rate.
pub(crate) fn send_paced(
    sock: &UdpSocket,
    to: SocketAddr,
    rate: u64,
    n: u64,
    len: usize,
    tick: Duration,
) -> f64 {
    send_paced_with(sock, to, rate, n, len, tick, |buf, seq, t1| {
        buf[..8].copy_from_slice(&t1.to_be_bytes());
        if buf.len() >= 32 {
            buf[24..32].copy_from_slice(&seq.to_be_bytes());
        }
    })
}

/// [`send_paced`], each packet (zeroed, `len` octets) written by `stamp(packet, seq, t1_ns)`
/// right before its batch is sent.
pub(crate) fn send_paced_with(
    sock: &UdpSocket,
    to: SocketAddr,
    rate: u64,
    n: u64,
    len: usize,
    tick: Duration,
    stamp: impl Fn(&mut [u8], u64, i64),
) -> f64 {
    let fd = sock.as_raw_fd();
    let to = SockaddrStorage::from(to);
    let per_batch = ((rate as f64 * tick.as_secs_f64()).round() as u64).clamp(1, BATCH as u64);
    let len = len.clamp(8, BUF);
    let mut b = Batch::new();
    let start = Instant::now();
    let due_at =
        |i: u64| start + Duration::from_nanos((i as u128 * 1_000_000_000 / rate as u128) as u64);
    let mut sent = 0u64;
    while sent < n {
        let count = per_batch.min(n - sent);
        // Wait for the last packet of this batch to be due: sleep while far, then spin.
        let at = due_at(sent + count - 1);
        let now = Instant::now();
        if at > now + Duration::from_micros(100) {
            std::thread::sleep(at - now - Duration::from_micros(50));
        }
        while Instant::now() < at {
            std::hint::spin_loop();
        }
        let t1 = now_ns();
        for i in 0..count as usize {
            let buf = &mut b.buf_mut(i)[..len];
            buf.fill(0);
            stamp(buf, sent + i as u64, t1);
        }
        b.send_to(fd, count as usize, len, to);
        sent += count;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Receives batches on `sock` until `n` datagrams have come or none for `silence`, handing
/// each (its octets, its kernel receive time in ns) to `f`; returns how many came and in how
/// many `recvmmsg` calls.
pub(crate) fn receive(
    sock: &UdpSocket,
    n: u64,
    silence: Duration,
    mut f: impl FnMut(&[u8], i64),
) -> (u64, u64) {
    sock.set_read_timeout(Some(silence)).unwrap();
    let fd = sock.as_raw_fd();
    let mut b = Batch::new();
    let (mut got, mut calls, mut errors) = (0u64, 0u64, 0u32);
    while got < n {
        let k = match b.recv(fd) {
            Ok(k) => k,
            Err(Errno::EINTR) => continue,
            // The silence: the sender is done, or what is missing is lost.
            Err(Errno::EAGAIN) => break,
            // Errors left by ICMP and the like: go on, within reason.
            Err(_) if errors < 1000 => {
                errors += 1;
                continue;
            }
            Err(_) => break,
        };
        calls += 1;
        for i in 0..k {
            let m = b.metas()[i];
            if m.truncated {
                continue;
            }
            got += 1;
            f(b.packet(i), m.time_ns);
        }
    }
    (got, calls)
}
