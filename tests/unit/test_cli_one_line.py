"""The CLIs end on bad input and on Ctrl-C with one line and an exit code, never a traceback.

Run through the real entry points in subprocesses: what is checked is what a user's terminal shows. Ctrl-C is a real
SIGINT, sent once the app is inside its work: real-bench keeps what it measured (marked incomplete), every other app
leaves nothing half-written; both exit 130.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_simulate_test.cli.compare_runs import MODES
from gpu_simulate_test.device.lock import LOCK_DIR_ENV

BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, LOCK_DIR_ENV: str(tmp_path / "locks"), **extra}


def _one_line(proc: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    stderr = proc.stderr if isinstance(proc, subprocess.CompletedProcess) else proc[1]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize(("app", "args", "missing"), [
    ("real-bench", [], "workload_id"),
    ("vidur-sim", ["workload_id=w"], "profiling_root"),
])
def test_a_missing_mandatory_value_is_one_line(tmp_path: Path, app: str, args: list[str], missing: str) -> None:
    proc = subprocess.run([str(BIN / app), f"paths.root={tmp_path}", *args], capture_output=True, text=True, timeout=180,
                          env=_env(tmp_path))
    assert proc.returncode == 2
    assert _one_line(proc) == f"error: config value(s) ['{missing}'] must be given, e.g. {missing}=<value> on the command line"


def test_compare_runs_help_names_its_modes(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN / "compare-runs"), "--help"], capture_output=True, text=True, timeout=180, check=True).stdout
    header = out.split("== Configuration groups ==")[0]
    assert all(f"mode={mode}" in header for mode in MODES), header


def _interrupt(cmd: list[str], ready: Path, env: dict[str, str], settle_s: float = 0.5) -> tuple[int, str]:
    """Start ``cmd``, wait until it writes ``ready`` (it is then inside its work), send SIGINT; (exit code, stderr).

    The child starts with SIGINT at its default, as under a terminal: a shell that runs ``make test &`` without job
    control leaves SIGINT ignored, Python then installs no KeyboardInterrupt handler, and the signal would be lost.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1] if proc.poll() is not None else "timeout"
        time.sleep(0.1)
    time.sleep(settle_s)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


REAL_BENCH = """
import os, sys
from pathlib import Path
from gpu_simulate_test.backends import register_backend
from gpu_simulate_test.backends.hf_generate import HFGenerateBackend

@register_backend("marked")
class Marked(HFGenerateBackend):
    def submit(self, request, prompt):
        if request.request_id == 1:  # the run is under way: request 0 is being served
            Path(os.environ["READY"]).write_text("go")
        return super().submit(request, prompt)

from gpu_simulate_test.cli.real_bench import main
sys.argv = ["real-bench", *sys.argv[1:]]
main()
"""


def test_ctrl_c_in_real_bench_keeps_what_was_measured(tmp_path: Path) -> None:
    from gpu_simulate_test.testing import make_workload

    make_workload(tmp_path / "workloads", "w", [(0, 16, 3), (50_000_000, 16, 3), (60_000_000_000, 16, 3)])
    ready = tmp_path / "ready"
    code, stderr = _interrupt([sys.executable, "-c", REAL_BENCH, f"paths.root={tmp_path}", "workload_id=w",
                               "backend.name=marked", "backend.warmup_requests=1", "run_id=cut"],
                              ready, _env(tmp_path, READY=str(ready)), settle_s=2.0)
    assert code == 130
    line = _one_line((code, stderr))
    assert line.startswith("error: interrupted; ") and line.endswith(f"kept in {tmp_path / 'real_runs' / 'cut'} (status incomplete)")
    meta = json.loads((tmp_path / "real_runs" / "cut" / "run_meta.json").read_text())
    assert meta["status"] == "incomplete" and "KeyboardInterrupt" in meta["failure"]
    # Requests 0 and 1 (3 tokens of a tiny model each) had two seconds to finish; request 2 was never dispatched.
    kept = (tmp_path / "real_runs" / "cut" / "request_metrics.csv").read_text().splitlines()[1:]
    assert 1 <= meta["num_finished"] == len(kept) <= 2 and meta["num_dispatched"] == 2


VIDUR_SIM = """
import os, sys, time
from pathlib import Path
import gpu_simulate_test.vidur_ext.simulate as simulate

def stalled(app, inputs, scratch):  # stands for a long simulation, inside the run's half-written directory
    Path(os.environ["READY"]).write_text("go")
    time.sleep(120)

simulate.simulate = stalled
from gpu_simulate_test.cli.vidur_sim import main
sys.argv = ["vidur-sim", *sys.argv[1:]]
main()
"""


def test_ctrl_c_in_any_other_app_is_one_line_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    from gpu_simulate_test.config import compose_app
    from gpu_simulate_test.testing import constant_profile, make_workload
    from gpu_simulate_test.vidur_ext.profiling_root import GridLimits

    cfg = compose_app("vidur_sim", [f"paths.root={tmp_path}", "workload_id=w", "profiling_root=b"])
    make_workload(tmp_path / "workloads", "w", [(0, 16, 3)])
    constant_profile(tmp_path / "profiling", "b", model=cfg.model, hardware=cfg.hardware, backend=cfg.backend,
                     limits=GridLimits(64, 64, 1, 512, 256), op=0.1, prefill=1.0, decode=0.5)
    ready = tmp_path / "ready"
    code, stderr = _interrupt([sys.executable, "-c", VIDUR_SIM, f"paths.root={tmp_path}", "workload_id=w", "profiling_root=b"],
                              ready, _env(tmp_path, READY=str(ready)))
    assert code == 130
    assert _one_line((code, stderr)) == "error: interrupted (Ctrl-C); finished outputs are kept, the one in progress was not written"
    runs = tmp_path / "vidur_runs"
    assert not runs.exists() or list(runs.iterdir()) == []
