"""Metrics against a case small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from portrait_core.evaluate import attribute_metrics


def one_hot(pred, k):
    return np.eye(k)[pred]


def test_gender_metrics_match_a_hand_computed_case():
    # true: M M M F F  (one missing), predicted: M M F F M
    y = np.array([0, 0, 0, 1, 1, -1])
    probs = one_hot([0, 0, 1, 1, 0, 1], 2)
    m = attribute_metrics("gender", y, probs, train_codes=np.array([0, 0, 1]))
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    # recall male 2/3, female 1/2 -> balanced (2/3 + 1/2) / 2
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # precision male 2/3, female 1/2; f1 male 2/3, female 1/2 -> macro F1 7/12
    assert m["per_class"]["male"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    # majority of the training split is male: always "male" scores 3/5, balanced 1/2
    assert m["majority_class"] == "male"
    assert m["majority_baseline"] == pytest.approx({"accuracy": 3 / 5, "balanced_accuracy": 0.5})


def test_absent_classes_have_zero_support_and_do_not_break_macro_f1():
    y = np.array([0, 0, 2])
    probs = one_hot([0, 2, 2], 5)
    m = attribute_metrics("hairstyle", y, probs, train_codes=np.array([0]))
    assert m["per_class"]["balding"]["support"] == 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert len(m["confusion_matrix"]) == 5


def test_no_labelled_rows_is_said_not_crashed():
    m = attribute_metrics("age", np.array([-1, -1]), one_hot([0, 1], 5), np.array([0]))
    assert m["n"] == 0 and "no labelled rows" in m["note"]
