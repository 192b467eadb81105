//! Fetch-Session against the real OWAMP server on loopback: a large session's answer is
//! streamed from the store one part at a time; a client that asks and never reads is dropped
//! after the write timeout, the server having produced only what the socket took; a client
//! that reads gets every record; and owping still gets exactly its records.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ippm_net::owamp_client::{OwpingOptions, owping};
use ippm_net::owamp_server::{OwampServerOptions, serve};
use ippm_net::owamp_store::{MAX_QUEUED_RECORD_OCTETS, Store, StoreLimits};
use ippm_net::twamp_client::Interval;
use ippm_proto::schedule::Slot;
use ippm_proto::session::{
    Client, ClientConfig, ClientEvent, ClientRandom, PassphraseStore, ServerConfig,
};
use ippm_proto::wire::owamp::{DataRecord, FetchSessionRepr, RequestSessionRepr, TypeP};
use ippm_proto::{ErrorEstimate, Modes, Protocol, SecurityMode, Timestamp};
use tokio::net::TcpListener;

/// The largest session the store keeps, 2^20 records, is 26 MB on the wire: several times
/// what loopback's socket buffers can take (the sender's grow to `tcp_wmem`'s maximum, 4 MiB
/// by default; the reader's is set small).
const BIG: u32 = 1 << 20;
/// Enough for an answer of a couple of hundred parts.
const MEDIUM: u32 = 200_000;
const SID: [u8; 16] = [0xab; 16];
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

fn request(num_packets: u32) -> RequestSessionRepr {
    RequestSessionRepr {
        conf_sender: false,
        conf_receiver: true,
        num_packets,
        sender_port: 9000,
        receiver_port: 9001,
        sender_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        receiver_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        sid: SID,
        padding_length: 0,
        start_time: Timestamp::new(3_900_000_000, 0),
        timeout: 1 << 32,
        type_p: TypeP(0),
        slots: vec![Slot::Fixed(1 << 20)],
    }
}

fn record(seq: u32) -> DataRecord {
    DataRecord {
        seq,
        send_error: ErrorEstimate::new(true, 0, 100),
        recv_error: ErrorEstimate::new(true, 0, 100),
        send_time: Timestamp::new(3_900_000_000, seq),
        recv_time: Timestamp::new(3_900_000_001, seq),
        ttl: 64,
    }
}

/// A server whose store holds a finished session of `n` records.
async fn start(n: u32) -> (SocketAddr, Arc<Store>, tokio::sync::watch::Sender<bool>) {
    let store = Arc::new(Store::new(StoreLimits {
        per_session: 1 << 20,
        total: 1 << 21,
        ..StoreLimits::default()
    }));
    let mut rec = store.insert(SID, request(n)).unwrap();
    for seq in 0..n {
        rec.push(record(seq)).unwrap();
    }
    rec.finish();
    let control = ServerConfig::new(
        Modes(0x01),
        Arc::new(PassphraseStore::new()),
        Timestamp::new(1, 0),
    );
    let mut opts = OwampServerOptions::new(Arc::new(control));
    opts.rules.write_timeout = WRITE_TIMEOUT;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(l, Arc::new(opts), store.clone(), rx));
    (addr, store, tx)
}

/// An open-mode control connection driven by hand over a blocking socket.
struct Ctl {
    s: TcpStream,
    c: Client,
}

impl Ctl {
    /// Connects with a receive buffer of `rcvbuf` octets if given (set before connecting,
    /// so the window never grows past it).
    fn connect(addr: SocketAddr, rcvbuf: Option<usize>) -> Self {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n).unwrap();
        }
        sock.connect(&addr.into()).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let random = ClientRandom {
            client_iv: [1; 16],
            aes_key: [2; 16],
            hmac_key: [3; 32],
        };
        let mut me = Self {
            s,
            c: Client::new(
                Protocol::Owamp,
                ClientConfig::open(),
                random,
                Instant::now(),
            ),
        };
        assert!(matches!(me.event(), ClientEvent::Established { .. }));
        me
    }

    fn send(&mut self) {
        while let Some(o) = self.c.poll_transmit() {
            self.s.write_all(&o).unwrap();
        }
    }

    fn event(&mut self) -> ClientEvent {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            self.send();
            if let Some(e) = self.c.poll_event() {
                return e;
            }
            let n = self.s.read(&mut buf).unwrap();
            assert!(n > 0, "server closed");
            self.c.handle_input(Instant::now(), &buf[..n]).unwrap();
        }
    }

    fn ask_all(&mut self) {
        let fetch = FetchSessionRepr {
            sid: SID,
            begin_seq: 0,
            end_seq: u32::MAX,
        };
        self.c.fetch_session(Instant::now(), &fetch).unwrap();
        self.send();
    }
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The client asks for a 26 MB answer and never reads. The server writes until the socket
/// buffers are full, asks the cursor for nothing more, and after the write timeout drops the
/// connection; meanwhile it never had more than one part of records queued, and the cursor
/// handed out only a fraction of the session (so the answer was never in memory whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_dropped_holding_one_part() {
    let (addr, store, _stop) = start(BIG).await;
    let mut ctl = tokio::task::spawn_blocking(move || Ctl::connect(addr, Some(4096)))
        .await
        .unwrap();
    let asked = Instant::now();
    ctl.ask_all();
    wait_for("the fetch to start", Duration::from_secs(10), || {
        store.fetch_stats().started == 1
    })
    .await;
    wait_for(
        "the stalled reader to be dropped",
        Duration::from_secs(20),
        || store.fetch_stats().abandoned == 1,
    )
    .await;
    // Dropped by the write timeout, not by anything sooner.
    assert!(asked.elapsed() >= WRITE_TIMEOUT, "{:?}", asked.elapsed());
    let f = store.fetch_stats();
    assert_eq!(f.completed, 0, "{f:?}");
    // What the sender's socket buffer can hold, and a generous allowance for the reader's
    // and the parts in flight: beyond that, the server made records nobody could take.
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let bound = ((wmem_max + (1 << 20)) / DataRecord::LEN as u64).min(u64::from(BIG) - 1);
    assert!(
        f.records <= bound,
        "the cursor handed out {} of {BIG} records to a reader that read nothing (bound \
         {bound})",
        f.records
    );
    assert!(f.records > 0, "{f:?}");
    assert!(
        f.peak_queued_octets <= MAX_QUEUED_RECORD_OCTETS,
        "{} octets queued at once (bound {MAX_QUEUED_RECORD_OCTETS})",
        f.peak_queued_octets
    );
    // The connection is gone: reading now gets what the kernel held, then its end.
    let closed = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        loop {
            match ctl.s.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed < BIG as usize * DataRecord::LEN, "{closed}");
    // The session stays in the store, unharmed, for the next reader.
    assert_eq!(store.stats().records, BIG as usize);
}

/// A client that reads gets every record, in order, over a streamed answer of hundreds of
/// parts, and the server still held one part at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gets_every_record_of_a_large_session() {
    let (addr, store, _stop) = start(MEDIUM).await;
    let r = tokio::task::spawn_blocking(move || {
        let mut ctl = Ctl::connect(addr, Some(8192));
        ctl.ask_all();
        ctl.event()
    })
    .await
    .unwrap();
    let ClientEvent::FetchReply(r) = r else {
        panic!("{r:?}")
    };
    assert!(r.finished);
    assert_eq!(r.records.len(), MEDIUM as usize);
    assert!(
        r.records
            .iter()
            .enumerate()
            .all(|(i, x)| *x == record(i as u32))
    );
    assert_eq!(r.request, request(MEDIUM));
    let f = store.fetch_stats();
    assert_eq!((f.started, f.completed, f.abandoned), (1, 1, 0), "{f:?}");
    assert_eq!(f.records, u64::from(MEDIUM));
    assert!(f.peak_queued_octets <= MAX_QUEUED_RECORD_OCTETS, "{f:?}");
    assert!(f.peak_queued_octets > 0, "{f:?}");
}

/// While a reader stalls a large answer, owping against the same server gets exactly its
/// records both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owping_gets_its_records_beside_a_stalled_reader() {
    let (addr, store, _stop) = start(BIG).await;
    let mut stalled = tokio::task::spawn_blocking(move || Ctl::connect(addr, Some(4096)))
        .await
        .unwrap();
    stalled.ask_all();
    let o = OwpingOptions {
        server: addr,
        modes: vec![SecurityMode::Open],
        identity: None,
        ike: None,
        progress: None,
        count: 50,
        interval: Interval::Fixed(Duration::from_millis(1)),
        padding: 0,
        dscp: 0,
        loss_timeout: Duration::from_millis(300),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(5),
        rng: ippm_net::rng::os(),
        to_server: true,
        from_server: true,
    };
    let r = owping(&o).await.unwrap();
    for w in [r.to_server.unwrap(), r.from_server.unwrap()] {
        let mut seqs: Vec<u32> = w.records.iter().map(|x| x.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..50).collect::<Vec<_>>());
        assert_eq!(w.next_seqno, 50);
    }
    assert_eq!(store.fetch_stats().completed, 1, "owping's fetch");
    drop(stalled);
}
