//! The keys of every IKE SA, read out of charon's `ike = 4` / `enc = 4` log: the key oracle
//! for RFC 7717 (Debian's strongSwan has no save-keys plugin).

use super::*;

/// The keys of one IKE SA, read from charon's `ike = 4` log (all hex, lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SaKeys {
    /// Connection name (from the log tag).
    pub(crate) conn: String,
    /// charon's unique ID of the IKE SA the keys were logged under (for a rekey: the old
    /// SA, which runs the exchange).
    pub(crate) log_id: u32,
    /// For an SA made by an IKE rekey (CREATE_CHILD_SA): the SPIs (i, r) of the SA it
    /// replaced; `None` for one from IKE_SA_INIT.
    pub(crate) rekey_of: Option<(String, String)>,
    pub(crate) spi_i: String,
    pub(crate) spi_r: String,
    /// Selected proposal in the log's notation, e.g.
    /// `AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`.
    pub(crate) proposal: String,
    pub(crate) ni: String,
    pub(crate) nr: String,
    pub(crate) g_ir: String,
    pub(crate) skeyseed: String,
    pub(crate) sk_d: String,
    pub(crate) sk_ai: String,
    pub(crate) sk_ar: String,
    pub(crate) sk_ei: String,
    pub(crate) sk_er: String,
    pub(crate) sk_pi: String,
    pub(crate) sk_pr: String,
    /// RFC 7717: prf(SK_d, "IPPM") with the negotiated PRF (empty if the PRF is unknown).
    pub(crate) ippm_secret: String,
}

impl SaKeys {
    /// The negotiated PRF, from the proposal.
    pub(crate) fn prf(&self) -> Option<Prf> {
        prf_of(&self.proposal)
    }
}

/// What a thread of charon last processed, to tell an IKE_SA_INIT key derivation from an
/// IKE rekey's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastMsg {
    None,
    IkeSaInit,
    /// A CREATE_CHILD_SA exchange rekeying the IKE SA: its SPIs and message ID.
    IkeRekey([u8; 16], u32),
    Other,
}

/// One side of a CREATE_CHILD_SA exchange that rekeys the IKE SA.
#[derive(Debug, Clone, Default)]
struct RekeyHalf {
    nonce: Vec<u8>,
    spi: Vec<u8>,
}

/// IKE rekey exchanges: (old SA's SPIs, message ID) -> (request half, response half).
type Rekeys = HashMap<([u8; 16], u32), (Option<RekeyHalf>, Option<RekeyHalf>)>;

/// A hex dump being read (`label => N bytes @ 0x...` and the lines after it).
#[derive(Debug)]
struct Dump {
    label: String,
    id: Option<u32>,
    want: usize,
    buf: Vec<u8>,
}

/// Per-thread parser state.
#[derive(Debug)]
struct Thread {
    dump: Option<Dump>,
    /// The current `encrypted payload (en|de)cryption:` block: its plain text and header.
    plain: Option<Vec<u8>>,
    assoc: Option<Vec<u8>>,
    last: LastMsg,
    proposal: String,
    /// The key record this thread is filling (index into the records).
    record: Option<usize>,
}

/// A key record while parsing.
#[derive(Debug, Default)]
struct Rec {
    keys: SaKeys,
    kind: Option<LastMsg>,
    fields: HashMap<&'static str, Vec<u8>>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes(x.try_into().unwrap()))
}

/// Walks an IKEv2 payload chain starting with `first`: (type, body) pairs.
fn payloads(mut next: u8, mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while next != 0 && data.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if len < 4 || len > data.len() {
            break;
        }
        out.push((next, &data[4..len]));
        next = data[0];
        data = &data[len..];
    }
    out
}

/// From a CREATE_CHILD_SA message's plain text: the nonce and the IKE SPI of its SA payload,
/// if it carries an IKE proposal (protocol 1, 8-octet SPI): an IKE rekey.
fn ike_rekey_half(first: u8, plain: &[u8]) -> Option<RekeyHalf> {
    let mut half = RekeyHalf::default();
    let mut ike = false;
    for (ty, body) in payloads(first, plain) {
        match ty {
            // SA: first proposal substructure; protocol ID at 5, SPI size at 6, SPI at 8.
            33 if body.len() >= 8 && body[5] == 1 && body[6] == 8 && body.len() >= 16 => {
                ike = true;
                half.spi = body[8..16].to_vec();
            }
            40 => half.nonce = body.to_vec(),
            _ => {}
        }
    }
    ike.then_some(half)
}

/// The nonce of an IKE_SA_INIT message (cleartext).
fn init_nonce(msg: &[u8]) -> Option<Vec<u8>> {
    let first = *msg.get(16)?;
    payloads(first, msg.get(28..)?)
        .into_iter()
        .find(|(ty, _)| *ty == 40)
        .map(|(_, b)| b.to_vec())
}

/// Parses charon's log (`ike = 4`, `enc = 4`, `ike_name = yes`) into one [`SaKeys`] per key
/// derivation, in log order.
///
/// An IKE_SA_INIT derivation takes its nonces and SPIs from the AUTH octets logged under
/// the same IKE SA (message | other's nonce | prf(SK_p, ID)). An IKE rekey (CREATE_CHILD_SA)
/// is logged by the thread that processed the exchange's message: under the old SA's ID by
/// the rekey initiator, under the new SA's by the responder. Its nonces and new SPIs come from
/// the decrypted request and response (enc = 4 dumps every SK payload's plain text and the
/// header it is bound to); the exchange is the one the deriving thread just decrypted.
pub(crate) fn parse_keys(log: &str) -> Vec<SaKeys> {
    let mut threads: HashMap<String, Thread> = HashMap::new();
    let mut recs: Vec<Rec> = Vec::new();
    let mut octets: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut proposals: HashMap<u32, String> = HashMap::new();
    let mut rekeys = Rekeys::new();

    for line in log.lines() {
        // "DATE TIME TT[GRP] <name|id> text" or without the tag.
        let mut it = line.splitn(3, ' ');
        let (Some(_date), Some(_time), Some(rest)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let Some((tid, rest)) = rest.split_once('[') else {
            continue;
        };
        let Some((_grp, rest)) = rest.split_once("] ") else {
            continue;
        };
        let (tag, text) = match rest.strip_prefix('<').and_then(|r| r.split_once("> ")) {
            Some((tag, text)) => (Some(tag), text),
            None => (None, rest),
        };
        let id = tag.and_then(|t| {
            let (name, id) = match t.split_once('|') {
                Some((n, i)) => (Some(n), i),
                None => (None, t),
            };
            let id: u32 = id.parse().ok()?;
            if let Some(n) = name {
                names.insert(id, n.to_owned());
            }
            Some(id)
        });
        let th = threads.entry(tid.to_owned()).or_insert_with(|| Thread {
            dump: None,
            plain: None,
            assoc: None,
            last: LastMsg::None,
            proposal: String::new(),
            record: None,
        });

        // Hex dump continuation: "  16: 3A 4B ...  ascii".
        if let Some(d) = th.dump.as_mut() {
            let t = text.trim_start();
            if let Some((off, bytes)) = t.split_once(": ")
                && off.chars().all(|c| c.is_ascii_digit())
            {
                let n = (d.want - d.buf.len()).min(16);
                let hexpart: String = bytes.get(..3 * n - 1).unwrap_or("").split(' ').collect();
                d.buf.extend(unhex(&hexpart));
                if d.buf.len() < d.want {
                    continue;
                }
                let d = th.dump.take().unwrap();
                finish_dump(d, th, &mut recs, &proposals, &mut octets, &mut rekeys);
                continue;
            }
            th.dump = None;
        }

        if let Some((label, after)) = text.split_once(" => ") {
            if let Some(n) = after.split(' ').next() {
                if let Ok(want) = n.parse::<usize>()
                    && after.contains(" bytes @ ")
                {
                    let d = Dump {
                        label: label.trim().to_owned(),
                        id,
                        want,
                        buf: Vec::new(),
                    };
                    if want == 0 {
                        finish_dump(d, th, &mut recs, &proposals, &mut octets, &mut rekeys);
                    } else {
                        th.dump = Some(d);
                    }
                    continue;
                }
            }
        }
        if text.starts_with("encrypted payload encryption:")
            || text.starts_with("encrypted payload decryption:")
        {
            th.plain = None;
            th.assoc = None;
        } else if text.starts_with("received packet: ") {
            // Processing of a new message starts; key derivation follows in this thread.
            th.last = LastMsg::None;
            th.proposal.clear();
        } else if text.starts_with("parsed IKE_SA_INIT ") {
            th.last = LastMsg::IkeSaInit;
        } else if let Some(p) = text.strip_prefix("selected proposal: IKE:") {
            th.proposal = p.split(' ').next().unwrap_or("").to_owned();
            if let Some(id) = id {
                proposals.insert(id, th.proposal.clone());
            }
        }
    }

    recs.into_iter()
        .filter_map(|r| {
            let mut k = r.keys;
            let get = |f: &str| r.fields.get(f).map(|v| hex(v)).unwrap_or_default();
            if !r.fields.contains_key("sk_d") {
                return None;
            }
            k.g_ir = get("g_ir");
            k.skeyseed = get("skeyseed");
            k.sk_d = get("sk_d");
            k.sk_ai = get("sk_ai");
            k.sk_ar = get("sk_ar");
            k.sk_ei = get("sk_ei");
            k.sk_er = get("sk_er");
            k.sk_pi = get("sk_pi");
            k.sk_pr = get("sk_pr");
            if k.conn.is_empty() {
                k.conn = names.get(&k.log_id).cloned().unwrap_or_default();
            }
            match r.kind {
                Some(LastMsg::IkeRekey(spis, mid)) => {
                    k.rekey_of = Some((hex(&spis[..8]), hex(&spis[8..])));
                    if let Some((req, resp)) = rekeys.get(&(spis, mid)) {
                        if let Some(q) = req {
                            k.ni = hex(&q.nonce);
                            k.spi_i = hex(&q.spi);
                        }
                        if let Some(p) = resp {
                            k.nr = hex(&p.nonce);
                            k.spi_r = hex(&p.spi);
                        }
                    }
                }
                _ => {
                    let prflen = r.fields.get("sk_pi").map_or(0, Vec::len);
                    for oc in octets.get(&k.log_id).into_iter().flatten() {
                        let Some(mlen) = u32_at(oc, 24).map(|l| l as usize) else {
                            continue;
                        };
                        if oc.len() < mlen + prflen || mlen < 28 {
                            continue;
                        }
                        let other = &oc[mlen..oc.len() - prflen];
                        let own = init_nonce(&oc[..mlen]).unwrap_or_default();
                        if oc[19] & 0x20 != 0 {
                            // IKE_SA_INIT response (Nr) | Ni
                            if k.ni.is_empty() {
                                k.ni = hex(other);
                            }
                            if k.nr.is_empty() {
                                k.nr = hex(&own);
                            }
                            k.spi_i = hex(&oc[..8]);
                            k.spi_r = hex(&oc[8..16]);
                        } else {
                            if k.nr.is_empty() {
                                k.nr = hex(other);
                            }
                            if k.ni.is_empty() {
                                k.ni = hex(&own);
                            }
                            if k.spi_i.is_empty() {
                                k.spi_i = hex(&oc[..8]);
                            }
                        }
                    }
                }
            }
            if let Some(prf) = k.prf() {
                k.ippm_secret = hex(&prf.prf(&unhex(&k.sk_d), b"IPPM"));
            }
            Some(k)
        })
        .collect()
}

fn finish_dump(
    d: Dump,
    th: &mut Thread,
    recs: &mut Vec<Rec>,
    proposals: &HashMap<u32, String>,
    octets: &mut HashMap<u32, Vec<Vec<u8>>>,
    rekeys: &mut Rekeys,
) {
    let field = match d.label.as_str() {
        "shared Diffie Hellman secret" => {
            // A new key derivation starts in this thread.
            // The IKE_SA_INIT responder derives the keys only when the first IKE_AUTH
            // request arrives, in another thread than the one that chose the proposal; a
            // rekey responder logs them under the new SA, the proposal under the old one.
            let proposal = match (th.last, d.id.and_then(|id| proposals.get(&id))) {
                (LastMsg::IkeRekey(..), _) | (_, None) => th.proposal.clone(),
                (_, Some(p)) => p.clone(),
            };
            recs.push(Rec {
                keys: SaKeys {
                    log_id: d.id.unwrap_or(0),
                    proposal,
                    ..SaKeys::default()
                },
                kind: Some(th.last),
                fields: HashMap::new(),
            });
            th.record = Some(recs.len() - 1);
            Some("g_ir")
        }
        "SKEYSEED" => Some("skeyseed"),
        "Sk_d secret" => Some("sk_d"),
        "Sk_ai secret" => Some("sk_ai"),
        "Sk_ar secret" => Some("sk_ar"),
        "Sk_ei secret" => Some("sk_ei"),
        "Sk_er secret" => Some("sk_er"),
        "Sk_pi secret" => Some("sk_pi"),
        "Sk_pr secret" => Some("sk_pr"),
        l if l.starts_with("octets = message") => {
            if let Some(id) = d.id {
                octets.entry(id).or_default().push(d.buf);
            }
            return;
        }
        "plain" => {
            th.plain = Some(d.buf);
            return message_done(th, rekeys);
        }
        "assoc" => {
            th.assoc = Some(d.buf);
            return message_done(th, rekeys);
        }
        _ => return,
    };
    if let (Some(f), Some(r)) = (field, th.record.and_then(|i| recs.get_mut(i))) {
        r.fields.entry(f).or_insert(d.buf);
    }
    if field == Some("sk_pr") {
        th.record = None;
    }
}

/// Once a thread has logged both the plain text and the header of an SK payload: if it is
/// an IKE rekey's CREATE_CHILD_SA message, remember its nonce and SPI.
fn message_done(th: &mut Thread, rekeys: &mut Rekeys) {
    // An SK payload (not SKF: 28-octet IKE header + 4-octet SK header) en- or decrypted.
    if let (Some(plain), Some(assoc)) = (&th.plain, &th.assoc) {
        if assoc.len() == 32 && assoc[16] == 46 {
            let spis: [u8; 16] = assoc[..16].try_into().unwrap();
            let (exchange, response) = (assoc[18], assoc[19] & 0x20 != 0);
            let mid = u32_at(assoc, 20).unwrap_or(0);
            let half = (exchange == 36)
                .then(|| ike_rekey_half(assoc[28], plain))
                .flatten();
            match half {
                Some(h) => {
                    let e = rekeys.entry((spis, mid)).or_default();
                    if response {
                        e.1 = Some(h);
                    } else {
                        e.0 = Some(h);
                    }
                    th.last = LastMsg::IkeRekey(spis, mid);
                }
                None => th.last = LastMsg::Other,
            }
        }
        th.plain = None;
        th.assoc = None;
    }
}
