"""Text tokenizer: Qwen3-style byte-level BPE with NEO's image tokens, trained offline or loaded.

The bundled and test models cannot download Qwen3's tokenizer, so `train_tokenizer` builds a small one of the
same shape (byte-level BPE, `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`) from any text. A real Qwen3
tokenizer saved to a folder loads through the same `load_tokenizer`, which makes sure the image tokens exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rsneo.errors import InputError
from rsneo.model.inputs import ImageTokens

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# transformers and tokenizers are imported in the functions that use them: importing transformers is 0.8 s
# CPU (2.1-2.7 s wall on the shared 2-core machine), a third of `rsneo change`'s start-up, and a command that
# needs no text (change or segment without class names) never loads the tokenizer (`load_system`).

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
TEXT_SPECIALS = (ENDOFTEXT, IM_START, IM_END)
IMAGE_SPECIALS = (IMG_START, IMG_END, IMG_CONTEXT)
# NEO appends its image tokens to a base vocabulary in this order (NEO's ALL_SPECIAL_TOKEN_LIST): with
# Qwen3's 151669 ids, <IMG_CONTEXT> = 151669, <img> = 151670, </img> = 151671. `add_image_tokens` keeps it.
NEO_ADD_ORDER = (IMG_CONTEXT, IMG_START, IMG_END)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, image_tokens: bool = True
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of at most `vocab_size` ids (specials included) on `texts`, offline.

    Every byte is in the base alphabet, so any string encodes and decodes back exactly. The image tokens
    come right after the text specials (ids 3, 4, 5: the bundled demo model's layout); `image_tokens=False`
    leaves them out, like a plain Qwen3 tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # lazy: see the top
    from transformers import PreTrainedTokenizerFast  # lazy: 0.8 s CPU to import, see the top

    minimum = 256 + len(TEXT_SPECIALS) + len(IMAGE_SPECIALS)
    if vocab_size < minimum:
        raise InputError(
            f"tokenizer vocab_size: expected at least {minimum} (256 bytes + specials), got {vocab_size}"
        )
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*TEXT_SPECIALS, *(IMAGE_SPECIALS if image_tokens else ())],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT, clean_up_tokenization_spaces=False
    )
    if image_tokens:
        add_image_tokens(tokenizer)
    return tokenizer


def add_image_tokens(tokenizer: PreTrainedTokenizerFast) -> ImageTokens:
    """Make sure `<img>`, `</img>`, `<IMG_CONTEXT>` are single special tokens; adding twice changes nothing.

    Missing ones are appended in NEO's order (`NEO_ADD_ORDER`). Returns their ids. A model whose embedding
    is smaller than `len(tokenizer)` must be resized by the caller.
    """
    wanted = [
        t for t in (*TEXT_SPECIALS, *NEO_ADD_ORDER) if t in tokenizer.get_vocab() or t in IMAGE_SPECIALS
    ]
    missing = [t for t in wanted if t not in tokenizer.all_special_tokens]
    if missing:
        import transformers  # lazy: 0.8 s CPU to import, see the top
        from tokenizers import AddedToken

        # transformers 5 calls the extra specials `extra_special_tokens`, 4.x `additional_special_tokens`
        key = (
            "extra_special_tokens"
            if int(transformers.__version__.split(".")[0]) >= 5
            else "additional_special_tokens"
        )
        extras = [t for t in tokenizer.all_special_tokens if t not in tokenizer.special_tokens_map.values()]
        tokens = [AddedToken(t, special=True, normalized=False) for t in dict.fromkeys([*extras, *missing])]
        tokenizer.add_special_tokens({key: tokens})
    return image_token_ids(tokenizer)


def image_token_ids(tokenizer: PreTrainedTokenizerFast) -> ImageTokens:
    """The image token ids of a tokenizer that has them (see `add_image_tokens`)."""
    vocab = tokenizer.get_vocab()
    absent = [t for t in IMAGE_SPECIALS if t not in vocab]
    if absent:
        raise InputError(f"tokenizer: expected image tokens {list(IMAGE_SPECIALS)}, missing {absent}")
    return ImageTokens(start=vocab[IMG_START], end=vocab[IMG_END], context=vocab[IMG_CONTEXT])


def check_tokenizer_folder(folder: str | Path) -> Path:
    """`folder` as a Path when it holds a saved tokenizer (`tokenizer.json`); InputError otherwise. Cheap: no
    transformers import."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise InputError(f"{folder}: expected a tokenizer folder with tokenizer.json, found none")
    return folder


def load_tokenizer(folder: str | Path, add_missing: bool = True) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `save_pretrained` (ours or Qwen3's) from a folder, with image tokens.

    `add_missing=False` (a NEO release, whose tokenizer defines the ids its weights were trained with)
    refuses a tokenizer without the image tokens instead of adding them at new ids.
    """
    from transformers import PreTrainedTokenizerFast  # lazy: 0.8 s CPU to import, see the top

    folder = check_tokenizer_folder(folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if add_missing:
        add_image_tokens(tokenizer)
        return tokenizer
    absent = [t for t in IMAGE_SPECIALS if t not in tokenizer.get_vocab()]
    if absent:
        raise InputError(
            f"{folder / 'tokenizer.json'}: has no {absent} token(s); the image token ids of these weights "
            "are unknown, refusing to guess"
        )
    return tokenizer
