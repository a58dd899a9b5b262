"""Metrics: ISIC challenge classification scoring, ISIC 2017 binary tasks, ML-GCN multi-label
metrics, bootstrap confidence intervals and calibration. See docs/metrics.md for every definition."""
from .bootstrap import BootstrapCI, bootstrap_ci, flatten_scalars, resample_indices
from .calibration import expected_calibration_error, reliability_curve
from .classification import (argmax_labels, best_threshold, biigma_macro_metrics, binary_task_metrics,
                             classification_metrics, isic2017_task_metrics)
from .multilabel import mlgcn_average_precision, multilabel_metrics, tune_thresholds

__all__ = [
    "BootstrapCI", "argmax_labels", "best_threshold", "biigma_macro_metrics", "binary_task_metrics",
    "bootstrap_ci", "classification_metrics", "expected_calibration_error", "flatten_scalars",
    "isic2017_task_metrics", "mlgcn_average_precision", "multilabel_metrics", "reliability_curve",
    "resample_indices", "tune_thresholds",
]
