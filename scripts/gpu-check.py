#!/usr/bin/env python3
"""Checks the GPU collector against nvidia-smi on a machine with a real NVIDIA GPU.

Run through scripts/gpu-check.sh (which builds the daemon). Standard library only.

Starts the daemon on a loopback port, optionally puts the GPUs under load (torch, when it is
installed: ~20 GiB allocated per GPU and copied host <-> device), then reads /metrics and
nvidia-smi at the start and the end of a window, and compares per GPU:

- memory used (64 MiB: smaller than the 614 MiB an H200 reserves, so reserved memory counted
  as used is caught), total (1 MiB), reserved (1 MiB);
- utilisation (15 points), temperature (3 C), power draw (10% or 15 W), enforced power limit
  (1 W), SM and memory clocks (MHz x 10^6: 10% or 50 MHz; 1% for memory), max SM clock (1 MHz);
- volatile ECC error counts and remapped rows (exact);
- the energy counter's rate over the window against the mean of nvidia-smi's power draw
  sampled every second (10%, or 15 W when idle);
- per-link NVLink byte rates over the window against `nvidia-smi nvlink -gt d`'s (10% or
  1 MiB/s);
- the PCIe replay count against `nvidia-smi pci -gCnt` (exact);
- the rate of the cumulative PCIe byte counters over the window against the mean of the GPM
  PCIe rates the exporter served meanwhile (WARN only, 20% or 64 MiB/s: a counter that wraps
  more than once between two readings shows here as a rate far below GPM's);
- clock event reasons (WARN only: they change from one moment to the next);
- the exporter's own collector errors: 0.

`[N/A]` and `[Not Supported]` answers are SKIPs, never failures; on a MIG-enabled GPU the
parent's memory and utilisation are SKIPs (NVML answers them per GPU instance). Prints
PASS, FAIL, SKIP or WARN per check and GPU; exits 0 when nothing failed, 1 when a check
failed, 2 when it cannot run.

Environment: GTE_BIN (the daemon), NVML_LIBRARY (passed as --nvml-library), PORT (default
19842), GTE_CHECK_WINDOW (seconds, default 10), GTE_CHECK_LOAD=0 to skip the load.
"""

import os
import re
import subprocess
import sys
import time
import urllib.request

FAILED = False


def say(kind, gpu, label, text):
    global FAILED
    if kind == "FAIL":
        FAILED = True
    where = f"gpu{gpu} " if gpu is not None else ""
    print(f"{kind} {where}{label}: {text}", flush=True)


def smi(*args):
    out = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"nvidia-smi {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


FIELDS = [
    "index", "pci.bus_id", "memory.used", "memory.total", "memory.reserved", "utilization.gpu",
    "temperature.gpu", "power.draw", "enforced.power.limit", "clocks.sm", "clocks.mem",
    "clocks.max.sm", "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total", "clocks_event_reasons.active", "mig.mode.current",
]


def query_gpus():
    rows = {}
    for line in smi(f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits").splitlines():
        vals = [v.strip() for v in line.split(",")]
        if len(vals) != len(FIELDS):
            continue
        row = dict(zip(FIELDS, vals))
        rows[row["index"]] = row
    return rows


def power_draw():
    out = {}
    for line in smi("--query-gpu=index,power.draw", "--format=csv,noheader,nounits").splitlines():
        idx, _, p = (v.strip() for v in line.partition(","))
        out[idx] = p
    return out


def remapped_rows():
    try:
        text = smi("--query-remapped-rows=gpu_bus_id,remapped_rows.correctable,"
                   "remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure",
                   "--format=csv,noheader,nounits")
    except RuntimeError:
        return {}
    out = {}
    for line in text.splitlines():
        vals = [v.strip() for v in line.split(",")]
        if len(vals) == 5:
            out[vals[0].lower()] = vals[1:]
    return out


def per_gpu_blocks(text):
    """`GPU N: name (UUID: ...)` headed blocks of nvidia-smi's text output: index -> lines."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"GPU (\d+):", line)
        if m:
            cur = m.group(1)
            out[cur] = []
        elif cur is not None:
            out[cur].append(line.strip())
    return out


def nvlink_kib():
    """index -> {(link, 'tx'|'rx'): KiB}, from `nvidia-smi nvlink -gt d`."""
    try:
        blocks = per_gpu_blocks(smi("nvlink", "-gt", "d"))
    except RuntimeError:
        return {}
    out = {}
    for idx, lines in blocks.items():
        for line in lines:
            m = re.match(r"Link (\d+): Data (Tx|Rx): (\d+) KiB", line)
            if m:
                out.setdefault(idx, {})[(m.group(1), m.group(2).lower())] = int(m.group(3))
    return out


def pcie_replays():
    """index -> the replay count of `nvidia-smi pci -gCnt` (its REPLAY_COUNTER line)."""
    try:
        blocks = per_gpu_blocks(smi("pci", "-gCnt"))
    except RuntimeError:
        return {}
    out = {}
    for idx, lines in blocks.items():
        for line in lines:
            m = re.match(r"REPLAY_COUNTER\s*:\s*(\d+)", line, re.I)
            if m:
                out[idx] = int(m.group(1))
    return out


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def samples(text):
    """[(name, {label: value}, value)] of an exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def value(smp, name, **labels):
    for n, l, v in smp:
        if n == name and all(l.get(k) == str(w) for k, w in labels.items()):
            return v
    return None


def unsupported(v):
    return v is None or "N/A" in v or "Not Supported" in v or v == ""


def close(gpu, label, theirs, ours, tol, unit=""):
    """PASS when |theirs - ours| <= tol; theirs is nvidia-smi's text."""
    if unsupported(theirs):
        say("SKIP", gpu, label, f"nvidia-smi reports {theirs or 'nothing'} (exporter={ours})")
        return
    if ours is None:
        say("FAIL", gpu, label, f"nvidia-smi={theirs}{unit} exporter=absent")
        return
    t = float(theirs)
    kind = "PASS" if abs(t - ours) <= tol else "FAIL"
    say(kind, gpu, label, f"nvidia-smi={theirs}{unit} exporter={ours:.6g}{unit} (tolerance {tol:.6g})")


def start_load():
    """Background load on every GPU with torch, when installed; None otherwise."""
    if os.environ.get("GTE_CHECK_LOAD", "1") == "0":
        return None
    code = (
        "import torch, time\n"
        "if not torch.cuda.is_available(): raise SystemExit(3)\n"
        "bufs = []\n"
        "for i in range(torch.cuda.device_count()):\n"
        "    d = torch.device('cuda', i)\n"
        "    free, _ = torch.cuda.mem_get_info(d)\n"
        "    n = min(20 << 30, int(free * 0.5)) // 4\n"
        "    bufs.append((torch.empty(n, dtype=torch.float32, device=d), torch.empty(n // 16, dtype=torch.float32, pin_memory=True)))\n"
        "print('loaded', flush=True)\n"
        "while True:\n"
        "    for dev, host in bufs:\n"
        "        host.copy_(dev[: host.numel()], non_blocking=True); dev[: host.numel()].copy_(host, non_blocking=True)\n"
        "        dev.mul_(1.0001)\n"
        "    torch.cuda.synchronize()\n"
    )
    try:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    line = p.stdout.readline()
    if line.strip() != "loaded":
        p.kill()
        p.wait()
        print("SKIP load: torch with CUDA is not available; checking an idle GPU", flush=True)
        return None
    print("load: ~20 GiB allocated per GPU, copied host <-> device", flush=True)
    return p


def main():
    if subprocess.run(["sh", "-c", "command -v nvidia-smi"], capture_output=True).returncode != 0:
        print("cannot run: nvidia-smi not found (this check needs an NVIDIA GPU and driver)")
        return 2
    binary = os.environ.get("GTE_BIN") or "target/release/gpu-train-exporter"
    port = int(os.environ.get("PORT", "19842"))
    window = float(os.environ.get("GTE_CHECK_WINDOW", "10"))
    args = [binary, "--web.listen-address", f"127.0.0.1:{port}", "--no-host",
            "--no-attribution", "--gpu.interval", "500ms"]
    if os.environ.get("NVML_LIBRARY"):
        args += ["--nvml-library", os.environ["NVML_LIBRARY"]]
    log = open(os.environ.get("GTE_CHECK_LOG", "/tmp/gpu-check-daemon.log"), "w+")
    daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    load = None
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        load = start_load()
        time.sleep(2)
        a = samples(scrape(port))
        if value(a, "gpu_train_exporter_nvml_up") != 1:
            log.seek(0)
            say("FAIL", None, "nvml_up", f"gpu_train_exporter_nvml_up={value(a, 'gpu_train_exporter_nvml_up')}\n{log.read()}")
            return 1
        t_a = time.time()
        gpus = query_gpus()
        links_a, remaps = nvlink_kib(), remapped_rows()
        t_links_a = time.time()
        draws = {i: [] for i in gpus}
        gpm_pcie = {(i, d): [] for i in gpus for d in ("transmit", "receive")}
        while time.time() - t_a < window:
            for i, p in power_draw().items():
                if i in draws and not unsupported(p):
                    draws[i].append(float(p))
            now = samples(scrape(port))
            for (i, d), seen in gpm_pcie.items():
                r = value(now, f"gpu_pcie_{d}_bytes_per_second", gpu=i)
                if r is not None:
                    seen.append(r)
            time.sleep(1)
        b = samples(scrape(port))
        t_b = time.time()
        links_b, replays = nvlink_kib(), pcie_replays()
        t_links_b = time.time()
    finally:
        if load:
            load.kill()
            load.wait()
        daemon.terminate()
        daemon.wait()

    mib = 1 << 20
    for i, g in sorted(gpus.items(), key=lambda kv: int(kv[0])):
        ours = lambda name, **l: value(a, name, gpu=i, **l)
        scaled = lambda v, f: None if v is None else v * f
        mig = g["mig.mode.current"] == "Enabled"
        if mig:
            say("SKIP", i, "memory and utilization", "MIG is enabled: NVML answers them per GPU instance")
        else:
            close(i, "memory.used", g["memory.used"], scaled(ours("gpu_memory_used_bytes"), 1 / mib), 64, " MiB")
            close(i, "memory.total", g["memory.total"], scaled(ours("gpu_memory_total_bytes"), 1 / mib), 1, " MiB")
            close(i, "memory.reserved", g["memory.reserved"], scaled(ours("gpu_memory_reserved_bytes"), 1 / mib), 1, " MiB")
            close(i, "utilization.gpu", g["utilization.gpu"], scaled(ours("gpu_utilization_ratio"), 100), 15, " %")
        close(i, "temperature.gpu", g["temperature.gpu"], ours("gpu_temperature_celsius"), 3, " C")
        p = g["power.draw"]
        close(i, "power.draw", p, ours("gpu_power_watts"),
              15 if unsupported(p) else max(15, 0.1 * float(p)), " W")
        close(i, "enforced.power.limit", g["enforced.power.limit"], ours("gpu_power_limit_watts"), 1, " W")
        sm = g["clocks.sm"]
        close(i, "clocks.sm", sm, scaled(ours("gpu_sm_clock_hertz"), 1e-6),
              50 if unsupported(sm) else max(50, 0.1 * float(sm)), " MHz")
        mem = g["clocks.mem"]
        close(i, "clocks.mem", mem, scaled(ours("gpu_memory_clock_hertz"), 1e-6),
              10 if unsupported(mem) else max(10, 0.01 * float(mem)), " MHz")
        close(i, "clocks.max.sm", g["clocks.max.sm"], scaled(ours("gpu_sm_clock_max_hertz"), 1e-6), 1, " MHz")
        close(i, "ecc.corrected.volatile", g["ecc.errors.corrected.volatile.total"],
              ours("gpu_ecc_errors_total", type="corrected"), 0)
        close(i, "ecc.uncorrected.volatile", g["ecc.errors.uncorrected.volatile.total"],
              ours("gpu_ecc_errors_total", type="uncorrected"), 0)
        rr = remaps.get(g["pci.bus_id"].lower())
        if rr:
            close(i, "remapped_rows.correctable", rr[0], ours("gpu_remapped_rows", type="correctable"), 0)
            close(i, "remapped_rows.uncorrectable", rr[1], ours("gpu_remapped_rows", type="uncorrectable"), 0)
            pending = {"yes": "1", "no": "0"}.get(rr[2].lower(), rr[2])
            close(i, "remapped_rows.pending", pending, ours("gpu_remapped_rows_pending"), 0)
        else:
            say("SKIP", i, "remapped_rows", "nvidia-smi --query-remapped-rows does not answer")
        # the time between the two samples the scrapes served: the GPU's own sample
        # timestamps when the exporter has them, else the scrapes' wall times
        ts = lambda smp, t: value(smp, "gpu_last_sample_timestamp_seconds", gpu=i) \
            or value(smp, "gpu_last_sample_timestamp_seconds") or t
        dt = (ts(b, t_b) - ts(a, t_a)) or (t_b - t_a)
        # energy: the counter's rate against the mean power nvidia-smi saw meanwhile
        e_a, e_b = ours("gpu_energy_joules_total"), value(b, "gpu_energy_joules_total", gpu=i)
        if draws[i] and e_a is not None and e_b is not None:
            mean = sum(draws[i]) / len(draws[i])
            close(i, "rate(energy) vs mean power.draw", f"{mean:.2f}", (e_b - e_a) / dt,
                  max(15, 0.1 * mean), " W")
        else:
            say("SKIP", i, "rate(energy)", "no energy counter or no power readings")
        # NVLink: per-link deltas over the window
        la, lb = links_a.get(i, {}), links_b.get(i, {})
        if not la:
            say("SKIP", i, "nvlink", "nvidia-smi nvlink -gt d reports no link")
        for (link, d), kib in sorted(la.items()):
            if (link, d) not in lb:
                continue
            name = "gpu_nvlink_transmit_bytes_total" if d == "tx" else "gpu_nvlink_receive_bytes_total"
            oa, ob = ours(name, link=link), value(b, name, gpu=i, link=link)
            theirs = (lb[(link, d)] - kib) * 1024 / (t_links_b - t_links_a)
            mine = None if oa is None or ob is None else (ob - oa) / dt
            close(i, f"nvlink{link}.{d} rate", f"{theirs:.0f}", mine, max(mib, 0.1 * theirs), " B/s")
        if i in replays:
            close(i, "pcie.replays", str(replays[i]), value(b, "gpu_pcie_replay_errors_total", gpu=i), 0)
        else:
            say("SKIP", i, "pcie.replays", "nvidia-smi pci -gCnt gives no REPLAY_COUNTER")
        # PCIe: the cumulative counters' rate against GPM's rates over the same window
        for d in ("transmit", "receive"):
            name = f"gpu_pcie_{d}_bytes_total"
            ca, cb = ours(name), value(b, name, gpu=i)
            rates = gpm_pcie[(i, d)]
            if ca is None or cb is None or not rates:
                say("SKIP", i, f"pcie.{d} counter vs GPM", "no cumulative counter or no GPM rate")
                continue
            counted, gpm_mean = (cb - ca) / dt, sum(rates) / len(rates)
            ok = abs(counted - gpm_mean) <= max(64 * mib, 0.2 * gpm_mean)
            say("PASS" if ok else "WARN", i, f"pcie.{d} counter vs GPM",
                f"counter rate={counted:.4g} B/s GPM mean={gpm_mean:.4g} B/s"
                + ("" if ok else " (the counter wraps between readings? prefer the GPM rates)"))
        # clock event reasons: a bitmask; they change from moment to moment, so WARN only
        bits = g["clocks_event_reasons.active"]
        if not unsupported(bits):
            mine = sorted(l["reason"] for n, l, v in a if n == "gpu_clock_event_active" and l.get("gpu") == i and v == 1)
            theirs = int(bits, 16)
            active = [l["reason"] for n, l, v in a if n == "gpu_clock_event_active" and l.get("gpu") == i]
            kind = "PASS" if (theirs == 0) == (not mine) else "WARN"
            say(kind, i, "clocks_event_reasons", f"nvidia-smi={bits} exporter active={mine or 'none'} of {len(active)} reasons")
    errors = sum(v for n, l, v in b if n == "gpu_train_exporter_collector_errors_total" and l.get("collector") == "gpu")
    calls = sorted({l.get("call") for n, l, v in b if n == "gpu_train_exporter_collector_errors_total" and v > 0})
    say("PASS" if errors == 0 else "FAIL", None, "collector errors", f"{errors:g} failed NVML calls {calls or ''}")
    print("gpu-check: FAIL" if FAILED else "gpu-check: PASS")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
