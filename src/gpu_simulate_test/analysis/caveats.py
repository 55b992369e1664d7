"""What makes a comparison less than exact, read from the runs themselves (``comparison_meta.json`` key ``caveats``,
and lines of ``summary.md``):

- requests the real run sent that failed (a server's error, a cut stream): left out, counted by status;
- streamed chunks that carried several tokens: their tokens share the chunk's arrival time, which makes ITL gaps of
  0 followed by long ones; a warning when such chunks exceed :data:`MULTI_TOKEN_WARN` of the tokens;
- requests whose prompt the server counted differently from the workload (a text prompt re-tokenized by the
  server, a chat template): listed;
- series with only some token times (imported without per-token times): ITL pairs only the others, and such a
  series that would need a cut (early stop) leaves its request out.
"""

from __future__ import annotations

from typing import Any

from gpu_simulate_test.analysis.align import PairedRuns
from gpu_simulate_test.io.runs import RunData

MULTI_TOKEN_WARN = 0.01  # multi-token chunks per token above which summary.md warns
LISTED = 10  # requests named in summary.md (comparison_meta.json lists them all)


def prompt_mismatches(real: RunData) -> list[dict[str, int]]:
    """Finished requests whose prompt the server counted (``request_outcomes.csv``) differently from the workload."""
    if real.outcomes is None:
        return []
    counted = real.outcomes.dropna(subset=["server_prompt_tokens"])
    merged = counted.merge(real.requests[["request_id", "num_prefill_tokens"]], on="request_id")
    bad = merged[merged["server_prompt_tokens"] != merged["num_prefill_tokens"]]
    return [{"request_id": int(r.request_id), "workload": int(r.num_prefill_tokens), "server": int(r.server_prompt_tokens)}
            for r in bad.itertuples(index=False)]


def caveats(pair: PairedRuns) -> dict[str, Any]:
    real = pair.real
    stream = (real.meta.get("engine_stats") or {}).get("stream") or {}
    tokens, multi = int(stream.get("tokens", 0)), int(stream.get("multi_token_chunks", 0))
    return {
        "failed_real": int(real.meta.get("num_failed") or 0),
        "failed_real_by_status": dict(real.meta.get("failed_by_status") or {}),
        "failed_real_messages": real.outcomes is not None,  # in request_outcomes.csv (a run against a server)
        "stream_tokens": tokens,
        "multi_token_chunks": multi,
        "multi_token_warning": tokens > 0 and multi > MULTI_TOKEN_WARN * tokens,
        "prompt_token_mismatches": prompt_mismatches(real),
        "itl_requests": int(pair.real_tokens.complete.sum()),
        "partial_real": pair.partial_real,
        "partial_sim": pair.partial_sim,
        "left_out_uncut": pair.left_out_uncut,
    }


def caveat_lines(c: dict[str, Any], compared: int) -> list[str]:
    """The caveats that apply, as ``summary.md`` bullet lines."""
    lines = []
    if c["failed_real"]:
        by = ", ".join(f"{k}: {v:,}" for k, v in sorted(c["failed_real_by_status"].items()))
        where = "; each with its message in the real run's `request_outcomes.csv`" if c["failed_real_messages"] else ""
        lines.append(f"- failed in the real run and left out: {c['failed_real']:,} requests ({by}){where}")
    if c["multi_token_warning"]:
        lines.append(f"- warning: {c['multi_token_chunks']:,} streamed chunks carried more than one token "
                     f"({100 * c['multi_token_chunks'] / c['stream_tokens']:.1f}% of {c['stream_tokens']:,} tokens, above "
                     f"{100 * MULTI_TOKEN_WARN:g}%): their tokens share the chunk's arrival time, so real ITL has gaps of 0 "
                     "followed by long ones")
    mism = c["prompt_token_mismatches"]
    if mism:
        shown = "; ".join(f"r{m['request_id']}: {m['workload']} vs {m['server']}" for m in mism[:LISTED])
        more = f"; ... ({len(mism) - LISTED:,} more in comparison_meta.json)" if len(mism) > LISTED else ""
        lines.append(f"- warning: the server counted a different prompt length than the workload for {len(mism):,} "
                     f"requests (workload vs server tokens: {shown}{more})")
    if c["partial_real"] or c["partial_sim"]:
        if c["itl_requests"] == 0:
            lines.append("- ITL cannot be compared: no request has every token's time in both runs (a run imported "
                         "without per-token times); TTFT, TPOT and E2E cover every request")
        else:
            lines.append(f"- ITL compared over {c['itl_requests']:,} of {compared:,} requests: {c['partial_real']:,} real "
                         f"and {c['partial_sim']:,} simulated series have only some token times (imported without "
                         "per-token times); TTFT, TPOT and E2E cover every request")
    if c["left_out_uncut"]:
        lines.append(f"- left out: {c['left_out_uncut']:,} requests whose series without per-token times would need a cut "
                     "to the other run's shorter length")
    return lines
