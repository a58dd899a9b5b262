"""The 7-point checklist's melanoma decision from predicted criteria, and its annotation ceiling."""
import numpy as np
import pytest

from medattn.data.derm7pt import seven_point_weights
from medattn.metrics.checklist import checklist_melanoma

W = seven_point_weights()  # 2, 2, 2, 1, 1, 1, 1


def test_scores_by_hand():
    truth = np.array([[1, 1, 0, 0, 0, 0, 0],   # 4 points: melanoma by the checklist
                      [0, 0, 1, 1, 0, 0, 0],   # 3 points: melanoma
                      [0, 0, 0, 1, 1, 0, 0],   # 2 points: not
                      [0, 0, 0, 0, 0, 0, 0]], dtype=float)
    melanoma = np.array([1, 0, 1, 0])
    out = checklist_melanoma(truth, melanoma, W, criteria_truth=truth)
    ceiling = out["annotated_ceiling"]
    assert ceiling["sensitivity"] == 0.5 and ceiling["specificity"] == 0.5  # >= 3 points, not > 3
    assert out["decided_score"] == ceiling and out["n_melanoma"] == 2
    # expected score from probabilities: ranks 0.9 x major above 0.9 x minor
    probs = np.zeros((4, 7))
    probs[0, 0], probs[1, 4], probs[2, 1], probs[3, 6] = 0.9, 0.9, 0.8, 0.1
    ranked = checklist_melanoma(probs, melanoma, W)["expected_score"]
    assert ranked["auc"] == pytest.approx(1.0)  # 1.8, 1.6 (melanomas) above 0.9, 0.1


def test_thresholds_decide_the_criteria_and_nan_rows_leave_the_ceiling():
    probs = np.full((3, 7), 0.4)
    melanoma = np.array([1, 1, 0])
    assert checklist_melanoma(probs, melanoma, W)["decided_score"]["sensitivity"] == 0.0
    assert checklist_melanoma(probs, melanoma, W, criteria_thresholds=0.3)["decided_score"]["sensitivity"] == 1.0
    truth = np.zeros((3, 7))
    truth[0] = np.nan
    assert checklist_melanoma(probs, melanoma, W, criteria_truth=truth)["annotated_ceiling"]["sensitivity"] == 0.0
    with pytest.raises(ValueError, match="criteria_prob must be N x 7"):
        checklist_melanoma(probs[:, :6], melanoma, W)
