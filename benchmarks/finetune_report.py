"""The tables `benchmarks/finetune.py` prints: per fold, pooled over every test pixel, and rsneo's margins."""

from __future__ import annotations

import numpy as np
from scipy import stats


def pooled(rows: list[dict]) -> dict[str, float]:
    """F1, IoU, precision, recall of the class of interest over every test pixel of `rows`."""
    tp, fp, fn, _ = np.sum([r["counts"] for r in rows], axis=0)
    return {
        "f1": 2 * tp / max(2 * tp + fp + fn, 1), "iou": tp / max(tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
    }  # fmt: skip


def report(rows: list[dict]) -> str:
    """Per fold and pooled tables, rsneo's margin over each peer (and over the peer given rsneo's cut)."""
    lines = []
    rows = rows + [r | {"method": f"{r['method']}+cut", "scores": r["scores_cut"], "counts": r["counts_cut"]}
                   for r in rows if "scores_cut" in r]  # fmt: skip
    for set_name in dict.fromkeys(r["set"] for r in rows):
        mine = [r for r in rows if r["set"] == set_name]
        lines.append(f"\n## {set_name}")
        columns = ["fold", "method", "train CPU s", "F1", "IoU", "precision", "recall", "kappa",
                   "boundary F1", "small-object recall"]  # fmt: skip
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + " --- |" * len(columns))
        for r in sorted(mine, key=lambda r: (r["fold"], r["method"])):
            s = r["scores"]
            keys = ("f1", "iou", "precision", "recall", "kappa", "boundary_f1", "small_object_recall")
            values = [str(r["fold"]), r["method"], f"{r['train_cpu_s']:.0f}", *(f"{s[k]:.3f}" for k in keys)]
            lines.append("| " + " | ".join(values) + " |")
        methods = list(dict.fromkeys(r["method"] for r in mine))
        folds = sorted({r["fold"] for r in mine})
        lines.append("\npooled over every test pixel of the folds run:")
        for method in methods:
            p = pooled([r for r in mine if r["method"] == method])
            lines.append(f"- {method}: F1 {p['f1']:.3f}, IoU {p['iou']:.3f}, precision {p['precision']:.3f}, "
                         f"recall {p['recall']:.3f}")  # fmt: skip
        for peer in (m for m in methods if m != "rsneo"):
            margins = []
            for fold in folds:
                a = [r for r in mine if r["fold"] == fold and r["method"] == "rsneo"]
                b = [r for r in mine if r["fold"] == fold and r["method"] == peer]
                if a and b:  # several seeds: the means of their runs
                    lead = np.mean([r["scores"]["f1"] for r in a]) - np.mean([r["scores"]["f1"] for r in b])
                    margins.append(f"fold {fold} {lead:+.3f}")
            ran = [{r["fold"] for r in mine if r["method"] == m} for m in ("rsneo", peer)]
            both = [r for r in mine if r["method"] in ("rsneo", peer) and r["fold"] in ran[0] & ran[1]]
            a = pooled([r for r in both if r["method"] == "rsneo"]) if both else None
            b = pooled([r for r in both if r["method"] == peer]) if both else None
            if a and b:
                margins.append(f"pooled {a['f1'] - b['f1']:+.3f}")
            if margins:
                lines.append(f"rsneo - {peer} (F1): {', '.join(margins)}")
    return "\n".join(lines + seed_summary(rows))


def seed_summary(rows: list[dict]) -> list[str]:
    """Where a set and fold ran with several seeds: each method's mean score (IoU on Sen1Floods11, change F1
    on LEVIR-CD) and rsneo's lead over each peer, paired by seed, with a 95 % t-interval of the mean lead.

    Why paired: a seed draws the same chips and validation for both methods. Why an interval: under a CPU
    budget one seed does not pin a run (the schedule follows CPU time), so three runs say little alone."""
    lines = []
    runs = [r for r in rows if "+cut" not in r["method"]]
    for key in dict.fromkeys((r["set"], r["fold"], tuple(r.get("overrides", []))) for r in runs):
        metric = "f1" if key[0] == "levir" else "iou"
        scores: dict[str, dict[int, float]] = {}
        for r in runs:
            if (r["set"], r["fold"], tuple(r.get("overrides", []))) == key:
                scores.setdefault(r["method"], {})[r.get("seed", 0)] = r["scores"][metric]
        mine = scores.get("rsneo", {})
        for peer in (m for m in scores if m != "rsneo"):
            seeds = sorted(set(mine) & set(scores[peer]))
            if len(seeds) < 2:
                continue
            lead = np.array([mine[s] - scores[peer][s] for s in seeds])
            half = stats.t.ppf(0.975, len(seeds) - 1) * lead.std(ddof=1) / np.sqrt(len(seeds))
            overrides = f" ({', '.join(key[2])})" if key[2] else ""
            a, b = (np.mean([scores[m][s] for s in seeds]) for m in ("rsneo", peer))
            low, high = lead.mean() - half, lead.mean() + half
            lines.append(
                f"{key[0]} fold {key[1]}{overrides}, {metric}, seeds {seeds}: rsneo {a:.3f}, {peer} {b:.3f}; "
                f"lead {lead.mean():+.3f} (95 % interval {low:+.3f} to {high:+.3f}), "
                f"ahead in {(lead > 0).sum()} of {len(seeds)}"
            )
    return ["\nover seeds (paired):", *lines] if lines else []
