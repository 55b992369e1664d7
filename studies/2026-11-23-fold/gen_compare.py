"""Compare the profiler's GenerateTimer call with real-bench's hf-generate call on CPU (qwen3-tiny): the logits
processors / stopping criteria generate builds, and the ATen ops dispatched per decode step."""
import time, threading
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from gpu_simulate_test.backends import _hf
from gpu_simulate_test.config import compose_app
from gpu_simulate_test.modeling import load_model

cfg = compose_app("vidur_profile", ["model=qwen3-tiny", "hardware=cpu", "backend=hf-generate"])
model = load_model(cfg.model, cfg.hardware, attn_implementation="sdpa").model

class Count(TorchDispatchMode):
    def __init__(self): super().__init__(); self.n = 0; self.names = {}
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1; self.names[str(func)] = self.names.get(str(func), 0) + 1
        return func(*args, **(kwargs or {}))

def run(kind, prompt_len=256, new=12):
    per_step, stamps, counter = [], [], Count()
    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter_ns()); per_step.append(counter.n); return scores
    ids = torch.randint(10, 1000, (1, prompt_len))
    procs = LogitsProcessorList([Stamp()])
    seen = {}
    orig = model._get_logits_processor
    def spy(*a, **k):
        out = orig(*a, **k); seen["processors"] = [type(p).__name__ for p in out]; return out
    model._get_logits_processor = spy
    with counter:
        if kind == "profiler":  # iterations.GenerateTimer._run / _generate
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                               logits_processor=procs, pad_token_id=0, cache_implementation="dynamic", disable_compile=True)
        else:  # backends.hf_generate._generate
            gen = GenerationConfig(do_sample=False, pad_token_id=_hf.pad_token_id(model), eos_token_id=_hf.eos_token_ids(model),
                                   disable_compile=True, max_new_tokens=new, min_new_tokens=new)
            model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen, logits_processor=procs)
    model._get_logits_processor = orig
    ops = [b - a for a, b in zip(per_step[1:], per_step[2:])]
    gaps = [(b - a) / 1e6 for a, b in zip(stamps[1:], stamps[2:])]
    return seen.get("processors"), ops, sorted(gaps)[len(gaps) // 2], counter

for kind in ("profiler", "real-bench", "profiler", "real-bench"):
    procs, ops, med, c = run(kind)
    print(f"{kind:10s} processors={procs} ATen ops per decode step={sorted(set(ops))} median CPU step {med:.2f} ms")
print("eos:", _hf.eos_token_ids(model), "pad:", _hf.pad_token_id(model), "model.generation_config:", model.generation_config.to_diff_dict())
_, _, _, cp = run("profiler", new=22); _, _, _, cr = run("real-bench", new=22)
_, _, _, cp2 = run("profiler", new=12); _, _, _, cr2 = run("real-bench", new=12)
for name in sorted(set(cp.names) | set(cr.names)):
    dp = (cp.names.get(name, 0) - cp2.names.get(name, 0)) / 10; dr = (cr.names.get(name, 0) - cr2.names.get(name, 0)) / 10
    if dp != dr or "local_scalar" in name:
        print(f"per decode step  {name:45s} profiler {dp:5.1f}  real-bench {dr:5.1f}")
