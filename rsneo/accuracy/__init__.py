"""Measuring models and maps: `rsneo evaluate` (a model on labelled samples, through the predictors users
run) and `rsneo assess` (a produced map against a reference sample, with good-practice area estimates)."""
