//! Self-test of the strongSwan interop harness (`tests/common/charon.rs`): two charons, one in
//! each namespace of a [`NetPair`], set up childless IKE SAs with PSK and with RSA and ECDSA
//! certificates. Both ends must log the same keys for the same SPIs, the keys must recompute
//! from the logged Ni, Nr, g^ir and SPIs (RFC 7296 §2.14, independently with HMAC, and with
//! `ippm_ike::keys::IkeKeys` for the RFC 7717 secret), an IKE rekey must give new SPIs whose keys
//! the parser finds (and which recompute from the old SA's SK_d, §2.18), and terminating must
//! remove the SA on both ends. Needs root and Debian's strongSwan packages (see
//! `common::charon::PACKAGES`); `cargo test strongswan` selects these tests.

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use ippm_ike::keys::{Contributions, IkeKeys, KeyLengths, Prf};

mod common;
use common::charon::{
    Charon, CharonConfig, Childless, KeyType, NetPair, Pki, Role, SaInfo, SaKeys, Side, hex, unhex,
};

const WAIT: Duration = Duration::from_secs(10);

/// HMAC with the PRF's hash, computed here independently of ippm-ike.
fn hmac(prf: Prf, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    match prf {
        Prf::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, data),
        Prf::HmacSha384 => run::<Hmac<sha2::Sha384>>(key, data),
        Prf::HmacSha512 => run::<Hmac<sha2::Sha512>>(key, data),
        other => panic!("no independent HMAC for {other:?} here"),
    }
}

fn prf_plus(prf: Prf, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let (mut out, mut t) = (Vec::new(), Vec::new());
    let mut n = 1u8;
    while out.len() < len {
        t = hmac(prf, key, &[&t[..], seed, &[n]].concat());
        out.extend_from_slice(&t);
        n += 1;
    }
    out.truncate(len);
    out
}

fn spi(s: &str) -> [u8; 8] {
    unhex(s).try_into().expect("8-octet SPI")
}

/// Checks one logged IKE SA: SKEYSEED and all seven keys recompute from the logged inputs
/// (for a rekeyed SA from the old SA's SK_d), and ippm-ike's `IkeKeys` gives the logged
/// prf(SK_d, "IPPM"). `old` is the SA a rekeyed one replaced (with its own parent chain).
fn check_recompute(k: &SaKeys, chain: &[&SaKeys]) {
    let prf = k.prf().unwrap_or_else(|| panic!("PRF of {}", k.proposal));
    for (name, v) in [
        ("ni", &k.ni),
        ("nr", &k.nr),
        ("g_ir", &k.g_ir),
        ("spi_i", &k.spi_i),
    ] {
        assert!(!v.is_empty(), "{name} missing in {k:?}");
    }
    let (ni, nr, g_ir) = (unhex(&k.ni), unhex(&k.nr), unhex(&k.g_ir));
    let skeyseed = match chain.last() {
        None => hmac(prf, &[&ni[..], &nr].concat(), &g_ir),
        Some(old) => hmac(prf, &unhex(&old.sk_d), &[&g_ir[..], &ni, &nr].concat()),
    };
    assert_eq!(
        hex(&skeyseed),
        k.skeyseed,
        "SKEYSEED of {}_i {}_r",
        k.spi_i,
        k.spi_r
    );
    let want = [
        &k.sk_d, &k.sk_ai, &k.sk_ar, &k.sk_ei, &k.sk_er, &k.sk_pi, &k.sk_pr,
    ]
    .map(|s| s.as_str())
    .concat();
    let seed = [&ni[..], &nr, &unhex(&k.spi_i), &unhex(&k.spi_r)].concat();
    assert_eq!(
        hex(&prf_plus(prf, &skeyseed, &seed, want.len() / 2)),
        want,
        "prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) of {}_i {}_r",
        k.spi_i,
        k.spi_r
    );

    // ippm-ike: derive the first SA, then each rekey in turn.
    let lengths = |k: &SaKeys| KeyLengths {
        encr: k.sk_ei.len() / 2,
        integ: k.sk_ai.len() / 2,
    };
    let bufs = |k: &SaKeys| {
        (
            unhex(&k.ni),
            unhex(&k.nr),
            unhex(&k.g_ir),
            spi(&k.spi_i),
            spi(&k.spi_r),
        )
    };
    let mut sas = chain.iter().copied().chain([k]);
    let first = sas.next().unwrap();
    let (ni, nr, g, si, sr) = bufs(first);
    let c = Contributions {
        ni: &ni,
        nr: &nr,
        g_ir: &g,
        spi_i: &si,
        spi_r: &sr,
    };
    let mut keys = IkeKeys::derive(first.prf().unwrap(), c, lengths(first)).unwrap();
    for next in sas {
        let (ni, nr, g, si, sr) = bufs(next);
        let c = Contributions {
            ni: &ni,
            nr: &nr,
            g_ir: &g,
            spi_i: &si,
            spi_r: &sr,
        };
        keys = keys.rekey(next.prf().unwrap(), c, lengths(next)).unwrap();
    }
    assert_eq!(
        hex(&keys.ippm_secret()),
        k.ippm_secret,
        "IkeKeys::ippm_secret"
    );
    assert_eq!(k.ippm_secret.len(), 2 * prf.output_len());
}

/// The SA `sa` in a charon's key log, with the chain of SAs it was rekeyed from (oldest first).
fn find_keys<'a>(all: &'a [SaKeys], sa: &SaInfo) -> (&'a SaKeys, Vec<&'a SaKeys>) {
    let by_spis = |i: &str, r: &str| {
        let found: Vec<_> = all
            .iter()
            .filter(|k| k.spi_i == i && k.spi_r == r)
            .collect();
        assert_eq!(found.len(), 1, "one key record for {i}_i {r}_r in {all:#?}");
        found[0]
    };
    let k = by_spis(&sa.spi_i, &sa.spi_r);
    let mut chain = Vec::new();
    let mut at = k;
    while let Some((i, r)) = &at.rekey_of {
        at = by_spis(i, r);
        chain.insert(0, at);
    }
    (k, chain)
}

fn established(c: &Charon, conn: &str) -> Vec<SaInfo> {
    c.list_sas()
        .into_iter()
        .filter(|s| s.name == conn && s.state == "ESTABLISHED")
        .collect()
}

/// Both charons have exactly one established IKE SA of `conn` with the same SPIs; both
/// logged the same keys for it, which recompute; returns it as `ini` lists it.
fn check_sa(ini: &Charon, resp: &Charon, conn: &str) -> SaInfo {
    let (a, b) = (established(ini, conn), established(resp, conn));
    assert_eq!(a.len(), 1, "{conn} on the initiator: {a:?}");
    assert_eq!(b.len(), 1, "{conn} on the responder: {b:?}");
    let (a, b) = (&a[0], &b[0]);
    assert_eq!((&a.spi_i, &a.spi_r), (&b.spi_i, &b.spi_r), "SPIs of {conn}");
    // (The side that rekeys an IKE SA is the new SA's initiator, RFC 7296 §2.18.)
    assert!(a.initiator != b.initiator, "one initiator: {a:?} {b:?}");
    let (ka, kb) = (ini.keys(), resp.keys());
    let ((x, xchain), (y, _)) = (find_keys(&ka, a), find_keys(&kb, b));
    assert_eq!(x.sk_d, y.sk_d, "SK_d of {conn}");
    assert_eq!(x.ippm_secret, y.ippm_secret, "IPPM secret of {conn}");
    assert!(!x.ippm_secret.is_empty());
    for (f, p, q) in [
        ("Ni", &x.ni, &y.ni),
        ("Nr", &x.nr, &y.nr),
        ("g^ir", &x.g_ir, &y.g_ir),
        ("SKEYSEED", &x.skeyseed, &y.skeyseed),
        ("SK_pr", &x.sk_pr, &y.sk_pr),
        ("proposal", &x.proposal, &y.proposal),
    ] {
        assert_eq!(p, q, "{f} of {conn}");
    }
    check_recompute(x, &xchain);
    a.clone()
}

fn start_pair(net: &NetPair, pki: &Pki, proposals: &str) -> (Charon, Charon) {
    let resp = Charon::start(net, Side::A, CharonConfig::new(Some(pki), Role::Responder));
    let mut cfg = CharonConfig::new(Some(pki), Role::Initiator);
    cfg.proposals = proposals.into();
    cfg.childless = Childless::Force;
    let ini = Charon::start(net, Side::B, cfg);
    (resp, ini)
}

#[test]
fn strongswan_psk_rsa_rekey_terminate() {
    let t0 = Instant::now();
    let net = NetPair::new();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), KeyType::Rsa);
    let t_pki = t0.elapsed();
    let (resp, ini) = start_pair(&net, &pki, "aes128-sha256-x25519");
    let t_start = t0.elapsed();

    ini.initiate("psk");
    ini.initiate("cert");
    let t_up = t0.elapsed();
    let psk = check_sa(&ini, &resp, "psk");
    check_sa(&ini, &resp, "cert");
    assert_eq!(
        psk.proposal,
        "AES_CBC/128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519"
    );

    // IKE rekey: new SPIs on both ends, keys logged by the thread that ran the exchange
    // (under the old SA's ID on the initiator, the new SA's on the responder).
    ini.rekey_ike("psk");
    let rekeyed = |c: &Charon| {
        let l = c.list_sas();
        let psks: Vec<_> = l.iter().filter(|s| s.name == "psk").collect();
        psks.len() == 1 && psks[0].state == "ESTABLISHED" && psks[0].spi_i != psk.spi_i
    };
    assert!(
        ini.wait_for(rekeyed, WAIT) && resp.wait_for(rekeyed, WAIT),
        "rekey: {:?} / {:?}",
        ini.list_sas(),
        resp.list_sas()
    );
    let new = check_sa(&ini, &resp, "psk");
    assert_ne!((&new.spi_i, &new.spi_r), (&psk.spi_i, &psk.spi_r));
    let ini_keys = ini.keys();
    let (k, chain) = find_keys(&ini_keys, &new);
    assert_eq!(
        k.rekey_of.as_ref(),
        Some(&(psk.spi_i.clone(), psk.spi_r.clone()))
    );
    assert_eq!(chain.len(), 1);
    // Rekey once more, now from the original responder: a chain of two.
    resp.rekey_ike("psk");
    let again = |c: &Charon| {
        established(c, "psk")
            .first()
            .is_some_and(|s| s.spi_i != new.spi_i && c.list_sas().len() == 2)
    };
    assert!(ini.wait_for(again, WAIT) && resp.wait_for(again, WAIT));
    let newer = check_sa(&ini, &resp, "psk");
    assert_eq!(find_keys(&resp.keys(), &newer).1.len(), 2);
    let t_rekey = t0.elapsed();

    // Terminate: gone on both ends.
    ini.terminate("psk");
    let gone = |c: &Charon| c.list_sas().iter().all(|s| s.name != "psk");
    assert!(ini.wait_for(gone, WAIT) && resp.wait_for(gone, WAIT));
    resp.terminate("cert");
    let empty = |c: &Charon| c.list_sas().is_empty();
    assert!(ini.wait_for(empty, WAIT) && resp.wait_for(empty, WAIT));

    // strongSwan as initiator with its default proposals (our side B answers): the other way.
    resp.initiate("psk");
    let rev = check_sa(&resp, &ini, "psk");
    assert_eq!(rev.name, "psk");
    eprintln!(
        "timings: netns + RSA PKI {t_pki:?}, two charons {:?}, psk + cert IKE SAs {:?}, \
         two rekeys {:?}, total {:?}",
        t_start - t_pki,
        t_up - t_start,
        t_rekey - t_up,
        t0.elapsed()
    );
}

#[test]
fn strongswan_ecdsa_gcm_keys() {
    let net = NetPair::new();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), KeyType::Ecdsa);
    for f in [
        &pki.ca_cert_der,
        &pki.initiator.cert_der,
        &pki.initiator.key_der,
        &pki.initiator.pk8_der,
        &pki.responder.pk8_der,
    ] {
        let der = std::fs::read(f).unwrap();
        assert_eq!(der[0], 0x30, "{} is DER", f.display());
    }
    let (resp, ini) = start_pair(&net, &pki, "aes256gcm16-prfsha384-ecp384");
    let out = ini.initiate("cert");
    assert!(out.contains("ECDSA"), "{out}");
    let sa = check_sa(&ini, &resp, "cert");
    assert_eq!(sa.proposal, "AES_GCM_16/256/PRF_HMAC_SHA2_384/ECP_384");
    let resp_keys = resp.keys();
    let (k, _) = find_keys(&resp_keys, &sa);
    assert_eq!(k.sk_ai, "", "AEAD: no integrity key");
    assert_eq!(k.sk_ei.len(), 2 * 36, "AES-256 key + 4-octet salt");

    // Drop stops charon by its PID.
    let pid = resp.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(resp);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn strongswan_netpair_namespaces() {
    let net = NetPair::new();
    let (a, b) = (net.ns(Side::A).to_owned(), net.ns(Side::B).to_owned());
    assert_ne!(a, b);
    let out = net
        .command_b("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("192.0.2.2/24") && text.contains("127.0.0.1/8"),
        "{text}"
    );
    assert!(!text.contains("192.0.2.1/"), "{text}");
    // Side A answers on 192.0.2.1 (the charon tests exchange IKE over the pair).
    let out = net
        .command(Side::A, "ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("192.0.2.1/24"), "{text}");
    let list = || {
        String::from_utf8_lossy(
            &std::process::Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    assert!(list().contains(&a) && list().contains(&b));
    let other = NetPair::new();
    assert_ne!(other.ns(Side::A), a);
    drop(net);
    let l = list();
    assert!(!l.contains(&a) && !l.contains(&b), "{l}");
    assert!(l.contains(other.ns(Side::A)));
}
