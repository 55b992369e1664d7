"""The measuring device on a real GPU: its lock name is the GPU's UUID, and another process on it marks a
measurement busy while our own does not. Run: ``pytest -m gpu tests/gpu/test_device_gpu.py -s``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.device.busy import BusyProbe, gpu_processes
from gpu_simulate_test.device.identity import device_key, gpu_uuid

pytestmark = pytest.mark.gpu


def _smi_uuids() -> list[str]:
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_the_lock_names_the_gpu_by_its_uuid() -> None:
    uuid = gpu_uuid()
    assert uuid is not None and uuid in _smi_uuids(), (uuid, _smi_uuids())
    hardware = compose_app("vidur_profile", ["hardware=h200"]).hardware
    assert device_key(hardware) == uuid
    assert device_key(compose_app("vidur_profile", ["hardware=cpu"]).hardware) == "cpu"


def test_our_own_cuda_work_is_not_another_process() -> None:
    """On a GPU this test has to itself, our own context (listed by nvidia-smi under our pid, or under a pid of the
    host's namespace) is never taken for another tenant."""
    x = torch.ones(1 << 20, device="cuda")
    uuid = gpu_uuid()
    print(f"nvidia-smi lists on {uuid}: {gpu_processes(uuid)} (our pid {os.getpid()})")
    load = BusyProbe(uuid).start().stop()
    print(f"host_load: {load}")
    assert not load.other_gpu_processes, load
    del x


HOLD = "import torch, time\nx = torch.ones(1 << 24, device='cuda')\ntorch.cuda.synchronize()\ntime.sleep(60)\n"


def test_another_process_on_the_gpu_marks_the_measurement_busy() -> None:
    uuid = gpu_uuid()
    env = {**os.environ}
    # Detached (its parent shell exits at once), so it is not our descendant: another tenant of the GPU.
    pid = int(subprocess.run(["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable, HOLD],
                             capture_output=True, text=True, check=True, env=env, timeout=30).stdout)
    try:
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            seen = gpu_processes(uuid) or []
            if any(p["pid"] == pid for p in seen):
                break
            time.sleep(1)
        if not any(p["pid"] == pid for p in seen):
            pytest.skip(f"nvidia-smi does not show other processes' pids here (container PID namespace?): {seen}")
        load = BusyProbe(uuid).start().stop()
        assert load.busy is True and any(p["pid"] == pid for p in load.other_gpu_processes), load
        assert any(f"pid {pid}" in r for r in load.reasons)
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
