"""Products over real rasters, in three floors that only point down.

- the engine: `sliding_window` (windows -> blended probabilities -> class map COG) with its saved state
  (`resume`), the inputs it reads (`inputs`) and the typed records products take and return (`requests`);
- the engine's products, `maps`: one predictor per map (segmentation, change, new buildings), and how a
  change-kind map reads (`change_classes`);
- the products: `segment`, `change`, `buildings` (with the files of change-kind products,
  `change_outputs`) and `ask` (questions, `answers`). A product imports the floors below, never another
  product.
"""
