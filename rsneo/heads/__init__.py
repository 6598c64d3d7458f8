"""Task heads on the one backbone: label-as-text segmentation, change, and text generation helpers.

`rsneo.heads.system.load_system(folder)` loads what the product commands run: model, tokenizer and heads.
"""
