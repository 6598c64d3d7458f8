"""The tables `benchmarks/finetune.py` prints: per fold, pooled over every test pixel, and rsneo's margins."""

from __future__ import annotations

import numpy as np


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
                if a and b:
                    margins.append(f"fold {fold} {a[0]['scores']['f1'] - b[0]['scores']['f1']:+.3f}")
            both = [
                r
                for r in mine
                if r["method"] in ("rsneo", peer)
                and any(
                    q["fold"] == r["fold"] and q["method"] != r["method"]
                    for q in mine
                    if q["method"] in ("rsneo", peer)
                )
            ]
            a = pooled([r for r in both if r["method"] == "rsneo"]) if both else None
            b = pooled([r for r in both if r["method"] == peer]) if both else None
            if a and b:
                margins.append(f"pooled {a['f1'] - b['f1']:+.3f}")
            lines.append(f"rsneo - {peer} (F1): {', '.join(margins)}")
    return "\n".join(lines)
