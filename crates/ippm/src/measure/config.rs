//! The `[archive]`, `[metrics]` and `[[measure]]` sections, and the check of each entry into
//! the [`Spec`] its runner follows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ippm_archive::Protocol;
use ippm_net::stamp_client::{CosRequest, StampMode, StampOptions, TlvSelection};
use ippm_net::twamp_client::Interval;
use ippm_proto::SecurityMode;
use ippm_proto::session::{PassphraseStore, Secret, SecretStore};
use serde::Deserialize;

/// `[archive]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArchiveSection {
    pub(crate) path: Option<PathBuf>,
    pub(crate) keep_records_days: Option<f64>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    #[serde(default, deserialize_with = "crate::serve::listen::one::<_, 9862>")]
    pub(crate) listen: Option<SocketAddr>,
}

/// One `[[measure]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeasureSection {
    peer: String,
    protocol: String,
    // Every protocol.
    rate: Option<f64>,
    schedule: Option<String>,
    session: Option<f64>,
    padding: Option<u32>,
    dscp: Option<u8>,
    loss_timeout: Option<f64>,
    // TWAMP and OWAMP (their control protocol).
    modes: Option<String>,
    identity: Option<String>,
    ike: Option<String>,
    // STAMP.
    stamp_mode: Option<String>,
    key_file: Option<PathBuf>,
    ssid: Option<u16>,
    tlvs: Option<Vec<String>>,
    cos: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IkeUse {
    Fallback,
    Initiate,
    Require,
    Off,
}

/// What an O/TWAMP session negotiates over its control connection.
#[derive(Debug, Clone)]
pub(super) struct ControlSpec {
    pub(super) modes: Vec<SecurityMode>,
    pub(super) identity: Option<(Vec<u8>, Secret)>,
    pub(super) ike: IkeUse,
    pub(super) padding: Option<u32>,
}

/// How an entry's sessions run.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Twamp(ControlSpec),
    Owamp(ControlSpec),
    /// STAMP: no control protocol, so the whole run is known from the file (the SSID too,
    /// drawn once per entry so that every session of the entry carries the same).
    Stamp(Box<StampOptions>),
}

/// A checked `[[measure]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// `host:port` as configured (the archive's and the metrics' peer label).
    pub(super) label: String,
    /// `host:port` as configured, what [`Spec::resolve`] looks up.
    pub(super) peer: String,
    /// The peer's address: the configured one when it is an IP address; for a name, resolved
    /// anew for every session by [`Spec::resolve`] (a name that does not resolve fails that
    /// session, not the daemon), and the unspecified address with the port until then.
    pub(super) server: SocketAddr,
    pub(super) protocol: Protocol,
    pub(super) interval: Interval,
    pub(super) count: u32,
    pub(super) dscp: u8,
    pub(super) loss_timeout: Duration,
    pub(super) params: serde_json::Value,
    pub(super) kind: Kind,
}

/// The keys only O/TWAMP entries take, and what a STAMP entry uses instead.
const CONTROL_ONLY: &[(&str, &str)] = &[
    (
        "modes",
        "STAMP has two modes: stamp_mode = \"unauthenticated\" or \"authenticated\"",
    ),
    (
        "identity",
        "STAMP has no passphrases: give its HMAC key as key_file = \"FILE\" (hex, mode 600)",
    ),
    (
        "ike",
        "RFC 7717 keys are O/TWAMP's here: give the STAMP HMAC key as key_file = \"FILE\"",
    ),
];

/// The keys only STAMP entries take, and what an O/TWAMP entry uses instead.
const STAMP_ONLY: &[(&str, &str)] = &[
    (
        "stamp_mode",
        "O/TWAMP modes are modes = \"LETTERS\" (O, A, E, M)",
    ),
    (
        "key_file",
        "O/TWAMP keys come from the daemon's keys = \"FILE\", chosen with identity = \"NAME\"",
    ),
    ("ssid", "the SSID is STAMP's (O/TWAMP sessions get a SID)"),
    ("tlvs", "TLVs are STAMP's (RFC 8972)"),
    (
        "cos",
        "the Class of Service TLV is STAMP's; dscp = N marks O/TWAMP packets",
    ),
];

impl MeasureSection {
    /// The keys given, by name (for the per-protocol checks).
    fn given(&self, key: &str) -> bool {
        match key {
            "modes" => self.modes.is_some(),
            "identity" => self.identity.is_some(),
            "ike" => self.ike.is_some(),
            "stamp_mode" => self.stamp_mode.is_some(),
            "key_file" => self.key_file.is_some(),
            "ssid" => self.ssid.is_some(),
            "tlvs" => self.tlvs.is_some(),
            "cos" => self.cos.is_some(),
            _ => false,
        }
    }
}

/// What every protocol's entry says the same way.
struct Common {
    /// `host:port` as configured.
    peer: String,
    /// The address when the peer is an IP address, else the unspecified one (see `Spec`).
    server: SocketAddr,
    rate: f64,
    interval: Interval,
    count: u32,
    dscp: u8,
    loss_timeout: f64,
}

fn common(m: &MeasureSection, what: &str, port: u16) -> anyhow::Result<Common> {
    // No DNS here: a name is resolved for each session (Spec::resolve), asynchronously.
    let peer = crate::test_args::with_port(&m.peer, port);
    let server = match peer.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let Some((host, p)) = peer.rsplit_once(':') else {
                bail!("{what}: peer = {:?}: HOST or HOST:PORT", m.peer);
            };
            if host.is_empty() || host.contains(['[', ']', ' ']) {
                bail!("{what}: peer = {:?}: HOST or HOST:PORT", m.peer);
            }
            SocketAddr::new([0, 0, 0, 0].into(), p.parse()?)
        }
    };
    let rate = m.rate.unwrap_or(10.0);
    if !(0.001..=100_000.0).contains(&rate) {
        bail!("{what}: rate = {rate}: between 0.001 and 100000 packets per second");
    }
    let gap = Duration::from_secs_f64(1.0 / rate);
    let interval = match m.schedule.as_deref().unwrap_or("exponential") {
        "exponential" => Interval::Exponential(gap),
        "fixed" => Interval::Fixed(gap),
        x => bail!("{what}: schedule = {x:?}: use \"exponential\" or \"fixed\""),
    };
    let session = m.session.unwrap_or(60.0);
    if !(1.0..=86_400.0).contains(&session) {
        bail!("{what}: session = {session}: between 1 and 86400 seconds");
    }
    let count = (session * rate).round().max(1.0) as u32;
    let loss_timeout = m.loss_timeout.unwrap_or(2.0);
    if !(0.0..=3600.0).contains(&loss_timeout) {
        bail!("{what}: loss_timeout = {loss_timeout}: between 0 and 3600 seconds");
    }
    let dscp = m.dscp.unwrap_or(0);
    if dscp > 63 {
        bail!("{what}: dscp = {dscp}: 0 to 63");
    }
    Ok(Common {
        peer,
        server,
        rate,
        interval,
        count,
        dscp,
        loss_timeout,
    })
}

impl Spec {
    /// This entry with its peer's address for one session: a name is looked up now, without
    /// blocking the runtime; the reason when it does not resolve.
    pub(super) async fn resolve(&self) -> Result<Self, String> {
        let mut s = self.clone();
        if self.peer.parse::<SocketAddr>().is_err() {
            let addr = tokio::net::lookup_host(&self.peer)
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", self.peer))?
                .next()
                .ok_or_else(|| format!("{} has no address", self.peer))?;
            s.server = addr;
            if let Kind::Stamp(o) = &mut s.kind {
                o.reflector = addr;
            }
        }
        Ok(s)
    }

    /// Checks an entry (`n`: its position, for messages) against the key file.
    pub(crate) fn parse(
        m: &MeasureSection,
        n: usize,
        keys: &PassphraseStore,
    ) -> anyhow::Result<Self> {
        let what = format!("[[measure]] #{} ({})", n + 1, m.peer);
        let (protocol, port, misplaced) = match m.protocol.as_str() {
            "twamp" => (Protocol::Twamp, 862, STAMP_ONLY),
            "owamp" => (Protocol::Owamp, 861, STAMP_ONLY),
            "stamp" => (
                Protocol::Stamp,
                ippm_net::stamp_client::DEFAULT_PORT,
                CONTROL_ONLY,
            ),
            p => bail!("{what}: protocol = {p:?}: use \"twamp\", \"owamp\" or \"stamp\""),
        };
        if let Some((key, instead)) = misplaced.iter().find(|(k, _)| m.given(k)) {
            bail!(
                "{what}: {key} does not apply to protocol = \"{}\": {instead}",
                m.protocol
            );
        }
        let c = common(m, &what, port)?;
        let (kind, params) = if protocol == Protocol::Stamp {
            stamp(m, &what, &c)?
        } else {
            control(m, &what, &c, protocol, keys)?
        };
        Ok(Self {
            label: c.peer.clone(),
            peer: c.peer,
            server: c.server,
            protocol,
            interval: c.interval,
            count: c.count,
            dscp: c.dscp,
            loss_timeout: Duration::from_secs_f64(c.loss_timeout),
            params,
            kind,
        })
    }
}

/// A TWAMP or OWAMP entry's modes and keys.
fn control(
    m: &MeasureSection,
    what: &str,
    c: &Common,
    protocol: Protocol,
    keys: &PassphraseStore,
) -> anyhow::Result<(Kind, serde_json::Value)> {
    let ike = match m.ike.as_deref().unwrap_or("fallback") {
        "fallback" => IkeUse::Fallback,
        "initiate" => IkeUse::Initiate,
        "require" => IkeUse::Require,
        "off" => IkeUse::Off,
        x => bail!("{what}: ike = {x:?}: use fallback, initiate, require or off"),
    };
    let identity = match &m.identity {
        Some(id) => Some((
            id.as_bytes().to_vec(),
            keys.passphrase(id.as_bytes())
                .with_context(|| format!("{what}: identity {id:?} is not in the key file"))?,
        )),
        None => None,
    };
    let letters = m.modes.clone().unwrap_or_else(|| {
        if identity.is_some() || ike != IkeUse::Off {
            "AEO".into()
        } else {
            "O".into()
        }
    });
    let mut modes = ippm_net::twamp_client::modes_from_letters(&letters)
        .with_context(|| format!("{what}: modes takes letters O, A, E, M"))?;
    if protocol == Protocol::Owamp {
        modes.retain(|m| *m != SecurityMode::Mixed);
    }
    if matches!(ike, IkeUse::Require | IkeUse::Initiate) {
        modes.retain(|m| *m != SecurityMode::Open);
    }
    if modes.is_empty() {
        bail!("{what}: no usable mode in {letters:?}");
    }
    let params = serde_json::json!({
        "peer": m.peer,
        "protocol": m.protocol,
        "modes": letters,
        "identity": m.identity,
        "ike": m.ike.as_deref().unwrap_or("fallback"),
        "rate": c.rate,
        "schedule": m.schedule.as_deref().unwrap_or("exponential"),
        "count": c.count,
        "padding": m.padding,
        "dscp": c.dscp,
        "loss_timeout": c.loss_timeout,
    });
    let spec = ControlSpec {
        modes,
        identity,
        ike,
        padding: m.padding,
    };
    let kind = if protocol == Protocol::Owamp {
        Kind::Owamp(spec)
    } else {
        Kind::Twamp(spec)
    };
    Ok((kind, params))
}

/// The TLV names of `tlvs = [...]`, as `ippm stamp`'s flags name them.
const TLV_NAMES: &str = "\"location\", \"timestamp-info\", \"direct-measurement\", \"follow-up\"";

/// A STAMP entry's mode, key, SSID and TLVs: the run's options, checked as `ippm stamp`
/// checks its flags (the packet must fit a datagram).
fn stamp(m: &MeasureSection, what: &str, c: &Common) -> anyhow::Result<(Kind, serde_json::Value)> {
    let key = m
        .key_file
        .as_deref()
        .map(|p| {
            ippm_net::keyfile::stamp_key(p)
                .with_context(|| format!("{what}: key_file = {:?}", p.display().to_string()))
        })
        .transpose()?;
    let mode = match m.stamp_mode.as_deref() {
        None if key.is_some() => StampMode::Authenticated,
        None | Some("unauthenticated") => StampMode::Unauthenticated,
        Some("authenticated") => StampMode::Authenticated,
        Some(x) => {
            bail!("{what}: stamp_mode = {x:?}: use \"unauthenticated\" or \"authenticated\"")
        }
    };
    if mode == StampMode::Authenticated && key.is_none() {
        bail!(
            "{what}: stamp_mode = \"authenticated\" needs the HMAC key: key_file = \"FILE\" (hex, \
             mode 600)"
        );
    }
    let mut tlvs = TlvSelection::default();
    for t in m.tlvs.iter().flatten() {
        match t.as_str() {
            "location" => tlvs.location = true,
            "timestamp-info" => tlvs.timestamp_info = true,
            "direct-measurement" => tlvs.direct_measurement = true,
            "follow-up" => tlvs.follow_up = true,
            "class-of-service" => bail!("{what}: tlvs: ask for Class of Service with cos = DSCP"),
            "extra-padding" => bail!("{what}: tlvs: Extra Padding is padding = OCTETS"),
            x => bail!("{what}: tlvs: {x:?} is not one of {TLV_NAMES}"),
        }
    }
    if let Some(dscp) = m.cos {
        if dscp > 63 {
            bail!("{what}: cos = {dscp}: the DSCP asked for the replies, 0 to 63");
        }
        tlvs.class_of_service = Some(CosRequest { dscp, ecn: 0 });
    }
    tlvs.padding = m
        .padding
        .map(|n| {
            u16::try_from(n)
                .map_err(|_| anyhow::anyhow!("{what}: padding = {n}: at most 65535 octets"))
        })
        .transpose()?;
    let rng = ippm_net::rng::os();
    let ssid = match m.ssid {
        Some(0) => bail!("{what}: ssid = 0: 1 to 65535 (0 is a sender without an SSID)"),
        Some(s) => s,
        None => loop {
            let s = u16::from_be_bytes(
                ippm_net::rng::array(rng.as_ref()).with_context(|| format!("{what}: ssid"))?,
            );
            if s != 0 {
                break s;
            }
        },
    };
    let opts = StampOptions {
        reflector: c.server,
        count: c.count,
        interval: c.interval,
        dscp: c.dscp,
        loss_timeout: Duration::from_secs_f64(c.loss_timeout),
        local: None,
        ports: None,
        mode,
        key,
        ssid,
        tlvs,
        // Every packet goes to the archive.
        keep_records: true,
        progress: None,
        rng,
    };
    opts.packet_len()
        .with_context(|| format!("{what}: padding = {}", m.padding.unwrap_or(0)))?;
    let params = serde_json::json!({
        "peer": m.peer,
        "protocol": m.protocol,
        "stamp_mode": mode.name(),
        "key_file": m.key_file,
        "ssid": ssid,
        "tlvs": m.tlvs.clone().unwrap_or_default(),
        "cos": m.cos,
        "rate": c.rate,
        "schedule": m.schedule.as_deref().unwrap_or("exponential"),
        "count": c.count,
        "padding": m.padding,
        "dscp": c.dscp,
        "loss_timeout": c.loss_timeout,
    });
    Ok((Kind::Stamp(Box::new(opts)), params))
}

/// The archive's and the summary's name of a STAMP mode.
#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entry(toml: &str) -> anyhow::Result<Spec> {
        let m: MeasureSection = toml::from_str(toml).unwrap();
        Spec::parse(&m, 0, &PassphraseStore::new())
    }

    fn stamp_opts(s: &Spec) -> &StampOptions {
        match &s.kind {
            Kind::Stamp(o) => o,
            Kind::Twamp(_) | Kind::Owamp(_) => panic!("not a STAMP entry"),
        }
    }

    #[test]
    fn stamp_entry_defaults_and_options() {
        let s = entry("peer = \"127.0.0.1\"\nprotocol = \"stamp\"\n").unwrap();
        assert_eq!(s.protocol, Protocol::Stamp);
        assert_eq!(s.server.port(), 862);
        let o = stamp_opts(&s);
        assert_eq!(o.mode, StampMode::Unauthenticated);
        assert!(o.key.is_none() && o.keep_records && o.ssid != 0);
        assert_eq!(o.tlvs, TlvSelection::default());
        assert_eq!((o.count, s.count), (600, 600));
        // The SSID is drawn once per entry: every session of `s` carries it.
        assert_eq!(s.params["ssid"].as_u64(), Some(u64::from(o.ssid)));

        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, "00112233445566778899aabbccddeeff\n").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = entry(&format!(
            "peer = \"127.0.0.1:4000\"\nprotocol = \"stamp\"\nkey_file = {:?}\nssid = 9\n\
             tlvs = [\"location\", \"timestamp-info\", \"direct-measurement\", \"follow-up\"]\n\
             cos = 46\npadding = 100\nrate = 2\nsession = 5\ndscp = 10\n",
            k.display().to_string()
        ))
        .unwrap();
        let o = stamp_opts(&s);
        // A key and no stamp_mode: authenticated.
        assert_eq!(o.mode, StampMode::Authenticated);
        assert_eq!(
            (o.ssid, o.count, o.dscp, o.reflector.port()),
            (9, 10, 10, 4000)
        );
        let t = &o.tlvs;
        assert!(t.location && t.timestamp_info && t.direct_measurement && t.follow_up);
        assert_eq!(t.class_of_service, Some(CosRequest { dscp: 46, ecn: 0 }));
        assert_eq!(t.padding, Some(100));
        let s = entry(&format!(
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nkey_file = {:?}\n\
             stamp_mode = \"unauthenticated\"\n",
            k.display().to_string()
        ))
        .unwrap();
        // Unauthenticated with a key: the key protects only TLVs.
        assert_eq!(stamp_opts(&s).mode, StampMode::Unauthenticated);
        assert!(stamp_opts(&s).key.is_some());
    }

    #[test]
    fn stamp_keys_are_refused_on_twamp_and_owamp_entries() {
        for p in ["twamp", "owamp"] {
            for (key, value) in [
                ("stamp_mode", "\"authenticated\""),
                ("key_file", "\"k\""),
                ("ssid", "5"),
                ("tlvs", "[]"),
                ("cos", "1"),
            ] {
                let e = entry(&format!(
                    "peer = \"127.0.0.1\"\nprotocol = \"{p}\"\n{key} = {value}\n"
                ))
                .unwrap_err()
                .to_string();
                assert!(
                    e.starts_with("[[measure]] #1 (127.0.0.1): ") && e.contains(key),
                    "{e}"
                );
            }
        }
        // And theirs on STAMP ones.
        for (key, value) in [
            ("modes", "\"O\""),
            ("identity", "\"a\""),
            ("ike", "\"off\""),
        ] {
            let e = entry(&format!(
                "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\n{key} = {value}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(key) && e.contains("STAMP"), "{e}");
        }
    }
}
