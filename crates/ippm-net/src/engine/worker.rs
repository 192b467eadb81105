//! One engine thread: an epoll set of session sockets, a timerfd for the earliest due session,
//! a waker for commands, and the loop that serves them in turn.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tracing::warn;

use super::{End, Out, Role, Wake};
use crate::counters::{TEST_RECV_ERROR, TEST_SEND_ERROR};
use crate::sys::{BATCH, RecvBatch, SendBatch, Timer, TxStamp};

const WAKER: Token = Token(0);
const TIMER: Token = Token(1);
/// Session keys are offset past the two fixed tokens.
const FIRST: usize = 2;

/// Batches of received datagrams one session gets per turn: past that (a flood, or a burst
/// bigger than this) it waits behind the other sessions for its next turn.
const RX_TURN: usize = 4;

/// What other threads tell an engine thread.
pub(super) enum Command {
    Add {
        id: u64,
        socket: UdpSocket,
        role: Box<dyn Role>,
        tx_stamps: bool,
    },
    Stop {
        id: u64,
        grace: Duration,
    },
}

/// The part of an engine thread that other threads reach.
pub(super) struct Shared {
    commands: Mutex<Vec<Command>>,
    waker: Waker,
    /// Sessions added and not yet ended (counted when added, so placement sees them at once).
    pub(super) sessions: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn command(&self, c: Command) {
        if let Ok(mut q) = self.commands.lock() {
            q.push(c);
        }
        // A waker that fails means the thread's epoll set is gone: nothing left to tell.
        let _ = self.waker.wake();
    }
}

/// Starts engine thread number `n`.
pub(super) fn spawn(n: usize) -> io::Result<Arc<Shared>> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let timer = Timer::new()?;
    poll.registry()
        .register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
    let shared = Arc::new(Shared {
        commands: Mutex::new(Vec::new()),
        waker,
        sessions: AtomicUsize::new(0),
    });
    let mine = shared.clone();
    std::thread::Builder::new()
        .name(format!("ippm-engine-{n}"))
        .spawn(move || {
            // The batches hold raw pointers for the kernel (not Send): made on their thread.
            Worker {
                poll,
                timer,
                shared: mine,
                sessions: Slab::new(),
                ids: HashMap::new(),
                timers: BinaryHeap::new(),
                ready: VecDeque::new(),
                armed: None,
                rx: RecvBatch::new(),
                tx: SendBatch::new(),
                stamps: Vec::with_capacity(BATCH),
            }
            .run();
        })?;
    Ok(shared)
}

struct Session {
    id: u64,
    socket: UdpSocket,
    role: Box<dyn Role>,
    /// When the role wants `due` called.
    wake: Option<Instant>,
    /// When its owner's grace period ends.
    deadline: Option<Instant>,
    /// In `ready`: its turn comes once the current round is through.
    queued: bool,
    /// Its last receive turn ended with datagrams possibly still waiting.
    more_rx: bool,
    tx_stamps: bool,
    /// Datagrams sent whose transmit stamp has not been read yet (with `tx_stamps`).
    stamps_due: u64,
}

struct Worker {
    poll: Poll,
    timer: Timer,
    shared: Arc<Shared>,
    sessions: Slab<Session>,
    ids: HashMap<u64, usize>,
    /// (when, session id): stale entries (a session gone, or its time changed) are skipped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    ready: VecDeque<usize>,
    armed: Option<Instant>,
    rx: RecvBatch,
    tx: SendBatch,
    /// Scratch for the transmit stamps of one error-queue read.
    stamps: Vec<TxStamp>,
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = (!self.ready.is_empty()).then_some(Duration::ZERO);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %e, "engine: epoll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for ev in &events {
                match ev.token() {
                    WAKER => self.commands(),
                    // Not read: re-arming discards the expiry, and epoll (edge-triggered) reports
                    // each new one; a syscall saved on every wake-up of a sender.
                    TIMER => self.armed = None,
                    Token(t) => {
                        let key = t - FIRST;
                        if ev.is_error() {
                            self.tx_stamps(key, true);
                        }
                        if ev.is_readable() {
                            self.receive(key);
                        }
                    }
                }
            }
            self.fire_timers();
            // One round over the sessions that were waiting for a turn; those that are still
            // behind afterwards queue again, behind any that joined meanwhile.
            for _ in 0..self.ready.len() {
                let Some(key) = self.ready.pop_front() else {
                    break;
                };
                let Some(s) = self.sessions.get_mut(key) else {
                    continue;
                };
                s.queued = false;
                if s.more_rx {
                    self.receive(key);
                }
                if self
                    .sessions
                    .get(key)
                    .and_then(|s| s.wake)
                    .is_some_and(|t| t <= Instant::now())
                {
                    self.run_due(key);
                }
            }
            self.arm_timer();
        }
    }

    fn commands(&mut self) {
        let cmds = match self.shared.commands.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return,
        };
        for c in cmds {
            match c {
                Command::Add {
                    id,
                    socket,
                    role,
                    tx_stamps,
                } => self.add(id, socket, role, tx_stamps),
                Command::Stop { id, grace } => {
                    let Some(&key) = self.ids.get(&id) else {
                        continue;
                    };
                    if grace.is_zero() {
                        self.end(key, End::Stopped);
                        continue;
                    }
                    let at = Instant::now() + grace;
                    if let Some(s) = self.sessions.get_mut(key) {
                        if s.deadline.is_none_or(|d| at < d) {
                            s.deadline = Some(at);
                            self.timers.push(Reverse((at, id)));
                        }
                    }
                }
            }
        }
    }

    fn add(&mut self, id: u64, socket: UdpSocket, role: Box<dyn Role>, tx_stamps: bool) {
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let fd = socket.as_raw_fd();
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(key + FIRST),
            Interest::READABLE,
        ) {
            warn!(error = %e, "engine: cannot watch a session socket");
            let mut role = role;
            role.end(End::Failed);
            self.shared.sessions.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        entry.insert(Session {
            id,
            socket,
            role,
            wake: None,
            deadline: None,
            queued: false,
            more_rx: false,
            tx_stamps,
            stamps_due: 0,
        });
        self.ids.insert(id, key);
        // Its first due call (a sender's first packet) and any datagram already waiting.
        self.run_due(key);
        self.receive(key);
    }

    fn end(&mut self, key: usize, why: End) {
        if !self.sessions.contains(key) {
            return;
        }
        let mut s = self.sessions.remove(key);
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&s.socket.as_raw_fd()));
        self.ids.remove(&s.id);
        self.shared.sessions.fetch_sub(1, Ordering::Relaxed);
        s.role.end(why);
    }

    /// Up to [`RX_TURN`] batches from the session's socket, each answered with one send.
    fn receive(&mut self, key: usize) {
        // Transmit stamps first: a packet's stamp is queued before its reply can arrive, so
        // the role knows a packet's kernel send time when the reply to it comes.
        if self.sessions.get(key).is_some_and(|s| s.stamps_due > 0) {
            self.tx_stamps(key, false);
        }
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let fd = s.socket.as_raw_fd();
        let mut out = Out {
            batch: &mut self.tx,
            finished: false,
            tx_stamps: false,
        };
        s.more_rx = false;
        let mut failed = false;
        for turn in 0..RX_TURN {
            let n = match self.rx.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    if let Some(more) = TEST_RECV_ERROR.note() {
                        warn!(error = %e, suppressed = more, "engine: receive failed");
                    }
                    failed = e.kind() != io::ErrorKind::ConnectionRefused
                        && e.kind() != io::ErrorKind::Interrupted;
                    break;
                }
            };
            for i in 0..n {
                if let Some((pkt, meta)) = self.rx.get(i) {
                    if meta.len > 0 {
                        s.role.receive(pkt, &meta, &mut out);
                        start_tx_stamps(s, &mut out);
                    }
                }
                if !out.has_room() {
                    flush(s, &mut out);
                }
            }
            flush(s, &mut out);
            // A short batch means the socket was empty when the kernel looked; what arrives
            // later raises a new edge.
            if n < BATCH || out.finished {
                break;
            }
            if turn + 1 == RX_TURN {
                s.more_rx = true;
            }
        }
        let finished = out.finished;
        if s.more_rx && !s.queued {
            s.queued = true;
            self.ready.push_back(key);
        }
        if finished {
            self.end(key, End::Done);
        } else if failed {
            self.end(key, End::Failed);
        }
    }

    /// Reads the session's error queue: transmit timestamps for the role, a batch per call,
    /// only while stamps are owed (so a reply costs no extra call once its stamp is in).
    fn tx_stamps(&mut self, key: usize, woken: bool) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        // The kernel said the queue has something: read it even if nothing is owed (an entry
        // that is not a stamp), or it would stay there.
        if woken {
            s.stamps_due = s.stamps_due.max(1);
        }
        let fd = s.socket.as_raw_fd();
        // Bounded like a receive turn: the queue holds at most what this session sent.
        for _ in 0..RX_TURN {
            if s.stamps_due == 0 {
                break;
            }
            self.stamps.clear();
            let Ok(n) = self.rx.recv_stamps(fd, &mut self.stamps) else {
                break;
            };
            for t in &self.stamps {
                s.role.tx_stamp(t.id, t.time);
            }
            s.stamps_due = s.stamps_due.saturating_sub(n as u64);
            if n < BATCH {
                // Empty now: what is still owed comes with its own EPOLLERR.
                break;
            }
        }
    }

    fn run_due(&mut self, key: usize) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        let mut out = Out {
            batch: &mut self.tx,
            finished: false,
            tx_stamps: false,
        };
        let wake = s.role.due(now, &mut out);
        start_tx_stamps(s, &mut out);
        flush(s, &mut out);
        if out.finished {
            self.end(key, End::Done);
            return;
        }
        match wake {
            Wake::At(t) if t <= now => {
                s.wake = Some(t);
                if !s.queued {
                    s.queued = true;
                    self.ready.push_back(key);
                }
            }
            Wake::At(t) => {
                if s.wake != Some(t) {
                    self.timers.push(Reverse((t, s.id)));
                }
                s.wake = Some(t);
            }
            Wake::Idle => s.wake = None,
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(&key) = self.ids.get(&id) else {
                continue;
            };
            let Some(s) = self.sessions.get(key) else {
                continue;
            };
            if s.deadline.is_some_and(|d| d <= now) {
                self.end(key, End::Stopped);
            } else if s.wake == Some(t) {
                self.run_due(key);
            }
        }
    }

    fn arm_timer(&mut self) {
        // Drop stale heads so the timer is armed for a time that still matters.
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            let live = self
                .ids
                .get(&id)
                .and_then(|&k| self.sessions.get(k))
                .is_some_and(|s| s.wake == Some(t) || s.deadline == Some(t));
            if live {
                break;
            }
            self.timers.pop();
        }
        let next = self.timers.peek().map(|Reverse((t, _))| *t);
        if next == self.armed {
            return;
        }
        if let Some(t) = next {
            if self
                .timer
                .arm(t.saturating_duration_since(Instant::now()))
                .is_ok()
            {
                self.armed = Some(t);
            }
        }
    }
}

/// Sets the session's socket up for transmit stamps if its role asked this turn (before
/// anything it queued since is sent, so the kernel's numbering and the role's agree).
fn start_tx_stamps(s: &mut Session, out: &mut Out<'_>) {
    if !std::mem::take(&mut out.tx_stamps) || s.tx_stamps {
        return;
    }
    match crate::sys::enable_tx_timestamps(&s.socket) {
        Ok(()) => s.tx_stamps = true,
        Err(e) => warn!(error = %e, "engine: cannot turn on transmit stamps"),
    }
}

/// Seals and sends what the session queued.
fn flush(s: &mut Session, out: &mut Out<'_>) {
    let queued = out.batch.len();
    if queued == 0 {
        return;
    }
    for pkt in out.batch.queued_mut() {
        s.role.seal(pkt);
    }
    let (sent, err) = out.batch.send(s.socket.as_raw_fd());
    if s.tx_stamps {
        s.stamps_due += sent as u64;
    }
    if sent < queued {
        s.role.unsent(sent, queued);
        if let Some(more) = TEST_SEND_ERROR.note() {
            let error = err.map(|e| e.to_string()).unwrap_or_default();
            warn!(%error, dropped = queued - sent, suppressed = more, "engine: send failed");
        }
    }
}
