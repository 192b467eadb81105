//! Every TWAMP-Control parser (Request-TW-Session, TWAMP Stop-Sessions, the RFC 5938
//! messages) on arbitrary bytes: no panic; what parses re-emits and parses back equal.
#![no_main]

use ippm_proto::wire::twamp::{
    RequestTwSessionRepr, StartNAckRepr, StartNSessionsRepr, StopNAckRepr, StopNSessionsRepr,
    TwStopSessionsRepr,
};
use libfuzzer_sys::fuzz_target;

macro_rules! n_message {
    ($ty:ty, $data:expr) => {
        if let Ok(need) = <$ty>::required_len($data) {
            if let Ok(r) = <$ty>::parse($data) {
                assert_eq!(need, $data.len());
                assert_eq!(<$ty>::parse(&r.to_vec()).unwrap(), r);
            }
        }
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = RequestTwSessionRepr::parse(data) {
        let out = r.to_vec();
        assert_eq!(RequestTwSessionRepr::parse(&out).unwrap(), r);
    }
    if let Ok(r) = TwStopSessionsRepr::parse(data) {
        assert_eq!(TwStopSessionsRepr::parse(&r.to_vec()).unwrap(), r);
    }
    n_message!(StartNSessionsRepr, data);
    n_message!(StartNAckRepr, data);
    n_message!(StopNSessionsRepr, data);
    n_message!(StopNAckRepr, data);
});
