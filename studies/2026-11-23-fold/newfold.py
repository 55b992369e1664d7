"""Held-out check of the library's new fold (fold.fit_overhead + fold.fold) on the committed H100 bundles, raw rows
reconstructed as in study.py (mid / low / high imputation of the cells the old fold clipped)."""
import sys
from pathlib import Path
import numpy as np
import common, study
from gpu_simulate_test.vidur_ext.profiler.fold import fit_overhead, fold
from gpu_simulate_test.vidur_ext.profiler.shapes import BatchShape

for backend in common.BUNDLES:
    cfg, d, meta, m0, a0, it = common.load(backend)
    predict = common.vidur_predict(cfg)
    fit_it, held_it = it[it.role == "fit"], it[it.role == "held_out"]
    fit_s = [BatchShape.parse(s) for s in fit_it["shape"]]; held_s = [BatchShape.parse(s) for s in held_it["shape"]]
    fy, hy = (fit_it.median_ns / 1e6).to_numpy(), (held_it.median_ns / 1e6).to_numpy()
    for mode in sys.argv[1].split(","):
        m, a, _ = study.unfold(cfg, meta, m0, a0, mode)
        raw_dir = Path("/tmp/fold_study/new") / backend / mode / "raw"
        study.write(cfg, d, raw_dir, m, a)
        o = fit_overhead(fit_s, list(fy), predict(raw_dir, fit_s))
        mf, af = fold(m, a, o, cfg.model.num_layers, True)
        out = raw_dir.parent / "folded"
        study.write(cfg, d, out, mf, af)
        p = np.array(predict(out, held_s + fit_s)); ph, pf = p[:len(held_s)], p[len(held_s):]
        err = 100 * (ph - hy) / hy
        print(f"{backend} [{mode}] {o} fit med|err| {np.median(np.abs(100 * (pf - fy) / fy)):.1f}% "
              f"HELD-OUT med|err| {np.median(np.abs(err)):.1f}%")
        for s, mm, pp, e in zip(held_it["shape"], hy, ph, err):
            print(f"| {s} | {mm:.2f} | {pp:.2f} | {e:+.1f}% |")
