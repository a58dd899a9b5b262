"""Evaluation beyond the test metrics: robustness to noise and background shift, and the HTML run report."""
from .perturbations import DEFAULT_ARTIFACTS, add_artifacts, gaussian_noise, swap_background
from .report import write_report
from .robustness import SIGMAS, evaluate_robustness, flip_fraction, write_robustness
from .robustness_results import robustness_table

__all__ = ["DEFAULT_ARTIFACTS", "SIGMAS", "add_artifacts", "evaluate_robustness", "flip_fraction", "gaussian_noise",
           "robustness_table", "swap_background", "write_report", "write_robustness"]
