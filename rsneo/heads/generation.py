"""Questions, captions and change summaries through the language head (greedy, with the key/value cache).

A prompt is one document: a chat turn holding every frame (`<img>` ... `</img>`, one per date, optionally
preceded by its date), then the question. All frames of a scene see each other (`scene` mask), so one question
covers a time series. The images are encoded once; `RSNeoForCausalLM.generate` caches their keys and values.
"""

from __future__ import annotations

import torch

from rsneo.data.documents import DocumentBuilder
from rsneo.model.inputs import ImageInput, ModelInputs
from rsneo.model.positions import ImageTokens, pack_documents
from rsneo.model.tokenizer import IM_END, IM_START

CAPTION_QUESTION = "Describe this image."
CHANGE_QUESTION = "Describe the changes between these images."


def chat_prompt(
    builder: DocumentBuilder,
    frames: list[list[ImageInput]],
    question: str,
    dates: list[str | None] | None = None,
) -> DocumentBuilder:
    """Append the prompt layout of `rsneo ask` (never learned): a user turn with every frame (each optionally
    preceded by its date) and the question, then the assistant's header. Training appends the answer to it."""
    builder.text(f"{IM_START}user\n", learn=False)
    for i, frame in enumerate(frames):
        date = dates[i] if dates else None
        if date:
            builder.text(f"{date}: ", learn=False)
        builder.frame(frame).text("\n", learn=False)
    return builder.text(f"{question.strip()}{IM_END}\n{IM_START}assistant\n", learn=False)


def question_document(
    frames: list[list[ImageInput]],
    question: str,
    tokenizer,
    config,
    dates: list[str | None] | None = None,
    policy: str = "scene",
) -> ModelInputs:
    """One prompt document (batch 1) in the `chat_prompt` layout, with the model's image token ids."""
    builder = DocumentBuilder(tokenizer, ImageTokens.of(config))  # the model's ids, not the tokenizer's guess
    doc = chat_prompt(builder, frames, question, dates).end(eos=False)
    return pack_documents([[(torch.tensor(doc.ids), doc.groups)]], config, policy)


@torch.inference_mode()
def generate_answer(
    model,
    tokenizer,
    frames: list[list[ImageInput]],
    question: str,
    dates: list[str | None] | None = None,
    max_new_tokens: int = 64,
) -> str:
    """The model's answer to `question` about `frames` (one or more dates), decoded without special tokens."""
    device = next(model.parameters()).device
    inputs = question_document(frames, question, tokenizer, model.config, dates).to(device)
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    new = model.generate(inputs, max_new_tokens=max_new_tokens, eos_token_id=eos)  # (1, new tokens)
    return tokenizer.decode(new[0].tolist(), skip_special_tokens=True).strip()
