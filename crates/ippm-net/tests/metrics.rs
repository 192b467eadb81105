//! The Prometheus endpoint over real HTTP on loopback, its bodies read by the Prometheus
//! project's own Python parsers (`prometheus_client.openmetrics.parser` for the OpenMetrics
//! text Prometheus asks for, `prometheus_client.parser` for the classic text format; Debian's
//! python3-prometheus-client), its errors, its time limits, and the IKE SA family with two IKE
//! services that set up a real SA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ippm_ike::auth::Identity;
use ippm_ike::config::{Config, Connection, LocalAuth, Psk, RemoteAuth};
use ippm_ike::proposal::IkeProposal;
use ippm_net::ike::{IkeHandle, IkeServiceOptions};
use ippm_net::metrics::{self, Metrics, ServeOptions, SessionFigures};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What Prometheus sends in `Accept`.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(metrics: Arc<Metrics>, ike: Option<IkeHandle>, opts: ServeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(metrics::serve_with(listener, metrics, ike, rx, opts));
        Self { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server stops when told")
            .unwrap();
    }
}

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read to the end.
async fn request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("the answer comes in time")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete HTTP answer");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let status: u16 = status[9..12].parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    if method != "HEAD" {
        let len: usize = headers["content-length"].parse().unwrap();
        assert_eq!(len, body.len(), "Content-Length matches the body");
    }
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The Debian interpreter, which sees Debian's python3-prometheus-client whatever python3
/// comes first on PATH.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

const PARSE: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "unit": f.unit, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
"#;

/// The families `text` holds, as the Python parser of `format` (`openmetrics` or `text`)
/// reads them: name to (type, unit, help, samples as (sample name, labels) to value).
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;
#[derive(Debug)]
struct Family {
    typ: String,
    unit: String,
    help: String,
    samples: Samples,
}

fn parse(format: &str, text: &str) -> BTreeMap<String, Family> {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .args(["-c", PARSE, format])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser refuses the exposition (python3-prometheus-client installed?):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    families
        .into_iter()
        .map(|f| {
            let samples = f["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let labels = s["labels"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect();
                    let key = (s["name"].as_str().unwrap().to_owned(), labels);
                    (key, s["value"].as_f64().unwrap())
                })
                .collect();
            let name = f["name"].as_str().unwrap().to_owned();
            let family = Family {
                typ: f["type"].as_str().unwrap().to_owned(),
                unit: f["unit"].as_str().unwrap_or_default().to_owned(),
                help: f["help"].as_str().unwrap().to_owned(),
                samples,
            };
            (name, family)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sample(f: &Family, name: &str, l: &[(&str, &str)]) -> f64 {
    *f.samples
        .get(&(name.to_owned(), labels(l)))
        .unwrap_or_else(|| panic!("no sample {name}{l:?} in {f:?}"))
}

const TW: &str = "core1.example.net:862";
const OW: &str = "[2001:db8::7]:861";

fn feed(m: &Metrics) {
    m.session_started(TW, "twamp");
    m.observe_session(&SessionFigures {
        peer: TW.into(),
        protocol: "twamp",
        direction: "round_trip",
        sent: 1000,
        received: 990,
        lost: 10,
        duplicates: 2,
        reordered: 5,
        delay_quantiles_seconds: vec![(0.5, 0.000_250), (0.9, 0.000_400), (0.99, 0.001_5)],
        delay_min_seconds: Some(0.000_180),
        delay_max_seconds: Some(0.002),
        jitter_seconds: Some(0.000_030),
    });
    m.session_ended(TW, "twamp", "complete");
    m.session_started(TW, "twamp"); // still running
    m.session_started(OW, "owamp");
    for (direction, lost) in [("to_server", 0), ("from_server", 4)] {
        m.observe_session(&SessionFigures {
            peer: OW.into(),
            protocol: "owamp",
            direction,
            sent: 100,
            received: 100 - lost,
            lost,
            delay_quantiles_seconds: vec![(0.5, 0.01), (0.99, 0.02)],
            delay_min_seconds: Some(0.009),
            delay_max_seconds: Some(0.03),
            jitter_seconds: None,
            ..SessionFigures::default()
        });
    }
    m.session_ended(OW, "owamp", "failed");
    m.hmac_failure(OW, "owamp");
    m.hmac_failure(OW, "owamp");
    m.hmac_failure(OW, "owamp");
}

/// Checks what both formats must agree on; `counter` maps a counter's family name as this
/// parser gives it (the Python parsers drop `_total` in both formats).
fn check_families(f: &BTreeMap<String, Family>, info: (&str, &str)) {
    let tw = [
        ("peer", TW),
        ("protocol", "twamp"),
        ("direction", "round_trip"),
    ];
    let ow_to = [
        ("peer", OW),
        ("protocol", "owamp"),
        ("direction", "to_server"),
    ];
    let ow_from = [
        ("peer", OW),
        ("protocol", "owamp"),
        ("direction", "from_server"),
    ];
    for (name, tw_v, to_v, from_v) in [
        ("ippm_packets_sent", 1000.0, 100.0, 100.0),
        ("ippm_packets_received", 990.0, 100.0, 96.0),
        ("ippm_packets_lost", 10.0, 0.0, 4.0),
        ("ippm_packets_duplicate", 2.0, 0.0, 0.0),
        ("ippm_packets_reordered", 5.0, 0.0, 0.0),
    ] {
        let fam = &f[name];
        assert_eq!(fam.typ, "counter", "{name}");
        assert_eq!(fam.samples.len(), 3, "{name}: {fam:?}");
        let total = format!("{name}_total");
        assert_eq!(sample(fam, &total, &tw), tw_v, "{name}");
        assert_eq!(sample(fam, &total, &ow_to), to_v, "{name}");
        assert_eq!(sample(fam, &total, &ow_from), from_v, "{name}");
    }

    let delay = &f["ippm_delay_seconds"];
    assert_eq!(delay.typ, "gauge");
    assert!(delay.help.contains("quantiles"), "{}", delay.help);
    assert_eq!(delay.samples.len(), 3 + 2 + 2);
    for (q, v) in [("0.5", 0.000_250), ("0.9", 0.000_400), ("0.99", 0.001_5)] {
        let mut l = tw.to_vec();
        l.push(("quantile", q));
        assert_eq!(sample(delay, "ippm_delay_seconds", &l), v);
    }
    let mut l = ow_from.to_vec();
    l.push(("quantile", "0.99"));
    assert_eq!(sample(delay, "ippm_delay_seconds", &l), 0.02);

    for (name, tw_v, ow_v) in [
        ("ippm_delay_min_seconds", Some(0.000_180), Some(0.009)),
        ("ippm_delay_max_seconds", Some(0.002), Some(0.03)),
        ("ippm_jitter_seconds", Some(0.000_030), None),
    ] {
        let fam = &f[name];
        assert_eq!(fam.typ, "gauge", "{name}");
        let want = 1 + 2 * usize::from(ow_v.is_some());
        assert_eq!(fam.samples.len(), want, "{name}: {fam:?}");
        assert_eq!(Some(sample(fam, name, &tw)), tw_v);
        if let Some(v) = ow_v {
            assert_eq!(sample(fam, name, &ow_to), v);
        }
    }

    let sessions = &f["ippm_sessions"];
    assert_eq!(sessions.typ, "counter");
    assert_eq!(sessions.samples.len(), 2);
    let st = |p, proto, s| [("peer", p), ("protocol", proto), ("status", s)];
    assert_eq!(
        sample(
            sessions,
            "ippm_sessions_total",
            &st(TW, "twamp", "complete")
        ),
        1.0
    );
    assert_eq!(
        sample(sessions, "ippm_sessions_total", &st(OW, "owamp", "failed")),
        1.0
    );

    let running = &f["ippm_sessions_running"];
    assert_eq!(running.typ, "gauge");
    let pp = |p, proto| [("peer", p), ("protocol", proto)];
    assert_eq!(
        sample(running, "ippm_sessions_running", &pp(TW, "twamp")),
        1.0
    );
    assert_eq!(
        sample(running, "ippm_sessions_running", &pp(OW, "owamp")),
        0.0
    );

    let hmac = &f["ippm_hmac_failures"];
    assert_eq!(hmac.typ, "counter");
    assert_eq!(hmac.samples.len(), 1);
    assert_eq!(
        sample(hmac, "ippm_hmac_failures_total", &pp(OW, "owamp")),
        3.0
    );

    let (info_family, info_type) = info;
    let build = &f[info_family];
    assert_eq!(build.typ, info_type);
    assert_eq!(
        sample(
            build,
            "ippm_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let degraded = &f["ippm_archive_degraded"];
    assert_eq!(degraded.typ, "gauge");
    assert_eq!(sample(degraded, "ippm_archive_degraded", &[]), 0.0);

    // The STAMP reflector's, with no reflector running: written, at zero.
    let reflected = &f["ippm_stamp_reflected"];
    assert_eq!(reflected.typ, "counter");
    assert_eq!(sample(reflected, "ippm_stamp_reflected_total", &[]), 0.0);
    let held = &f["ippm_stamp_sessions"];
    assert_eq!(held.typ, "gauge");
    assert_eq!(sample(held, "ippm_stamp_sessions", &[]), 0.0);

    // Nothing else: no stray family, and every name has the one prefix.
    assert_eq!(f.len(), 16, "{:?}", f.keys().collect::<Vec<_>>());
    for name in f.keys() {
        assert!(
            name.starts_with("ippm_") && !name.starts_with("ippm_ippm"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn scrape_is_read_by_prometheus_parsers() {
    let m = Metrics::new();
    feed(&m);
    let server = Server::start(m.clone(), None, ServeOptions::default()).await;

    // As Prometheus scrapes: OpenMetrics, read by the strict OpenMetrics parser.
    let om = request(server.addr, "GET", "/metrics", Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(om.status, 200);
    assert_eq!(
        om.headers["content-type"],
        metrics::OPENMETRICS_CONTENT_TYPE
    );
    assert!(om.body.ends_with("# EOF\n"));
    let f = parse("openmetrics", &om.body);
    check_families(&f, ("ippm_build", "info"));
    for name in [
        "ippm_delay_seconds",
        "ippm_delay_min_seconds",
        "ippm_delay_max_seconds",
        "ippm_jitter_seconds",
    ] {
        assert_eq!(f[name].unit, "seconds", "{name}");
    }

    // As curl or an older scraper asks: the Prometheus text format, read by its parser.
    let text = request(server.addr, "GET", "/metrics", None).await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.headers["content-type"],
        metrics::PROMETHEUS_TEXT_CONTENT_TYPE
    );
    let f = parse("text", &text.body);
    check_families(&f, ("ippm_build_info", "gauge"));

    // A later scrape sees later figures: the counters add, the quantiles are replaced.
    m.observe_session(&SessionFigures {
        peer: TW.into(),
        protocol: "twamp",
        direction: "round_trip",
        sent: 500,
        received: 500,
        delay_quantiles_seconds: vec![(0.5, 0.000_3)],
        delay_min_seconds: Some(0.000_2),
        delay_max_seconds: Some(0.000_9),
        jitter_seconds: Some(0.000_01),
        ..SessionFigures::default()
    });
    let again = request(server.addr, "GET", "/metrics?x=1", Some(PROMETHEUS_ACCEPT)).await;
    let f = parse("openmetrics", &again.body);
    let tw = [
        ("peer", TW),
        ("protocol", "twamp"),
        ("direction", "round_trip"),
    ];
    assert_eq!(
        sample(&f["ippm_packets_sent"], "ippm_packets_sent_total", &tw),
        1500.0
    );
    assert_eq!(
        sample(&f["ippm_packets_lost"], "ippm_packets_lost_total", &tw),
        10.0
    );
    let tw_quantiles: Vec<_> = f["ippm_delay_seconds"]
        .samples
        .iter()
        .filter(|((_, l), _)| l["peer"] == TW)
        .map(|((_, l), v)| (l["quantile"].clone(), *v))
        .collect();
    assert_eq!(tw_quantiles, [("0.5".to_owned(), 0.000_3)]);

    server.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods() {
    let server = Server::start(Metrics::new(), None, ServeOptions::default()).await;
    for path in ["/", "/metricsx", "/metrics/", "/favicon.ico"] {
        let r = request(server.addr, "GET", path, None).await;
        assert_eq!(r.status, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = request(server.addr, method, "/metrics", None).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.headers["allow"], "GET, HEAD");
    }
    let head = request(server.addr, "HEAD", "/metrics", None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers["content-type"],
        metrics::PROMETHEUS_TEXT_CONTENT_TYPE
    );
    server.stop().await;
}

/// Reads until the server closes the connection (EOF or reset); how long that took.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open past {limit:?}"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn slow_clients_do_not_block_others() {
    let m = Metrics::new();
    // Enough series for a body of tens of kilobytes.
    for i in 0..200 {
        m.observe_session(&SessionFigures {
            peer: format!("probe{i}.example.net:862"),
            protocol: "twamp",
            direction: "round_trip",
            sent: 10,
            received: 10,
            delay_quantiles_seconds: vec![(0.5, 0.001), (0.9, 0.002), (0.99, 0.003)],
            ..SessionFigures::default()
        });
    }
    let opts = ServeOptions {
        header_timeout: Duration::from_millis(400),
        connection_timeout: Duration::from_secs(2),
        max_connections: 64,
    };
    let server = Server::start(m, None, opts).await;

    // One client sends half a request line and stalls; another connects and says nothing.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /metr").await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();

    // A third asks for far more than it reads: the server blocks writing to it.
    let mut greedy = TcpStream::connect(server.addr).await.unwrap();
    let one = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    let many = one.repeat(2000);
    let (mut greedy_rx, mut greedy_tx) = greedy.split();
    let writer = async {
        // The server stops reading while its writes are blocked; give up writing then.
        let _ = tokio::time::timeout(Duration::from_secs(1), greedy_tx.write_all(many.as_bytes()))
            .await;
    };
    writer.await;

    // Meanwhile a scrape is answered at once.
    let t = Instant::now();
    let r = request(server.addr, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 20_000, "{}", r.body.len());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    // The stalled ones are closed after the header time limit, the greedy one after the
    // connection time limit, though it never stops asking.
    let stalled = until_closed(&mut half, Duration::from_secs(3)).await;
    let quiet = until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(stalled < Duration::from_secs(3) && quiet < Duration::from_secs(3));
    let mut got = 0usize;
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), greedy_rx.read(&mut buf)).await {
            Err(_) => panic!(
                "the greedy connection is still open after {:?}",
                start.elapsed()
            ),
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    let answers = got / r.body.len().max(1);
    assert!(
        answers < 2000,
        "the server answered all {answers} requests instead of cutting the connection"
    );
    server.stop().await;
}

fn ike_connection(
    name: &str,
    local: &str,
    remote: &str,
    remote_addr: Option<SocketAddr>,
) -> Connection {
    let psk = Psk::new(b"metrics-test-psk".to_vec());
    Connection {
        name: name.into(),
        local_id: Identity::parse(local).unwrap(),
        remote_id: Some(Identity::parse(remote).unwrap()),
        local_auth: LocalAuth::Psk(psk.clone()),
        remote_auth: RemoteAuth::Psk(psk),
        remote_addr,
        proposals: vec![IkeProposal::parse("aes128-sha256-x25519").unwrap()],
    }
}

async fn ike_service(
    connections: Vec<Connection>,
    stop: watch::Receiver<bool>,
) -> (IkeHandle, tokio::task::JoinHandle<()>) {
    let opts = IkeServiceOptions {
        config: Config {
            connections,
            ..Config::default()
        },
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        start: Vec::new(),
        retry: Duration::from_secs(1),
    };
    ippm_net::ike::start(opts, stop).await.unwrap()
}

#[tokio::test]
async fn ike_sas_are_exported_at_scrape_time() {
    let (stop, stop_rx) = watch::channel(false);
    let (responder, r_task) = ike_service(
        vec![ike_connection(
            "probes",
            "core.example",
            "probe.example",
            None,
        )],
        stop_rx.clone(),
    )
    .await;
    let responder_addr = responder.local_addrs()[0];
    let (initiator, i_task) = ike_service(
        vec![ike_connection(
            "core",
            "probe.example",
            "core.example",
            Some(responder_addr),
        )],
        stop_rx.clone(),
    )
    .await;

    let m = Metrics::new();
    let server = Server::start(m.clone(), Some(initiator.clone()), ServeOptions::default()).await;
    let before = parse(
        "openmetrics",
        &request(server.addr, "GET", "/metrics", Some(PROMETHEUS_ACCEPT))
            .await
            .body,
    );
    // Before any SA: the connection with a configured peer shows 0 established.
    let sas = &before["ippm_ike_sas"];
    assert_eq!(sas.typ, "gauge");
    assert_eq!(sas.samples.len(), 1, "{sas:?}");
    let established = [
        ("peer", "127.0.0.1"),
        ("connection", "core"),
        ("state", "established"),
    ];
    assert_eq!(sample(sas, "ippm_ike_sas", &established), 0.0);
    // The responder has no connection with a peer address and no SA yet: no series.
    let r_server = Server::start(m.clone(), Some(responder.clone()), ServeOptions::default()).await;
    let body = request(r_server.addr, "GET", "/metrics", Some(PROMETHEUS_ACCEPT))
        .await
        .body;
    assert!(
        !parse("openmetrics", &body).contains_key("ippm_ike_sas"),
        "{body}"
    );

    initiator.up("core").unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !initiator.list().iter().any(|s| s.state == "established") {
        assert!(
            Instant::now() < end,
            "IKE SA not established: {:?}",
            initiator.list()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for (format, accept) in [("openmetrics", Some(PROMETHEUS_ACCEPT)), ("text", None)] {
        let body = request(server.addr, "GET", "/metrics", accept).await.body;
        let f = parse(format, &body);
        let sas = &f["ippm_ike_sas"];
        assert_eq!(sas.typ, "gauge");
        assert_eq!(sas.samples.len(), 1, "{sas:?}");
        let l = [
            ("peer", "127.0.0.1"),
            ("connection", "core"),
            ("state", "established"),
        ];
        assert_eq!(sample(sas, "ippm_ike_sas", &l), 1.0, "{format}");
    }

    // The responder's view, through its own endpoint.
    let body = request(r_server.addr, "GET", "/metrics", Some(PROMETHEUS_ACCEPT))
        .await
        .body;
    let f = parse("openmetrics", &body);
    let l = [
        ("peer", "127.0.0.1"),
        ("connection", "probes"),
        ("state", "established"),
    ];
    assert_eq!(sample(&f["ippm_ike_sas"], "ippm_ike_sas", &l), 1.0);

    server.stop().await;
    r_server.stop().await;
    stop.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = i_task.await;
        let _ = r_task.await;
    })
    .await;
}
