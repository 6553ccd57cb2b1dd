#!/usr/bin/env python3
"""Capture real crash logs for the golden tests, byte for byte, on CPU.

Each case runs a tiny training loop (one Linear layer, an HF-style dict line per step)
that dies in a known way, with stdout and stderr merged into one file as
`python train.py > log 2>&1` gives. The logs land in tests/fixtures/crash/captured/.

Needs only the standard library and torch (a CPU wheel is enough):

    python scripts/make-crash-fixtures.py
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "crash" / "captured"
TIMEOUT_S = 60

# The trainer every case runs, written out as train.py; CRASH_MODE says how it dies.
TRAIN_PY = r'''
import os
import signal
import sys
import time

MODE = os.environ["CRASH_MODE"]
if MODE == "import":
    import flash_attn_nonexistent  # noqa: F401

import torch
import torch.distributed as dist

DISTRIBUTED = "RANK" in os.environ
RANK = int(os.environ.get("RANK", "0"))
if DISTRIBUTED:
    dist.init_process_group("gloo")

OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 20.00 MiB. GPU {gpu} has a total capacity of "
    "79.25 GiB of which 3.19 MiB is free. Process {pid} has 79.24 GiB memory in use. "
    "Of the allocated memory 77.80 GiB is allocated by PyTorch, and 652.47 MiB is reserved "
    "by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
    "documentation for Memory Management  "
    "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
)
OOM = getattr(torch, "OutOfMemoryError", RuntimeError)


def on_step_end(step):
    """The callback a trainer calls after each optimizer step; it fails at step 3."""
    if step != 3:
        return
    if MODE == "oom" and (not DISTRIBUTED or RANK == 1):
        # let rank 0 enter its all_reduce first
        time.sleep(1.0 if DISTRIBUTED else 0.0)
        raise OOM(OOM_MESSAGE.format(gpu=int(os.environ.get("LOCAL_RANK", "0")), pid=os.getpid()))
    if MODE == "sigkill" and RANK == 1:
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)


def main():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    steps = 5
    for step in range(1, steps + 1):
        x = torch.randn(16, 8)
        y = torch.randn(16, 1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        if DISTRIBUTED:
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        opt.step()
        if RANK == 0:
            print({"loss": round(loss.item(), 4), "grad_norm": round(grad_norm.item(), 4),
                   "learning_rate": 1e-4, "epoch": round(step / steps, 2)}, flush=True)
        on_step_end(step)
        if DISTRIBUTED:
            # rank 0 waits here in a collective while rank 1 fails in its callback
            t = torch.ones(1)
            dist.all_reduce(t)
    if DISTRIBUTED:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
'''


def torchrun():
    """The torchrun entry point beside this Python, as a user would call it."""
    exe = pathlib.Path(sys.executable).parent / "torchrun"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


CASES = [
    # (log name, CRASH_MODE, launcher)
    ("single-oom.log", "oom", "python"),
    ("torchrun-oom-rank1.log", "oom", "torchrun"),
    ("torchrun-sigkill.log", "sigkill", "torchrun"),
    ("startup-import.log", "import", "python"),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        (pathlib.Path(work) / "train.py").write_text(TRAIN_PY)
        for name, mode, launcher in CASES:
            if launcher == "python":
                cmd = [sys.executable, "train.py"]
            else:
                cmd = torchrun() + ["--standalone", "--nproc_per_node", "2", "train.py"]
            env = dict(os.environ, CRASH_MODE=mode, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
            with open(OUT / name, "wb") as log:
                rc = subprocess.run(cmd, cwd=work, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, timeout=TIMEOUT_S).returncode
            print(f"{name}: exit code {rc}: {' '.join(cmd)}")


if __name__ == "__main__":
    main()
