"""The decode host grid of two native bundles side by side, from their archives (no GPU): per request count the host
term ahead of a decode (``host_term.ahead``) and the timed decode step (``host_timing.wall_ms``), and their difference.

    python3 studies/2026-12-04-campaign/host_terms.py \\
        <642fcafbe096's archive> \\
        docs/results/h200-qwen3-0.6b-native/bundles/qwen3-0.6b-h200-native-5dc2d24de0eb.tar.xz

(``642fcafbe096``, the bundle of the result published before, is in git:
``git show 92aa2cd:docs/results/h200-qwen3-0.6b-native/bundles/qwen3-0.6b-h200-native-642fcafbe096.tar.xz``.)
"""

from __future__ import annotations

import json
import sys
import tarfile


def decode_grid(archive: str) -> tuple[str, dict[int, float], dict[int, float]]:
    """The bundle's GPU, its ahead term and its timed decode steps, by requests."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("profile_meta.json"))
        meta = json.load(tar.extractfile(member))
    ahead = dict(zip(meta["host_term"]["ahead"]["requests"], meta["host_term"]["ahead"]["ms"]))
    t = meta["host_timing"]
    wall = {n: w for n, s, w in zip(t["requests"], t["shape"], t["wall_ms"]) if s.startswith("decode:")}
    return meta["host_load"]["gpu"], ahead, wall


def main(a: str, b: str) -> None:
    (gpu_a, ahead_a, wall_a), (gpu_b, ahead_b, wall_b) = decode_grid(a), decode_grid(b)
    print(f"A {gpu_a}: {a}\nB {gpu_b}: {b}")
    print("requests  ahead A (ms)  ahead B (ms)  decode A (ms)  decode B (ms)  B - A (ms)  B / A - 1")
    for n in sorted(set(ahead_a) & set(ahead_b) & set(wall_a) & set(wall_b)):
        print(f"{n:8d}  {ahead_a[n]:12.4f}  {ahead_b[n]:12.4f}  {wall_a[n]:13.4f}  {wall_b[n]:13.4f}  "
              f"{wall_b[n] - wall_a[n]:+10.4f}  {100 * (wall_b[n] / wall_a[n] - 1):+8.1f}%")


if __name__ == "__main__":
    main(*sys.argv[1:3])
