"""Change objective: simulated change pairs (`rsneo.train.pairs`) trained into the products' change head.

The two dates form one scene document (`scene` mask: the dates see each other), as `rsneo change` builds them
(`rsneo.data.documents.image_documents`), and the products' change head is trained on them. Every random
choice comes from the step's seeded generator, so runs stay reproducible and resumable.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rsneo import metrics
from rsneo.baselines import change_vector_magnitude, otsu_threshold, standardise_bands
from rsneo.data.archives import date_rasters
from rsneo.data.documents import DocumentBuilder, image_documents
from rsneo.data.frames import frame_groups
from rsneo.data.sample import tiles
from rsneo.heads.change import ChangeHead, ChangeHeadConfig, blur, magnitude_excess
from rsneo.heads.domain import HeadDomain, TrainingDomain, load_domain, pixel_size, save_domain
from rsneo.heads.features import image_features
from rsneo.heads.system import load_system, save_heads
from rsneo.io.scene import read_scene
from rsneo.model.inputs import DEFAULT_TOKEN_SIZE
from rsneo.model.positions import ImageTokens
from rsneo.train.batch import ChangeBatch, ChangeSource
from rsneo.train.corpus import head_imagery, timeseries
from rsneo.train.pairs import simulate_pair, stack_groups


def change_batch(sources: Sequence[ChangeSource], generator: torch.Generator, tokens) -> ChangeBatch | None:
    """A batch of simulated pairs from the sources that share the most common band set and grid.

    Donors for pasting are the other sources of that set (their first date). `tokens`: image token ids (an
    `RSNeoConfig` or `ImageTokens`).
    """
    if not sources:
        return None
    common = Counter(s.signature for s in sources).most_common(1)[0][0]
    chosen = [s for s in sources if s.signature == common]
    firsts = [stack_groups(s.frames[0]).float() for s in chosen]
    pairs, labels = [], []
    for i, source in enumerate(chosen):
        before, after, label, _ = simulate_pair(source, generator, firsts[:i] + firsts[i + 1 :])
        pairs.append([before, after])
        labels.append(label)
    return ChangeBatch(image_documents(pairs, tokens, policy="scene"), torch.stack(labels))


def build_change_head(cfg: dict, model: nn.Module) -> nn.Module | None:
    """The products' change head when the run's `objectives.change.weight` is positive, else None."""
    spec = cfg["objectives"]["change"]
    if float(spec["weight"]) <= 0:
        return None
    options = {k: v for k, v in spec["head"].items() if v is not None}  # None: the head's own default
    return ChangeHead(ChangeHeadConfig(hidden_size=model.config.hidden_size, **options))


NAIP_GROUPS = {  # RGB alone (what an RGB pair such as a PNG gives `rsneo change`) and RGB + NIR
    "rgb": {"rgb": ["R", "G", "B"]},
    "rgbn": {"rgb": ["R", "G", "B"], "nir": ["NIR"]},
}


def naip_change_sources(
    folder: Path, tile: int = 128, bands: str = "rgb", token_size: int = DEFAULT_TOKEN_SIZE
) -> list[ChangeSource]:
    """The NAIP dates of one place as change sources: real change over a decade, public domain.

    The dates' grids shift by about a pixel: every date is resampled (bilinear) onto the first one's grid
    (`read_scene`). Each date is standardised on its own statistics, as `rsneo change` treats 8-bit pairs
    whose sensor has no fixed units, so the head learns change, not the year's stretch. Tiles with nodata
    are left out.
    """
    import numpy as np

    scene = read_scene(date_rasters(Path(folder)), sensor="naip")
    values = scene.values.astype(np.float32)  # (time, band, y, x), NaN = nodata
    mean = np.nanmean(values, axis=(2, 3), keepdims=True)
    std = np.maximum(np.nanstd(values, axis=(2, 3), keepdims=True), 1e-3)
    valid = ~np.isnan(values).any(axis=(0, 1))  # (y, x) valid on every date
    values = np.nan_to_num((values - mean) / std)
    dates = [str(np.datetime_as_string(t, unit="D")) for t in scene["time"].values]
    sources = []
    for window in tiles(scene.sizes["y"], scene.sizes["x"], tile):
        if not valid[window].all():
            continue
        frames = [
            frame_groups(scene, values, t, window, NAIP_GROUPS[bands], token_size) for t in range(len(dates))
        ]
        sources.append(ChangeSource(frames, dates))
    return sources


def train_change_head(
    model: nn.Module,
    head: nn.Module,
    sources: Sequence[Sequence[ChangeSource]],
    steps: int,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    log_every: int = 25,
) -> list[float]:
    """Train only the change head on simulated and real pairs of `sources` (lists that are batched apart,
    e.g. RGB and RGB + NIR tiles); the backbone stays frozen, so segmentation and answers are untouched.

    Returns the loss of every step. The backbone runs once per step without gradients (the head learns on
    its features), which is what lets a CPU train the head in minutes.
    """
    import time

    generator = torch.Generator().manual_seed(seed)
    model.eval()
    head.train()
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)),
    )  # linear warm-up, cosine decay
    losses, start = [], time.perf_counter()
    for step in range(steps):
        pool = sources[step % len(sources)]
        chosen = torch.randperm(len(pool), generator=generator)[:batch_size].tolist()
        batch = change_batch([pool[i] for i in chosen], generator, model.config)
        if batch is None or not (batch.labels >= 0).any():
            continue
        with torch.no_grad():
            features = image_features(model, batch.inputs, head.config.early_layer, frames=2)
        loss = head.loss(head(features, 0, 1), batch.labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(
                f"step {step + 1}/{steps} loss {recent:.4f} ({time.perf_counter() - start:.0f} s)", flush=True
            )
    head.eval()
    return losses


def pair_magnitude(pixels: Tensor) -> Tensor:
    """(B, 2, bands, H, W) pixels of pairs -> (B, H, W) change-vector magnitude with every band of every date
    standardised over its own tile (the CVA + Otsu baseline's radiometric normalisation), then `blur`red as
    prediction's `SceneMagnitude` does."""
    values = pixels.detach().float().cpu().numpy()
    magnitude = torch.from_numpy(
        np.stack([change_vector_magnitude(standardise_bands(p[0]), standardise_bands(p[1])) for p in values])
    ).float()
    return blur(magnitude[:, None])[:, 0]


@torch.no_grad()
def fit_combination(
    model: nn.Module,
    head: nn.Module,
    sources: Sequence[Sequence[ChangeSource]],
    batches: int = 24,
    batch_size: int = 8,
    seed: int = 1,
) -> dict[str, float]:
    """Fit head_weight, magnitude_weight and bias of the change head's combination (`ChangeHead.combine`) on
    simulated and real pairs of `sources` (never on test pairs), and set them in `head.config`.

    A logistic regression of the labels on (head's P(change) - 0.5, magnitude excess over the pair's Otsu
    cut); then the bias moves the decision to the cut that maximises F1 on the same pixels (the goal
    measured), rather than P = 0.5. Returns the fitted numbers and the F1 of the head alone, the magnitude
    alone and the combination.
    """
    from sklearn.linear_model import LogisticRegression

    generator = torch.Generator().manual_seed(seed)
    head.eval()
    logits, excess, labels = [], [], []
    for step in range(batches):
        pool = sources[step % len(sources)]
        chosen = torch.randperm(len(pool), generator=generator)[:batch_size].tolist()
        batch = change_batch([pool[i] for i in chosen], generator, model.config)
        if batch is None:
            continue
        features = image_features(model, batch.inputs, head.config.early_layer, frames=2)
        logit = head(features, 0, 1)[:, 1].float().cpu()  # (B, H, W)
        magnitude = pair_magnitude(features.pixels)  # (B, H, W)
        for i in range(magnitude.shape[0]):
            known = batch.labels[i] >= 0
            cut = otsu_threshold(magnitude[i].numpy().ravel())
            logits.append(torch.sigmoid(logit[i][known]) - 0.5)  # the head's bounded vote (`combine`)
            excess.append(magnitude_excess(magnitude[i], cut)[known])
            labels.append(batch.labels[i][known])
    x = torch.stack([torch.cat(logits), torch.cat(excess)], 1).numpy()
    y = torch.cat(labels).numpy()
    regression = LogisticRegression(C=1.0, max_iter=500).fit(x, y)
    (head_weight, magnitude_weight), bias = regression.coef_[0], float(regression.intercept_[0])
    score = x @ np.array([head_weight, magnitude_weight]) + bias
    cuts = np.quantile(score, np.linspace(0.02, 0.98, 97))
    best = max(cuts, key=lambda t: _f1(score > t, y == 1))
    head.config.head_weight, head.config.magnitude_weight = float(head_weight), float(magnitude_weight)
    head.config.bias = float(bias - best)
    return {
        "head_weight": head.config.head_weight,
        "magnitude_weight": head.config.magnitude_weight,
        "bias": head.config.bias,
        "pixels": float(y.size),
        "changed_share": float((y == 1).mean()),
        "f1_head": _f1(x[:, 0] > 0, y == 1),
        "f1_magnitude_otsu": _f1(x[:, 1] > 0, y == 1),
        "f1_combined": _f1(score > best, y == 1),
    }


def _f1(predicted, truth) -> float:
    """F1 of the change class (`rsneo.metrics`); 0 when neither marks any change."""
    confusion = metrics.confusion_matrix(np.asarray(truth, np.int64), np.asarray(predicted, np.int64), 2)
    return metrics.scores(confusion, ("no change", "change")).per_class["change"].f1 or 0.0


def change_pools(
    names: Sequence[str],
    data_root: Path,
    system,
    naip_tile: int,
    pucallpa_tile: int,
    cache: dict | None = None,
) -> list:
    """Named source pools: `naip_rgb`, `naip_rgbn` (the NAIP dates) and `pucallpa` (the Landsat series);
    `cache` keeps pools already read (reading ten NAIP dates takes a while) for the next stage."""
    cache = {} if cache is None else cache
    missing = [name for name in names if name not in cache]
    cache.update(zip(missing, _read_pools(missing, data_root, system, naip_tile, pucallpa_tile), strict=True))
    return [cache[name] for name in names]


def _read_pools(names: Sequence[str], data_root: Path, system, naip_tile: int, pucallpa_tile: int) -> list:
    naip = Path(data_root) / "timeseries" / "naip_m4709963"
    tokens = ImageTokens.of(system.model.config)
    token_size = system.model.config.token_size
    pools = []
    for name in names:
        if name in ("naip_rgb", "naip_rgbn"):
            pools.append(naip_change_sources(naip, naip_tile, name.removeprefix("naip_"), token_size))
        elif name == "pucallpa":
            samples = timeseries(
                Path(data_root),
                lambda: DocumentBuilder(system.tokenizer, tokens),
                pucallpa_tile,
                token_size=token_size,
            )
            pools.append([s.change for s in samples if s.change is not None])
        else:
            raise ValueError(f"unknown change source pool {name!r}; expected naip_rgb, naip_rgbn or pucallpa")
    return pools


def widened_domain(domain: TrainingDomain, names: Sequence[str], data_root: Path) -> TrainingDomain:
    """`domain` with the change head's record widened by the pools `names` it was trained or fit on here
    (NAIP: its sensor and measured pixel size; Pucallpa: as the corpus reads it)."""
    change = domain.heads.get("change", HeadDomain(()))
    for name in dict.fromkeys(names):
        if name.startswith("naip"):
            rasters = [(r, "naip") for r in date_rasters(Path(data_root) / "timeseries" / "naip_m4709963")]
        else:
            rasters = [(r, sensor) for _, r, sensor in head_imagery("timeseries", Path(data_root)) or []]
        for raster, sensor in rasters[:1]:  # the dates of one place share their grid's pixel size
            change = change.including(sensor, pixel_size(raster))
    return TrainingDomain(domain.heads | {"change": change}, domain.note)


def main(argv: Sequence[str] | None = None) -> None:
    """Train the bundled model's change head as an experiment file says (e.g. change_naip.yaml)."""
    import json
    import shutil
    import sys

    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    spec = yaml.safe_load(Path(args[0]).read_text())["change_head"]
    torch.set_num_threads(1)  # 2 busy cores: one thread is faster than torch's default here
    system = load_system(spec["model"])
    tiles, cache = (spec["naip_tile"], spec["pucallpa_tile"]), {}
    for stage in spec["stages"]:
        pools = change_pools(stage["sources"], spec["data_root"], system, *tiles, cache)
        train_change_head(system.model, system.change, pools, stage["steps"], spec["batch_size"],
                          stage["lr"], stage["seed"])  # fmt: skip
    fit = spec["fit"]
    pools = change_pools(fit["sources"], spec["data_root"], system, *tiles, cache)
    numbers = fit_combination(
        system.model, system.change, pools, fit["batches"], spec["batch_size"], fit["seed"]
    )
    print(json.dumps(numbers, indent=1))
    out = Path(spec["out"])
    if out.resolve() != Path(spec["model"]).resolve():
        shutil.copytree(spec["model"], out, dirs_exist_ok=True)
    save_heads(out, system.segmentation, system.change)
    domain = load_domain(out)  # the starting model's record; without one, the head's earlier data is unknown
    if domain is not None:
        names = [n for stage in spec["stages"] for n in stage["sources"]] + list(fit["sources"])
        save_domain(out, widened_domain(domain, names, Path(spec["data_root"])))
    print(f"heads written to {out}")


if __name__ == "__main__":
    main()
