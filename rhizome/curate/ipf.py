"""IPF weighting: rake per-example weights so weighted theme (and source) marginals hit a target.

Each margin is a membership matrix A (examples x categories, rows summing to 1) and a target
total per category. An example with three themes belongs to each with share 1/3, so every
margin partitions the total weight. One sweep visits the margins in turn and multiplies each
weight by its categories' correction factors T_k / M_k; with fractional membership the factors
are combined geometrically (generalised iterative scaling), which for 0/1 membership is exactly
classic IPF (Deming & Stephan 1940). Targets for themes are the found frequencies tempered by
alpha: T_k ~ n_k ** alpha (1 = as found, 0 = uniform). Every update is clipped to a weight band
(bounded raking), and raking stops early once the error stalls, i.e. when the targets cannot be
met inside the band; the report gives iterations, the final max relative marginal error, whether
it stalled, the weight range and Kish's effective sample size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix

OTHER, NONE = "(other)", "(none)"
PATIENCE = 25  # sweeps without a 0.1% gain before raking gives up on unreachable targets
STALL = 1e-3


@dataclass
class RakeResult:
    weights: np.ndarray
    iterations: int
    max_error: float
    converged: bool
    history: list[float] = field(default_factory=list)
    stalled: bool = False  # stopped early: the targets are out of reach


def membership(labels: list[list[str]], categories: list[str]) -> csr_matrix:
    """Rows summing to 1 over `categories`; unknown labels go to (other), none to (none)."""
    col = {c: j for j, c in enumerate(categories)}
    rows, cols, vals = [], [], []
    for i, labs in enumerate(labels):
        mapped = [col.get(l, col.get(OTHER)) for l in labs] or [col.get(NONE)]
        mapped = [m for m in mapped if m is not None]
        for j, v in _shares(mapped).items():
            rows.append(i)
            cols.append(j)
            vals.append(v)
    return csr_matrix((vals, (rows, cols)), shape=(len(labels), len(categories)))


def _shares(cols: list[int]) -> dict[int, float]:
    """Equal shares of one example over its categories (a repeated category counts twice)."""
    out: dict[int, float] = {}
    for c in cols:
        out[c] = out.get(c, 0.0) + 1.0 / len(cols)
    return out


def tempered_targets(found: np.ndarray, alpha: float, total: float) -> np.ndarray:
    """Targets proportional to found ** alpha, summing to `total`; empty categories stay 0."""
    found = np.asarray(found, dtype=np.float64)
    shaped = np.where(found > 0, np.power(np.maximum(found, 1e-300), alpha), 0.0)
    return shaped * (total / shaped.sum()) if shaped.sum() > 0 else shaped


def marginal_error(margins: list[tuple[csr_matrix, np.ndarray]], w: np.ndarray) -> float:
    """Largest relative gap |M_k / T_k - 1| over every category with a positive target."""
    worst = 0.0
    for A, target in margins:
        current = A.T @ w
        pos = target > 0
        if pos.any():
            worst = max(worst, float(np.max(np.abs(current[pos] / target[pos] - 1.0))))
    return worst


def rake(margins: list[tuple[csr_matrix, np.ndarray]], weights: np.ndarray | None = None,
         max_iter: int = 200, tol: float = 1e-3, band: tuple[float, float] | None = None,
         patience: int = PATIENCE) -> RakeResult:
    """Sweep over the margins until every marginal is within `tol` (relative).

    With `band` = (lo, hi), every update is clipped into it (bounded raking), so the weights never
    leave the band and the fit is the closest one inside it. When `patience` sweeps in a row cut
    the error by less than 0.1%, the targets cannot be met (inside the band, or at all: themes
    that always co-occur can ask for contradictory totals); raking stops there, `stalled`, and
    the best weights seen are returned rather than sweeping on to `max_iter` for nothing.
    """
    n = margins[0][0].shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    history: list[float] = []
    best_error, best_w, best_at = np.inf, w, 0
    for it in range(1, max_iter + 1):
        for A, target in margins:
            current = A.T @ w
            ratio = np.where((current > 0) & (target > 0), target / np.where(current > 0, current, 1.0), 1.0)
            w = w * np.exp(A @ np.log(ratio))
            if band is not None:
                w = np.clip(w, *band)
        history.append(marginal_error(margins, w))
        if history[-1] < best_error * (1 - STALL):
            best_at = it
        if history[-1] < best_error:
            best_error, best_w = history[-1], w
        if best_error <= tol:
            return RakeResult(best_w, it, best_error, True, history)
        if it - best_at >= patience:
            return RakeResult(best_w, it, best_error, False, history, stalled=True)
    return RakeResult(best_w, max_iter, best_error if history else 0.0, False, history)


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's ESS: (sum w)^2 / sum w^2."""
    w = np.asarray(w, dtype=np.float64)
    return float(w.sum() ** 2 / (w * w).sum()) if w.size and (w * w).sum() > 0 else 0.0


def entropy(p: np.ndarray) -> tuple[float, float]:
    """Shannon entropy in bits and its normalised value (1 = perfectly even)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0] / p[p > 0].sum() if (p > 0).any() else p[:0]
    h = float(-(p * np.log2(p)).sum()) if p.size else 0.0
    return h, (h / np.log2(p.size) if p.size > 1 else 1.0)


def distribution(A: csr_matrix, w: np.ndarray, categories: list[str]) -> dict:
    """Weighted share of each category; entropy over the named categories, whose balance IPF
    changes ((other)/(none) keep their mass and are reported as `pooled_share`)."""
    mass = A.T @ w
    share = mass / mass.sum() if mass.sum() > 0 else mass
    named = np.array([c not in (OTHER, NONE) for c in categories], dtype=bool)
    h, hn = entropy(share[named]) if named.any() else (0.0, 1.0)
    return {"shares": {c: round(float(s), 6) for c, s in zip(categories, share)}, "entropy_bits": h,
            "normalized_entropy": hn, "pooled_share": float(share[~named].sum())}


def cooccurrence(theme_lists: list[list[str]], top: list[str]) -> dict:
    """Co-occurrence counts and PMI (log2 p(a,b) / p(a)p(b)) of the `top` themes."""
    col = {t: j for j, t in enumerate(top)}
    n = max(len(theme_lists), 1)
    rows, cols = [], []
    for i, themes in enumerate(theme_lists):
        for t in themes:
            if t in col:
                rows.append(i)
                cols.append(col[t])
    X = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(theme_lists), len(top)))
    X.data[:] = 1.0
    counts = (X.T @ X).toarray()
    p = np.diag(counts) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log2((counts / n) / np.outer(p, p))
    pmi_out = [[round(float(v), 4) if np.isfinite(v) else None for v in row] for row in pmi]
    return {"themes": top, "counts": counts.astype(int).tolist(), "pmi": pmi_out}


def theme_targets(found: np.ndarray, categories: list[str], alpha: float) -> np.ndarray:
    """Tempered targets for named themes; the pooled (other)/(none) keep their found mass,
    since they stand for many rare themes rather than one common one."""
    pooled = np.array([c in (OTHER, NONE) for c in categories], dtype=bool)
    target = found.astype(np.float64).copy()
    named = ~pooled
    if named.any() and found[named].sum() > 0:
        target[named] = tempered_targets(found[named], alpha, found[named].sum())
    return target


def theme_categories(theme_lists: list[list[str]], max_themes: int) -> list[str]:
    """The most frequent themes (seen twice at least, past 20 examples), then the pools needed."""
    counts: dict[str, int] = {}
    for themes in theme_lists:
        for t in themes:
            counts[t] = counts.get(t, 0) + 1
    min_count = 2 if len(theme_lists) >= 20 else 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_themes]
    named = [t for t, c in ranked if c >= min_count]
    known = set(named)
    pooled = [OTHER] * any(t not in known for ts in theme_lists for t in ts)
    return named + pooled + [NONE] * any(not ts for ts in theme_lists)


def weigh_examples(theme_lists: list[list[str]], sources: list[str], *, max_themes: int, theme_temperature: float,
                   source_temperature: float, w_min: float, w_max: float, max_iter: int, tol: float) -> tuple[np.ndarray, dict]:
    """IPF weights (mean about 1, inside [w_min, w_max]) and the report for dataset_metadata.json."""
    n = len(theme_lists)
    categories = theme_categories(theme_lists, max_themes)
    A = membership(theme_lists, categories)
    found = np.asarray(A.sum(axis=0)).ravel()
    src_cats = sorted(set(sources))
    S = membership([[s] for s in sources], src_cats)
    src_found = np.asarray(S.sum(axis=0)).ravel()
    margins = [(A, theme_targets(found, categories, theme_temperature)),
               (S, tempered_targets(src_found, source_temperature, n))]
    result = rake(margins, max_iter=max_iter, tol=tol, band=(w_min, w_max))
    w = result.weights
    report = {
        "iterations": result.iterations, "max_marginal_error": result.max_error, "converged": result.converged,
        "stalled": result.stalled, "tolerance": tol, "categories": len(categories),
        "weight_min": float(w.min()), "weight_max": float(w.max()), "weight_mean": float(w.mean()),
        "trim_band": [w_min, w_max],
        "trimmed": int(((w <= w_min + 1e-12) | (w >= w_max - 1e-12)).sum()),
        "ess": effective_sample_size(w), "ess_ratio": effective_sample_size(w) / n if n else 0.0,
        "error_history": [round(e, 6) for e in result.history[:: max(1, len(result.history) // 50)]],
        "weight_histogram": _histogram(w, w_min, w_max),
        "theme_targets": {c: float(t) for c, t in zip(categories, margins[0][1])},
        "source_targets": {c: float(t) for c, t in zip(src_cats, margins[1][1])},
    }
    report["themes_before"] = distribution(A, np.ones(n), categories)
    report["themes_after"] = distribution(A, w, categories)
    report["sources_before"] = distribution(S, np.ones(n), src_cats)
    report["sources_after"] = distribution(S, w, src_cats)
    return w, report


def _histogram(w: np.ndarray, lo: float, hi: float) -> dict:
    counts, edges = np.histogram(w, bins=20, range=(lo, hi))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}
