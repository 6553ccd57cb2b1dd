//! Benchmark of the log pipeline against Debian's `mtail` on the same files, in one run.
//!
//! `cargo bench --bench parse` generates a 1,000,000-line Hugging Face console log (a
//! Trainer run under DeepSpeed: `\r`-separated tqdm redraws, metric dicts, engine and logging
//! lines, nested eval bars), a 1,000,000-line ms-swift
//! `logging.jsonl` and a 1,000,000-line Megatron-LM log, then measures:
//! 1. `gpu-train-exporter parse` vs `mtail --one_shot` with an equivalent program: lines/s
//!    and peak RSS (and RSS on a file 10× shorter, to show it does not grow with length);
//! 2. following a log written at 1,000 lines/s: CPU per line, ours vs mtail's;
//! 3. `/metrics` latency with 50 runs of 20 keys each, on loopback with keep-alive.
//!
//! `BENCH_LINES` and `BENCH_FOLLOW_SECONDS` shrink it for a quick look. `BENCH_BEFORE_BIN`
//! names an earlier build of the daemon, measured on the same files in the same run (a
//! before/after comparison in one sitting); `BENCH_INPUTS=DIR` writes the generated logs to
//! `DIR` and exits (for a profiler).

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use support::{bin, connect, free_port, get_body, keep_alive_agent, rss_kib, Guard};

fn main() {
    let lines: usize = std::env::var("BENCH_LINES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let follow_secs: u64 = std::env::var("BENCH_FOLLOW_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let has_mtail = Command::new("mtail").arg("--version").output().is_ok();
    let progs = dir.path().join("progs");
    std::fs::create_dir_all(&progs).unwrap();
    std::fs::write(progs.join("train.mtail"), MTAIL_PROGRAM).unwrap();

    if let Ok(out) = std::env::var("BENCH_INPUTS") {
        std::fs::create_dir_all(&out).unwrap();
        for (name, gen) in INPUTS {
            std::fs::write(Path::new(&out).join(name), gen(lines)).unwrap();
        }
        return;
    }
    let before = std::env::var("BENCH_BEFORE_BIN").ok();
    println!("# gpu-train-exporter parse benchmark ({lines} lines per file)");
    for (name, gen) in INPUTS {
        let path = dir.path().join(name);
        std::fs::write(&path, gen(lines)).unwrap();
        let short = dir.path().join(format!("short-{name}"));
        std::fs::write(&short, gen(lines / 10)).unwrap();
        // the fastest of three (interleaved with the earlier build's, when given): the
        // machine's noise only ever slows a run down
        let mut ours = Measured::none();
        let mut earlier = before.as_ref().map(|_| Measured::none());
        for _ in 0..3 {
            ours = ours.best(measure(Command::new(bin()).arg("parse").arg(&path)));
            if let (Some(bin), Some(e)) = (&before, earlier.as_mut()) {
                *e = (*e).best(measure(Command::new(bin).arg("parse").arg(&path)));
            }
        }
        let ours_short = measure(Command::new(bin()).arg("parse").arg(&short));
        println!(
            "{name}: ours {:.0} lines/s, {:.3} s, peak RSS {:.1} MiB ({:.1} MiB on a file 10x shorter)",
            lines as f64 / ours.secs,
            ours.secs,
            ours.max_rss_kib as f64 / 1024.0,
            ours_short.max_rss_kib as f64 / 1024.0
        );
        if let Some(b) = earlier {
            println!(
                "{name}: before {:.0} lines/s, {:.3} s, peak RSS {:.1} MiB; ratio ours/before {:.2}x",
                lines as f64 / b.secs,
                b.secs,
                b.max_rss_kib as f64 / 1024.0,
                b.secs / ours.secs
            );
        }
        if has_mtail {
            let m = measure(
                Command::new("mtail")
                    .args([
                        "--one_shot",
                        "--one_shot_format",
                        "prometheus",
                        "--logtostderr",
                        "--progs",
                    ])
                    .arg(&progs)
                    .arg("--logs")
                    .arg(&path),
            );
            println!(
                "{name}: mtail {:.0} lines/s, {:.3} s, peak RSS {:.1} MiB; ratio ours/mtail {:.1}x",
                lines as f64 / m.secs,
                m.secs,
                m.max_rss_kib as f64 / 1024.0,
                m.secs / ours.secs
            );
        }
    }

    follow(dir.path(), &progs, follow_secs, has_mtail);
    scrape(dir.path());
}

/// The generated inputs, by file name.
/// Makes a log of that many lines.
type Generator = fn(usize) -> String;

const INPUTS: [(&str, Generator); 3] = [
    ("hf-console.log", gen_hf),
    ("logging.jsonl", gen_jsonl),
    ("megatron.log", gen_megatron),
];

#[derive(Clone, Copy)]
struct Measured {
    secs: f64,
    max_rss_kib: i64,
}

impl Measured {
    fn none() -> Self {
        Measured {
            secs: f64::INFINITY,
            max_rss_kib: 0,
        }
    }

    /// The shorter time and the higher peak of two runs.
    fn best(self, other: Measured) -> Measured {
        Measured {
            secs: self.secs.min(other.secs),
            max_rss_kib: self.max_rss_kib.max(other.max_rss_kib),
        }
    }
}

/// Runs a command to completion; wall time, and peak RSS as the kernel's high-water mark of
/// the command's own address space (`VmHWM`, read every millisecond until it exits —
/// `wait4`'s maxrss would count the benchmark's memory copied at fork).
fn measure(cmd: &mut Command) -> Measured {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm = 0;
    let mut exe_seen = false;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            // before exec the child is still a copy of us: only count the command's own image
            let name = s.lines().next().unwrap_or("");
            if !exe_seen {
                exe_seen = !name.contains("parse-");
            }
            if exe_seen {
                if let Some(v) = s
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                {
                    hwm = hwm.max(v);
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Measured {
        secs: start.elapsed().as_secs_f64(),
        max_rss_kib: hwm,
    }
}

/// CPU time of every thread of `pid`, in nanoseconds (schedstat is ns-precise).
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// Writes 1,000 lines/s for `secs` seconds and reports CPU per line of each follower.
fn follow(dir: &Path, progs: &Path, secs: u64, has_mtail: bool) {
    let log = dir.join("follow.log");
    std::fs::write(&log, "").unwrap();
    let ours = Guard(
        Command::new(bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            // mtail only tails: compare like with like (the collectors' own cost is below)
            .args(["--no-gpu", "--no-host", "--no-attribution", "--log"])
            .arg(format!("bench={}", log.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ours_1s = Guard(
        Command::new(bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args([
                "--no-gpu",
                "--no-host",
                "--no-attribution",
                "--tail.poll-interval",
                "1s",
                "--log",
            ])
            .arg(format!("bench={}", log.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let full = Guard(
        Command::new(bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", free_port()),
                "--log",
            ])
            .arg(format!("idle={}", dir.join("idle.log").display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mtail = has_mtail.then(|| {
        Guard(
            Command::new("mtail")
                .args([
                    "--port",
                    &free_port().to_string(),
                    "--address",
                    "127.0.0.1",
                    "--logtostderr",
                    "--progs",
                ])
                .arg(progs)
                .arg("--logs")
                .arg(&log)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let full0 = cpu_ns(full.0.id());
    let ours0 = cpu_ns(ours.0.id());
    let ours_1s0 = cpu_ns(ours_1s.0.id());
    let mtail0 = mtail.as_ref().map(|m| cpu_ns(m.0.id()));
    let body = gen_hf(secs as usize * 1000);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let start = Instant::now();
    let mut written = 0usize;
    for (i, line) in body.lines().enumerate() {
        // 1,000 lines per second, in 10 ms batches of 10 (a trainer flushes per line; tqdm
        // redraws come in bursts)
        if i % 10 == 0 {
            let due = start + Duration::from_millis(i as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        writeln!(f, "{line}").unwrap();
        written += 1;
    }
    std::thread::sleep(Duration::from_secs(1));
    let ours_ns = cpu_ns(ours.0.id()) - ours0;
    println!(
        "follow at 1000 lines/s for {secs} s: ours {:.2} µs CPU per line ({} lines, RSS {} KiB)",
        ours_ns as f64 / 1000.0 / written as f64,
        written,
        rss_kib(ours.0.id())
    );
    let ours_1s_ns = cpu_ns(ours_1s.0.id()) - ours_1s0;
    println!(
        "follow at 1000 lines/s for {secs} s, --tail.poll-interval 1s: ours {:.2} µs CPU per line",
        ours_1s_ns as f64 / 1000.0 / written as f64
    );
    println!(
        "idle daemon with every collector on (NVML absent, host every 5 s, /proc scan every 5 s): {:.2} ms CPU per second",
        (cpu_ns(full.0.id()) - full0) as f64 / 1e6 / (secs as f64 + 1.0)
    );
    if let (Some(m), Some(m0)) = (&mtail, mtail0) {
        let mtail_ns = cpu_ns(m.0.id()) - m0;
        println!(
            "follow at 1000 lines/s for {secs} s: mtail {:.2} µs CPU per line (RSS {} KiB); ratio {:.1}x",
            mtail_ns as f64 / 1000.0 / written as f64,
            rss_kib(m.0.id()),
            mtail_ns as f64 / ours_ns.max(1) as f64
        );
    }
}

/// 50 runs of 20 keys; sequential keep-alive scrapes; latency percentiles.
fn scrape(dir: &Path) {
    let runs = dir.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    for r in 0..50 {
        let mut s =
            String::from("{'loss': 1.5, 'grad_norm': 0.5, 'learning_rate': 1e-05, 'epoch': 0.5");
        for k in 0..16 {
            s.push_str(&format!(", 'rewards/k{k}': {}.25", k + r));
        }
        s.push_str(", 'step': 10}\n");
        std::fs::write(runs.join(format!("run{r:02}.log")), s).unwrap();
    }
    let port = free_port();
    let d = Guard(
        Command::new(bin())
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{port}"),
                "--log",
            ])
            .arg(format!("{}/*.log", runs.display()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    drop(connect(port));
    std::thread::sleep(Duration::from_secs(1));
    let agent = keep_alive_agent();
    let mut lat = Vec::new();
    let mut size = 0;
    for i in 0..3000 {
        let t = Instant::now();
        size = get_body(&agent, port, "/metrics").len();
        if i >= 200 {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    let series = {
        let _ = get_body(&agent, port, "/metrics").len();
        size
    };
    println!(
        "scrape, 50 runs x 20 keys ({series} bytes): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} keep-alive scrapes; daemon RSS {} KiB",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.len(),
        rss_kib(d.0.id())
    );
}

/// A Hugging Face Trainer run under DeepSpeed, as its console log looks on disk: tqdm
/// redraws the bar with `\r`, so a physical line holds about two redraws; a metric dict ends
/// about every fifth line; DeepSpeed's engine prints a `log_dist` step line every 10 steps;
/// python-logging lines from the Trainer; now and then a nested evaluation bar.
fn gen_hf(lines: usize) -> String {
    let mut s = String::with_capacity(lines * 150);
    let total = lines * 2;
    let mut n = 0;
    let mut step = 0;
    let bar = |s: &mut String, step: usize| {
        let pct = step * 100 / total;
        let fill = "█".repeat(pct / 10);
        s.push_str(&format!(
            "\r {pct:>3}%|{fill:<10}| {step}/{total} [1:02:{:02}<9:58:00,  1.{:02}s/it]",
            step % 60,
            step % 100
        ));
    };
    while n < lines {
        // two redraws of the training bar on one physical line
        step += 1;
        bar(&mut s, step);
        step += 1;
        bar(&mut s, step);
        if step % 10 == 0 {
            let loss = 2.0 + ((step as f64) * 0.37).sin();
            // `tqdm.write` clears the bar before the dict, as in the fixture logs
            s.push_str("\r                                                  \r");
            s.push_str(&format!(
                "{{'loss': '{loss:.4}', 'grad_norm': '{:.4}', 'learning_rate': '{:.4e}', 'epoch': '{:.2}'}}\n",
                0.5 + loss / 10.0,
                1e-4 / (1.0 + step as f64 / 1000.0),
                step as f64 / 1000.0
            ));
        } else {
            s.push('\n');
        }
        n += 1;
        if step % 20 == 0 && n < lines {
            s.push_str(&format!(
                "[2026-11-28 12:00:00,345] [INFO] [logging.py:96:log_dist] [Rank 0] step={step}, skipped=0, lr=[{:.6e}, {:.6e}], mom=[[0.9, 0.999], [0.9, 0.999]]\n",
                1e-4 / (1.0 + step as f64 / 1000.0),
                1e-4 / (1.0 + step as f64 / 1000.0),
            ));
            n += 1;
        }
        if step % 50 == 0 && n < lines {
            s.push_str("[INFO|trainer.py:3984] 2026-11-28 12:00:00,000 >> Saving model checkpoint to /data/out/checkpoint\n");
            n += 1;
        }
        if step % 100 == 0 && n < lines {
            s.push_str("[INFO|trainer.py:4327] 2026-11-28 12:00:01,000 >> ***** Running Evaluation *****\n");
            s.push_str("\n\r  0%|          | 0/5 [00:00<?, ?it/s]\x1b[A\r 40%|████      | 2/5 [00:00<00:00, 25.61it/s]\x1b[A\r 80%|████████  | 4/5 [00:00<00:00, 20.13it/s]\x1b[A\n");
            let loss = 2.1 + ((step as f64) * 0.11).sin();
            s.push_str(&format!(
                "{{'eval_loss': {loss:.4}, 'eval_runtime': 0.25, 'eval_samples_per_second': 80.0, 'eval_steps_per_second': 20.0, 'epoch': {:.2}}}\n",
                step as f64 / 1000.0
            ));
            n += 4;
        }
    }
    s
}

/// Megatron-LM: an iteration line per step, a validation block every 100 steps.
fn gen_megatron(lines: usize) -> String {
    let mut s = String::with_capacity(lines * 330);
    let mut n = 0;
    let mut it = 0;
    while n < lines {
        it += 1;
        let loss = 2.0 + ((it as f64) * 0.37).sin();
        s.push_str(&format!(
            " [2024-04-06 03:02:12] iteration {it:>8}/ {lines:>7} | consumed samples: {:>12} | elapsed time per iteration (ms): 5361.6 | throughput per GPU (TFLOP/s/GPU): 243.6 | learning rate: {:.6E} | global batch size:   128 | lm loss: {loss:.6E} | load_balancing_loss: 1.013377E+00 | loss scale: 1.0 | grad norm: {:.3} | num zeros: 0.0 | number of skipped iterations:   0 | number of nan iterations:   0 |\n",
            it * 128,
            1e-4 / (1.0 + it as f64 / 1000.0),
            0.5 + loss / 10.0
        ));
        n += 1;
        if it % 100 == 0 && n + 3 <= lines {
            s.push_str(&"-".repeat(100));
            s.push('\n');
            s.push_str(&format!(" validation loss at iteration {it} on validation set | lm loss value: {:.6E} | lm loss PPL: {:.6E} | \n", loss, loss.exp()));
            s.push_str(&"-".repeat(100));
            s.push('\n');
            n += 3;
        }
    }
    s
}

/// ms-swift's logging.jsonl: one JSON record per line.
fn gen_jsonl(lines: usize) -> String {
    let mut s = String::with_capacity(lines * 260);
    for i in 1..=lines {
        let loss = 2.0 + ((i as f64) * 0.37).sin();
        s.push_str(&format!(
            "{{\"loss\": {loss:.8}, \"grad_norm\": {:.8}, \"learning_rate\": {:.8}, \"token_acc\": 0.5, \"epoch\": {:.2}, \"global_step/max_steps\": \"{i}/{lines}\", \"elapsed_time\": \"1h 2m 3s\", \"remaining_time\": \"41s\", \"train_speed(s/it)\": 0.073741}}\n",
            0.5 + loss / 10.0,
            1e-4 / (1.0 + i as f64 / 1000.0),
            i as f64 / 1000.0
        ));
    }
    s
}

/// What an mtail user writes for the same metrics (loss, lr, grad norm, epoch, step, records)
/// in both formats.
const MTAIL_PROGRAM: &str = r#"
gauge training_loss
gauge training_learning_rate
gauge training_grad_norm
gauge training_epoch
gauge training_step
gauge training_max_steps
counter training_records_total

/['"]loss['"]: ['"]?(?P<loss>[-+0-9.eE]+|nan|NaN)['"]?/ {
  training_records_total++
}
/['"]loss['"]: ['"]?(?P<loss>[-+0-9.eE]+)['"]?/ {
  training_loss = float($loss)
}
/['"]learning_rate['"]: ['"]?(?P<lr>[-+0-9.eE]+)['"]?/ {
  training_learning_rate = float($lr)
}
/['"]grad_norm['"]: ['"]?(?P<g>[-+0-9.eE]+)['"]?/ {
  training_grad_norm = float($g)
}
/['"]epoch['"]: ['"]?(?P<e>[-+0-9.eE]+)['"]?/ {
  training_epoch = float($e)
}
/['"]global_step\/max_steps['"]: ['"](?P<s>\d+)\/(?P<m>\d+)['"]/ {
  training_step = int($s)
  training_max_steps = int($m)
}
/\| (?P<n>\d+)\/(?P<t>\d+) \[/ {
  training_step = int($n)
  training_max_steps = int($t)
}
/iteration\s+(?P<it>\d+)\/\s*(?P<total>\d+) \|.*learning rate: (?P<lr>[-+0-9.eE]+) \|.*lm loss: (?P<loss>[-+0-9.eE]+) \|.*grad norm: (?P<g>[-+0-9.eE]+|nan) \|/ {
  training_records_total++
  training_step = int($it)
  training_max_steps = int($total)
  training_learning_rate = float($lr)
  training_loss = float($loss)
}
/validation loss at iteration (?P<it>\d+) .*lm loss value: (?P<v>[-+0-9.eE]+) / {
  training_records_total++
}
"#;
