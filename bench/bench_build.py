"""Benchmark of `build`: time per stage, build vs one embedding pass, scaling, dedup accuracy.

    python bench/bench_build.py --messages 50000 --scale-base 5000

1. Generates (or reuses) the synthetic corpus of `bench/gen_corpus.py` in `bench/out/`.
2. Times one plain embedding pass (`SentenceTransformer.encode`) over the corpus's distinct
   message texts (or a random sample, scaled linearly): the reference the issue sets (build <=
   1.3 x this). Wall and process CPU time are both recorded: CPU time is what the build costs
   even when other jobs share the cores.
3. Runs `build_dataset` from a cold start (no embedding cache) and records each stage.
4. Scores dedup against the planted duplicates: recall (a planted copy removed as a duplicate of
   its twin) and false removal (examples removed as duplicates of something that is not their
   planted twin, over the distinct examples).
5. Scaling: dedup + themes time at `--scale-base` messages vs the full corpus (warm cache, so
   only those stages differ), best of two runs each.
Results go to `bench/out/build_results.json` and are printed as a Markdown block.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rhizome.config import BuildConfig  # noqa: E402
from rhizome.curate import build_dataset  # noqa: E402
from rhizome.curate.clean import clean_text  # noqa: E402
from rhizome.models import load_embedder  # noqa: E402
from rhizome.records import stable_id  # noqa: E402
from rhizome.workspace import Workspace, read_json, read_jsonl, write_json, write_jsonl  # noqa: E402


def make_corpus(folder: Path, messages: int, seed: int) -> Workspace:
    if not (folder / "corpus.jsonl").is_file():
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_corpus.py"), "--messages", str(messages),
                        "--seed", str(seed), "--out", str(folder)], check=True)
    return Workspace(folder).ensure()


def reset(ws: Workspace, keep_cache: bool) -> None:
    for folder in ([] if keep_cache else [ws.embeddings]) + [ws.dataset, ws.memory]:
        shutil.rmtree(folder, ignore_errors=True)
    ws.ensure()


def corpus_texts(ws: Workspace) -> list[str]:
    """Distinct message texts after cleaning: exactly what the build has to embed."""
    seen: dict[str, None] = {}
    for rec in read_jsonl(ws.corpus):
        for m in rec.get("messages") or []:
            seen.setdefault(clean_text(m["content"]), None)
    return [t for t in seen if t]


def time_embedding(texts: list[str], sample: int, seed: int) -> dict:
    """Wall and CPU seconds of one plain embedding pass over `texts` (or a random sample of them,
    scaled up linearly: encoding cost is linear in the number of texts of a given length mix)."""
    model = load_embedder()
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # load + warm up, untimed
    chosen = random.Random(seed).sample(texts, sample) if 0 < sample < len(texts) else texts
    wall, cpu = time.perf_counter(), time.process_time()
    model.encode(chosen, batch_size=64, normalize_embeddings=True)
    scale = len(texts) / len(chosen)
    return {"texts": len(texts), "measured_on": len(chosen), "wall_s": (time.perf_counter() - wall) * scale,
            "cpu_s": (time.process_time() - cpu) * scale}


def reference_embedding(ws: Workspace, texts: list[str], args: argparse.Namespace) -> dict:
    """The embedding reference, measured once per corpus and kept in `embed_reference.json`
    (it costs as much as the build itself); `--remeasure` measures it again."""
    saved = ws.root / "embed_reference.json"
    if saved.is_file() and not args.remeasure:
        embed = read_json(saved)
        if embed.get("texts") == len(texts) and embed.get("sample") == args.baseline_sample:
            return embed
    print(f"embedding {len(texts)} distinct texts once ...", flush=True)
    embed = {**time_embedding(texts, args.baseline_sample, args.seed), "sample": args.baseline_sample,
             "date": time.strftime("%Y-%m-%d %H:%M")}
    write_json(saved, embed)
    return embed


def timed_build(ws: Workspace) -> tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    meta = build_dataset(ws, BuildConfig())
    return meta, time.perf_counter() - wall, time.process_time() - cpu


def score_dedup(ws: Workspace) -> dict:
    """Planted-duplicate recall and false removal, example by example, from the build's files."""
    truth = read_json(ws.root / "truth.json")
    rows = [r for split in ("train", "validation", "test") for r in read_jsonl(ws.split_path(split, detailed=True))]
    rows += list(read_jsonl(ws.dataset / "dropped_detailed.jsonl"))
    turns: dict[str, list[int]] = {}
    for r in rows:
        turns.setdefault(r["origin"]["record_id"], []).append(r["origin"].get("turn"))
    twin: dict[str, str] = {}
    near_pairs = []
    for kind in ("near_duplicates", "exact_duplicates"):
        for a, b in truth[kind]:
            for turn in set(turns.get(a, [])) & set(turns.get(b, [])):
                ea, eb = stable_id(a, "turn", turn), stable_id(b, "turn", turn)
                twin[ea], twin[eb] = eb, ea
                if kind == "near_duplicates":
                    near_pairs.append((ea, eb))
    removed = {r["id"]: r["dropped"].get("duplicate_of") for r in rows
               if r.get("dropped", {}).get("stage") == "dedup"}
    found = sum(1 for ea, eb in near_pairs if removed.get(eb) == ea or removed.get(ea) == eb)
    false = sum(1 for i, of in removed.items() if twin.get(i) != of)
    copies = {eb for ea, eb in twin.items() if ea < eb}  # one side of each planted pair
    distinct = sum(1 for r in rows if r["id"] not in copies)
    return {"planted_near_duplicate_examples": len(near_pairs), "found": found,
            "recall": found / max(1, len(near_pairs)), "removed_by_dedup": len(removed),
            "false_removed": false, "distinct_examples": distinct, "false_removal_rate": false / max(1, distinct)}


def subset(big: Workspace, folder: Path, messages: int) -> Workspace:
    """The first conversations of the big corpus up to `messages`, sharing its embedding cache."""
    small = Workspace(folder).ensure()
    rows, count = [], 0
    for rec in read_jsonl(big.corpus):
        if count >= messages:
            break
        rows.append(rec)
        count += len(rec["messages"])
    write_jsonl(small.corpus, rows)
    ids = {r["id"] for r in rows}
    truth = read_json(big.root / "truth.json")
    for key in ("near_duplicates", "exact_duplicates"):
        truth[key] = [p for p in truth[key] if p[0] in ids and p[1] in ids]
    write_json(small.root / "truth.json", truth)
    shutil.rmtree(small.embeddings, ignore_errors=True)
    shutil.copytree(big.embeddings, small.embeddings)
    return small


def stage_time(meta: dict) -> float:
    return meta["timings"]["dedup"] + meta["timings"]["themes"]


def main() -> None:
    ap = argparse.ArgumentParser(description="build benchmark")
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--scale-base", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-sample", type=int, default=10_000,
                    help="texts timed for the embedding reference (0 = all of them)")
    ap.add_argument("--remeasure", action="store_true", help="measure the embedding reference again")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    ws = make_corpus(out / f"ws{args.messages}", args.messages, args.seed)
    texts = corpus_texts(ws)
    embed = reference_embedding(ws, texts, args)
    print(f"  embedding reference: {embed}", flush=True)
    reset(ws, keep_cache=False)
    cold, build_wall, build_cpu = timed_build(ws)
    print(f"cold build {build_wall:.1f} s wall, {build_cpu:.1f} s cpu: {cold['timings']}", flush=True)
    accuracy = score_dedup(ws)
    print(f"dedup: {accuracy}", flush=True)
    reset(ws, keep_cache=True)
    warm, warm_wall, warm_cpu = timed_build(ws)
    small = subset(ws, out / f"ws{args.scale_base}", args.scale_base)
    small_runs = [build_dataset(small, BuildConfig()) for _ in range(2)]
    t_small = min(stage_time(m) for m in small_runs)
    t_big = min(stage_time(cold), stage_time(warm))
    results = {
        "date": time.strftime("%Y-%m-%d"), "messages": args.messages, "distinct_texts": len(texts),
        "examples": cold["examples"], "counts": cold["counts"], "drops": cold["drops"], "embed_once": embed,
        "build_cold": {"wall_s": build_wall, "cpu_s": build_cpu},
        "build_over_embed": {"wall": build_wall / embed["wall_s"], "cpu": build_cpu / embed["cpu_s"]},
        "build_warm_cache": {"wall_s": warm_wall, "cpu_s": warm_cpu},
        "stage_timings_cold": cold["timings"], "stage_timings_warm": warm["timings"], "dedup_accuracy": accuracy,
        "scaling": {"base_messages": args.scale_base, "base_examples": small_runs[0]["counts"]["total"],
                    "dedup_themes_base_s": t_small, "dedup_themes_full_s": t_big, "ratio": t_big / t_small,
                    "size_ratio": args.messages / args.scale_base},
        "ipf": {k: cold["ipf"][k] for k in ("iterations", "max_marginal_error", "converged", "weight_min",
                                            "weight_max", "ess", "ess_ratio")},
        "themes_entropy": {"before": cold["themes"]["before_ipf"]["normalized_entropy"],
                           "after": cold["themes"]["after_ipf"]["normalized_entropy"]},
    }
    write_json(out / "build_results.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
