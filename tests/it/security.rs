//! The listener's security: TLS with certificates made here, basic auth, client
//! certificates, custom headers, slowloris and connection limits, and label escaping of
//! values that come from logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::harness::{
    self, append, get_request, http_get, http_get_with, parse_response, samples, Daemon,
};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in
/// `dir`: `ca.crt`, `tls.crt`, `tls.key`, `client.crt`, `client.key`.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    client_cert: CertificateDer<'static>,
    client_key_der: Vec<u8>,
}

pub(crate) fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let srv_key = KeyPair::generate().unwrap();
    let srv = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&srv_key, &ca)
        .unwrap();
    let cli_key = KeyPair::generate().unwrap();
    let mut cli_params = CertificateParams::new(vec!["prometheus".to_string()]).unwrap();
    cli_params
        .distinguished_name
        .push(DnType::CommonName, "prometheus");
    let cli = cli_params.signed_by(&cli_key, &ca).unwrap();

    std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), srv.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), srv_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("client.crt"), cli.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), cli_key.serialize_pem()).unwrap();
    Pki {
        ca_der: ca.der().clone(),
        client_cert: cli.der().clone(),
        client_key_der: cli_key.serialize_der(),
        dir,
    }
}

impl Pki {
    fn write_web_config(&self, yaml: &str) -> String {
        let p = self.dir.path().join("web.yml");
        std::fs::write(&p, yaml).unwrap();
        p.display().to_string()
    }

    fn client(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(if with_cert {
            b.with_client_auth_cert(
                vec![self.client_cert.clone()],
                PrivateKeyDer::try_from(self.client_key_der.clone()).unwrap(),
            )
            .unwrap()
        } else {
            b.with_no_client_auth()
        })
    }
}

/// A GET over TLS; returns status, head and body.
fn https_get(
    client: &Arc<rustls::ClientConfig>,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, String)> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ClientConnection::new(
        client.clone(),
        ServerName::try_from("127.0.0.1").unwrap().to_owned(),
    )
    .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(get_request(path, headers).as_bytes())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Some servers close without close_notify; what was read is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(parse_response(&raw))
}

fn basic(user: &str, pass: &str) -> String {
    // Standard base64, written out so that the test does not share the daemon's decoder.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{pass}").into_bytes();
    let mut out = String::new();
    for c in raw.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn start_tls(web_config: &str, client: Arc<rustls::ClientConfig>) -> Daemon {
    start_tls_with(web_config, client, &[])
}

fn start_tls_with(web_config: &str, client: Arc<rustls::ClientConfig>, extra: &[&str]) -> Daemon {
    let mut args = vec!["--web.config.file", web_config];
    args.extend_from_slice(extra);
    Daemon::start_ready(&args, &[], move |port| {
        https_get(&client, port, "/healthz", &[]).is_ok_and(|(s, _, _)| s == 200)
    })
}

#[test]
fn tls_scrape_with_basic_auth_and_headers() {
    let pki = pki();
    let hash = bcrypt::hash("s3cret", 6).unwrap();
    let web = pki.write_web_config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    \
         Strict-Transport-Security: max-age=31536000\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    ));
    let client = pki.client(false);
    let d = start_tls(&web, client.clone());

    let (status, head, _) = https_get(&client, d.port, "/metrics", &[]).unwrap();
    assert_eq!(status, 401, "no credentials: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"gpu-train-exporter\""),
        "{head}"
    );
    let wrong = basic("prometheus", "guess");
    let (status, _, body) =
        https_get(&client, d.port, "/metrics", &[("Authorization", &wrong)]).unwrap();
    assert_eq!(status, 401);
    assert!(!body.contains("gpu_train_exporter_build_info"));
    let unknown = basic("root", "s3cret");
    let (status, _, _) =
        https_get(&client, d.port, "/metrics", &[("Authorization", &unknown)]).unwrap();
    assert_eq!(status, 401, "an unknown user with a known password");

    let right = basic("prometheus", "s3cret");
    for _ in 0..2 {
        // The second time from the verified-credentials cache.
        let (status, head, body) =
            https_get(&client, d.port, "/metrics", &[("Authorization", &right)]).unwrap();
        assert_eq!(status, 200, "{head}");
        assert!(body.contains("gpu_train_exporter_build_info{"), "{body}");
        let h = head.to_ascii_lowercase();
        assert!(h.contains("x-frame-options: deny"), "{head}");
        assert!(
            h.contains("strict-transport-security: max-age=31536000"),
            "{head}"
        );
    }
    // Liveness probes need no secret; the headers are still served.
    let (status, head, body) = https_get(&client, d.port, "/healthz", &[]).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(head.to_ascii_lowercase().contains("x-frame-options: deny"));
}

#[test]
fn plain_http_to_the_tls_port_gets_a_readable_400() {
    let pki = pki();
    let web =
        pki.write_web_config("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n");
    let client = pki.client(false);
    let mut d = start_tls_with(&web, client.clone(), &["--web.read-header-timeout", "1s"]);
    for _ in 0..3 {
        // As Go's net/http: a 400 that says what is wrong, not a TLS alert.
        let (status, body) = http_get(d.port, "/metrics").unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("speaks TLS"), "{body}");
    }
    // Garbage that is neither TLS nor HTTP.
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0, 0]);
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
    drop(s);
    // A client that connects and never starts the handshake is cut off by the deadline.
    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let t = time_to_close(&mut silent, Duration::from_secs(8), |_| {});
    assert!(t.expect("a silent TLS client kept its connection") < Duration::from_secs(4));
    assert!(d.child_alive(), "daemon died: {}", d.stderr());
    let (status, _, body) = https_get(&client, d.port, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("gpu_train_exporter_build_info"));
}

#[test]
fn client_certificates_are_verified() {
    let pki = pki();
    let web = pki.write_web_config(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let with = pki.client(true);
    let d = start_tls(&web, with.clone());
    let (status, _, body) = https_get(&with, d.port, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("gpu_train_exporter_build_info"));
    let without = pki.client(false);
    let r = https_get(&without, d.port, "/metrics", &[]);
    assert!(
        !matches!(r, Ok((200, _, _))),
        "served without a client certificate: {r:?}"
    );
}

#[test]
fn bad_web_config_exits_2_naming_the_key() {
    let pki = pki();
    let cases = [
        ("basic_auth_users:\n  bob: hunter2\n", "basic_auth_users.bob"),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: tls.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file",
        ),
        (
            "http_server_config:\n  headers:\n    Set-Cookie: a=b\n",
            "http_server_config.headers.Set-Cookie",
        ),
        ("tls_server_config:\n  curve_preferences: []\n", "curve_preferences"),
    ];
    for (yaml, key) in cases {
        let web = pki.write_web_config(yaml);
        let out = harness::run(&[
            "--web.config.file",
            &web,
            "--web.listen-address",
            "127.0.0.1:0",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(key), "{yaml}: {err}");
    }
    // A bcrypt cost no sane config uses: refused at load, never computed while serving.
    let slow = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$31$", 1);
    let web = pki.write_web_config(&format!("basic_auth_users:\n  alice: '{slow}'\n"));
    let out = harness::run_within(
        &[
            "--web.config.file",
            &web,
            "--web.listen-address",
            "127.0.0.1:0",
        ],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("basic_auth_users.alice") && err.contains("cost 31"),
        "{err}"
    );
    // check-config validates the web config a config file points to.
    let web = pki.write_web_config("basic_auth_users:\n  bob: hunter2\n");
    let cfg = pki.dir.path().join("config.yml");
    std::fs::write(&cfg, format!("web:\n  config_file: {web}\n")).unwrap();
    let out = harness::run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("basic_auth_users.bob"));
    let hash = bcrypt::hash("x", 4).unwrap();
    pki.write_web_config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  bob: '{hash}'\n"
    ));
    let out = harness::run(&["check-config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads until the server closes the connection; returns how long that took, or `None`
/// if it was still open after `limit`.
fn time_to_close(
    s: &mut TcpStream,
    limit: Duration,
    mut tick: impl FnMut(&mut TcpStream),
) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
        tick(s);
    }
    None
}

#[test]
fn slowloris_connections_are_closed_by_the_header_timeout() {
    let d = Daemon::start(&["--web.read-header-timeout", "1s"]);
    // Headers trickled one byte at a time.
    let mut slow = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut sent = 0;
    let t = time_to_close(&mut slow, Duration::from_secs(8), |s| {
        sent += 1;
        let _ = s.write_all(if sent % 2 == 0 { b"X" } else { b"-" });
    });
    let t = t.expect("a slowloris client held its connection for 8 s");
    assert!(t < Duration::from_secs(4), "closed after {t:?}");
    // A client that connects and says nothing.
    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let t = time_to_close(&mut silent, Duration::from_secs(8), |_| {});
    assert!(t.expect("silent client kept its connection") < Duration::from_secs(4));
    assert_eq!(d.get("/healthz").0, 200);
}

/// Reads one HTTP/1.1 response with a Content-Length from a keep-alive connection.
fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn keep_alive_get(s: &mut TcpStream, path: &str, auth: Option<&str>) -> std::io::Result<u16> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    read_response(s).map(|(status, _)| status)
}

/// A well-behaved client: a fresh connection, one GET; its status and how long it took.
fn timed_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(get_request(path, headers).as_bytes()).unwrap();
    let mut raw = Vec::new();
    let status = match s.read_to_end(&mut raw) {
        Ok(_) => parse_response(&raw).0,
        Err(_) => 0,
    };
    (status, start.elapsed())
}

/// Scrapes `/metrics` and `/healthz` `rounds` times during a flood; each must succeed
/// within 1 s. Returns the slowest.
fn scrapes_within_a_second(port: u16, headers: &[(&str, &str)], rounds: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..rounds {
        for path in ["/metrics", "/healthz"] {
            let (status, took) = timed_get(port, path, headers);
            assert_eq!(status, 200, "{path} during the flood ({took:?})");
            assert!(took < Duration::from_secs(1), "{path} took {took:?}");
            worst = worst.max(took);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    worst
}

#[test]
fn at_the_connection_cap_the_idlest_connection_makes_room() {
    let d = Daemon::start(&["--web.max-connections", "4"]);
    // Four keep-alive connections, each past one request (so each is surely accepted).
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            assert_eq!(keep_alive_get(&mut s, "/healthz", None).unwrap(), 200);
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    // A fifth client is served at once: the connection idle longest is closed for it.
    let (status, took) = timed_get(d.port, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let mut buf = [0u8; 16];
    assert_eq!(
        idle[0].read(&mut buf).unwrap_or(0),
        0,
        "the oldest idle one is closed"
    );
    for s in &mut idle[2..] {
        assert_eq!(keep_alive_get(s, "/healthz", None).unwrap(), 200);
    }
}

#[test]
fn keep_alive_clients_do_not_starve_a_scrape() {
    // 128 keep-alive clients each sending a request every second (inside the header
    // timeout, so none is closed for idling): they once held every connection slot.
    let d = Daemon::start(&[]);
    let port = d.port;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..128)
                .map(|_| {
                    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s
                })
                .collect();
            let mut served = 0;
            let end = Instant::now() + Duration::from_secs(8);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                let round = Instant::now();
                for s in &mut conns {
                    if keep_alive_get(s, "/metrics", None).is_ok_and(|st| st == 200) {
                        served += 1;
                    }
                }
                std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
            }
            served
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let worst = scrapes_within_a_second(port, &[], 5);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = flood.join().unwrap();
    eprintln!("128 keep-alive clients: slowest scrape {worst:?}; flood served {served}");
    assert!(served >= 128, "the flood itself was served: {served}");
}

#[test]
fn a_slowloris_flood_does_not_starve_a_scrape() {
    // 600 connections that send half their headers and stop (the header timeout is 10 s).
    let d = Daemon::start(&[]);
    let mut flood: Vec<TcpStream> = (0..600)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let worst = scrapes_within_a_second(d.port, &[], 5);
    // The flood is still connected (the header timeout has not passed): a byte more goes in.
    let alive = flood
        .iter_mut()
        .map(|s| s.write_all(b"x").is_ok())
        .filter(|ok| *ok)
        .count();
    eprintln!("600 slowloris connections: slowest scrape {worst:?}; {alive} still open");
    assert!(alive >= 590, "{alive}");
}

#[test]
fn a_wrong_password_flood_does_not_delay_an_authenticated_scrape() {
    let pki = pki();
    let hash = bcrypt::hash("s3cret", 10).unwrap();
    let web = pki.write_web_config(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
    let d = Daemon::start_ready(&["--web.config.file", &web], &[], |port| {
        http_get(port, "/healthz").is_ok_and(|(s, _)| s == 200)
    });
    let right = basic("prometheus", "s3cret");
    // Prometheus has scraped before: its credentials are verified and cached.
    let (status, _) = timed_get(d.port, "/metrics", &[("Authorization", &right)]);
    assert_eq!(status, 200);
    // 200 clients sending wrong passwords, each asking again as soon as it is answered.
    let port = d.port;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let wrong = basic("prometheus", "guess");
            let send = || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                s.write_all(get_request("/metrics", &[("Authorization", &wrong)]).as_bytes())
                    .ok()?;
                Some(s)
            };
            let mut conns: Vec<Option<TcpStream>> = (0..200).map(|_| send()).collect();
            let mut answers = std::collections::BTreeMap::new();
            let end = Instant::now() + Duration::from_secs(10);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                for c in conns.iter_mut() {
                    if let Some(s) = c {
                        let mut raw = Vec::new();
                        let _ = s.read_to_end(&mut raw);
                        *answers.entry(parse_response(&raw).0).or_insert(0) += 1;
                    }
                    *c = send();
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                }
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let auth = [("Authorization", right.as_str())];
    let worst = scrapes_within_a_second(d.port, &auth, 5);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = flood.join().unwrap();
    eprintln!("200 wrong-password clients: slowest authenticated scrape {worst:?}; flood answers {answers:?}");
    assert!(answers.get(&401).is_some_and(|n| *n > 0), "{answers:?}");
    assert!(
        answers.keys().all(|s| [401, 429].contains(s)),
        "the flood got only 401 or 429: {answers:?}"
    );
}

#[test]
fn a_key_from_a_log_cannot_forge_a_series() {
    let dir = tempfile::tempdir().unwrap();
    let evil_run = dir.path().join("x\"} 1e9 #.jsonl");
    let log = dir.path().join("train.jsonl");
    append(
        &log,
        "{\"loss\\\"} 1e9 #\": 0.25, \"step\": 1}\n{\"a\\nb\\\\\": 0.5, \"step\": 2}\n",
    );
    append(&evil_run, "{\"loss\": 0.75, \"step\": 1}\n");
    let glob = format!("{}/*.jsonl", dir.path().display());
    let d = Daemon::start(&["--log", &glob]);
    let ok = harness::wait_for(Duration::from_secs(10), || {
        let m = d.scrape();
        samples(&m, "training_metric").len() >= 2 && !samples(&m, "training_loss").is_empty()
    });
    let m = d.scrape();
    assert!(ok, "{m}");
    // Escaped on the wire...
    assert!(m.contains(r#"key="loss\"} 1e9 #"} 0.25"#), "{m}");
    assert!(m.contains(r#"key="a\nb\\"} 0.5"#), "{m}");
    assert!(m.contains(r#"training_loss{run="x\"} 1e9 #"} 0.75"#), "{m}");
    // ...and read back by an escape-aware parser as exactly the keys and values logged.
    let mut keys: Vec<(String, f64)> = samples(&m, "training_metric")
        .into_iter()
        .map(|(l, v)| {
            let k = l.iter().find(|(k, _)| k == "key").unwrap().1.clone();
            (k, v)
        })
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        keys,
        vec![
            ("a\nb\\".to_string(), 0.5),
            ("loss\"} 1e9 #".to_string(), 0.25)
        ]
    );
    // No sample anywhere took the forged value.
    for name in ["training_metric", "training_loss", "training_step"] {
        assert!(samples(&m, name).iter().all(|(_, v)| *v != 1e9), "{name}");
    }
    if harness::require_tool("promtool") {
        // Prometheus's own parser accepts it (a forged series would be a parse error).
        let f = dir.path().join("exposition.prom");
        std::fs::write(&f, &m).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < '{}'", f.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.to_lowercase().contains("error"),
            "{err}"
        );
    }
}

#[test]
fn the_daemon_reads_only_its_globs() {
    // Paths outside the configured globs are not served, whatever the URL says.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.jsonl");
    append(&log, "{\"loss\": 1.5, \"step\": 1}\n");
    let d = Daemon::start(&["--log", log.to_str().unwrap()]);
    for path in [
        "/../../etc/passwd",
        "/metrics/../../etc/passwd",
        &format!("/{}", log.display()),
    ] {
        let (status, _, body) = http_get_with(d.port, path, &[]).unwrap();
        assert_ne!(status, 200, "{path}");
        assert!(
            !body.contains("root:") && !body.contains("\"loss\""),
            "{path}: {body}"
        );
    }
}
