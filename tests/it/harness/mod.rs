//! Test harness: a temp dir per test, the real daemon binary on a loopback port, an HTTP
//! client (`ureq`; raw request bytes and a response reader stay for the tests that must
//! write malformed requests or speak TLS), and exposition samples read by an independent
//! parser (`prometheus-parse`).

#![allow(dead_code)]

pub mod fake_nvml;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The daemon binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gpu-train-exporter")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The trainer logs under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run binary")
}

/// Runs the binary to completion, killed (and the test failed) if it takes over `limit`.
pub fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run binary");
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "{args:?} still running after {limit:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of `pid`, in KiB (`VmRSS`); 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Connects to 127.0.0.1:`port`, waiting up to a minute until something listens there.
pub fn connect(port: u16) -> std::net::TcpStream {
    let mut conn = None;
    wait_for(Duration::from_secs(60), || {
        conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok();
        conn.is_some()
    });
    conn.unwrap_or_else(|| panic!("nothing listens on port {port}"))
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A running daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon on a free loopback port with `args` and waits for `/healthz`.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_ready(args, env, |port| {
            http_get(port, "/healthz").is_ok_and(|(s, _)| s == 200)
        })
    }

    /// Starts the daemon and waits until `ready(port)` holds (for a TLS listener, say).
    pub fn start_ready(
        args: &[&str],
        env: &[(&str, &str)],
        ready: impl FnMut(u16) -> bool,
    ) -> Daemon {
        Self::start_wrapped(&[], args, env, ready)
    }

    /// Starts the daemon through `wrapper` (a command that execs its arguments, such as
    /// `setpriv --reuid=65534 ...`), then waits until `ready(port)` holds.
    pub fn start_wrapped(
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        mut ready: impl FnMut(u16) -> bool,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let port = free_port();
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let child = cmd.spawn().expect("spawn daemon");
        let mut d = Daemon {
            child,
            port,
            stderr_path,
            _dir: dir,
        };
        let ok = wait_for(Duration::from_secs(20), || {
            if let Ok(Some(_)) = d.child.try_wait() {
                return true;
            }
            ready(d.port)
        });
        if !ok || d.child.try_wait().ok().flatten().is_some() {
            panic!("daemon did not start: {}", d.stderr());
        }
        d
    }

    /// Whether the process is still running.
    pub fn child_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The daemon's resident set size in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).expect("GET")
    }

    pub fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `name{labels}` has value `want` (or the timeout passes) and returns the
    /// last value seen.
    pub fn wait_value(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        want: f64,
        timeout: Duration,
    ) -> Option<f64> {
        let mut last = None;
        wait_for(timeout, || {
            last = value(&self.scrape(), name, labels);
            last.is_some_and(|v| v == want || (v.is_nan() && want.is_nan()))
        });
        last
    }

    /// Sends signal `sig` (a number: 1 SIGHUP, 10 SIGUSR1, 12 SIGUSR2, 15 SIGTERM).
    pub fn signal(&self, sig: i32) {
        unsafe_kill(self.child.id(), sig);
    }

    /// Waits up to `limit` for the process to exit; its status and how long that took.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some((s, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Waits until the daemon's stderr contains `needle` `n` times or more.
    pub fn wait_log(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        wait_for(timeout, || self.stderr().matches(needle).count() >= n)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), 15);
        let mut status = None;
        wait_for(Duration::from_secs(10), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.expect("daemon exits on SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The HTTP client of the tests (`ureq`): plain HTTP, every status returned rather than
/// raised, no redirect followed, no proxy, no connection kept for another request.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .max_idle_connections(0)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// A client that keeps its connections for the next request (the benchmarks' keep-alive
/// scrapes); otherwise as `agent`.
pub fn keep_alive_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// The body of a GET of `path` through `agent`, which must answer 200.
pub fn get_body(agent: &ureq::Agent, port: u16, path: &str) -> String {
    let resp = agent
        .get(format!("http://127.0.0.1:{port}{path}"))
        .call()
        .expect("GET");
    let (status, _, body) = read_whole(resp).expect("read the response");
    assert_eq!(status, 200, "GET {path}");
    String::from_utf8(body).expect("UTF-8 body")
}

/// The status, head (status line and headers, names in lower case) and whole body of a
/// response, read to its end whatever its size.
pub fn read_whole(
    mut resp: ureq::http::Response<ureq::Body>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut head = format!("{:?} {}\r\n", resp.version(), resp.status());
    for (k, v) in resp.headers() {
        head.push_str(&format!(
            "{k}: {}\r\n",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .map_err(std::io::Error::other)?;
    Ok((resp.status().as_u16(), head, body))
}

/// A GET on 127.0.0.1 with extra headers; returns status, head and body.
pub fn http_get_with(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, String)> {
    let mut req = agent(Duration::from_secs(10)).get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, head, body) = read_whole(req.call().map_err(std::io::Error::other)?)?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

/// The bytes of a `GET` with `Connection: close` and extra headers.
pub fn get_request(path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Status, head and (de-chunked) body of a whole HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with(port, path, &[]).map(|(s, _, b)| (s, b))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample `name` whose labels include `labels`, from an exposition.
pub fn value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(exposition, name)
        .into_iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
}

/// Every sample of `name`: its labels and value, in the order of the exposition.
///
/// Each sample line is read by `prometheus-parse`, an exposition parser that is not ours, so
/// the encoder is not checked by a reader written alongside it. One line at a time and
/// without the `# TYPE` lines, so that histogram buckets stay samples of their own with their
/// `le` text. `prometheus-parse` splits label pairs on `,` and `=` and does not unescape, so a
/// line whose label values hold a backslash escape, `,`, `=`, `{` or `}` (log-derived values
/// that the escaping tests send) is read by `own_sample` instead.
pub fn samples(exposition: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for line in exposition.lines() {
        if line.starts_with('#') || !line.starts_with(name) {
            continue;
        }
        let sample = if needs_own_reader(line) {
            own_sample(line, name)
        } else {
            independent_sample(line, name)
        };
        out.extend(sample);
    }
    out
}

/// One sample line through `prometheus-parse`.
fn independent_sample(line: &str, name: &str) -> Option<(Vec<(String, String)>, f64)> {
    let scrape =
        prometheus_parse::Scrape::parse(std::iter::once(Ok(line.to_string()))).expect("in memory");
    let sample = scrape.samples.into_iter().next()?;
    if sample.metric != name {
        return None;
    }
    let v = match sample.value {
        prometheus_parse::Value::Untyped(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v) => v,
        other => panic!("untyped line read as {other:?}: {line}"),
    };
    let mut labels: Vec<(String, String)> = sample
        .labels
        .iter()
        .map(|(k, v)| (k.trim().to_string(), v.clone()))
        .collect();
    labels.sort();
    Some((labels, v))
}

/// Whether a sample line's label values hold what `prometheus-parse` misreads: a backslash
/// escape, or `,`, `=`, `{`, `}` inside quotes.
fn needs_own_reader(line: &str) -> bool {
    if line.contains('\\') {
        return true;
    }
    let mut in_str = false;
    for c in line.chars() {
        match c {
            '"' => in_str = !in_str,
            ',' | '=' | '{' | '}' if in_str => return true,
            _ => {}
        }
    }
    false
}

/// Our own reading of one sample line, kept only for the lines `needs_own_reader` picks.
fn own_sample(line: &str, name: &str) -> Option<(Vec<(String, String)>, f64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, val) = if let Some(r) = rest.strip_prefix('{') {
        let end = find_label_end(r)?;
        (parse_labels(&r[..end]), r[end + 1..].trim())
    } else if rest.starts_with(' ') {
        (Vec::new(), rest.trim())
    } else {
        return None;
    };
    let v = match val.split_whitespace().next().unwrap_or("") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        x => x.parse().ok()?,
    };
    Some((labels, v))
}

fn find_label_end(s: &str) -> Option<usize> {
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            '"' => in_str = !in_str,
            '}' if !in_str => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut val = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, c)) => val.push(c),
                    None => {}
                },
                '"' => {
                    end = i;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((k.trim_start_matches(',').trim().to_string(), val));
        rest = &r[(end + 1).min(r.len())..];
    }
    out
}

/// Appends `text` to `path`, creating it.
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// `promtool check metrics` on an exposition: its complaints, empty when it has none.
pub fn promtool_check_metrics(body: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        report.trim().to_string()
    } else {
        format!("promtool failed ({}): {report}", out.status)
    }
}

/// Whether a tool is on PATH. Under `CI=true` a missing tool fails the test instead of
/// skipping it.
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} is required under CI=true (install it: .ci/run does)");
        }
        eprintln!("skipping: {name} not installed");
    }
    found
}

/// A request with an optional JSON body on 127.0.0.1; returns status and JSON body (`Null`
/// when it is not JSON).
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let agent = agent(Duration::from_secs(60));
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    let resp = match body {
        Some(b) => agent.run(
            req.header("Content-Type", "application/json")
                .body(b.to_string())
                .map_err(std::io::Error::other)?,
        ),
        None => agent.run(req.body(()).map_err(std::io::Error::other)?),
    }
    .map_err(std::io::Error::other)?;
    let (status, _, body) = read_whole(resp)?;
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// A running process, killed on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn samples_keeps_buckets_and_reads_escaped_label_values() {
    let text = concat!(
        "# TYPE h histogram\n",
        "h_bucket{run=\"a\",le=\"0.5\"} 3\n",
        "h_bucket{run=\"a\",le=\"+Inf\"} 4\n",
        "h_count{run=\"a\"} 4\n",
        "# TYPE m gauge\n",
        "m{run=\"x\\\"} 1e9 #\",key=\"a,b=c\"} 0.75\n",
        "m{run=\"plain\"} NaN\n",
        "m_total 2\n",
    );
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        samples(text, "h_bucket"),
        vec![
            (owned(&[("le", "0.5"), ("run", "a")]), 3.0),
            (owned(&[("le", "+Inf"), ("run", "a")]), 4.0),
        ]
    );
    let m = samples(text, "m");
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        m[0],
        (owned(&[("run", "x\"} 1e9 #"), ("key", "a,b=c")]), 0.75)
    );
    assert_eq!(m[1].0, owned(&[("run", "plain")]));
    assert!(m[1].1.is_nan());
    assert_eq!(value(text, "m_total", &[]), Some(2.0));
}
