"""Time workload-spec on 10,000 Poisson requests whose prompt texts go through the tokenizer.

Writes a prompts JSONL of 10,000 texts (about 400 tokens each, seeded), generates the workload
into a temporary root, and prints the wall time; the target is under 20 s on a 2-core machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gpu_simulate_test.config import compose_app
from gpu_simulate_test.workloads.load import load_workload
from gpu_simulate_test.workloads.spec import generate_workload

NUM_REQUESTS = 10_000
TARGET_S = 20.0
WORDS = (
    "the model serves requests with a batch of tokens while the scheduler keeps memory for keys and values "
    "latency throughput prefill decode attention cache kernel GPU simulator profile trace arrival queue "
    "何 时 数据 12 3.5 % ( ) , . ; : ! ?"
).split()


def write_prompts(path: Path) -> None:
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(300), 0.6, NUM_REQUESTS), 8, 3000).astype(int)
    vocab = np.array(WORDS)
    with open(path, "w") as fh:
        for n in lengths:
            fh.write(json.dumps({"prompt": " ".join(vocab[rng.integers(0, len(vocab), n)])}) + "\n")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.jsonl"
        write_prompts(prompts)
        cfg = compose_app("workload_spec", [
            f"paths.root={tmp}", "workload=prompts_jsonl", f"workload.lengths.path={prompts}",
            "workload.arrival.process=poisson", "workload.arrival.qps=10",
        ])
        start = time.perf_counter()
        path = generate_workload(cfg)
        elapsed = time.perf_counter() - start
        w = load_workload(Path(tmp) / "workloads", path.name)
        tokens = sum(r.num_prefill_tokens for r in w.requests)
    ok = elapsed < TARGET_S
    print(
        f"workload-spec: {len(w.requests)} Poisson requests, {tokens} tokenized prompt tokens: "
        f"{elapsed:.2f} s (target < {TARGET_S:.0f} s) {'OK' if ok else 'TOO SLOW'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
