"""Offline fold study on the committed H100 bundles: the old fold, and variants of a scaled fold, on raw rows
reconstructed from the folded ones (see context/h100-experiment-runbook.md, "Offline study of the profile fold")."""
import shutil, sys
from pathlib import Path
import numpy as np, pandas as pd
from scipy.optimize import lsq_linear, linprog
import common
from gpu_simulate_test.vidur_ext.profiler.fold import DECODE_BATCHING_OVERHEAD
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

STATS = ("median", "mean", "min", "max")
FLOOR = 1e-6

def extras(cfg, meta, m, a):
    o, L = meta["overhead_fit"], cfg.model.num_layers
    gqa = cfg.model.num_attention_heads > cfg.model.num_kv_heads
    ex_add = (o["c_iter_ms"] + o["c_token_ms"] * m.num_tokens.to_numpy()) / L
    b = a.batch_size.to_numpy()
    fac = np.where((b > 1) & gqa, 1 + DECODE_BATCHING_OVERHEAD, 1.0)
    ex_dec = o["c_decode_ms"] * b / fac / L
    ex_pre = np.full(len(a), o["c_prefill_ms"] / L)
    return ex_add, ex_dec, ex_pre

def unfold(cfg, meta, m, a, mode):
    """Raw rows: folded - extra where not floored; floored cells imputed (low: ~0, high: largest value consistent
    with the floor, mid: a plausible launch-bound value clipped to that bound)."""
    m, a = m.copy(), a.copy()
    ex_add, ex_dec, ex_pre = extras(cfg, meta, m, a)
    dec, pre = ~a.is_prefill.to_numpy(), a.is_prefill.to_numpy()
    n_floored = {}
    for df, op, rows, ex in ((m, "add", np.ones(len(m), bool), ex_add), (a, "attn_decode", dec, ex_dec), (a, "attn_prefill", pre, ex_pre)):
        col0 = df[f"time_stats.{op}.median"].to_numpy()
        recovered = (col0 > 1.5 * FLOOR) & rows
        raw_med = col0 - ex
        for s in STATS:
            c = f"time_stats.{op}.{s}"
            v = df[c].to_numpy().astype(float)
            ok = (v > 1.5 * FLOOR) & rows
            fl = (~ok) & rows
            upper = np.maximum(FLOOR - ex, FLOOR)
            if mode == "low":
                imp = np.full(len(v), FLOOR)
            elif mode == "high":
                imp = upper
            else:
                if op == "attn_prefill":  # the same attention function's raw batch-1 decode time (launch-bound)
                    d1 = (a.loc[dec & (a.batch_size == 1).to_numpy(), "time_stats.attn_decode.median"].to_numpy()
                          - ex_dec[dec & (a.batch_size == 1).to_numpy()])
                    guess = float(np.median(d1))
                else:
                    guess = float(np.median(raw_med[recovered])) if recovered.any() else FLOOR
                imp = np.minimum(np.full(len(v), guess), upper)
            out = np.where(ok, v - ex, np.where(fl, imp, v))
            df[c] = np.maximum(out, FLOOR) if s != "std" else v
            if s == "median":
                n_floored[op] = int(fl.sum())
    return m, a, n_floored

def write(cfg, src, dst, m, a):
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    m.to_csv(dst / "mlp.csv", index=False)
    a.to_csv(dst / "attention.csv", index=False)

def feats(s, kv_term):
    f = [1.0, float(s.num_tokens), float(s.decode_batch), 1.0 if s.prefill_tokens else 0.0]
    if kv_term:
        f.append(float(s.decode_batch * s.decode_kv))
    return f

def fit(shapes, y, raw, *, scale, kv_term, loss, nonneg_add):
    """coef = [a, c_iter, c_token, c_decode, c_prefill, (c_kv)]; loss 'ls' | 'rel' (least squares on relative
    error) | 'l1rel' (least absolute relative error, LP)."""
    X = np.array([feats(s, kv_term) for s in shapes])
    y, raw = np.asarray(y), np.asarray(raw)
    A = np.column_stack([raw, X]) if scale else X
    t = y if scale else y - raw
    w = 1 / y if loss in ("rel", "l1rel") else np.ones_like(y)
    k = A.shape[1]
    lo = np.full(k, -np.inf)
    if scale:
        lo[0] = 0.0
    if nonneg_add:
        lo[1 if scale else 0:] = 0.0
    if loss == "l1rel":
        # min sum |w (A c - t)|: variables c (k) and e (n) >= |.|
        n = len(y)
        cobj = np.concatenate([np.zeros(k), np.ones(n)])
        Aw = A * w[:, None]; tw = t * w
        A_ub = np.block([[Aw, -np.eye(n)], [-Aw, -np.eye(n)]])
        b_ub = np.concatenate([tw, -tw])
        bounds = [(None if np.isinf(l) else l, None) for l in lo] + [(0, None)] * n
        r = linprog(cobj, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        coef = r.x[:k]
    else:
        r = lsq_linear(A * w[:, None], t * w, bounds=(lo, np.full(k, np.inf)))
        coef = r.x
    return (coef if scale else np.concatenate([[1.0], coef]))

def refold(cfg, m, a, coef, kv_term):
    L = cfg.model.num_layers
    gqa = cfg.model.num_attention_heads > cfg.model.num_kv_heads
    s, ci, ct, cd, cp = coef[:5]
    ck = coef[5] if kv_term else 0.0
    m, a = m.copy(), a.copy()
    tcols = [c for c in list(m.columns) + list(a.columns) if c.startswith("time_stats.") and not c.endswith(".std")]
    for df in (m, a):
        for c in df.columns:
            if c.startswith("time_stats."):
                df[c] = df[c] * s  # std scales too
    def add(df, op, rows, extra):
        for st in STATS:
            c = f"time_stats.{op}.{st}"
            df.loc[rows, c] = np.maximum(df.loc[rows, c].to_numpy() + extra, FLOOR)
    add(m, "add", np.ones(len(m), bool), (ci + ct * m.num_tokens.to_numpy()) / L)
    dec = ~a.is_prefill.to_numpy()
    b = a.loc[dec, "batch_size"].to_numpy(); kv = a.loc[dec, "kv_cache_size"].to_numpy()
    fac = np.where((b > 1) & gqa, 1 + DECODE_BATCHING_OVERHEAD, 1.0)
    add(a, "attn_decode", dec, (cd * b + ck * b * kv) / fac / L)
    pre = a.is_prefill.to_numpy()
    add(a, "attn_prefill", pre, np.full(int(pre.sum()), cp / L))
    return m, a

def main():
    work = Path("/tmp/fold_study/work")
    variants = {
        "additive (current)": dict(scale=False, kv_term=False, loss="ls", nonneg_add=False),
        "scale+ls": dict(scale=True, kv_term=False, loss="ls", nonneg_add=False),
        "scale+ls+nn": dict(scale=True, kv_term=False, loss="ls", nonneg_add=True),
        "scale+rel+nn": dict(scale=True, kv_term=False, loss="rel", nonneg_add=True),
        "scale+l1rel+nn": dict(scale=True, kv_term=False, loss="l1rel", nonneg_add=True),
        "scale+ls+kv+nn": dict(scale=True, kv_term=True, loss="ls", nonneg_add=True),
        "scale+rel+kv+nn": dict(scale=True, kv_term=True, loss="rel", nonneg_add=True),
        "scale+l1rel+kv+nn": dict(scale=True, kv_term=True, loss="l1rel", nonneg_add=True),
    }
    modes = sys.argv[1].split(",") if len(sys.argv) > 1 else ["mid", "low", "high"]
    rows = []
    for backend in common.BUNDLES:
        cfg, d, meta, m0, a0, it = common.load(backend)
        predict = common.vidur_predict(cfg)
        fit_it, held_it = it[it.role == "fit"], it[it.role == "held_out"]
        fit_s = [BatchShape.parse(s) for s in fit_it["shape"]]
        held_s = [BatchShape.parse(s) for s in held_it["shape"]]
        fy, hy = (fit_it.median_ns / 1e6).to_numpy(), (held_it.median_ns / 1e6).to_numpy()
        folded_fit = np.array(predict(d, fit_s))
        for mode in modes:
            m, a, nfl = unfold(cfg, meta, m0, a0, mode)
            raw_dir = work / backend / mode / "raw"
            write(cfg, d, raw_dir, m, a)
            raw_fit = np.array(predict(raw_dir, fit_s)); raw_held = np.array(predict(raw_dir, held_s))
            print(f"\n=== {backend} [{mode}] floored cells imputed: {nfl}")
            if mode == modes[0]:
                o = meta["overhead_fit"]
                intended = raw_fit + np.array([[1, s.num_tokens, s.decode_batch, 1.0 if s.prefill_tokens else 0] for s in fit_s]) @ np.array(
                    [o["c_iter_ms"], o["c_token_ms"], o["c_decode_ms"], o["c_prefill_ms"]])
                t = pd.DataFrame({"shape": [str(s) for s in fit_s], "measured": fy, "raw_vidur": raw_fit,
                                  "raw+fit (intended)": intended, "folded bundle": folded_fit})
                t2 = pd.DataFrame({"shape": [str(s) for s in held_s], "measured": hy, "raw_vidur": raw_held})
                print("fit shapes (ms):\n" + t.round(2).to_string(index=False))
                print("held-out shapes (ms):\n" + t2.round(2).to_string(index=False))
            for vname, v in variants.items():
                coef = fit(fit_s, fy, raw_fit, **v)
                m2, a2 = refold(cfg, m, a, coef, v["kv_term"])
                out = work / backend / mode / vname.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
                write(cfg, d, out, m2, a2)
                ph = np.array(predict(out, held_s)); pf = np.array(predict(out, fit_s))
                err = 100 * (ph - hy) / hy; ferr = 100 * (pf - fy) / fy
                rows.append({"backend": backend, "imputation": mode, "fold": vname, "a": coef[0],
                             "c_iter": coef[1], "c_token": coef[2], "c_decode": coef[3], "c_prefill": coef[4],
                             "c_kv": coef[5] if v["kv_term"] else np.nan,
                             "fit_med_abs_err": np.median(np.abs(ferr)), "held_med_abs_err": np.median(np.abs(err)),
                             "held_errors": " ".join(f"{s}:{e:+.1f}" for s, e in zip(held_it["shape"], err))})
                print(f"{vname:20s} a={coef[0]:.3f} c={np.round(coef[1:], 4).tolist()} fit med|err|={np.median(np.abs(ferr)):.1f}% "
                      f"HELD-OUT med|err|={np.median(np.abs(err)):.1f}%  [{rows[-1]['held_errors']}]")
    pd.DataFrame(rows).to_csv("/tmp/fold_study/results.csv", index=False)

if __name__ == "__main__":
    main()
