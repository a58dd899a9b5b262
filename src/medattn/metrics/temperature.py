"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): one scalar
T > 0 that divides the logits, fitted on a held-out split by minimising the negative log-likelihood.
It changes no ranking and no argmax (AUC, AP, accuracy stay the same), only the confidence.

The probabilities a run writes are enough: log p = logits - logsumexp(logits), so
softmax(log p / T) = softmax(logits / T).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from .calibration import expected_calibration_error
from .classification import as_labels

_TINY = 1e-12


def scale_probabilities(y_prob: np.ndarray, temperature: float) -> np.ndarray:
    """(N, K) softmax probabilities with the logits divided by ``temperature``."""
    logp = np.log(np.clip(np.asarray(y_prob, dtype=np.float64), _TINY, 1.0))
    return softmax(logp / float(temperature), axis=1)


def _nll(y: np.ndarray, logp: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logp / temperature, axis=1)[np.arange(y.size), y].mean())


def fit_temperature(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the mean NLL of ``y_true`` (N,) labels or (N, K) one-hot
    under ``scale_probabilities(y_prob, T)`` (a bounded 1-D search over log T)."""
    p = np.asarray(y_prob, dtype=np.float64)
    y = as_labels(np.asarray(y_true), p.shape[1])
    logp = np.log(np.clip(p, _TINY, 1.0))
    found = minimize_scalar(lambda log_t: _nll(y, logp, float(np.exp(log_t))), bounds=(np.log(0.05), np.log(20.0)),
                            method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))


def temperature_report(fit_true: np.ndarray, fit_prob: np.ndarray, y_true: np.ndarray, y_prob: np.ndarray,
                       fit_split: str) -> dict:
    """T fitted on (``fit_true``, ``fit_prob``) and, on (``y_true``, ``y_prob``), the top-label ECE and
    NLL before and after scaling: {"temperature", "fit_split", "ece", "ece_scaled", "nll", "nll_scaled"}."""
    t = fit_temperature(fit_true, fit_prob)
    k = np.asarray(y_prob).shape[1]
    y = as_labels(np.asarray(y_true), k)
    scaled = scale_probabilities(y_prob, t)
    logp = np.log(np.clip(np.asarray(y_prob, dtype=np.float64), _TINY, 1.0))
    return {"temperature": t, "fit_split": fit_split,
            "ece": expected_calibration_error(y, y_prob), "ece_scaled": expected_calibration_error(y, scaled),
            "nll": _nll(y, logp, 1.0), "nll_scaled": _nll(y, logp, t)}
