"""From scenes and text to packed model inputs, TorchGeo datasets, and prepared shards.

Public API (what train, products and demo call):
- Tokenizer (`rsneo.model.tokenizer`): `train_tokenizer(texts, vocab_size)`, `load_tokenizer(folder)`,
  `add_image_tokens(tokenizer) -> ImageTokens` (idempotent), `image_token_ids(tokenizer)`.
- Frames (`rsneo.data.frames`), the one path from values to `ImageInput`s for training and prediction:
  `normalise(scene, stats=None)` (`statistics`: the sensor's, or an 8-bit stretch's own; `standardise`: NaN ->
  0), `frame_groups(scene, values, t, window=None, groups=None, token_size=32) -> list[ImageInput]` (the
  sensor's band groups, `band_group_indices`, padded to whole tokens, `image_groups`), `scene_frames(scene,
  window=None, stats=None, groups=None, captions=False, token_size=32) -> list[Frame]` (one per date),
  `band_statistics(scene)`, `fold_groups(groups)`; for prediction `band_layout(path, sensor, bands,
  band_groups) -> BandLayout` (`.images(pixels, valid, token_size)`) and `model_band_groups(config)`.
- Documents (`rsneo.data.documents`): `Document(ids, groups, learn)`, `DocumentBuilder(tokenizer)
  .text(s, learn).frame(groups).end()`, `build_document(parts, tokenizer)` with parts `str` / `Prompt` (no
  loss) / `Answer` (loss) / `Frame` / list of `ImageInput`.
- Packing (`rsneo.data.packing`): `pack_batches(docs, max_tokens, tokens, rows_per_batch=1, policy=...)
  -> list[ModelInputs]` (first-fit rows), `collate_rows(rows, tokens, pad_id, policy)` -> `ModelInputs` with
  next-token `labels`, `next_token_labels(input_ids, doc_ids, learn)`, `unpack(inputs, context_id)`.
  Positions and block ids come from `rsneo.model.positions` (the one implementation of the index rule).
- TorchGeo (`rsneo.data.datasets`): `SensorRaster` (RasterDataset; use TorchGeo's samplers),
  `Sen1Floods11Chips`, `BigEarthNetChips` (NonGeoDatasets), `sample_scene(sample)` -> scene.
- Shards (`rsneo.data.shards`, `rsneo.data.recipes`, `rsneo prepare`): `prepare_shards(items, load, out,
  items_per_shard, workers)`, `ShardDataset(folder, shuffle=False)` (streams; splits across ranks and
  workers), `shard_scene(sample)`, `read_manifest(folder)` (refuses other format versions), `RECIPES`.
"""
