"""The new-building map (`rsneo.predict.maps.buildings`): the morphological building index and its map."""

from __future__ import annotations

import numpy as np

from rsneo.predict.maps.buildings import building_index


def test_index_scores_a_roof_above_a_road_and_a_field():
    """At 0.5 m: a 15 m square roof is bright at roof scale in every direction; a 5 m wide road only across
    itself (3 of 4 directions); a 100 m field in none. The same scene at 1 m gives the same order."""
    image = np.full((240, 240), 50.0)
    image[20:50, 20:50] = 200.0  # roof, 30 px = 15 m
    image[120:130, :] = 200.0  # road, 10 px = 5 m wide, the whole width long
    image[150:, 30:230] = 120.0  # field, 100 m
    valid = np.ones_like(image, bool)
    for pixel_size, step in ((0.5, 1), (1.0, 2)):
        index = building_index(image[::step, ::step], valid[::step, ::step], pixel_size)
        roof = index[35 // step, 35 // step]
        road, field = index[125 // step, 120 // step], index[200 // step, 130 // step]
        assert roof > 1.2 * road > 0  # the road scores in 3 directions of 4
        assert field < 0.05 * roof
        assert index[100 // step, 200 // step] < 0.05 * roof  # plain background


def test_index_does_not_invent_roofs_at_a_nodata_edge():
    """Invalid pixels take their nearest valid value, so a dark nodata collar does not make the valid border
    look like a bright roof-sized strip."""
    image = np.full((120, 120), 150.0)
    valid = np.ones_like(image, bool)
    image[:, :10], valid[:, :10] = 0.0, False
    index = building_index(image, valid, 0.5)
    assert np.abs(index[:, 10:]).max() < 1e-6
