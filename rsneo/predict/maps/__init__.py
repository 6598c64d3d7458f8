"""The engine's products: the maps the sliding-window engine makes, one predictor each.

- `segmentation_map`: label-as-text classes plus "none of these" (`rsneo segment`, shares in `rsneo ask`);
- `change_map`: no change / change, or from-to classes, between the first and last date (`rsneo change`);
- `building_map`: new buildings by the morphological building index, no model (`rsneo change --of
  buildings`, "are there new buildings?").

Each takes open inputs (`rsneo.predict.inputs`) and returns a `MapSpec` (predictor, legend, decoding, scene
calibration). The product commands write files around these maps; `rsneo ask` reads its figures from the
same maps, so an answer and a product never disagree on what a map is.
"""

from rsneo.predict.maps.buildings import building_map
from rsneo.predict.maps.change import change_map
from rsneo.predict.maps.segmentation import segmentation_map

__all__ = ["building_map", "change_map", "segmentation_map"]
