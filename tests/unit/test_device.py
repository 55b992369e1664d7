"""The measuring device as a shared resource: the busy-host probe and the per-device lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gpu_simulate_test.device.busy import BusyProbe, own_cpu_s, read_proc_stat
from gpu_simulate_test.device.lock import LOCK_DIR_ENV, device_lock
from gpu_simulate_test.errors import EnvironmentUnavailableError


def _scripted(values: list[float]):
    it = iter(values)
    return lambda: next(it)


@pytest.mark.parametrize(("stat", "own", "other", "busy"), [
    ((100.0, 103.0), (10.0, 11.0), 1.0, True),  # 3 CPU-s in 2 s, 1 of them ours: others used 1 core
    ((100.0, 101.4), (10.0, 11.0), 0.2, False),  # others used 0.2 core: below the 0.5-core threshold
    ((100.0, 101.0), (10.0, 11.0), 0.0, False),  # all of it ours (never negative)
])
def test_other_cpu_is_all_busy_time_minus_our_own(stat, own, other, busy) -> None:
    probe = BusyProbe(stat=_scripted(list(stat)), own=_scripted(list(own)), clock=_scripted([5.0, 7.0])).start()
    load = probe.stop()
    assert load.wall_s == 2.0 and load.own_cpu_cores == 0.5
    assert load.other_cpu_cores == pytest.approx(other) and load.busy is busy
    assert (load.reasons != []) is busy
    assert load.other_gpu_processes is None  # no GPU named: nothing to see there


def test_unreadable_proc_stat_is_unknown_not_quiet(tmp_path: Path) -> None:
    assert read_proc_stat(str(tmp_path / "missing")) is None
    load = BusyProbe(stat=lambda: None, own=lambda: 0.0).start().stop()
    assert load.busy is None and load.other_cpu_cores is None


def _detached_spinner(seconds: float) -> int:
    """A CPU-bound process that is not our descendant (its parent shell exits at once): another tenant's load."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    out = subprocess.run(["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable, code],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return int(out.strip())


def test_a_busy_neighbour_marks_the_measurement_busy() -> None:
    probe = BusyProbe().start()
    pid = _detached_spinner(3.0)
    try:
        time.sleep(2.0)
        load = probe.stop()
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert load.busy is True and load.other_cpu_cores > 0.5, load
    assert "other processes used" in load.reasons[0]


def test_our_own_threads_and_children_count_as_ours() -> None:
    before = own_cpu_s()
    stop = time.monotonic() + 1.0
    used: list[float] = []

    def spin() -> None:
        while time.monotonic() < stop:
            pass
        used.append(time.thread_time())

    t = threading.Thread(target=spin)
    t.start()
    code = "import time\nend = time.time() + 1\nwhile time.time() < end: pass\nprint(time.process_time())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    t.join()
    # However much CPU a loaded host gave them, the thread's and the reaped child's time are ours.
    assert own_cpu_s() - before >= 0.95 * (used[0] + child) > 0.1


def test_other_processes_on_the_gpu_mark_it_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "GPU-aaa, {os.getpid()}, python, 900"
        echo "GPU-aaa, 4242, other-trainer, 30000"
        echo "GPU-bbb, 4343, elsewhere, 100"
        """))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    load = BusyProbe("GPU-aaa", stat=_scripted([0.0, 0.0]), own=_scripted([0.0, 0.0])).start().stop()
    assert [p["pid"] for p in load.other_gpu_processes] == [4242]  # our own process and the other GPU's are not counted
    assert load.busy is True and "pid 4242 (other-trainer)" in load.reasons[0]


@pytest.mark.parametrize(("listed", "busy"), [(1, False), (2, True)])
def test_pids_of_another_namespace_count_this_process_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           listed: int, busy: bool) -> None:
    """In a container nvidia-smi may list the host's pids: none is ours, yet one of them is this process."""
    import gpu_simulate_test.device.busy as busy_mod

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n" + "".join(f'echo "GPU-aaa, {900000 + i}, python, 900"\n' for i in range(listed)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(busy_mod, "_holds_cuda_context", lambda: True)
    load = BusyProbe("GPU-aaa", stat=_scripted([0.0, 0.0]), own=_scripted([0.0, 0.0])).start().stop()
    assert load.busy is busy and len(load.other_gpu_processes) == listed - 1
    assert any("besides this one" in r for r in load.reasons) is busy


HOLD = """
import sys, time
from gpu_simulate_test.device.lock import device_lock
with device_lock("cpu", 60, "test holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
print("released", time.monotonic(), flush=True)
"""


def _holder(tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, LOCK_DIR_ENV: str(tmp_path / "locks")})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_measurement_waits_then_proceeds(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 1.5)
    code = ("import time\nfrom gpu_simulate_test.device.lock import device_lock\n"
            "with device_lock('cpu', 60, 'test waiter'):\n    print('acquired', time.monotonic(), flush=True)\n")
    waiter = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, LOCK_DIR_ENV: str(tmp_path / "locks")})
    released = float(holder.communicate(timeout=30)[0].split()[-1])
    assert waiter.returncode == 0, waiter.stderr
    assert float(waiter.stdout.split()[-1]) >= released  # it went ahead only after the holder let go
    assert f"in use by pid {holder.pid}" in waiter.stderr and "test holder" in waiter.stderr  # says for whom it waits


def test_a_lock_held_too_long_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = _holder(tmp_path, 5.0)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    try:
        t0 = time.monotonic()
        with pytest.raises(EnvironmentUnavailableError, match=rf"device cpu is still in use by pid {holder.pid} .* after 0.5 s"):
            with device_lock("cpu", 0.5):
                pass
        assert time.monotonic() - t0 < 3
    finally:
        holder.kill()
        holder.wait()
    with device_lock("cpu", 5) as path:  # the holder's death released the lock
        assert path.read_text().startswith(f"pid {os.getpid()} ")


@pytest.mark.parametrize("backend", ["hf-generate", "native"])
@pytest.mark.parametrize("app", ["real_bench", "vidur_profile"])
def test_real_bench_and_vidur_profile_measure_only_under_the_device_lock(app: str, backend: str, compose_app,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With another measurement holding the CPU, both give up after their timeout and write nothing, whichever driver
    (the native engine's, and its engine-op timing in vidur-profile, as the HF ones)."""
    from gpu_simulate_test.real_bench.run import run_real_bench
    from gpu_simulate_test.testing import make_workload
    from gpu_simulate_test.vidur_ext.profiler import run_vidur_profile

    make_workload(tmp_path / "workloads", "w", [(0, 16, 2)])
    holder = _holder(tmp_path, 30.0)
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    cfg = compose_app(app, ["workload_id=w", "device_lock_timeout_s=0.5", f"backend={backend}"])
    try:
        with pytest.raises(EnvironmentUnavailableError, match=rf"device cpu is still in use by pid {holder.pid} "):
            (run_real_bench if app == "real_bench" else run_vidur_profile)(cfg)
    finally:
        holder.kill()
        holder.wait()
    out = tmp_path / ("real_runs" if app == "real_bench" else "profiling")
    assert not out.exists() or not [p for p in out.iterdir()]
