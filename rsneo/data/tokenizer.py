"""Moved to `rsneo.model.tokenizer` (the tokenizer is part of a model folder, and `model/convert` needs it).

Kept as a re-export so imports written against the old place keep working; new code imports the model module.
"""

from rsneo.model.tokenizer import (  # noqa: F401
    ENDOFTEXT,
    IM_END,
    IM_START,
    IMAGE_SPECIALS,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    NEO_ADD_ORDER,
    TEXT_SPECIALS,
    add_image_tokens,
    image_token_ids,
    load_tokenizer,
    train_tokenizer,
)
