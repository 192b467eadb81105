//! The engine with roles made for the test: ending (done, stopped, grace), timers, batching,
//! fairness under a flood and a zero-interval sender, and many sessions on few threads.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

fn socket() -> UdpSocket {
    crate::udp::blocking_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

/// Echoes every datagram to its source; reports how it ended.
struct Echo {
    ended: mpsc::Sender<End>,
    echoed: Arc<AtomicU64>,
}

impl Role for Echo {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>) {
        let n = pkt.len();
        if out.send(meta.from, |slot| {
            slot[..n].copy_from_slice(pkt);
            Some(n)
        }) {
            self.echoed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn end(&mut self, why: End) {
        let _ = self.ended.send(why);
    }
}

fn echo(
    engine: &Engine,
) -> (
    SocketAddr,
    SessionHandle,
    mpsc::Receiver<End>,
    Arc<AtomicU64>,
) {
    let s = socket();
    let addr = s.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let echoed = Arc::new(AtomicU64::new(0));
    let h = engine
        .add(
            s,
            Box::new(Echo {
                ended: tx,
                echoed: echoed.clone(),
            }),
            false,
        )
        .unwrap();
    (addr, h, rx, echoed)
}

/// Sends to `to` as fast as it is let, forever (a zero-interval schedule), counting turns.
struct Flood {
    to: SocketAddr,
    sent: Arc<AtomicU64>,
    most_per_turn: Arc<AtomicU64>,
}

impl Role for Flood {
    fn receive(&mut self, _: &mut [u8], _: &RecvMeta, _: &mut Out<'_>) {}

    fn due(&mut self, now: Instant, out: &mut Out<'_>) -> Wake {
        let mut n = 0;
        while out.has_room() && out.send(self.to, |slot| Some(slot[..64].len())) {
            n += 1;
        }
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.most_per_turn.fetch_max(n, Ordering::Relaxed);
        Wake::At(now)
    }

    fn end(&mut self, _: End) {}
}

fn rtt(client: &UdpSocket, to: SocketAddr) -> Duration {
    let t = Instant::now();
    client.send_to(b"ping", to).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    t.elapsed()
}

#[test]
fn echo_then_stop_now_and_with_grace() {
    let engine = Engine::start(1).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (addr, h, ended, _) = echo(&engine);
    rtt(&client, addr);
    assert_eq!(engine.sessions(), 1);
    drop(h);
    assert_eq!(ended.recv_timeout(Duration::from_secs(2)), Ok(End::Stopped));
    // Ended: the socket is closed with the session, nothing answers any more.
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    client.send_to(b"ping", addr).unwrap();
    let mut buf = [0u8; 8];
    assert!(client.recv_from(&mut buf).is_err());
    assert_eq!(engine.sessions(), 0);

    // A grace period: it still answers until the grace is over, then ends by itself.
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (addr, h, ended, _) = echo(&engine);
    h.stop(Duration::from_millis(300));
    h.detach();
    rtt(&client, addr);
    assert_eq!(ended.try_recv(), Err(mpsc::TryRecvError::Empty));
    assert_eq!(ended.recv_timeout(Duration::from_secs(2)), Ok(End::Stopped));
}

/// Finishes after `left` due calls, each at `gap` after the last: the timer's precision and
/// Done.
struct Ticker {
    gap: Duration,
    left: u32,
    late: mpsc::Sender<Duration>,
    ended: mpsc::Sender<End>,
    next: Option<Instant>,
}

impl Role for Ticker {
    fn receive(&mut self, _: &mut [u8], _: &RecvMeta, _: &mut Out<'_>) {}

    fn due(&mut self, now: Instant, out: &mut Out<'_>) -> Wake {
        if let Some(t) = self.next {
            let _ = self.late.send(now.saturating_duration_since(t));
            self.left -= 1;
        }
        if self.left == 0 {
            out.finish();
            return Wake::Idle;
        }
        let t = now + self.gap;
        self.next = Some(t);
        Wake::At(t)
    }

    fn end(&mut self, why: End) {
        let _ = self.ended.send(why);
    }
}

#[test]
fn timers_fire_on_time_and_done_ends() {
    let engine = Engine::start(1).unwrap();
    let (late_tx, late) = mpsc::channel();
    let (end_tx, ended) = mpsc::channel();
    let _h = engine
        .add(
            socket(),
            Box::new(Ticker {
                gap: Duration::from_micros(300),
                left: 200,
                late: late_tx,
                ended: end_tx,
                next: None,
            }),
            false,
        )
        .unwrap();
    assert_eq!(ended.recv_timeout(Duration::from_secs(5)), Ok(End::Done));
    let mut l: Vec<Duration> = late.try_iter().collect();
    assert_eq!(l.len(), 200);
    l.sort();
    // Sub-millisecond gaps are kept: epoll's own timeout (whole milliseconds) would make
    // every one of these at least 0.7 ms late.
    let median = l[l.len() / 2];
    assert!(
        median < Duration::from_micros(500),
        "median lateness {median:?}"
    );
}

#[test]
fn a_flood_and_a_zero_interval_sender_do_not_starve_an_echo() {
    // One thread, so the flood and the victim share it.
    let engine = Engine::start(1).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let _flood = engine
        .add(
            socket(),
            Box::new(Flood {
                to: sink.local_addr().unwrap(),
                sent: sent.clone(),
                most_per_turn: most.clone(),
            }),
            false,
        )
        .unwrap();
    // A second echo session is flooded with datagrams from another thread.
    let (flooded, _fh, _, flooded_echoed) = echo(&engine);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let blaster = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = s.send_to(&[0u8; 32], flooded);
                n += 1;
            }
            n
        })
    };
    let (victim, _vh, _, _) = echo(&engine);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut worst = Duration::ZERO;
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_millis(500) {
        worst = worst.max(rtt(&client, victim));
        pings += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let blasted = blaster.join().unwrap();
    // The flood was real: the zero-interval sender sent whole batches, the flooded echo
    // answered many.
    assert!(sent.load(Ordering::Relaxed) > 1_000, "{sent:?}");
    assert_eq!(most.load(Ordering::Relaxed), crate::sys::BATCH as u64);
    assert!(
        flooded_echoed.load(Ordering::Relaxed) > 200,
        "{blasted} blasted, {flooded_echoed:?} echoed"
    );
    assert!(pings > 20, "{pings}");
    // The victim was answered every time, within a generous bound (a turn is at most a few
    // batches per session).
    assert!(
        worst < Duration::from_millis(100),
        "worst round trip {worst:?}"
    );
}

#[test]
fn thousands_of_sessions_on_two_threads() {
    let engine = Engine::start(2).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let sessions: Vec<_> = (0..2_000).map(|_| echo(&engine)).collect();
    assert_eq!(engine.sessions(), 2_000);
    for (addr, ..) in sessions.iter().step_by(7) {
        rtt(&client, *addr);
    }
    drop(sessions);
    let t = Instant::now();
    while engine.sessions() > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(engine.sessions(), 0);
}

/// Answers from the address each datagram came to, with the TOS its first octet asks for.
struct FromDst;

impl Role for FromDst {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>) {
        let n = pkt.len();
        let opts = SendOpts {
            src: meta.dst.map(|a| (a, meta.ifindex)),
            tos: pkt.first().copied(),
        };
        out.send_with(meta.from, |slot| {
            slot[..n].copy_from_slice(pkt);
            Some((n, opts))
        });
    }

    fn end(&mut self, _: End) {}
}

#[test]
fn a_wildcard_socket_answers_from_the_address_asked_with_each_datagrams_own_tos() {
    let engine = Engine::start(1).unwrap();
    for (any, asked, client_ip) in [
        ("0.0.0.0:0", "127.0.0.2", "127.0.0.1"),
        ("0.0.0.0:0", "127.0.0.1", "127.0.0.1"),
        ("[::]:0", "::1", "::1"),
    ] {
        let s = crate::udp::blocking_socket(any.parse().unwrap()).unwrap();
        let port = s.local_addr().unwrap().port();
        let _h = engine.add(s, Box::new(FromDst), false).unwrap();
        let client =
            crate::udp::blocking_socket(SocketAddr::new(client_ip.parse().unwrap(), 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let to = SocketAddr::new(asked.parse().unwrap(), port);
        // Three datagrams in one burst, so they share a batch, each with its own TOS.
        for tos in [0xb8u8, 0x28, 0x01] {
            client.send_to(&[tos, 1, 2, 3], to).unwrap();
        }
        let mut buf = [0u8; 64];
        for tos in [0xb8u8, 0x28, 0x01] {
            let m = crate::udp::recv_blocking(&client, &mut buf).unwrap();
            assert_eq!(
                m.from, to,
                "{any} {asked}: the reply leaves from the address asked"
            );
            assert_eq!(buf[0], tos);
            assert_eq!(m.tos, Some(tos), "{any} {asked}: the datagram's own TOS");
        }
    }
}
