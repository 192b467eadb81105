//! Send schedules (RFC 4656 §3.5 schedule slots, §5 exponential deviates).
//!
//! Every implementation must produce the same schedule from the same SID and slots, so the
//! receiver can tell a lost packet from one never sent: the exponential deviates come from
//! Knuth's algorithm 3.4.1.S in 32.32 fixed point, fed by AES-128 in counter mode keyed with
//! the SID (§5.3). Checked against the RFC's Appendix B sums, perfSONAR's `owtvec` values and
//! the send times in the OWAMP captures.

use aes::Aes128;
use aes::cipher::common::array::Array;
use aes::cipher::{BlockCipherEncrypt, KeyInit};

/// One schedule slot of a Request-Session (RFC 4656 §3.5): the gap before the next packet is
/// either fixed or drawn from an exponential distribution with the given mean. The parameter
/// is kept as the raw 32.32 value from the wire (perfSONAR sends `-i 0.1` as `199999a0`, not
/// `1999999a`; the schedule must use the wire value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Slot Type 0: exponentially distributed gap with this mean (32.32 seconds).
    Exponential(u64),
    /// Slot Type 1: fixed gap (32.32 seconds).
    Fixed(u64),
}

/// Q[k] of §5.2 in 32.32 (index 0 unused); Q[1] = ln 2.
const Q: [u64; 12] = [
    0,
    0xB172_17F8,
    0xEEF1_93F7,
    0xFD27_1862,
    0xFF9D_6DD0,
    0xFFF4_CFD0,
    0xFFFE_E819,
    0xFFFF_E7FF,
    0xFFFF_FE2B,
    0xFFFF_FFE0,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];
const LN2: u64 = Q[1];

/// 32.32 multiplication as §5.2 prescribes: the exact product, shifted right by 32 (and
/// truncated to 64 bits, as the RFC's sample code does).
pub const fn mul(u: u64, v: u64) -> u64 {
    ((u as u128 * v as u128) >> 32) as u64
}

/// The exponential generator of §5: deviates with mean 1 in 32.32 fixed point.
#[derive(Clone)]
pub struct ExpGenerator {
    aes: Aes128,
    counter: u128,
    block: [u8; 16],
}

impl std::fmt::Debug for ExpGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpGenerator")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl ExpGenerator {
    /// Algorithm Unif's step U1: key AES with the SID, counter 0.
    pub fn new(sid: &[u8; 16]) -> Self {
        Self {
            aes: Aes128::new(&Array::from(*sid)),
            counter: 0,
            block: [0; 16],
        }
    }

    /// The next 32-bit uniform value (§5.3 U2-U4), as a 32.32 fraction.
    fn unif(&mut self) -> u64 {
        let i = (self.counter % 4) as usize;
        if i == 0 {
            let mut b = Array::from(self.counter.to_be_bytes());
            self.aes.encrypt_block(&mut b);
            self.block = b.into();
        }
        self.counter = self.counter.wrapping_add(1);
        let mut q = [0u8; 4];
        q.copy_from_slice(&self.block[4 * i..4 * i + 4]);
        u64::from(u32::from_be_bytes(q))
    }

    /// The next exponential deviate with mean 1 (Algorithm S, §5.1, as in Appendix A).
    pub fn next_exp(&mut self) -> u64 {
        let mut u = self.unif();
        let mut j: u64 = 0;
        // S1: shift off the leading ones and the first zero.
        while u & 0x8000_0000 != 0 && j < 32 {
            u <<= 1;
            j += 1;
        }
        u = (u << 1) & 0xFFFF_FFFF;
        let jj = j << 32;
        // S2: immediate acceptance.
        if u < LN2 {
            return mul(jj, LN2).wrapping_add(u);
        }
        // S3: minimize over k uniforms, k the least with U < Q[k] (at most 11... the sample
        // code's loop stops at K = 12).
        let mut k = 2;
        while k < Q.len() && u >= Q[k] {
            k += 1;
        }
        let mut v = self.unif();
        for _ in 2..=k {
            v = v.min(self.unif());
        }
        // S4.
        mul(jj.wrapping_add(v), LN2)
    }
}

/// The send times of a session: offsets (32.32 seconds from the Request-Session's Start Time)
/// of packets 0, 1, 2, ... Slots repeat cyclically; packet n goes out after the gaps of
/// slots 0..=n (so packet 0 is one gap after the start, as perfSONAR sends it).
#[derive(Debug, Clone)]
pub struct Schedule {
    slots: Vec<Slot>,
    generator: ExpGenerator,
    next_slot: usize,
    offset: u64,
}

impl Schedule {
    /// The schedule for `slots` (at least one) and the session's SID.
    pub fn new(slots: Vec<Slot>, sid: &[u8; 16]) -> Option<Self> {
        if slots.is_empty() {
            return None;
        }
        Some(Self {
            slots,
            generator: ExpGenerator::new(sid),
            next_slot: 0,
            offset: 0,
        })
    }
}

impl Iterator for Schedule {
    type Item = u64;

    /// The next packet's offset from the start time (saturating at the end of 32.32).
    fn next(&mut self) -> Option<u64> {
        let slot = self.slots[self.next_slot % self.slots.len()];
        self.next_slot = (self.next_slot + 1) % self.slots.len();
        let gap = match slot {
            Slot::Exponential(mean) => mul(self.generator.next_exp(), mean),
            Slot::Fixed(gap) => gap,
        };
        self.offset = self.offset.saturating_add(gap);
        Some(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> [u8; 16] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 4656 Appendix B: the sum of the first 1,000,000 deviates for four SIDs.
    #[test]
    fn rfc4656_appendix_b() {
        for (s, want) in [
            ("2872979303ab47eeac028dab3829dab2", 0x000f_4479_bd31_7381u64),
            ("0102030405060708090a0b0c0d0e0f00", 0x000f_4336_8646_6a62),
            ("deadbeefdeadbeefdeadbeefdeadbeef", 0x000f_416c_8884_d2d3),
            ("feed0feed1feed2feed3feed4feed5ab", 0x000f_3f0b_4b41_6ec8),
        ] {
            let mut g = ExpGenerator::new(&sid(s));
            let sum = (0..1_000_000).fold(0u64, |acc, _| acc.wrapping_add(g.next_exp()));
            assert_eq!(sum, want, "SID {s}");
        }
    }

    #[test]
    fn fixed_and_mixed_slots() {
        let s = Schedule::new(vec![Slot::Fixed(0x8000_0000)], &[0; 16]).unwrap();
        let v: Vec<u64> = s.take(3).collect();
        assert_eq!(v, [0x8000_0000, 0x1_0000_0000, 0x1_8000_0000]);
        // Fixed slots draw no random numbers: an exponential slot after fixed ones sees the
        // generator's first value.
        let mut g = ExpGenerator::new(&[7; 16]);
        let first = mul(g.next_exp(), 0x1_0000_0000);
        let mut s = Schedule::new(
            vec![Slot::Fixed(5), Slot::Exponential(0x1_0000_0000)],
            &[7; 16],
        )
        .unwrap();
        assert_eq!(s.next(), Some(5));
        assert_eq!(s.next(), Some(5 + first));
        assert!(Schedule::new(vec![], &[0; 16]).is_none());
    }

    #[test]
    fn mul_is_exact() {
        assert_eq!(mul(1 << 32, 1 << 32), 1 << 32);
        assert_eq!(mul(u64::MAX, 1 << 32), u64::MAX);
        assert_eq!(mul(3 << 31, 1 << 33), 3 << 32);
    }
}
