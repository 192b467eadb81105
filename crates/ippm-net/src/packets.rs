//! What the engine's client-side sessions report, packet by packet: the packets sent (with the
//! kernel's transmit stamp when it gives one), TWAMP replies, OWAMP records.

use ippm_proto::wire::owamp::DataRecord;
use ippm_proto::wire::test::ReflectorRepr;
use ippm_proto::{ErrorEstimate, Timestamp};

/// One test packet sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Sequence number.
    pub seq: u32,
    /// Send timestamp as carried in the packet: taken in user space just before protection
    /// and the send.
    pub time: Timestamp,
    /// Its error estimate.
    pub error: ErrorEstimate,
    /// When the kernel sent it (SO_TIMESTAMPING software transmit stamp), if it said.
    pub kernel_time: Option<Timestamp>,
}

impl Sent {
    /// The best send time known: the kernel's transmit stamp, else the packet's timestamp.
    pub fn t1(&self) -> Timestamp {
        self.kernel_time.unwrap_or(self.time)
    }
}

/// One reply received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The fields of the reflector's packet.
    pub reflector: ReflectorRepr,
    /// When it arrived (T4, the kernel's timestamp).
    pub recv_time: Timestamp,
    /// Our clock's error estimate at T4.
    pub recv_error: ErrorEstimate,
    /// TTL of the reply as it arrived.
    pub ttl: Option<u8>,
}

/// One event of owping's test session (twping's feeds its statistics on the engine thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TestEvent {
    /// The kernel's transmit stamp of packet `seq`.
    TxStamp {
        /// Sequence number.
        seq: u32,
        /// When the kernel sent it.
        time: Timestamp,
    },
    /// An OWAMP test packet received from the server, as a record.
    Record(DataRecord),
    /// The session is over: nothing follows.
    Ended {
        /// Packets it sent (the Next Seqno of RFC 4656 §3.8).
        sent: u32,
    },
}

/// Where a client-side session sends its events.
pub(crate) type Events = tokio::sync::mpsc::UnboundedSender<TestEvent>;
