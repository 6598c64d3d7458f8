"""A model folder as the commands use it: backbone + language head, tokenizer, and the task heads.

Folder layout: the model's `config.json` + safetensors weights (`RSNeoForCausalLM.save_pretrained`), the
tokenizer files (`tokenizer.json`, ...), `heads.safetensors` + `heads.json` for the segmentation and
change heads, optionally `vocabulary.json`: the classes the segmentation head was trained on, with their
held-out scores (`rsneo.heads.vocabulary`), and optionally `domain.json`: the sensors and pixel sizes each
head was trained on (`rsneo.heads.domain`). Heads are optional: a folder without them gets freshly
initialised heads (and the commands say so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from rsneo import atomic
from rsneo.errors import InputError
from rsneo.heads.change import ChangeHead, ChangeHeadConfig
from rsneo.heads.domain import TrainingDomain, load_domain, save_domain
from rsneo.heads.finetuned import head_from_json
from rsneo.heads.segmentation import SegmentationHead, SegmentationHeadConfig
from rsneo.heads.vocabulary import Vocabulary, load_vocabulary, save_vocabulary
from rsneo.model.causal_lm import RSNeoForCausalLM
from rsneo.model.config import RSNeoConfig
from rsneo.model.device import torch_device
from rsneo.model.tokenizer import check_tokenizer_folder, image_token_ids, load_tokenizer, train_tokenizer

HEADS_WEIGHTS = "heads.safetensors"
HEADS_JSON = "heads.json"
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "model"


@dataclass
class System:
    """Everything a product command needs to run the model."""

    model: nn.Module  # RSNeoForCausalLM
    tokenizer: object  # transformers PreTrainedTokenizerFast with NEO's image tokens; see __getattr__
    segmentation: SegmentationHead
    change: ChangeHead
    folder: Path | None = None
    trained_heads: tuple[str, ...] = field(default_factory=tuple)  # heads loaded from heads.safetensors
    vocabulary: Vocabulary | None = None  # classes the folder records as trained (vocabulary.json)
    domain: TrainingDomain | None = None  # imagery the folder records its heads trained on (domain.json)

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __getattr__(self, name: str) -> object:
        """The tokenizer of a system `load_system` made, loaded from its folder on first use: importing
        transformers is 0.8 s CPU (2-3 s wall on the shared machine), a third of the start-up of `rsneo
        change`, which needs no text unless class names are given."""
        folder = self.__dict__.get("folder")
        if name != "tokenizer" or folder is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.tokenizer = load_tokenizer(folder)
        return self.tokenizer

    def eval(self) -> System:
        for module in (self.model, self.segmentation, self.change):
            module.eval()
        return self


def save_heads(folder: Path, segmentation: SegmentationHead | None, change: ChangeHead | None) -> None:
    """Write `heads.safetensors` (tensors only) and `heads.json` (head configs) into `folder`, atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, configs = {}, {}
    for name, head in (("segmentation", segmentation), ("change", change)):
        if head is None:
            continue
        configs[name] = head.to_json()
        tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    with atomic.atomic_path(folder / HEADS_WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    atomic.write_text(folder / HEADS_JSON, json.dumps(configs, indent=1))


def load_heads(folder: Path, hidden_size: int) -> tuple[SegmentationHead, ChangeHead, tuple[str, ...]]:
    """Heads from `folder` (safetensors, never pickle); heads absent there are freshly initialised."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    configs, tensors = {}, {}
    if (folder / HEADS_JSON).is_file():
        try:
            configs = json.loads((folder / HEADS_JSON).read_text())
            tensors = load_file(str(folder / HEADS_WEIGHTS))
        except (OSError, ValueError, SafetensorError) as exc:  # a truncated copy: SafetensorError
            raise InputError(f"{folder / HEADS_WEIGHTS}: cannot read the heads ({exc})") from None
    # the bundled kind, or the fine-tuned kind where heads.json says so (`rsneo finetune`)
    seg = head_from_json("segmentation", configs.get("segmentation", {"hidden_size": hidden_size}))
    change = head_from_json("change", configs.get("change", {"hidden_size": hidden_size}))
    loaded = []
    for name, head in (("segmentation", seg), ("change", change)):
        if name not in configs:
            continue
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = head.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{folder / HEADS_WEIGHTS}: {name} head does not match heads.json "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        loaded.append(name)
    return seg, change, tuple(loaded)


def load_system(folder: Path | str | None = None, device: str | torch.device = "cpu") -> System:
    """Load model, tokenizer and heads from `folder` (default: the bundled model in rsneo/assets/model)."""
    device = torch_device(device)
    folder = Path(folder) if folder is not None else BUNDLED_MODEL
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{folder}: expected a model folder with config.json, model weights and tokenizer files, "
            "found none "
            "(pass --model FOLDER)"
        )
    model = RSNeoForCausalLM.from_pretrained(folder, device=device)
    check_tokenizer_folder(folder)  # refused now, as before; loaded on first use (`System.__getattr__`)
    seg, change, loaded = load_heads(folder, model.config.hidden_size)
    vocabulary = load_vocabulary(folder)
    system = System(
        model, None, seg.to(device), change.to(device), folder, loaded, vocabulary, load_domain(folder)
    )
    del system.tokenizer  # not loaded yet: the first `system.tokenizer` loads it from `folder`
    return system.eval()


def random_system(
    folder: Path | None = None,
    texts: list[str] | None = None,
    preset: str = "tiny",
    seed: int = 0,
) -> System:
    """A randomly initialised system (tiny by default) with a tokenizer trained on `texts`; saved to `folder`.

    For tests and benchmarks, where no trained weights may be downloaded.
    """
    torch.manual_seed(seed)
    texts = texts or ["a satellite image of water, forest, built-up land, fields and roads. What changed?"]
    tokenizer = train_tokenizer(texts, vocab_size=512)
    ids = image_token_ids(tokenizer)
    config = RSNeoConfig.from_preset(
        preset,
        vocab_size=max(RSNeoConfig.from_preset(preset).vocab_size, len(tokenizer)),
        img_start_token_id=ids.start,
        img_end_token_id=ids.end,
        img_context_token_id=ids.context,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = RSNeoForCausalLM(config)
    seg = SegmentationHead(SegmentationHeadConfig(hidden_size=config.hidden_size))
    change = ChangeHead(ChangeHeadConfig(hidden_size=config.hidden_size))
    system = System(model, tokenizer, seg, change, folder)
    if folder is not None:
        save_system(system, folder)
    return system.eval()


def save_system(system: System, folder: Path) -> None:
    """Write model, tokenizer and heads to `folder` in the layout `load_system` reads."""
    folder = Path(folder)
    system.model.save_pretrained(folder)
    system.tokenizer.save_pretrained(str(folder))
    save_heads(folder, system.segmentation, system.change)
    if system.vocabulary is not None:
        save_vocabulary(folder, system.vocabulary)
    if system.domain is not None:
        save_domain(folder, system.domain)
    system.folder = folder
