"""Teach a model folder the other names of its trained classes (`rsneo.heads.class_words`) without moving
anything it already does.

Only the input-embedding rows of word pieces that no training document of the model contains train (the
pieces of "lake", "reservoir", "bare", ...); every other weight is frozen. The class words themselves, the
prompt template, the image tokens and every word of the question/answer documents keep their vectors, so
"water" and "land" segment exactly as before, images encode exactly as before, and answers only change if a
taught piece would be generated. Two losses, on the last-token state of each prompt (the vector the
segmentation head reads and `rsneo.heads.vocabulary` compares):

- text alignment: each other name's state is pulled toward its class's state (cosine), and in the head's
  class space it is classified among the trained classes (scaled-cosine cross-entropy);
- segmentation with drawn names: the frozen pixel embeddings of the training tiles (Sen1Floods11, left half
  only) classified against the class vectors of one name drawn per class (`draw_class_names`).

Usage: python -m rsneo.train.teach_words MODEL OUT [--steps 300] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from rsneo.atomic import atomic_folder
from rsneo.data.documents import DocumentBuilder, image_documents
from rsneo.data.frames import fold_groups, model_band_groups
from rsneo.heads.class_words import UNTAUGHT_PARAPHRASES, class_words, draw_class_names
from rsneo.heads.features import encode_class_prompts, image_features
from rsneo.heads.system import load_system, save_system
from rsneo.heads.vocabulary import Vocabulary, save_vocabulary, vocabulary_for_classes
from rsneo.model.positions import ImageTokens
from rsneo.train.config import resolve_data_root
from rsneo.train.corpus import LabelledChip, bigearthnet, sen1floods11, timeseries


def training_token_ids(system, root: Path, tile: int = 64) -> set[int]:
    """Every token id in the demo run's training documents (sources with question/answer documents)."""
    tokens = ImageTokens.of(system.model.config)

    def builder():
        return DocumentBuilder(system.tokenizer, tokens)

    samples = [
        *sen1floods11(root, builder, tile, split="train", qa=True),
        *bigearthnet(root, builder, tile, qa=True),
        *timeseries(root, builder, tile, qa=True),
    ]
    return {i for s in samples for i in s.document.ids}


def flood_chips(system, root: Path, split: str = "train", tile: int = 64) -> list[LabelledChip]:
    """The Sen1Floods11 chips of `split` (`train`: the left half), bands grouped as the model was trained."""
    tokens = ImageTokens.of(system.model.config)
    samples = sen1floods11(root, lambda: DocumentBuilder(system.tokenizer, tokens), tile, split=split)
    chips = list({id(s.chip): s.chip for s in samples if s.chip is not None}.values())
    if model_band_groups(system.config) == "fold":
        chips = [replace(chip, groups=fold_groups(chip.groups)) for chip in chips]
    return chips


def prompt_ids(system, names: list[str]) -> set[int]:
    config = system.segmentation.config
    return {
        i
        for name in names
        for i in system.tokenizer(config.prompt_template.format(name), add_special_tokens=False)["input_ids"]
    }


@torch.no_grad()
def chip_pixels(system, chips, pixels_per_chip: int, generator: torch.Generator):
    """Unit pixel embeddings (N, dim) of labelled pixels of the chips and their labels (N,)."""
    head = system.segmentation
    vectors, labels = [], []
    for chip in chips:
        inputs = image_documents([[chip.groups]], system.model.config)
        features = image_features(system.model, inputs, head.config.early_layer)
        pixels = head.pixel_embeddings(features)[0].flatten(1).T  # (H*W, dim)
        label = chip.labels.flatten()
        valid = torch.nonzero(label >= 0).flatten()
        pick = valid[torch.randperm(len(valid), generator=generator)[:pixels_per_chip]]
        vectors.append(pixels[pick])
        labels.append(label[pick])
    return torch.cat(vectors), torch.cat(labels)


def teach(
    system,
    root: Path,
    steps: int = 300,
    lr: float = 3e-3,
    seed: int = 0,
    log_every: int = 25,
) -> dict:
    """Train the free embedding rows in place; returns what was taught and the final losses."""
    model, head = system.model, system.segmentation
    classes = list(system.vocabulary.names) if system.vocabulary else ["land", "water"]
    generator = torch.Generator().manual_seed(seed)
    seen, chips = training_token_ids(system, root), flood_chips(system, root)
    protected = seen | prompt_ids(system, classes)
    others = [(w, k) for k, c in enumerate(classes) for w in class_words(c) if w != c]
    free = sorted(prompt_ids(system, [w for w, _ in others]) - protected)
    pixels, labels = chip_pixels(system, chips, 512, generator)
    # Sen1Floods11 values: 0 land, 1 water -> the index of that class in `classes`
    labels = torch.tensor([classes.index("land"), classes.index("water")])[labels]

    for p in list(model.parameters()) + list(head.parameters()) + list(system.change.parameters()):
        p.requires_grad_(False)
    weight = model.backbone.embed_tokens.weight
    rows = torch.zeros(weight.shape[0], 1)
    rows[free] = 1.0
    original = weight.detach().clone()
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * rows.to(grad.dtype))
    optimizer = torch.optim.Adam([weight], lr=lr)
    model.eval()  # no dropout; the frozen weights stay as they are
    config = head.config
    with torch.no_grad():
        targets = encode_class_prompts(model, system.tokenizer, classes, config)  # (K, hidden)
        target_units = F.normalize(targets.float(), dim=-1)
        target_embeddings = head.class_embeddings(targets)  # (K, dim)
    names = [w for w, _ in others]
    index = torch.tensor([k for _, k in others])
    history = []
    for step in range(1, steps + 1):
        states = encode_class_prompts(model, system.tokenizer, names, config)  # (N, hidden)
        pull = (1 - (F.normalize(states.float(), dim=-1) * target_units[index]).sum(-1)).mean()
        logits = head.scale * head.class_embeddings(states) @ target_embeddings.T  # (N, K)
        text = F.cross_entropy(logits, index)
        drawn = draw_class_names(classes, generator)
        vectors = encode_class_prompts(model, system.tokenizer, drawn, config)
        pick = torch.randint(len(labels), (4096,), generator=generator)
        seg = head.loss(head.match(pixels[pick].T[None], vectors), labels[pick][None])  # (1, K, N), (1, N)
        anchor = ((weight[free] - original[free]) ** 2).sum(-1).mean()
        loss = pull + 0.1 * text + seg + 0.01 * anchor
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record = {"step": step, "pull": pull.item(), "text": text.item(), "seg": seg.item()}
        history.append(record)
        if step % log_every == 0 or step == 1:
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
    weight.requires_grad_(False)
    with torch.no_grad():  # untouched rows bit for bit (Adam never moves a row whose gradient is always 0)
        keep = rows.flatten() == 0
        weight[keep] = original[keep]
    return {"classes": classes, "names": names, "free_tokens": len(free), "history": history[-1]}


def taught_vocabulary(old: Vocabulary | None, classes: list[str], template: str, steps: int) -> Vocabulary:
    """The vocabulary after teaching: every class with its synonyms and narrower names, names with untaught
    word pieces untrained (`taught_pieces_only`); the held-out scores of `old` stay until
    benchmarks/vocabulary.py --write measures again."""
    note = (
        f"Segmentation trained on the class words {' and '.join(classes)}; their other names (synonyms) "
        f"taught afterwards by python -m rsneo.train.teach_words ({steps} steps, only the embedding rows of "
        f"their word pieces). Deliberately never taught: {', '.join(UNTAUGHT_PARAPHRASES)}. Names close to "
        "none of these are read by the same text path but were never taught."
    )
    # the model read no language but its training documents: a word piece of no taught name is unknown to it
    vocabulary = replace(vocabulary_for_classes(classes, template, note), taught_pieces_only=True)
    if old is None:
        return vocabulary
    held = {c.name: c.held_out for c in old.classes}
    scored = tuple(replace(c, held_out=held.get(c.name, {})) for c in vocabulary.classes)
    return replace(vocabulary, classes=scored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--data-root", default="../shared/data")
    args = parser.parse_args()
    torch.manual_seed(0)
    system = load_system(args.model)
    result = teach(system, resolve_data_root(args.data_root), args.steps, args.lr)
    print(f"taught {len(result['names'])} names through {result['free_tokens']} embedding rows")
    template = system.segmentation.config.prompt_template
    vocabulary = taught_vocabulary(system.vocabulary, result["classes"], template, args.steps)
    with atomic_folder(args.out) as tmp:
        shutil.copytree(args.model, tmp, dirs_exist_ok=True)
        save_system(system, tmp)
        save_vocabulary(tmp, vocabulary)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
