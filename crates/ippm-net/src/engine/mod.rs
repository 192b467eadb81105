//! The test-packet engine: every test session's packets, whatever its role (TWAMP reflector,
//! TWAMP and OWAMP senders, OWAMP receivers, both sides), run on a small fixed set of threads,
//! each owning many session sockets in one epoll set.
//!
//! A thread sleeps in `epoll_wait` until a socket is readable, its nanosecond timer (timerfd,
//! armed for the earliest due session) fires, or a command arrives. A session costs nothing
//! between its packets: no thread of its own and no periodic wake-up; it ends through a
//! command or its own deadline. The thread that the kernel wakes for a packet is the one that
//! answers it (no hand-off between the receive timestamp and the reply), with `recvmmsg` and
//! `sendmmsg` when more than one packet is ready or due. A session that is behind (a flood to
//! its socket, a zero-interval schedule) gets a bounded batch per turn and then waits its turn
//! behind the others, so no session can take a thread from the rest.
//!
//! What a session does with its packets is its `Role`: pure per-packet work on buffers the
//! engine owns, written once per role and shared by every protocol that needs it.

#[cfg(test)]
mod tests;
mod worker;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use crate::sys::RecvMeta;
pub(crate) use crate::sys::SendOpts;

/// When a session wants its [`Role::due`] called next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// At this time (now or earlier: as soon as the other sessions have had their turn).
    At(Instant),
    /// Only when a packet arrives.
    Idle,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The role said it is complete ([`Out::finish`]).
    Done,
    /// Its owner stopped it, or its grace period after a stop is over.
    Stopped,
    /// The engine could not keep it (its socket failed).
    Failed,
}

/// A session's per-packet work. Every method runs on an engine thread and must not block;
/// none is called concurrently with another of the same session.
pub(crate) trait Role: Send + 'static {
    /// A datagram arrived: `pkt` is its octets (writable, for in-place decryption); a reply
    /// goes into `out`.
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>);

    /// The session's timer is due (and once when it starts): queue what is due into `out`,
    /// at most what fits, and say when to be called again.
    fn due(&mut self, _now: Instant, _out: &mut Out<'_>) -> Wake {
        Wake::Idle
    }

    /// Called for each datagram this session queued, in order, just before the batch goes to
    /// the kernel: the place for the last timestamp and the protection over it.
    fn seal(&mut self, _pkt: &mut [u8]) {}

    /// The kernel took only the first `sent` of the `queued` datagrams of the last batch.
    fn unsent(&mut self, _sent: usize, _queued: usize) {}

    /// The kernel's transmit timestamp of this socket's datagram number `id` (from 0), for
    /// sessions started with transmit stamps.
    fn tx_stamp(&mut self, _id: u32, _time: Duration) {}

    /// The session is over; no other method is called after this.
    fn end(&mut self, why: End);
}

/// Where a role queues datagrams to send; the engine sends them (batched) when the role
/// returns.
#[derive(Debug)]
pub(crate) struct Out<'a> {
    batch: &'a mut crate::sys::SendBatch,
    finished: bool,
}

impl Out<'_> {
    /// Whether another datagram fits in this turn.
    pub(crate) fn has_room(&self) -> bool {
        self.batch.has_room()
    }

    /// Lays out one datagram to `to`: `fill` writes it into the slot (any UDP payload fits)
    /// and returns its length, or `None` to send nothing. Returns whether one was queued.
    pub(crate) fn send(
        &mut self,
        to: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        self.send_with(to, |slot| fill(slot).map(|n| (n, SendOpts::default())))
    }

    /// [`Out::send`], with the datagram's own source address or TOS: `fill` returns them
    /// with the length.
    pub(crate) fn send_with(
        &mut self,
        to: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> Option<(usize, SendOpts)>,
    ) -> bool {
        let Some(slot) = self.batch.slot() else {
            return false;
        };
        match fill(slot) {
            Some((len, opts)) => {
                self.batch.commit(len, to, opts);
                true
            }
            None => false,
        }
    }

    /// The session is complete: it ends once this turn's datagrams are sent.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }
}

/// How many engine threads [`Engine::global`] starts (0: one per core).
static THREADS: AtomicUsize = AtomicUsize::new(0);
static GLOBAL: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The set of engine threads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    workers: Arc<[Arc<worker::Shared>]>,
}

impl Engine {
    /// Sets how many threads the process-wide engine runs (0: one per core). Takes effect
    /// only before the engine's first use; returns whether it did.
    pub fn configure(threads: usize) -> bool {
        THREADS.store(threads, Ordering::Relaxed);
        GLOBAL.get().is_none()
    }

    /// The process-wide engine, started on first use (with the threads [`Engine::configure`]
    /// set). Fails, every time, if its first start failed (no threads or descriptors left).
    pub fn global() -> io::Result<&'static Self> {
        GLOBAL
            .get_or_init(|| {
                let n = match THREADS.load(Ordering::Relaxed) {
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    n => n,
                };
                Self::start(n).map_err(|e| format!("cannot start the test-packet engine: {e}"))
            })
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }

    /// Starts an engine of `threads` threads (at least one).
    pub fn start(threads: usize) -> io::Result<Self> {
        let workers = (0..threads.max(1))
            .map(worker::spawn)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            workers: workers.into(),
        })
    }

    /// Threads this engine runs.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Sessions running now, over all threads.
    pub fn sessions(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.sessions.load(Ordering::Relaxed))
            .sum()
    }

    /// Starts a session on the least loaded thread: `socket` (non-blocking, from
    /// `udp::blocking_socket`'s options) is registered and `role.due` is called at once.
    pub(crate) fn add(
        &self,
        socket: UdpSocket,
        role: Box<dyn Role>,
        tx_stamps: bool,
    ) -> io::Result<SessionHandle> {
        socket.set_nonblocking(true)?;
        if tx_stamps {
            crate::sys::enable_tx_timestamps(&socket)?;
        }
        let w = self
            .workers
            .iter()
            .min_by_key(|w| w.sessions.load(Ordering::Relaxed))
            .ok_or_else(|| io::Error::other("engine without threads"))?
            .clone();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        w.sessions.fetch_add(1, Ordering::Relaxed);
        w.command(worker::Command::Add {
            id,
            socket,
            role,
            tx_stamps,
        });
        Ok(SessionHandle {
            worker: w,
            id,
            armed: true,
        })
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The owner's hold on a running session. Dropping it ends the session at once, unless
/// [`SessionHandle::stop`] gave it a grace period or [`SessionHandle::detach`] let it run to
/// its own end.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    worker: Arc<worker::Shared>,
    id: u64,
    armed: bool,
}

impl SessionHandle {
    /// Ends the session after `grace` (zero: at once). A later, shorter grace wins.
    pub(crate) fn stop(&self, grace: Duration) {
        self.worker
            .command(worker::Command::Stop { id: self.id, grace });
    }

    /// Lets the session run until it finishes by itself (or the engine's owner stops it by
    /// another way): dropping the handle no longer stops it.
    pub(crate) fn detach(mut self) {
        self.armed = false;
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if self.armed {
            self.stop(Duration::ZERO);
        }
    }
}

/// Raises the soft limit on open file descriptors to the hard limit (each test session and
/// control connection holds one) and returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    crate::sys::raise_nofile()
}
