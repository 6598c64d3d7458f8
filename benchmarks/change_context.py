"""Experiment (issue #12 item 4, not shipped): a contextual magnitude term in the change combination.

The bundled change map is head_weight x vote + magnitude_weight x (m - T) / T + bias (`ChangeHead.combine`),
pixel by pixel. Here a third term is added: the change-vector magnitude averaged over a k x k
neighbourhood, relative to its own Otsu cut over the pair ((box(m) - T_k) / T_k), so that an isolated noisy or
misregistered pixel weighs less than a region that changed. The three weights, the bias (F1-maximising cut)
and k (3, 5 or 9: the best F1 on the fitting pixels) are fit exactly as `fit_combination` fits the shipped
numbers, on NAIP and Pucallpa pairs only (16 batches of 8, seed 1); then the fitted map is scored on the
change test pairs through `detect_change`, as `benchmarks/change.py` does. LEVIR-CD and Taizhou choose
nothing here.

Usage: OMP_NUM_THREADS=1 python benchmarks/change_context.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import change as bench  # noqa: E402  (benchmarks/change.py: the test pairs and their scoring)

SIZES = (3, 5, 9)


def box(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 1, H, W) -> its k x k neighbourhood mean (edges: the mean of the pixels inside)."""
    return F.avg_pool2d(magnitude, k, 1, k // 2, count_include_pad=False)


@torch.no_grad()
def fit(system, data: Path) -> dict[str, tuple[list[float], float, float]]:
    """name -> (weights, bias, F1 on the fitting pixels), for the shipped terms and each k."""
    from sklearn.linear_model import LogisticRegression

    from rsneo.baselines import otsu_threshold
    from rsneo.heads.change import magnitude_excess
    from rsneo.heads.features import image_features
    from rsneo.train.change import _f1, change_batch, change_pools, pair_magnitude

    head = system.change
    pools = change_pools(["naip_rgb", "naip_rgbn", "pucallpa"], data, system, 128, 64)
    generator = torch.Generator().manual_seed(1)
    columns: dict[str, list] = {"vote": [], "magnitude": [], **{f"context{k}": [] for k in SIZES}}
    labels = []
    for step in range(16):
        pool = pools[step % len(pools)]
        chosen = torch.randperm(len(pool), generator=generator)[:8].tolist()
        batch = change_batch([pool[i] for i in chosen], generator, system.model.config)
        if batch is None:
            continue
        features = image_features(system.model, batch.inputs, head.config.early_layer, frames=2)
        logit = head(features, 0, 1)[:, 1].float().cpu()
        magnitude = pair_magnitude(features.pixels)[:, None]  # (B, 1, H, W)
        smooth = {k: box(magnitude, k)[:, 0] for k in SIZES}
        for i in range(magnitude.shape[0]):
            known = batch.labels[i] >= 0
            m = magnitude[i, 0]
            columns["vote"].append((torch.sigmoid(logit[i]) - 0.5)[known])
            columns["magnitude"].append(magnitude_excess(m, otsu_threshold(m.numpy().ravel()))[known])
            for k in SIZES:
                s = smooth[k][i]
                columns[f"context{k}"].append(magnitude_excess(s, otsu_threshold(s.numpy().ravel()))[known])
            labels.append(batch.labels[i][known])
    y = torch.cat(labels).numpy() == 1
    x_all = {name: torch.cat(values).numpy() for name, values in columns.items()}
    out = {}
    for names in (["vote", "magnitude"], *[["vote", "magnitude", f"context{k}"] for k in SIZES]):
        x = np.stack([x_all[n] for n in names], 1)
        regression = LogisticRegression(C=1.0, max_iter=500).fit(x, y)
        score = x @ regression.coef_[0] + regression.intercept_[0]
        cuts = np.quantile(score, np.linspace(0.02, 0.98, 97))
        best = max(cuts, key=lambda t: _f1(score > t, y))
        out["+".join(names)] = (regression.coef_[0].tolist(), float(regression.intercept_[0] - best),
                                _f1(score > best, y))  # fmt: skip
    return out


def contextual(k: int, weights: list[float], bias: float):
    """Patch the change map (scene magnitude and combination) to add the k x k context term."""
    import rsneo.predict.change as change
    from rsneo.baselines import otsu_threshold
    from rsneo.heads.change import ChangeHead, magnitude_excess
    from rsneo.io.dataset import data_bands

    measure = change.SceneMagnitude.measure.__func__

    def measure_context(cls, first, last, max_side: int = 1024):
        out = measure(cls, first, last, max_side)
        if max(first.width, first.height) > max_side:
            raise ValueError("the experiment reads whole test pairs (at most 1024 px a side)")
        dates = [(ds.read(data_bands(ds)).astype(np.float64) - out.mean[i]) / out.std[i]
                 for i, ds in enumerate((first, last))]  # fmt: skip
        magnitude = torch.from_numpy(np.sqrt(((dates[1] - dates[0]) ** 2).sum(0))[None, None]).float()
        out.context_cut = otsu_threshold(box(magnitude, k).numpy().ravel())
        return out

    def excess(self, before, after):
        a, b = (before - self.mean[0]) / self.std[0], (after - self.mean[1]) / self.std[1]
        magnitude = torch.from_numpy(np.sqrt(((b - a) ** 2).sum(1, keepdims=True)).astype(np.float32))
        return torch.cat([magnitude_excess(magnitude, self.cut),
                          magnitude_excess(box(magnitude, k), self.context_cut)], 1)  # fmt: skip

    def combine(self, logits, excess):
        vote = torch.sigmoid(logits[:, 1:]) - 0.5
        excess = excess.to(logits.dtype)
        score = weights[0] * vote + weights[1] * excess[:, :1] + weights[2] * excess[:, 1:] + bias
        return torch.cat([logits[:, :1], score], 1)

    change.SceneMagnitude.measure = classmethod(measure_context)
    change.SceneMagnitude.excess = excess
    ChangeHead.combine = combine


def main() -> None:
    from rsneo.heads.system import BUNDLED_MODEL, load_system

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=bench.DATA)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    system = load_system(BUNDLED_MODEL)
    fitted = fit(system, args.data)
    print("fit on NAIP + Pucallpa pairs (weights: vote, magnitude[, context]; bias; F1 on those pixels):")
    for name, (weights, bias, f1) in fitted.items():
        print(f"  {name:28s} {np.round(weights, 3)} {bias:.3f}  F1 {f1:.4f}")
    name = max((n for n in fitted if "context" in n), key=lambda n: fitted[n][2])
    k = int(name.rsplit("context", 1)[1])
    print(f"chosen on the fitting pixels: k = {k}")
    cases = bench.pairs(args.data)
    shipped = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (pair, rasters, changed, unchanged) in enumerate(cases):
            shipped[pair] = bench.score_rsneo(system, rasters, Path(tmp) / f"a{i}", changed, unchanged)[0][
                "f1"
            ]
        contextual(k, *fitted[name][:2])
        print(f"\n{'pair':32s} {'shipped':>8s} {'context':>8s}")
        scores = []
        for i, (pair, rasters, changed, unchanged) in enumerate(cases):
            f1 = bench.score_rsneo(system, rasters, Path(tmp) / f"b{i}", changed, unchanged)[0]["f1"]
            scores.append((shipped[pair], f1))
            print(f"{pair:32s} {shipped[pair]:8.3f} {f1:8.3f}")
    levir = np.array(scores[:-1])
    print(f"LEVIR mean: shipped {levir[:, 0].mean():.3f}, context {levir[:, 1].mean():.3f}")
    worse = [c[0] for c, s in zip(cases, scores, strict=True) if s[1] < s[0] - 1e-9]
    print(f"worse than the shipped map on {len(worse)} pairs: {', '.join(worse) or 'none'}")


if __name__ == "__main__":
    main()
