"""Fits BG/NBD and Gamma-Gamma with `lifetimes` on a CDNOW-style summary (x, t_x, T, zbar),
for `parcours bench measure` to set beside its own fit. Prints one JSON object: the
parameters, the log-likelihood and the seconds each fit took (reading the file excluded)."""

import json
import sys
import time
import warnings

import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter

warnings.simplefilter("ignore")
data = pd.read_csv(sys.argv[1])
repeat = data[data["x"] > 0]

started = time.perf_counter()
bg = BetaGeoFitter(penalizer_coef=0.0)
bg.fit(data["x"], data["t_x"], data["T"])
bg_seconds = time.perf_counter() - started

started = time.perf_counter()
gg = GammaGammaFitter(penalizer_coef=0.0)
gg.fit(repeat["x"], repeat["zbar"])
gg_seconds = time.perf_counter() - started

print(json.dumps({
    "bg_nbd": {k: float(v) for k, v in bg.params_.items()},
    "log_likelihood": float(bg._negative_log_likelihood_ * -1 * len(data))
        if hasattr(bg, "_negative_log_likelihood_") else None,
    "gamma_gamma": {k: float(v) for k, v in gg.params_.items()},
    "bg_nbd_seconds": bg_seconds,
    "gamma_gamma_seconds": gg_seconds,
}))
