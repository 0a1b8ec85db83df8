"""The paper's evaluation protocol: 1, 10, 12 or 144 views per image, ensembles, and the speed of its loader."""

from inceptionnet.evaluation.classmap import ClassMap, map_classes
from inceptionnet.evaluation.protocol import evaluate
from inceptionnet.evaluation.scores import ClassScore, EvalResult, Predictions, Score
from inceptionnet.evaluation.speed import Throughput, measure_loading
from inceptionnet.evaluation.views import (
    DEFAULT_WORKERS,
    MultiViewTransform,
    ViewBatch,
    ViewConfig,
    collate_views,
    view_probabilities,
)

__all__ = [
    "DEFAULT_WORKERS",
    "ClassMap",
    "ClassScore",
    "EvalResult",
    "MultiViewTransform",
    "Predictions",
    "Score",
    "Throughput",
    "ViewBatch",
    "ViewConfig",
    "collate_views",
    "evaluate",
    "map_classes",
    "measure_loading",
    "view_probabilities",
]
