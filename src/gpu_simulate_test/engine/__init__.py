"""``native``: a lean serving engine (paged KV cache, Vidur's scheduling policies, Triton kernels, CUDA graphs).

It stands on its own: torch and triton only, nothing from ``real_bench``, ``vidur_ext`` or ``analysis``, so that
real-bench (``backend=native``) and vidur-profile drive the very same code.

Layout (one concern a file):
    config.py        EngineConfig: the model's shape and every engine knob, one name each
    sequence.py      Sequence (one request's tokens, KV blocks and progress) and ScheduledBatch (one iteration)
    block_manager.py the paged KV pool's block ledger
    scheduler.py     the policies (``sarathi``, ``vllm``) that form each iteration's batch, as vidur-sim simulates them
    kernels/         Triton kernels, each beside an independent plain-torch reference
    model.py         the dense Qwen3 model over packed tokens and the paged cache
    runner.py        inputs, CUDA graphs for decode batches, greedy sampling
    memory.py        how many KV blocks fit (vLLM's gpu_memory_utilization rule)
    engine.py        the step loop: schedule, run, sample, log the iteration
"""
