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
- Samples (`rsneo.data.sample`): `Sample(name, scene, mask, classes, split, partners, labels, captions,
  statistics, origin)`, the one type every archive reader gives, in memory or streamed from shards;
  `cut`, `cut_tiles`, `tiles`, `centre_window`.
- Readers (`rsneo.data.recipes`): one `Recipe` per archive (`sen1floods11`, `bigearthnet`, `timeseries`,
  `taizhou`, `captions`, `change`, `segmentation`: items, header `check`, `read` whole samples, `cut`),
  `read_archive(name, root, tile)` in memory, `tile_loader(name, tile)` for shards; the archives' class
  tables (`WATER`: "land"/"water", `CHANGE`). Layout parsing: `rsneo.data.archives`.
- Labelled archives (`rsneo.data.labelled`): `ClassTable` (`parse`, `binary_change`, `indices`),
  `change_pairs(root, split)` (`A/ B/ label/ [list/]`), `mask_chips(images, masks, classes)`; TorchGeo's
  `LEVIRCD` and `LoveDA` through `rsneo.data.torchgeo_sets`.
- TorchGeo (`rsneo.data.datasets`): `SensorRaster` (RasterDataset; use TorchGeo's samplers),
  `Sen1Floods11Chips`, `BigEarthNetChips` (NonGeoDatasets over the recipes), `sample_scene(sample)` -> scene.
- Shards (`rsneo.data.shards`, `rsneo.data.shard_format`, `rsneo prepare`): WebDataset tars of `Sample`s;
  `prepare_shards(items, load, out, items_per_shard, workers)`, `ShardDataset(folder or URL, shuffle=False)`
  (streams `Sample`s from a folder, `https://` or `s3://`; splits across ranks and workers; resumes
  mid-epoch), `read_manifest(folder)` (refuses other format versions).
"""
