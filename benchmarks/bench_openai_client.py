"""The openai backend's client against the scripted server in its own process: 500 requests/s, each streaming 16
tokens one every 10 ms (so ~80 streams in flight and 8,000 chunks/s).

Targets: dispatch lateness (first byte sent - scheduled arrival) p99 < 1 ms, and every recorded token time within
1 ms of the moment the server began writing its chunk (both on this machine's monotonic clock; the times against the
script, which add the server's own lateness, are printed too). Both processes share the machine's cores with whatever else
runs, so the load average before and after is printed beside the figures.

Where a late dispatch or token comes from, printed per run: the garbage collections in the client process during the
run (real-bench pauses the collector for its measured run; ``--with-gc`` leaves it running, to see what it costs),
and the client loop's longest stretches of work between two polls of its sockets (``engine_stats.stream
.client_loop_busy``), which any cause of a pause lengthens: the client's own work, a collection, the GIL, the OS.

    python benchmarks/bench_openai_client.py [--rate 500] [--seconds 4] [--repeat 1] [--with-gc]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpu_simulate_test.backends import conditions
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.io.runs import load_run
from gpu_simulate_test.real_bench.run import run_real_bench
from gpu_simulate_test.testing import make_workload
from gpu_simulate_test.testing_server import read_log

TOKENS = 16
GAP_MS = 10.0
TARGET_NS = 1_000_000


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GcWatch:
    """The collections in this process, and how long each stopped it (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, int, int]] = []  # (start perf_counter_ns, generation, duration ns)
        self._began = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter_ns()
        else:
            self.pauses.append((self._began, info["generation"], time.perf_counter_ns() - self._began))

    def during(self, start_ns: int, end_ns: int) -> str:
        got = [(g, d) for t, g, d in self.pauses if start_ns <= t <= end_ns]
        if not got:
            return "none"
        return "; ".join(f"gen {g}: {sum(1 for x, _ in got if x == g)}, longest {max(d for x, d in got if x == g) / 1e6:.2f} ms"
                         for g in sorted({g for g, _ in got}))


def measure(root: Path, rate: float, seconds: float, with_gc: bool) -> dict[str, Any]:
    n = int(rate * seconds)
    log = root / "server.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "gpu_simulate_test.testing_server", "--log", str(log)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline().split('=')[1])}"
        wid = f"bench-{os.getpid()}-{len(list(root.glob('workloads/*')))}"
        make_workload(root / "workloads", wid, [(int(round(i * 1e9 / rate)), 32, TOKENS) for i in range(n)])
        in_flight = int(rate * (TOKENS * GAP_MS / 1e3)) + 20
        app = compose_app("real_bench", [f"paths.root={root}", f"workload_id={wid}", "backend=openai", f"backend.base_url={url}",
                                         "backend.model_name=scripted", f"backend.warmup_requests={in_flight}"])
        cpu0 = (time.process_time(), _cpu_s(proc.pid))
        watch = GcWatch()
        gc.callbacks.append(watch)
        saved = conditions.gc_paused
        if with_gc:
            conditions.gc_paused = contextlib.nullcontext  # type: ignore[assignment]
        try:
            run = load_run(run_real_bench(app))
        finally:
            gc.callbacks.remove(watch)
            conditions.gc_paused = saved
        cpu = (time.process_time() - cpu0[0], _cpu_s(proc.pid) - cpu0[1])
    finally:
        proc.terminate()
        proc.wait()
    sent = read_log(log)
    start = run.meta["clock_start_perf_counter_ns"]
    token_err, vs_script, server_late = [], [], []
    for rid, g in run.tokens.groupby("request_id"):
        rec = sent[f"r{rid}"]
        chunks = np.array(rec["chunks"], dtype=np.int64)
        recorded = g["token_time_ns"].to_numpy() + start
        due = rec["received_ns"] + np.rint((GAP_MS + GAP_MS * np.arange(len(chunks))) * 1e6).astype(np.int64)
        token_err.append(recorded - np.repeat(chunks[:, 2], chunks[:, 1]))  # from when the server began the write
        vs_script.append(recorded - np.repeat(due, chunks[:, 1]))
        server_late.append(chunks[:, 0] - due)
    err, script, late = np.concatenate(token_err), np.concatenate(vs_script), np.concatenate(server_late)
    d = run.meta["dispatch_lateness"]
    return {"requests": n, "finished": run.meta["num_finished"], "dispatch_p50": d["p50_ns"], "dispatch_p99": d["p99_ns"],
            "dispatch_max": d["max_ns"], "token_p50": float(np.percentile(err, 50)), "token_p99": float(np.percentile(err, 99)),
            "token_max": float(err.max()), "token_min": float(err.min()), "script_p99": float(np.percentile(script, 99)),
            "script_max": float(script.max()), "server_p99": float(np.percentile(late, 99)),
            "client_cpu_s": cpu[0], "server_cpu_s": cpu[1], "run_s": run.meta["run_s"],
            "loop_cpu_s": run.meta["engine_stats"]["stream"]["client_loop_cpu_s"],
            "gc": watch.during(start, start + int(run.meta["run_s"] * 1e9)), "busy": run.meta["engine_stats"]["stream"]["client_loop_busy"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--with-gc", action="store_true", help="leave the garbage collector running during the run")
    args = parser.parse_args()
    ok = True
    print(f"openai client vs scripted server: {args.rate:g} requests/s for {args.seconds:g} s, {TOKENS} tokens each, "
          f"one every {GAP_MS:g} ms{'; the collector left running' if args.with_gc else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            before = _load()
            m = measure(Path(tmp), args.rate, args.seconds, args.with_gc)
            ms = {k: v / 1e6 for k, v in m.items() if k.endswith(("_p50", "_p99", "_max", "_min"))}
            print(f"  run {i + 1}: load before {before}, after {_load()}; {m['finished']}/{m['requests']} finished")
            print(f"    dispatch lateness (first byte - scheduled): p50 {ms['dispatch_p50']:.3f} ms  p99 {ms['dispatch_p99']:.3f} ms  "
                  f"max {ms['dispatch_max']:.3f} ms")
            print(f"    token time (recorded - server's write):    p50 {ms['token_p50']:.3f} ms  p99 {ms['token_p99']:.3f} ms  "
                  f"max {ms['token_max']:.3f} ms  min {ms['token_min']:.3f} ms")
            print(f"    token time (recorded - scripted):          p99 {ms['script_p99']:.3f} ms  max {ms['script_max']:.3f} ms "
                  f"(the server's own lateness against its script: p99 {ms['server_p99']:.3f} ms)")
            print(f"    CPU over the {m['run_s']:.2f} s run: the client's loop thread {m['loop_cpu_s']:.2f} s "
                  f"({1e6 * m['loop_cpu_s'] / (m['requests'] * TOKENS):.0f} us per streamed token); the client process "
                  f"{m['client_cpu_s']:.2f} s and the server {m['server_cpu_s']:.2f} s, set-up and warm-up included")
            b = m["busy"]
            print(f"    pauses: garbage collections in the client during the run: {m['gc']}; the client loop's stretches "
                  f"between polls: longest {b['max_ms']:.2f} ms, {b['over_1ms']} over 1 ms and {b['over_5ms']} over 5 ms "
                  f"of {b['stretches']} ({b['total_s']:.2f} s busy)")
            good = m["finished"] == m["requests"] and m["dispatch_p99"] < TARGET_NS and m["token_max"] < TARGET_NS
            print(f"    -> {'OK' if good else 'FAIL'} (targets: dispatch p99 < 1 ms, every token within 1 ms)")
            ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
