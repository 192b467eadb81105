//! The records of the OWAMP test sessions this server receives, kept for Fetch-Session
//! (RFC 4656 §3.9) beyond the control connection that made them: a Fetch-Session may come on
//! another connection, and owping fetches after Stop-Sessions on the same one.
//!
//! Everything here is bounded by what the server chose, never by what the network said:
//!
//! - a session records at most `min(per_session, DUPLICATE_FACTOR × Number of Packets)`
//!   records, and only packets whose sequence number is below Number of Packets (and below
//!   Next Seqno once Stop-Sessions has given one, RFC 4656 §3.8);
//! - the store holds at most `total` records. A session is accepted only if its Number of
//!   Packets fits beside what the others hold or were promised ([`Store::insert`] refuses,
//!   and the OWAMP server answers Accept = 3 or 4), so an accepted session can always record
//!   every packet once; duplicates beyond that take from what is left, exactly (one lock, no
//!   counter that can overshoot);
//! - storage grows in fixed chunks of [`CHUNK_RECORDS`] as records arrive, so a request for
//!   many packets that are never sent costs nothing;
//! - finished sessions expire after `keep`, and the oldest finished ones go first when a new
//!   session needs room ([`Store::insert`] and [`Store::fetch`] expire; there is no timer);
//! - a Fetch-Session answer is read out in chunks through a [`FetchCursor`]: one chunk is
//!   copied at a time, never the whole session.
//!
//! The receiving side (a packet-engine thread) owns a [`Recorder`] per session and pushes
//! into it; the control side keeps a [`SessionHandle`] for Stop-Sessions.
//!
//! Locks: the session map, then a session's records, then the ledger of record counts, in
//! that order and never the other way, so there is no deadlock; the receiving thread takes
//! only its session's lock (and the ledger for records beyond its promised share).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ippm_proto::Accept;
use ippm_proto::session::{Error, FetchReplyHeader, Server};
use ippm_proto::wire::owamp::{DataRecord, MAX_FETCH_RECORDS, RequestSessionRepr, SkipRange};

/// Records per storage chunk and per part of a streamed Fetch-Session answer. 1024 records
/// are 32 KiB in memory and 25 KiB on the wire: large enough that per-chunk costs (a lock, a
/// write) vanish, small enough that a connection holds little.
pub const CHUNK_RECORDS: usize = 1024;

/// How many records a session may keep per packet it asked for: duplicates are kept (RFC
/// 4656 §3.9 counts them in Number of Records), but a sender repeating one packet forever
/// must not fill the session's share.
pub const DUPLICATE_FACTOR: usize = 2;

/// The most reply octets a connection queues at once while it streams the records of a
/// Fetch-Session answer: one chunk of records and the partial block carried from the one
/// before (the header, Request-Session and skip ranges go out before, and the end is two
/// blocks). Tests check the driver against it.
pub const MAX_QUEUED_RECORD_OCTETS: usize = CHUNK_RECORDS * DataRecord::LEN + 15;

/// How much the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most records of one session (more packets than this are refused at Request-Session).
    /// Clamped to what a Fetch-Ack can announce ([`MAX_FETCH_RECORDS`]).
    pub per_session: usize,
    /// Most records over all sessions, finished or running, including those promised to
    /// running sessions for the packets they asked for.
    pub total: usize,
    /// Most sessions held, finished or running.
    pub sessions: usize,
    /// How long a finished session stays available to Fetch-Session.
    pub keep: Duration,
}

impl Default for StoreLimits {
    /// 2^20 records per session is a million-packet session (an hour at 300 packets a
    /// second), 32 MiB; 2^23 in all (256 MiB) keeps eight of those, or thousands of the
    /// usual 100-packet owping sessions, for the ten minutes owampd keeps them too.
    fn default() -> Self {
        Self {
            per_session: 1 << 20,
            total: 1 << 23,
            sessions: 4096,
            keep: Duration::from_secs(600),
        }
    }
}

/// Why [`Store::insert`] refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The session asks for more packets than the store keeps for any one session.
    #[error("{asked} packets asked for, the store keeps at most {max} for a session")]
    SessionTooLarge {
        /// Number of Packets of the request.
        asked: u32,
        /// The per-session limit (or the total, if smaller).
        max: usize,
    },
    /// Too many records held or promised to running sessions, even after expiring.
    #[error("record store full: {needed} records needed, {free} free")]
    Full {
        /// Number of Packets of the request.
        needed: usize,
        /// Records not held or promised.
        free: usize,
    },
    /// The store holds its most sessions, and none finished can go.
    #[error("record store holds its most sessions ({0})")]
    TooManySessions(usize),
    /// A session with this SID is stored already.
    #[error("a session with this SID is stored already")]
    SidInUse,
}

impl StoreError {
    /// The Accept-Session code for the refusal (RFC 4656 §3.3): 4 for what can never fit, 3
    /// for what may fit later, 2 for a SID collision (our own SID generation failed).
    pub fn accept(&self) -> Accept {
        match self {
            Self::SessionTooLarge { .. } => Accept::PermanentResourceLimitation,
            Self::Full { .. } | Self::TooManySessions(_) => Accept::TemporaryResourceLimitation,
            Self::SidInUse => Accept::InternalError,
        }
    }

    /// A short fixed description for log lines.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SessionTooLarge { .. } => "more packets than the record store keeps",
            Self::Full { .. } => "record store full",
            Self::TooManySessions(_) => "record store holds its most sessions",
            Self::SidInUse => "SID already in the record store",
        }
    }
}

/// Why [`Recorder::push`] did not keep a record. Each one is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Dropped {
    /// The sequence number is not below the request's Number of Packets: no such packet
    /// belongs to the session.
    #[error("sequence number {seq} not below the session's {num_packets} packets")]
    SeqOutOfRange {
        /// The packet's sequence number.
        seq: u32,
        /// Number of Packets of the request.
        num_packets: u32,
    },
    /// Stop-Sessions said the sender stopped before this sequence number (RFC 4656 §3.8).
    #[error("sequence number {seq} at or past Next Seqno {next_seqno}")]
    PastNextSeqno {
        /// The packet's sequence number.
        seq: u32,
        /// Next Seqno from Stop-Sessions.
        next_seqno: u32,
    },
    /// The session holds its most records (too many duplicates).
    #[error("session holds its most records ({0})")]
    SessionFull(usize),
    /// The store holds its most records.
    #[error("record store holds its most records ({0})")]
    StoreFull(usize),
}

/// A count of the store's contents, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Sessions held.
    pub sessions: usize,
    /// Of which still recording.
    pub running: usize,
    /// Records held.
    pub records: usize,
    /// Records held plus those promised to running sessions (at most the total limit).
    pub committed: usize,
    /// Records dropped by all sessions since the store was made.
    pub dropped: u64,
}

/// What the Fetch-Session answers have done, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchStats {
    /// Cursors made (Fetch-Sessions for a known session).
    pub started: u64,
    /// Answers whose end was queued.
    pub completed: u64,
    /// Cursors dropped before their end (the connection went, or the reader was too slow).
    pub abandoned: u64,
    /// Records handed out by all cursors.
    pub records: u64,
    /// The most reply octets one connection had queued after a part of records (see
    /// [`MAX_QUEUED_RECORD_OCTETS`]).
    pub peak_queued_octets: usize,
}

/// Received sessions by SID, shared by all control connections.
pub struct Store {
    inner: Arc<Inner>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(StoreLimits::default())
    }
}

struct Inner {
    limits: StoreLimits,
    sessions: Mutex<HashMap<[u8; 16], Arc<Session>>>,
    /// Records held plus records promised to running sessions.
    committed: Mutex<usize>,
    dropped: AtomicU64,
    fetch: FetchCounters,
}

#[derive(Debug, Default)]
struct FetchCounters {
    started: AtomicU64,
    completed: AtomicU64,
    abandoned: AtomicU64,
    records: AtomicU64,
    peak_queued: AtomicUsize,
}

struct Session {
    request: RequestSessionRepr,
    /// Records promised: Number of Packets, held free for the session while it runs.
    promised: usize,
    /// Most records the session keeps.
    cap: usize,
    data: Mutex<Data>,
    dropped: AtomicU64,
    /// Cursors reading the session; it does not expire while there are any.
    readers: AtomicUsize,
}

// Debug by hand below: the derived one would print every record.
#[derive(Default)]
struct Data {
    /// Records in arrival order, in chunks of capacity [`CHUNK_RECORDS`] (all but the last
    /// full). Only ever appended to, so a position once seen stays valid.
    chunks: Vec<Vec<DataRecord>>,
    len: usize,
    /// Next Seqno and skip ranges from Stop-Sessions.
    stop: Option<(u32, Vec<SkipRange>)>,
    finished_at: Option<Instant>,
}

impl Data {
    fn append(&mut self, rec: DataRecord) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK_RECORDS => c.push(rec),
            _ => {
                let mut c = Vec::with_capacity(CHUNK_RECORDS);
                c.push(rec);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    /// What the session counts against the store: its records, or while it runs, at least
    /// what it was promised.
    fn committed(&self, promised: usize) -> usize {
        if self.finished_at.is_some() {
            self.len
        } else {
            self.len.max(promised)
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("limits", &self.inner.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &crate::twamp_server::hex(&self.request.sid))
            .field("num_packets", &self.request.num_packets)
            .field("cap", &self.cap)
            .field("records", &lock(&self.data).len)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock means a thread panicked while holding it; the counts it guards are still
/// whole numbers and the store stays usable, so the guard is taken as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// An empty store with these limits.
    pub fn new(mut limits: StoreLimits) -> Self {
        // A Fetch-Ack cannot announce more, and the client refuses to parse more.
        limits.per_session = limits.per_session.min(MAX_FETCH_RECORDS as usize);
        Self {
            inner: Arc::new(Inner {
                limits,
                sessions: Mutex::new(HashMap::new()),
                committed: Mutex::new(0),
                dropped: AtomicU64::new(0),
                fetch: FetchCounters::default(),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &StoreLimits {
        &self.inner.limits
    }

    /// Adds a session the server is about to receive and returns its recorder, or refuses
    /// when the session's Number of Packets cannot be kept (after expiring what may go).
    pub fn insert(
        &self,
        sid: [u8; 16],
        request: RequestSessionRepr,
    ) -> Result<Recorder, StoreError> {
        self.insert_at(sid, request, Instant::now())
    }

    fn insert_at(
        &self,
        sid: [u8; 16],
        request: RequestSessionRepr,
        now: Instant,
    ) -> Result<Recorder, StoreError> {
        let lim = &self.inner.limits;
        let n = request.num_packets as usize;
        let max = lim.per_session.min(lim.total);
        if n > max {
            return Err(StoreError::SessionTooLarge {
                asked: request.num_packets,
                max,
            });
        }
        let mut map = lock(&self.inner.sessions);
        if map.contains_key(&sid) {
            return Err(StoreError::SidInUse);
        }
        self.expire(&mut map, now, n, 1);
        if map.len() >= lim.sessions {
            return Err(StoreError::TooManySessions(map.len()));
        }
        {
            let mut committed = lock(&self.inner.committed);
            if *committed + n > lim.total {
                return Err(StoreError::Full {
                    needed: n,
                    free: lim.total.saturating_sub(*committed),
                });
            }
            *committed += n;
        }
        let session = Arc::new(Session {
            request,
            promised: n,
            cap: n.saturating_mul(DUPLICATE_FACTOR).min(lim.per_session),
            data: Mutex::new(Data::default()),
            dropped: AtomicU64::new(0),
            readers: AtomicUsize::new(0),
        });
        map.insert(sid, session.clone());
        Ok(Recorder {
            handle: SessionHandle {
                session,
                store: self.inner.clone(),
            },
            finished: false,
        })
    }

    /// Drops finished sessions older than `keep`, then the oldest finished ones while a new
    /// session of `need` records and `new_sessions` more sessions would not fit. Sessions
    /// being read by a cursor stay.
    fn expire(
        &self,
        map: &mut HashMap<[u8; 16], Arc<Session>>,
        now: Instant,
        need: usize,
        new_sessions: usize,
    ) {
        let lim = &self.inner.limits;
        let mut done: Vec<([u8; 16], Instant)> = map
            .iter()
            .filter(|(_, s)| s.readers.load(Ordering::Acquire) == 0)
            .filter_map(|(sid, s)| lock(&s.data).finished_at.map(|t| (*sid, t)))
            .collect();
        done.sort_by_key(|d| d.1);
        for (sid, at) in done {
            let over = *lock(&self.inner.committed) + need > lim.total
                || map.len() + new_sessions > lim.sessions;
            if !over && now.saturating_duration_since(at) <= lim.keep {
                // Sorted oldest first: the rest are younger still.
                break;
            }
            if let Some(s) = map.remove(&sid) {
                // Finished: it counts exactly its records, and no recorder adds to them.
                let held = lock(&s.data).len;
                let mut committed = lock(&self.inner.committed);
                *committed = committed.saturating_sub(held);
            }
        }
    }

    /// Starts reading a session for Fetch-Session: the records with sequence numbers in
    /// `begin_seq..=end_seq` and, once Stop-Sessions gave one, below Next Seqno (RFC 4656
    /// §3.8: nothing at or past it was sent), in arrival order. `None` for an unknown (or
    /// expired) session. The header, with the number of records, is fixed here: records
    /// that arrive later are not part of this answer.
    pub fn fetch(&self, sid: &[u8; 16], begin_seq: u32, end_seq: u32) -> Option<FetchCursor> {
        self.fetch_at(sid, begin_seq, end_seq, Instant::now())
    }

    fn fetch_at(
        &self,
        sid: &[u8; 16],
        begin_seq: u32,
        end_seq: u32,
        now: Instant,
    ) -> Option<FetchCursor> {
        let session = {
            let mut map = lock(&self.inner.sessions);
            self.expire(&mut map, now, 0, 0);
            let s = map.get(sid)?.clone();
            // Under the map lock, so expiry cannot take it between lookup and this.
            s.readers.fetch_add(1, Ordering::AcqRel);
            s
        };
        let (end, finished, stop) = {
            let d = lock(&session.data);
            (d.len, d.finished_at.is_some(), d.stop.clone())
        };
        let (next_seqno, skip_ranges) = stop.unzip();
        let filter = Filter {
            begin: begin_seq,
            end: end_seq,
            below: next_seqno,
        };
        // Count first (Number of Records precedes the records), one storage chunk per lock
        // so the receiving thread is never held for a whole session.
        let mut count = 0usize;
        let mut pos = 0;
        while pos < end {
            let d = lock(&session.data);
            let (ci, off) = (pos / CHUNK_RECORDS, pos % CHUNK_RECORDS);
            let Some(chunk) = d.chunks.get(ci) else { break };
            let stop_at = chunk.len().min(end - ci * CHUNK_RECORDS);
            count += chunk[off..stop_at]
                .iter()
                .filter(|r| filter.matches(r))
                .count();
            pos = ci * CHUNK_RECORDS + stop_at;
        }
        // At most `cap` <= per_session <= MAX_FETCH_RECORDS records are held.
        let num_records = u32::try_from(count).unwrap_or(u32::MAX);
        self.inner.fetch.started.fetch_add(1, Ordering::Relaxed);
        Some(FetchCursor {
            header: FetchReplyHeader {
                finished,
                next_seqno: next_seqno.unwrap_or(0),
                request: session.request.clone(),
                skip_ranges: skip_ranges.unwrap_or_default(),
                num_records,
            },
            session,
            store: self.inner.clone(),
            filter,
            pos: 0,
            end,
            remaining: count,
            chunk_len: CHUNK_RECORDS,
            buf: Vec::new(),
            ended: false,
        })
    }

    /// What the store holds.
    pub fn stats(&self) -> StoreStats {
        let map = lock(&self.inner.sessions);
        let mut st = StoreStats {
            sessions: map.len(),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            ..StoreStats::default()
        };
        for s in map.values() {
            let d = lock(&s.data);
            st.records += d.len;
            st.running += usize::from(d.finished_at.is_none());
        }
        st.committed = *lock(&self.inner.committed);
        st
    }

    /// Records dropped by all sessions since the store was made.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Records dropped by one session, while it is stored.
    pub fn session_dropped(&self, sid: &[u8; 16]) -> Option<u64> {
        let map = lock(&self.inner.sessions);
        map.get(sid).map(|s| s.dropped.load(Ordering::Relaxed))
    }

    /// What the Fetch-Session answers have done.
    pub fn fetch_stats(&self) -> FetchStats {
        let f = &self.inner.fetch;
        FetchStats {
            started: f.started.load(Ordering::Relaxed),
            completed: f.completed.load(Ordering::Relaxed),
            abandoned: f.abandoned.load(Ordering::Relaxed),
            records: f.records.load(Ordering::Relaxed),
            peak_queued_octets: f.peak_queued.load(Ordering::Relaxed),
        }
    }
}

/// The control side's hold on a session: Stop-Sessions and the drop count. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    session: Arc<Session>,
    store: Arc<Inner>,
}

impl SessionHandle {
    /// Stop-Sessions arrived for this session (RFC 4656 §3.8): the sender's Next Seqno and
    /// skip ranges, which Fetch-Session reports; records at or past Next Seqno are no longer
    /// taken.
    pub fn stop(&self, next_seqno: u32, skip_ranges: Vec<SkipRange>) {
        lock(&self.session.data).stop = Some((next_seqno, skip_ranges));
    }

    /// Records this session dropped.
    pub fn dropped(&self) -> u64 {
        self.session.dropped.load(Ordering::Relaxed)
    }

    /// Records this session holds.
    pub fn records(&self) -> usize {
        lock(&self.session.data).len
    }

    /// Whether the session has finished (its recorder is gone).
    pub fn is_finished(&self) -> bool {
        lock(&self.session.data).finished_at.is_some()
    }
}

/// Where the receiving side puts one session's records. Dropping it (or [`Recorder::finish`])
/// marks the session finished: its records are final, and it expires `keep` later.
#[derive(Debug)]
pub struct Recorder {
    handle: SessionHandle,
    finished: bool,
}

impl Recorder {
    /// Keeps a record of a received packet, if it belongs to the session and fits.
    pub fn push(&mut self, rec: DataRecord) -> Result<(), Dropped> {
        let r = self.try_push(rec);
        if r.is_err() {
            self.handle.session.dropped.fetch_add(1, Ordering::Relaxed);
            self.handle.store.dropped.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn try_push(&mut self, rec: DataRecord) -> Result<(), Dropped> {
        let s = &*self.handle.session;
        let num_packets = s.request.num_packets;
        if rec.seq >= num_packets {
            return Err(Dropped::SeqOutOfRange {
                seq: rec.seq,
                num_packets,
            });
        }
        let mut d = lock(&s.data);
        if let Some((next_seqno, _)) = d.stop {
            if rec.seq >= next_seqno {
                return Err(Dropped::PastNextSeqno {
                    seq: rec.seq,
                    next_seqno,
                });
            }
        }
        if d.len >= s.cap {
            return Err(Dropped::SessionFull(s.cap));
        }
        if d.len >= s.promised {
            // Beyond the promised share: one more record of the store's, if it has one.
            let total = self.handle.store.limits.total;
            let mut committed = lock(&self.handle.store.committed);
            if *committed >= total {
                return Err(Dropped::StoreFull(total));
            }
            *committed += 1;
        }
        d.append(rec);
        Ok(())
    }

    /// Stop-Sessions arrived (see [`SessionHandle::stop`]).
    pub fn stop(&self, next_seqno: u32, skip_ranges: Vec<SkipRange>) {
        self.handle.stop(next_seqno, skip_ranges);
    }

    /// A handle for the control side.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// Records this session dropped.
    pub fn dropped(&self) -> u64 {
        self.handle.dropped()
    }

    /// Records this session holds.
    pub fn records(&self) -> usize {
        self.handle.records()
    }

    /// The session is over: no more records.
    pub fn finish(mut self) {
        self.finish_at(Instant::now());
    }

    fn finish_at(&mut self, now: Instant) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let s = &*self.handle.session;
        let mut d = lock(&s.data);
        let before = d.committed(s.promised);
        d.finished_at = Some(now);
        // What was promised and not used goes back to the store.
        let release = before - d.committed(s.promised);
        let mut committed = lock(&self.handle.store.committed);
        *committed = committed.saturating_sub(release);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish_at(Instant::now());
    }
}

#[derive(Debug, Clone, Copy)]
struct Filter {
    begin: u32,
    end: u32,
    below: Option<u32>,
}

impl Filter {
    fn matches(&self, r: &DataRecord) -> bool {
        (self.begin..=self.end).contains(&r.seq) && self.below.is_none_or(|n| r.seq < n)
    }
}

/// One Fetch-Session answer being read out of the store: the header, then the records in
/// parts of at most [`CHUNK_RECORDS`], exactly `header().num_records` of them. The session
/// does not expire while a cursor reads it.
#[derive(Debug)]
pub struct FetchCursor {
    header: FetchReplyHeader,
    session: Arc<Session>,
    store: Arc<Inner>,
    filter: Filter,
    /// Next position to look at, and the end of the positions this answer covers.
    pos: usize,
    end: usize,
    remaining: usize,
    chunk_len: usize,
    /// The part handed out last; reused, so a cursor holds one part.
    buf: Vec<DataRecord>,
    ended: bool,
}

impl FetchCursor {
    /// Fetch-Ack's data, the Request-Session and skip ranges, and the number of records.
    pub fn header(&self) -> &FetchReplyHeader {
        &self.header
    }

    /// Records not yet handed out.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Hands out at most `n` records per part (1 ..= [`CHUNK_RECORDS`]).
    pub fn with_chunk_len(mut self, n: usize) -> Self {
        self.chunk_len = n.clamp(1, CHUNK_RECORDS);
        self
    }

    /// The next part of the records, `None` once all have been handed out.
    pub fn next_chunk(&mut self) -> Option<&[DataRecord]> {
        self.buf.clear();
        while self.buf.len() < self.chunk_len && self.remaining > self.buf.len() {
            if self.pos >= self.end {
                break;
            }
            // One storage chunk per lock, as when counting.
            let d = lock(&self.session.data);
            let (ci, off) = (self.pos / CHUNK_RECORDS, self.pos % CHUNK_RECORDS);
            let Some(chunk) = d.chunks.get(ci) else { break };
            let stop_at = chunk.len().min(self.end - ci * CHUNK_RECORDS);
            let mut i = off;
            while i < stop_at && self.buf.len() < self.chunk_len {
                if self.filter.matches(&chunk[i]) {
                    self.buf.push(chunk[i]);
                }
                i += 1;
            }
            self.pos = ci * CHUNK_RECORDS + i;
        }
        // The same filter over the same append-only positions finds what was counted; the
        // bound only guards against handing out more than announced.
        self.buf.truncate(self.remaining);
        if self.buf.is_empty() {
            return None;
        }
        self.remaining -= self.buf.len();
        self.store
            .fetch
            .records
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        Some(&self.buf)
    }

    /// Notes how many reply octets a connection has queued, for [`FetchStats`].
    pub fn note_queued(&self, octets: usize) {
        self.store
            .fetch
            .peak_queued
            .fetch_max(octets, Ordering::Relaxed);
    }

    /// Queues the next part of the answer in `server`, which must have had
    /// [`Server::fetch_reply_begin`] with this cursor's header: a part of records while
    /// there are any, then the end. False once the end is queued. Call it again only after
    /// writing what it queued, so a connection holds one part.
    pub fn pump(&mut self, server: &mut Server) -> Result<bool, Error> {
        if self.ended {
            return Ok(false);
        }
        if self.next_chunk().is_some() {
            server.fetch_reply_records(&self.buf)?;
            self.note_queued(server.queued_octets());
            return Ok(true);
        }
        self.ended = true;
        server.fetch_reply_end()?;
        self.store.fetch.completed.fetch_add(1, Ordering::Relaxed);
        Ok(false)
    }
}

impl Drop for FetchCursor {
    fn drop(&mut self) {
        self.session.readers.fetch_sub(1, Ordering::AcqRel);
        if !self.ended {
            self.store.fetch.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl crate::accept::ReplyStream for FetchCursor {
    fn pump(&mut self, server: &mut Server) -> Result<bool, Error> {
        Self::pump(self, server)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use ippm_proto::wire::owamp::TypeP;
    use ippm_proto::{ErrorEstimate, Timestamp};

    use super::*;

    fn req(num_packets: u32) -> RequestSessionRepr {
        RequestSessionRepr {
            conf_sender: false,
            conf_receiver: true,
            num_packets,
            sender_port: 1,
            receiver_port: 2,
            sender_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            receiver_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sid: [0; 16],
            padding_length: 0,
            start_time: Timestamp::ZERO,
            timeout: 0,
            type_p: TypeP(0),
            slots: vec![ippm_proto::schedule::Slot::Fixed(1)],
        }
    }

    fn rec(seq: u32) -> DataRecord {
        DataRecord {
            seq,
            send_error: ErrorEstimate::new(false, 0, 1),
            recv_error: ErrorEstimate::new(false, 0, 1),
            send_time: Timestamp::new(1, seq),
            recv_time: Timestamp::new(2, seq),
            ttl: 64,
        }
    }

    fn limits(per_session: usize, total: usize) -> StoreLimits {
        StoreLimits {
            per_session,
            total,
            sessions: 100,
            keep: Duration::from_secs(60),
        }
    }

    fn sid(i: u8) -> [u8; 16] {
        [i; 16]
    }

    fn drain(c: &mut FetchCursor) -> (Vec<u32>, Vec<usize>) {
        let (mut seqs, mut parts) = (Vec::new(), Vec::new());
        while let Some(p) = c.next_chunk() {
            parts.push(p.len());
            seqs.extend(p.iter().map(|r| r.seq));
        }
        (seqs, parts)
    }

    #[test]
    fn sequence_numbers_beyond_the_request_are_dropped() {
        let store = Store::new(limits(100, 1000));
        let mut r = store.insert(sid(1), req(10)).unwrap();
        assert_eq!(r.push(rec(9)), Ok(()));
        assert_eq!(
            r.push(rec(10)),
            Err(Dropped::SeqOutOfRange {
                seq: 10,
                num_packets: 10
            })
        );
        assert_eq!(
            r.push(rec(u32::MAX)),
            Err(Dropped::SeqOutOfRange {
                seq: u32::MAX,
                num_packets: 10
            })
        );
        // After Stop-Sessions, nothing at or past Next Seqno.
        r.stop(5, vec![]);
        assert_eq!(
            r.push(rec(5)),
            Err(Dropped::PastNextSeqno {
                seq: 5,
                next_seqno: 5
            })
        );
        assert_eq!(r.push(rec(4)), Ok(()));
        assert_eq!((r.records(), r.dropped()), (2, 3));
        assert_eq!(store.dropped(), 3);
        assert_eq!(store.session_dropped(&sid(1)), Some(3));
    }

    #[test]
    fn duplicates_are_bounded_per_session() {
        let store = Store::new(limits(1000, 100_000));
        let mut r = store.insert(sid(1), req(10)).unwrap();
        // The same packet over and over: kept up to twice Number of Packets.
        for _ in 0..1000 {
            let _ = r.push(rec(3));
        }
        assert_eq!(r.records(), 10 * DUPLICATE_FACTOR);
        assert_eq!(r.dropped(), 1000 - 10 * DUPLICATE_FACTOR as u64);
        assert_eq!(r.push(rec(4)), Err(Dropped::SessionFull(20)));
        // And never beyond the per-session limit.
        let store = Store::new(limits(15, 100_000));
        let mut r = store.insert(sid(1), req(10)).unwrap();
        for i in 0..100 {
            let _ = r.push(rec(i % 10));
        }
        assert_eq!(r.records(), 15);
    }

    #[test]
    fn requests_beyond_the_limits_are_refused() {
        let store = Store::new(limits(100, 250));
        assert_eq!(
            store.insert(sid(1), req(101)).unwrap_err(),
            StoreError::SessionTooLarge {
                asked: 101,
                max: 100
            }
        );
        assert_eq!(
            StoreError::SessionTooLarge { asked: 1, max: 0 }.accept(),
            Accept::PermanentResourceLimitation
        );
        let a = store.insert(sid(1), req(100)).unwrap();
        let _b = store.insert(sid(2), req(100)).unwrap();
        // 200 promised of 250: a third session of 100 does not fit now, but may later.
        let e = store.insert(sid(3), req(100)).unwrap_err();
        assert_eq!(
            e,
            StoreError::Full {
                needed: 100,
                free: 50
            }
        );
        assert_eq!(e.accept(), Accept::TemporaryResourceLimitation);
        assert_eq!(
            store.insert(sid(2), req(1)).unwrap_err(),
            StoreError::SidInUse
        );
        // A finished session gives back what it did not use.
        drop(a);
        assert_eq!(store.stats().committed, 100);
        let _c = store.insert(sid(3), req(100)).unwrap();
        // The session count is bounded too.
        let mut l = limits(100, 1000);
        l.sessions = 2;
        let store = Store::new(l);
        let _a = store.insert(sid(1), req(1)).unwrap();
        let _b = store.insert(sid(2), req(1)).unwrap();
        assert_eq!(
            store.insert(sid(3), req(1)).unwrap_err(),
            StoreError::TooManySessions(2)
        );
    }

    /// Several receiving threads push duplicates beyond their promised share at once: the
    /// store ends with exactly its total, never more, and every other record is counted as
    /// dropped.
    #[test]
    fn total_bound_is_exact_under_concurrent_pushes() {
        for _ in 0..20 {
            let store = Arc::new(Store::new(limits(10_000, 1_000)));
            // Three sessions of 300 packets: 900 promised, 100 left for duplicates.
            let recorders: Vec<Recorder> = (0..3)
                .map(|i| store.insert(sid(i), req(300)).unwrap())
                .collect();
            let barrier = Arc::new(std::sync::Barrier::new(3));
            let threads: Vec<_> = recorders
                .into_iter()
                .map(|mut r| {
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        let mut kept = 0usize;
                        for i in 0..600 {
                            if r.push(rec(i % 300)).is_ok() {
                                kept += 1;
                            }
                        }
                        (kept, r)
                    })
                })
                .collect();
            let done: Vec<(usize, Recorder)> =
                threads.into_iter().map(|t| t.join().unwrap()).collect();
            let kept: usize = done.iter().map(|d| d.0).sum();
            assert_eq!(kept, 1000);
            let st = store.stats();
            assert_eq!((st.records, st.committed, st.dropped), (1000, 1000, 800));
            for (k, r) in &done {
                assert!(*k >= 300, "a session lost part of its promised share: {k}");
                assert_eq!(r.records(), *k);
            }
            // Finished, the sessions count exactly their records.
            drop(done);
            assert_eq!(store.stats().committed, 1000);
            assert_eq!(store.stats().running, 0);
        }
    }

    /// Threads that each push far past their session's bound, into a store with room: each
    /// session stops at exactly twice its packets, and every other push is counted dropped.
    #[test]
    fn per_session_bound_is_exact_under_concurrent_pushes() {
        let store = Arc::new(Store::new(limits(10_000, 100_000)));
        let recorders: Vec<Recorder> = (0..4)
            .map(|i| store.insert(sid(i), req(500)).unwrap())
            .collect();
        let threads: Vec<_> = recorders
            .into_iter()
            .map(|mut r| {
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let _ = r.push(rec(i % 500));
                    }
                    r.records()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 1000);
        }
        let st = store.stats();
        assert_eq!((st.records, st.dropped), (4000, 4 * 4000));
    }

    #[test]
    fn finished_sessions_expire_after_keep_and_under_pressure() {
        let store = Store::new(limits(100, 300));
        let t0 = Instant::now();
        let running = store.insert_at(sid(1), req(100), t0).unwrap();
        let mut old = store.insert_at(sid(2), req(100), t0).unwrap();
        let mut young = store.insert_at(sid(3), req(100), t0).unwrap();
        for i in 0..50 {
            old.push(rec(i)).unwrap();
            young.push(rec(i)).unwrap();
        }
        old.finish_at(t0);
        young.finish_at(t0 + Duration::from_secs(30));
        drop((old, young));
        // 100 promised + 50 + 50 held.
        assert_eq!(store.stats().committed, 200);
        // Within `keep`: all stay.
        assert!(
            store
                .fetch_at(&sid(2), 0, u32::MAX, t0 + Duration::from_secs(59))
                .is_some()
        );
        // Past `keep` for the older one only.
        assert!(
            store
                .fetch_at(&sid(2), 0, u32::MAX, t0 + Duration::from_secs(61))
                .is_none()
        );
        assert!(
            store
                .fetch_at(&sid(3), 0, u32::MAX, t0 + Duration::from_secs(61))
                .is_some()
        );
        assert_eq!(store.stats().committed, 150);
        // 150 + 100 fits without taking anything.
        let big = store.insert_at(sid(4), req(100), t0 + Duration::from_secs(62));
        assert!(big.is_ok());
        assert_eq!(store.stats().sessions, 3);
        let _more = store
            .insert_at(sid(5), req(100), t0 + Duration::from_secs(63))
            .unwrap();
        // 100 (running) + 100 (big) + 100 (more) = 300: the young session went.
        assert!(store.session_dropped(&sid(3)).is_none());
        assert!(store.session_dropped(&sid(1)).is_some());
        assert_eq!(store.stats().committed, 300);
        drop(running);
    }

    #[test]
    fn a_session_being_read_does_not_expire() {
        let store = Store::new(limits(100, 100));
        let t0 = Instant::now();
        let mut r = store.insert_at(sid(1), req(100), t0).unwrap();
        r.push(rec(1)).unwrap();
        r.finish_at(t0);
        drop(r);
        let cursor = store
            .fetch_at(&sid(1), 0, u32::MAX, t0 + Duration::from_secs(1))
            .unwrap();
        // Past keep, and a new session needs the room: it must wait for the reader.
        assert_eq!(
            store
                .insert_at(sid(2), req(100), t0 + Duration::from_secs(100))
                .unwrap_err(),
            StoreError::Full {
                needed: 100,
                free: 99
            }
        );
        drop(cursor);
        assert!(
            store
                .insert_at(sid(2), req(100), t0 + Duration::from_secs(100))
                .is_ok()
        );
    }

    /// The cursor hands out exactly the records in range and below Next Seqno, in arrival
    /// order, in parts that cross storage chunks, and exactly as many as its header says.
    #[test]
    fn cursor_yields_exactly_the_filtered_records_across_chunks() {
        let store = Store::new(limits(1 << 20, 1 << 20));
        let n = 3 * CHUNK_RECORDS as u32 + 100;
        let mut r = store.insert(sid(1), req(n)).unwrap();
        // Arrival order is not sequence order: reversed within each pair.
        let order: Vec<u32> = (0..n).map(|i| i ^ 1).filter(|s| *s < n).collect();
        for &s in &order {
            r.push(rec(s)).unwrap();
        }
        // Duplicates, at the end.
        r.push(rec(5)).unwrap();
        r.push(rec(2000)).unwrap();
        let all = |b: u32, e: u32, below: Option<u32>| -> Vec<u32> {
            order
                .iter()
                .copied()
                .chain([5, 2000])
                .filter(|s| (b..=e).contains(s) && below.is_none_or(|x| *s < x))
                .collect()
        };
        let mut c = store.fetch(&sid(1), 0, u32::MAX).unwrap();
        assert_eq!(c.header().num_records as usize, n as usize + 2);
        assert!(!c.header().finished);
        let (seqs, parts) = drain(&mut c);
        assert_eq!(seqs, all(0, u32::MAX, None));
        assert!(parts.iter().all(|p| *p <= CHUNK_RECORDS));
        assert_eq!(parts.len(), 4);
        assert_eq!(c.remaining(), 0);
        assert!(c.next_chunk().is_none());
        // A range straddling a storage chunk boundary, in odd parts.
        let mut c = store.fetch(&sid(1), 1000, 2100).unwrap().with_chunk_len(7);
        let want = all(1000, 2100, None);
        assert_eq!(c.header().num_records as usize, want.len());
        let (seqs, parts) = drain(&mut c);
        assert_eq!(seqs, want);
        assert!(parts.iter().all(|p| *p <= 7));
        // Stop-Sessions: records at or past Next Seqno are left out; the header carries it.
        r.stop(2001, vec![SkipRange { first: 7, last: 9 }]);
        let mut c = store.fetch(&sid(1), 1000, 2100).unwrap();
        let want = all(1000, 2100, Some(2001));
        assert_eq!(c.header().num_records as usize, want.len());
        assert_eq!(c.header().next_seqno, 2001);
        assert_eq!(
            c.header().skip_ranges,
            vec![SkipRange { first: 7, last: 9 }]
        );
        assert_eq!(drain(&mut c).0, want);
        // Nothing in range.
        let mut c = store.fetch(&sid(1), n, u32::MAX).unwrap();
        assert_eq!(c.header().num_records, 0);
        assert!(c.next_chunk().is_none());
        // Unknown.
        assert!(store.fetch(&sid(9), 0, u32::MAX).is_none());
        drop(r);
        assert!(store.fetch(&sid(1), 0, 1).unwrap().header().finished);
    }

    /// Records that arrive after the answer began are not part of it: the count stays what
    /// Fetch-Ack announced.
    #[test]
    fn cursor_count_is_fixed_when_the_answer_begins() {
        let store = Store::default();
        let mut r = store.insert(sid(1), req(5000)).unwrap();
        for s in 0..1500 {
            r.push(rec(s)).unwrap();
        }
        let mut c = store.fetch(&sid(1), 0, u32::MAX).unwrap();
        assert_eq!(c.header().num_records, 1500);
        let first = c.next_chunk().unwrap().len();
        for s in 1500..3000 {
            r.push(rec(s)).unwrap();
        }
        let rest: usize = std::iter::from_fn(|| c.next_chunk().map(<[_]>::len)).sum();
        assert_eq!(first + rest, 1500);
        assert_eq!(store.fetch_stats().records, 1500);
    }

    /// The receiving side runs on its own thread; the cursor moves into the connection's
    /// task.
    #[test]
    fn recorder_handle_and_cursor_cross_threads() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<Recorder>();
        send::<SessionHandle>();
        sync::<SessionHandle>();
        send::<FetchCursor>();
        sync::<Store>();
    }

    #[test]
    fn storage_grows_with_records_not_with_the_request() {
        let store = Store::default();
        let mut r = store.insert(sid(1), req(1 << 20)).unwrap();
        r.push(rec(0)).unwrap();
        let d = lock(&r.handle.session.data);
        assert_eq!(d.chunks.len(), 1);
        assert_eq!(d.chunks[0].capacity(), CHUNK_RECORDS);
    }
}
