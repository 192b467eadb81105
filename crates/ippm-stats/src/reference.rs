//! The batch functions as they were before the accumulators, kept as test oracles: the
//! accumulators must give what these give (these keep every value and sequence number).

use std::collections::{HashMap, HashSet};

use crate::hop_counts;
use crate::oneway::{OneWayLoss, OneWayReport, Record};
use crate::reorder::Reordering;
use crate::summary::{Digest, Summary};
use crate::twoway::{Loss, PERCENTILES, Reflected, Sent, TwoWayReport};

pub(crate) fn reordering(arrivals: impl IntoIterator<Item = u32>) -> Reordering {
    let mut seen = HashSet::new();
    let s: Vec<u32> = arrivals.into_iter().filter(|x| seen.insert(*x)).collect();
    let mut next_exp: Option<u64> = None;
    let mut reordered = 0;
    let mut extents = Vec::new();
    let mut n_reordered = [0usize; 3];
    for (k, &sk) in s.iter().enumerate() {
        let v = u64::from(sk);
        match next_exp {
            Some(ne) if v < ne => {
                reordered += 1;
                // §4.2.1: extent = k - j for the earliest j < k with s[j] > s[k].
                let j = s[..k].iter().position(|&x| x > sk).unwrap_or(k);
                extents.push(k - j);
                // §5: n-reordered when the n packets just before it all have larger numbers.
                let run = s[..k].iter().rev().take_while(|&&x| x > sk).count();
                for (n, slot) in n_reordered.iter_mut().enumerate() {
                    if run > n {
                        *slot += 1;
                    }
                }
            }
            _ => next_exp = Some(v + 1),
        }
    }
    Reordering {
        received: s.len(),
        reordered,
        reordered_ratio: if s.is_empty() {
            0.0
        } else {
            reordered as f64 / s.len() as f64
        },
        max_extent: extents.iter().copied().max().unwrap_or(0),
        extents,
        n_reordered,
        extents_lower_bounds: 0,
    }
}

/// The old batch report. `replies` are in arrival order.
pub(crate) fn two_way(sent: &[Sent], replies: &[Reflected]) -> TwoWayReport {
    let sent_seqs: HashSet<u32> = sent.iter().map(|s| s.seq).collect();
    // First arrival per sender sequence number; replies for packets never sent are ignored.
    let mut first: HashMap<u32, &Reflected> = HashMap::new();
    let mut order = Vec::new();
    let mut duplicates = 0;
    for r in replies.iter().filter(|r| sent_seqs.contains(&r.sender_seq)) {
        match first.entry(r.sender_seq) {
            std::collections::hash_map::Entry::Occupied(_) => duplicates += 1,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r);
                order.push(r);
            }
        }
    }
    let refl_per_seq = {
        let mut m: HashMap<u32, HashSet<u32>> = HashMap::new();
        for r in replies.iter().filter(|r| sent_seqs.contains(&r.sender_seq)) {
            m.entry(r.sender_seq).or_default().insert(r.reflector_seq);
        }
        m
    };
    let forward_duplicates = refl_per_seq
        .values()
        .map(|s| s.len().saturating_sub(1))
        .sum();

    let received = first.len();
    let lost = sent_seqs.len().saturating_sub(received);
    let refl: HashSet<u32> = replies.iter().map(|r| r.reflector_seq).collect();
    let backward_lost = refl
        .iter()
        .max()
        .map(|&m| (m as usize + 1).saturating_sub(refl.len()))
        .unwrap_or(0)
        .min(lost);
    let loss = Loss {
        sent: sent_seqs.len(),
        received,
        lost,
        loss_ratio: if sent_seqs.is_empty() {
            0.0
        } else {
            lost as f64 / sent_seqs.len() as f64
        },
        forward_lost: lost - backward_lost,
        backward_lost,
    };

    let rtt: Vec<i64> = order
        .iter()
        .map(|r| (r.t4_ns - r.t1_ns) - (r.t3_ns - r.t2_ns))
        .collect();
    let rtt_sum = Summary::new(rtt.clone());
    let mut by_seq: Vec<(u32, i64)> = order
        .iter()
        .map(|r| r.sender_seq)
        .zip(rtt.iter().copied())
        .collect();
    by_seq.sort_unstable_by_key(|x| x.0);
    let ipdv: Vec<i64> = by_seq
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1 - w[0].1)
        .collect();
    let pdv = rtt_sum
        .as_ref()
        .map(|s| rtt.iter().map(|d| d - s.min()).collect::<Vec<_>>());
    let synchronized = !order.is_empty() && order.iter().all(|r| r.synchronized);
    let one_way_error_ns = order
        .iter()
        .map(|r| r.forward_error_ns.max(r.backward_error_ns))
        .fold(0.0, f64::max);

    let mut fwd_order: Vec<&Reflected> = order.clone();
    fwd_order.sort_by_key(|r| r.reflector_seq);
    let digest = |v: Vec<i64>| Summary::new(v).map(|s| s.digest(&PERCENTILES));

    TwoWayReport {
        loss,
        duplicates,
        forward_duplicates,
        unknown_replies: replies
            .iter()
            .filter(|r| !sent_seqs.contains(&r.sender_seq))
            .count(),
        late_replies: 0,
        round_trip_jitter_ns: rtt_sum
            .as_ref()
            .map(|s| s.percentile(95.0) - s.percentile(50.0)),
        round_trip: rtt_sum.as_ref().map(|s| s.digest(&PERCENTILES)),
        forward: digest(order.iter().map(|r| r.t2_ns - r.t1_ns).collect()),
        backward: digest(order.iter().map(|r| r.t4_ns - r.t3_ns).collect()),
        one_way_synchronized: synchronized,
        one_way_error_ns,
        reflector_processing: digest(order.iter().map(|r| r.t3_ns - r.t2_ns).collect()),
        round_trip_ipdv: digest(ipdv),
        round_trip_pdv: pdv.and_then(digest),
        forward_reordering: reordering(fwd_order.iter().map(|r| r.sender_seq)),
        backward_reordering: reordering(replies.iter().map(|r| r.reflector_seq)),
        round_trip_reordering: reordering(order.iter().map(|r| r.sender_seq)),
        forward_hops: hop_counts(order.iter().filter_map(|r| r.forward_ttl)),
        backward_hops: hop_counts(order.iter().filter_map(|r| r.backward_ttl)),
    }
}

/// The old batch report from the sender's Next Seqno, its skip ranges (inclusive) and the
/// receiver's records in arrival order (lost packets may be present with `recv_ns: None`).
pub(crate) fn one_way(next_seqno: u32, skipped: &[(u32, u32)], records: &[Record]) -> OneWayReport {
    let is_skipped = |s: u32| skipped.iter().any(|&(a, b)| (a..=b).contains(&s));
    let sent = (0..next_seqno).filter(|&s| !is_skipped(s)).count();
    let mut seen = HashSet::new();
    let mut first = Vec::new();
    let mut duplicates = 0;
    for r in records
        .iter()
        .filter(|r| r.recv_ns.is_some() && r.seq < next_seqno && !is_skipped(r.seq))
    {
        if seen.insert(r.seq) {
            first.push(r);
        } else {
            duplicates += 1;
        }
    }
    let received = first.len();
    let lost = sent.saturating_sub(received);
    let delays: Vec<i64> = first
        .iter()
        .filter_map(|r| r.recv_ns.map(|t| t - r.send_ns))
        .collect();
    let summary = Summary::new(delays.clone());
    let mut by_seq: Vec<(u32, i64)> = first
        .iter()
        .map(|r| r.seq)
        .zip(delays.iter().copied())
        .collect();
    by_seq.sort_unstable_by_key(|x| x.0);
    let ipdv: Vec<i64> = by_seq
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1 - w[0].1)
        .collect();
    let digest = |v: Vec<i64>| Summary::new(v).map(|s| s.digest(&PERCENTILES));
    OneWayReport {
        loss: OneWayLoss {
            sent,
            received,
            lost,
            loss_ratio: if sent == 0 {
                0.0
            } else {
                lost as f64 / sent as f64
            },
        },
        duplicates,
        unknown_records: records
            .iter()
            .filter(|r| r.recv_ns.is_some() && (r.seq >= next_seqno || is_skipped(r.seq)))
            .count(),
        late_records: 0,
        jitter_ns: summary
            .as_ref()
            .map(|s| s.percentile(95.0) - s.percentile(50.0)),
        pdv: summary
            .as_ref()
            .and_then(|s| digest(delays.iter().map(|d| d - s.min()).collect())),
        delay: summary.as_ref().map(|s| s.digest(&PERCENTILES)),
        ipdv: digest(ipdv),
        synchronized: !first.is_empty() && first.iter().all(|r| r.synchronized),
        max_error_ns: first.iter().map(|r| r.error_ns).fold(0.0, f64::max),
        reordering: reordering(first.iter().map(|r| r.seq)),
        hops: hop_counts(first.iter().filter_map(|r| r.ttl)),
    }
}

/// A small deterministic generator (xorshift64*), for simulated sessions.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: u32) -> bool {
        self.next() % 100 < u64::from(percent)
    }

    /// Uniform in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How a simulated session goes: loss and duplication in percent each way, and how much the
/// delays vary (which reorders packets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path {
    pub(crate) seed: u64,
    pub(crate) packets: u32,
    pub(crate) first_seq: u32,
    pub(crate) loss: u32,
    pub(crate) duplication: u32,
    /// Delays vary in 0..jitter_ns on top of 1 ms.
    pub(crate) jitter_ns: u64,
    /// The reflector's (or receiver's) clock minus the sender's.
    pub(crate) clock_offset_ns: i64,
}

/// What happened in a simulated session, in the order it happened at the sender.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Sent(Sent),
    Reply(Reflected),
}

/// A TWAMP session over `path`: packets sent 100 us apart (a few numbers skipped, never sent),
/// reflected in the order they reach the reflector, replies in the order they come back, and a
/// few replies for numbers never sent.
pub(crate) fn twamp_session(path: &Path) -> Vec<Event> {
    let mut rng = Rng::new(path.seed);
    let delay = |rng: &mut Rng| 1_000_000 + rng.below(path.jitter_ns.max(1)) as i64;
    let mut sent = Vec::new();
    // (reflector receive time, sender seq, t1)
    let mut at_reflector = Vec::new();
    for i in 0..path.packets {
        let Some(seq) = path.first_seq.checked_add(i) else {
            break;
        };
        let t1 = i64::from(i) * 100_000;
        if rng.chance(2) {
            continue;
        }
        sent.push((t1, Sent { seq, t1_ns: t1 }));
        if rng.chance(path.loss) {
            continue;
        }
        at_reflector.push((t1 + delay(&mut rng), seq, t1));
        if rng.chance(path.duplication) {
            at_reflector.push((t1 + delay(&mut rng), seq, t1));
        }
    }
    for k in 0..path.packets / 50 {
        let t1 = i64::from(k) * 5_000_000;
        // Above every number sent, so that no reply for it can come after it was sent.
        let Some(seq) = path.first_seq.checked_add(path.packets + k) else {
            break;
        };
        at_reflector.push((t1 + delay(&mut rng), seq, t1));
    }
    at_reflector.sort_by_key(|x| x.0);
    let mut replies = Vec::new();
    for (rseq, &(t2, seq, t1)) in at_reflector.iter().enumerate() {
        for copy in 0..2 {
            if rng.chance(path.loss) || (copy == 1 && !rng.chance(path.duplication)) {
                continue;
            }
            let t3 = t2 + 10_000 + rng.below(5_000) as i64;
            let t4 = t3 + delay(&mut rng);
            replies.push((
                t4,
                Reflected {
                    sender_seq: seq,
                    reflector_seq: rseq as u32,
                    t1_ns: t1,
                    t2_ns: t2 + path.clock_offset_ns,
                    t3_ns: t3 + path.clock_offset_ns,
                    t4_ns: t4,
                    forward_ttl: Some(255 - (rng.below(3) as u8)),
                    backward_ttl: Some(64 - (rng.below(2) as u8)),
                    synchronized: !rng.chance(1),
                    forward_error_ns: rng.below(1000) as f64,
                    backward_error_ns: rng.below(1000) as f64,
                },
            ));
        }
    }
    let mut events: Vec<(i64, u8, Event)> = sent
        .into_iter()
        .map(|(t, s)| (t, 0, Event::Sent(s)))
        .chain(replies.into_iter().map(|(t, r)| (t, 1, Event::Reply(r))))
        .collect();
    events.sort_by_key(|e| (e.0, e.1));
    events.into_iter().map(|e| e.2).collect()
}

/// The sent packets and the replies of a session, for the batch function.
pub(crate) fn split(events: &[Event]) -> (Vec<Sent>, Vec<Reflected>) {
    let mut sent = Vec::new();
    let mut replies = Vec::new();
    for e in events {
        match e {
            Event::Sent(s) => sent.push(*s),
            Event::Reply(r) => replies.push(*r),
        }
    }
    (sent, replies)
}

/// An OWAMP session over `path`: the sender's Next Seqno and skip ranges, and the receiver's
/// records in arrival order (with a record for each lost packet at the end, as a fetch gives
/// them, and a few for numbers the sender did not send).
pub(crate) fn owamp_session(path: &Path) -> (u32, Vec<(u32, u32)>, Vec<Record>) {
    let mut rng = Rng::new(path.seed);
    let next_seqno = path.first_seq.saturating_add(path.packets);
    let mut skipped = Vec::new();
    let mut arrivals = Vec::new();
    let mut lost = Vec::new();
    let mut seq = path.first_seq;
    while seq < next_seqno {
        if rng.chance(2) {
            let last = seq.saturating_add(rng.below(4) as u32).min(next_seqno - 1);
            skipped.push((seq, last));
            match last.checked_add(1) {
                Some(n) => seq = n,
                None => break,
            }
            continue;
        }
        let send = i64::from(seq - path.first_seq) * 100_000;
        let record = |rng: &mut Rng| {
            let recv = send + 1_000_000 + rng.below(path.jitter_ns.max(1)) as i64;
            Record {
                seq,
                send_ns: send,
                recv_ns: Some(recv + path.clock_offset_ns),
                synchronized: !rng.chance(1),
                error_ns: rng.below(1000) as f64,
                ttl: Some(255 - (rng.below(3) as u8)),
            }
        };
        if rng.chance(path.loss) {
            lost.push(Record {
                recv_ns: None,
                ..record(&mut rng)
            });
        } else {
            arrivals.push(record(&mut rng));
            if rng.chance(path.duplication) {
                arrivals.push(record(&mut rng));
            }
        }
        match seq.checked_add(1) {
            Some(n) => seq = n,
            None => break,
        }
    }
    // Overlapping and empty ranges, which count once and not at all.
    if let Some(&(a, b)) = skipped.first() {
        skipped.push((a, b));
        skipped.push((b, a.saturating_sub(1)));
    }
    for k in 0..path.packets / 50 {
        let r = Record {
            seq: next_seqno.saturating_add(k),
            send_ns: 0,
            recv_ns: Some(i64::from(k)),
            synchronized: true,
            error_ns: 0.0,
            ttl: None,
        };
        arrivals.push(r);
        if let Some(&(a, _)) = skipped.first() {
            arrivals.push(Record { seq: a, ..r });
        }
    }
    arrivals.sort_by_key(|r| r.recv_ns);
    arrivals.extend(lost);
    (next_seqno, skipped, arrivals)
}

/// Random sessions: up to 400 packets from sequence numbers 0, near `u32::MAX` or anywhere,
/// with loss, duplication and reordering (delays varying by up to 5 ms, 50 packets' worth).
pub(crate) fn paths() -> impl proptest::strategy::Strategy<Value = Path> {
    use proptest::prelude::*;
    (
        any::<u64>(),
        0u32..400,
        prop_oneof![Just(0u32), Just(u32::MAX - 300), 0u32..1_000_000],
        0u32..30,
        0u32..20,
        prop_oneof![Just(0u64), 0u64..500_000, 0u64..5_000_000],
        -2_000_000i64..2_000_000,
    )
        .prop_map(
            |(seed, packets, first_seq, loss, duplication, jitter_ns, clock_offset_ns)| Path {
                seed,
                packets,
                first_seq,
                loss,
                duplication,
                jitter_ns,
                clock_offset_ns,
            },
        )
}

/// Asserts that an accumulator's digest is the exact one's within the documented error: the
/// same count, minimum and maximum, the mean up to rounding, and every percentile within
/// `eps` times the largest magnitude (the bound of `Bounds::relative_error`, loosened to the
/// extremes; for a PDV, whose origin is within its range, too).
pub(crate) fn assert_near(got: &Option<Digest>, want: &Option<Digest>, eps: f64, exact: usize) {
    let (g, w) = match (got, want) {
        (None, None) => return,
        (Some(g), Some(w)) => (g, w),
        _ => panic!("{got:?} vs {want:?}"),
    };
    assert_eq!((g.count, g.min_ns, g.max_ns), (w.count, w.min_ns, w.max_ns));
    assert_eq!(g.approximation.is_some(), g.count > exact);
    let m = (w.min_ns.unsigned_abs().max(w.max_ns.unsigned_abs())) as f64;
    assert!(
        (g.mean_ns - w.mean_ns).abs() <= 1e-9 * m.max(1.0),
        "{g:?} vs {w:?}"
    );
    let bound = eps * m + 1e-6 * m.max(1.0);
    assert!((g.median_ns - w.median_ns).abs() <= bound, "{g:?} vs {w:?}");
    assert_eq!(g.percentiles.len(), w.percentiles.len());
    for (a, b) in g.percentiles.iter().zip(&w.percentiles) {
        assert_eq!(a.percentile, b.percentile);
        assert!((a.value_ns - b.value_ns).abs() <= bound, "{g:?} vs {w:?}");
    }
}
