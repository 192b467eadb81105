//! IKEv2 code points (IANA "Internet Key Exchange Version 2 (IKEv2) Parameters"). These are
//! open registries, so each is a newtype with named constants and unknown values round-trip
//! (rustls `enum_builder!`).

use std::fmt;

macro_rules! open_enum {
    ($(#[$m:meta])* $name:ident($ty:ty) { $( $(#[$vm:meta])* $c:ident = $v:expr ),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$vm])* pub const $c: Self = Self($v); )+

            /// The registered name, if this value has one here.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $v => Some(stringify!($c)), )+
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}

open_enum! {
    /// Exchange types (RFC 7296 §3.1).
    ExchangeType(u8) {
        /// IKE_SA_INIT.
        IKE_SA_INIT = 34,
        /// IKE_AUTH.
        IKE_AUTH = 35,
        /// CREATE_CHILD_SA.
        CREATE_CHILD_SA = 36,
        /// INFORMATIONAL.
        INFORMATIONAL = 37,
    }
}

open_enum! {
    /// Payload types (RFC 7296 §3.2, RFC 7383 for SKF).
    PayloadType(u8) {
        /// No Next Payload.
        NONE = 0,
        /// Security Association.
        SA = 33,
        /// Key Exchange.
        KE = 34,
        /// Identification - Initiator.
        IDI = 35,
        /// Identification - Responder.
        IDR = 36,
        /// Certificate.
        CERT = 37,
        /// Certificate Request.
        CERTREQ = 38,
        /// Authentication.
        AUTH = 39,
        /// Nonce.
        NONCE = 40,
        /// Notify.
        NOTIFY = 41,
        /// Delete.
        DELETE = 42,
        /// Vendor ID.
        VENDOR_ID = 43,
        /// Traffic Selector - Initiator.
        TSI = 44,
        /// Traffic Selector - Responder.
        TSR = 45,
        /// Encrypted and Authenticated.
        SK = 46,
        /// Configuration.
        CP = 47,
        /// Extensible Authentication.
        EAP = 48,
        /// Encrypted and Authenticated Fragment (RFC 7383).
        SKF = 53,
    }
}

open_enum! {
    /// Transform types (RFC 7296 §3.3.2).
    TransformType(u8) {
        /// Encryption algorithm.
        ENCR = 1,
        /// Pseudorandom function.
        PRF = 2,
        /// Integrity algorithm.
        INTEG = 3,
        /// Key exchange method (Diffie-Hellman group).
        DH = 4,
        /// Extended sequence numbers.
        ESN = 5,
    }
}

open_enum! {
    /// Security protocol identifiers (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        /// IKE.
        IKE = 1,
        /// AH.
        AH = 2,
        /// ESP.
        ESP = 3,
    }
}

open_enum! {
    /// Identification types (RFC 7296 §3.5).
    IdType(u8) {
        /// IPv4 address.
        IPV4_ADDR = 1,
        /// Fully qualified domain name.
        FQDN = 2,
        /// RFC 822 e-mail address.
        RFC822_ADDR = 3,
        /// IPv6 address.
        IPV6_ADDR = 5,
        /// DER ASN.1 distinguished name.
        DER_ASN1_DN = 9,
        /// DER ASN.1 general name.
        DER_ASN1_GN = 10,
        /// Opaque key ID.
        KEY_ID = 11,
    }
}

open_enum! {
    /// Authentication methods (RFC 7296 §3.8, RFC 7427).
    AuthMethod(u8) {
        /// RSA digital signature (PKCS#1 v1.5, SHA-1).
        RSA_SIG = 1,
        /// Shared key message integrity code.
        PSK = 2,
        /// ECDSA with SHA-256 on P-256 (RFC 4754).
        ECDSA_256 = 9,
        /// ECDSA with SHA-384 on P-384.
        ECDSA_384 = 10,
        /// Digital signature (RFC 7427).
        DIGITAL_SIGNATURE = 14,
    }
}

open_enum! {
    /// Notify message types (RFC 7296 §3.10.1 and later RFCs). Below 16384: errors.
    NotifyType(u16) {
        /// UNSUPPORTED_CRITICAL_PAYLOAD.
        UNSUPPORTED_CRITICAL_PAYLOAD = 1,
        /// INVALID_IKE_SPI.
        INVALID_IKE_SPI = 4,
        /// INVALID_MAJOR_VERSION.
        INVALID_MAJOR_VERSION = 5,
        /// INVALID_SYNTAX.
        INVALID_SYNTAX = 7,
        /// INVALID_MESSAGE_ID.
        INVALID_MESSAGE_ID = 9,
        /// INVALID_SPI.
        INVALID_SPI = 11,
        /// NO_PROPOSAL_CHOSEN.
        NO_PROPOSAL_CHOSEN = 14,
        /// INVALID_KE_PAYLOAD.
        INVALID_KE_PAYLOAD = 17,
        /// AUTHENTICATION_FAILED.
        AUTHENTICATION_FAILED = 24,
        /// SINGLE_PAIR_REQUIRED.
        SINGLE_PAIR_REQUIRED = 34,
        /// NO_ADDITIONAL_SAS.
        NO_ADDITIONAL_SAS = 35,
        /// INTERNAL_ADDRESS_FAILURE.
        INTERNAL_ADDRESS_FAILURE = 36,
        /// FAILED_CP_REQUIRED.
        FAILED_CP_REQUIRED = 37,
        /// TS_UNACCEPTABLE.
        TS_UNACCEPTABLE = 38,
        /// INVALID_SELECTORS.
        INVALID_SELECTORS = 39,
        /// TEMPORARY_FAILURE.
        TEMPORARY_FAILURE = 43,
        /// CHILD_SA_NOT_FOUND.
        CHILD_SA_NOT_FOUND = 44,
        /// INITIAL_CONTACT.
        INITIAL_CONTACT = 16384,
        /// SET_WINDOW_SIZE.
        SET_WINDOW_SIZE = 16385,
        /// NAT_DETECTION_SOURCE_IP.
        NAT_DETECTION_SOURCE_IP = 16388,
        /// NAT_DETECTION_DESTINATION_IP.
        NAT_DETECTION_DESTINATION_IP = 16389,
        /// COOKIE.
        COOKIE = 16390,
        /// USE_TRANSPORT_MODE.
        USE_TRANSPORT_MODE = 16391,
        /// REKEY_SA.
        REKEY_SA = 16393,
        /// MOBIKE_SUPPORTED.
        MOBIKE_SUPPORTED = 16396,
        /// MULTIPLE_AUTH_SUPPORTED.
        MULTIPLE_AUTH_SUPPORTED = 16404,
        /// REDIRECT_SUPPORTED.
        REDIRECT_SUPPORTED = 16406,
        /// CHILDLESS_IKEV2_SUPPORTED (RFC 6023).
        CHILDLESS_IKEV2_SUPPORTED = 16418,
        /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
        FRAGMENTATION_SUPPORTED = 16430,
        /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
        SIGNATURE_HASH_ALGORITHMS = 16431,
    }
}

impl NotifyType {
    /// Error types are below 16384 (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

/// Transform IDs of the suites ippm supports, by transform type.
pub mod transform {
    /// ENCR_AES_CBC.
    pub const ENCR_AES_CBC: u16 = 12;
    /// ENCR_AES_GCM_16 (RFC 5282).
    pub const ENCR_AES_GCM_16: u16 = 20;
    /// PRF_HMAC_SHA1.
    pub const PRF_HMAC_SHA1: u16 = 2;
    /// PRF_HMAC_SHA2_256.
    pub const PRF_HMAC_SHA2_256: u16 = 5;
    /// PRF_HMAC_SHA2_384.
    pub const PRF_HMAC_SHA2_384: u16 = 6;
    /// PRF_HMAC_SHA2_512.
    pub const PRF_HMAC_SHA2_512: u16 = 7;
    /// NONE (integrity with an AEAD cipher).
    pub const AUTH_NONE: u16 = 0;
    /// AUTH_HMAC_SHA2_256_128.
    pub const AUTH_HMAC_SHA2_256_128: u16 = 12;
    /// AUTH_HMAC_SHA2_384_192.
    pub const AUTH_HMAC_SHA2_384_192: u16 = 13;
    /// AUTH_HMAC_SHA2_512_256.
    pub const AUTH_HMAC_SHA2_512_256: u16 = 14;
    /// 2048-bit MODP group (RFC 3526).
    pub const DH_MODP_2048: u16 = 14;
    /// 256-bit random ECP group (RFC 5903).
    pub const DH_ECP_256: u16 = 19;
    /// 384-bit random ECP group (RFC 5903).
    pub const DH_ECP_384: u16 = 20;
    /// Curve25519 (RFC 8031).
    pub const DH_X25519: u16 = 31;
    /// The Key Length transform attribute (RFC 7296 §3.3.5).
    pub const ATTR_KEY_LENGTH: u16 = 14;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip() {
        assert_eq!(PayloadType(33), PayloadType::SA);
        assert_eq!(format!("{:?}", PayloadType(99)), "PayloadType(99)");
        assert_eq!(format!("{:?}", NotifyType::COOKIE), "COOKIE");
        assert!(NotifyType::INVALID_KE_PAYLOAD.is_error());
        assert!(!NotifyType::CHILDLESS_IKEV2_SUPPORTED.is_error());
    }
}
