"""Metrics, streaming evaluation and loss weights for sequence classification.

Every expected number is worked out by hand in the test (counts, fractions, the Pearson formula),
not by calling scikit-learn or scipy the way the code under test does.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from nlp_transfer.errors import NLPTransferError
from nlp_transfer.tasks.classification import (
    StreamingMetrics,
    class_weight_tensor,
    classification_metrics,
    multi_label_metrics,
    regression_metrics,
    weighted_loss,
)

NAMES = ["negative", "neutral", "positive"]
# rows = gold, columns = predicted; 14 examples
CONFUSION = [[3, 1, 0],
             [1, 2, 1],
             [0, 2, 4]]


def rows_from_confusion(matrix, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, gold) arrays realising the confusion matrix, in a shuffled order."""
    pairs = [(p, g) for g, row in enumerate(matrix) for p, count in enumerate(row) for _ in range(count)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    predicted = np.array([pairs[i][0] for i in order])
    gold = np.array([pairs[i][1] for i in order])
    return predicted, gold


# Hand-worked numbers for CONFUSION:
#   negative: TP 3, predicted 4, support 4 -> P 3/4, R 3/4, F1 3/4
#   neutral:  TP 2, predicted 5, support 4 -> P 2/5, R 1/2, F1 2*2/(2*2+3+2) = 4/9
#   positive: TP 4, predicted 5, support 6 -> P 4/5, R 2/3, F1 2*4/(2*4+1+2) = 8/11
HAND = {
    "negative": {"precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4, "support": 4},
    "neutral": {"precision": 2 / 5, "recall": 1 / 2, "f1": 4 / 9, "support": 4},
    "positive": {"precision": 4 / 5, "recall": 2 / 3, "f1": 8 / 11, "support": 6},
}
HAND_ACCURACY = 9 / 14
HAND_F1_MACRO = (3 / 4 + 4 / 9 + 8 / 11) / 3


def logits_for(predicted: np.ndarray, num_labels: int, seed: int = 1) -> torch.Tensor:
    """Random logits whose argmax is `predicted` (by a clear margin)."""
    logits = torch.randn(len(predicted), num_labels, generator=torch.Generator().manual_seed(seed))
    logits[torch.arange(len(predicted)), torch.as_tensor(predicted)] += 5.0
    return logits


def stream(metrics: StreamingMetrics, logits, gold, sizes, wrap=lambda x: x) -> dict:
    """Feed `metrics` batch by batch as Trainer does with batch_eval_metrics=True."""
    start, result = 0, None
    for n, size in enumerate(sizes):
        stop = start + size
        last = n == len(sizes) - 1
        result = metrics(EvalPrediction(predictions=wrap(logits[start:stop]), label_ids=gold[start:stop]),
                         compute_result=last)
        if not last:
            assert result == {}
        start = stop
    assert start == len(gold)
    return result


# ------------------------------------------------------------------ classification_metrics

def test_classification_metrics_match_hand_computed_numbers():
    predicted, gold = rows_from_confusion(CONFUSION)
    m = classification_metrics(predicted, gold, NAMES)
    assert m["accuracy"] == pytest.approx(HAND_ACCURACY)
    assert m["f1_macro"] == pytest.approx(HAND_F1_MACRO)
    assert m["f1_micro"] == pytest.approx(HAND_ACCURACY)  # single-label: micro F1 = accuracy
    assert m["precision_macro"] == pytest.approx((3 / 4 + 2 / 5 + 4 / 5) / 3)
    assert m["recall_macro"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 3) / 3)
    assert list(m["per_class"]) == NAMES
    for name, expected in HAND.items():
        got = m["per_class"][name]
        assert got["support"] == expected["support"] and isinstance(got["support"], int)
        for key in ("precision", "recall", "f1"):
            assert got[key] == pytest.approx(expected[key]), (name, key)
    assert m["confusion_matrix"] == {"labels": NAMES, "matrix": CONFUSION}


def test_classification_metrics_count_a_never_predicted_class_as_zero_not_nan():
    gold = np.array([0, 0, 1, 1])
    predicted = np.array([0, 0, 0, 0])  # 'b' never predicted
    m = classification_metrics(predicted, gold, ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    # a: P 2/4, R 1 -> F1 2/3; macro = (2/3 + 0) / 2
    assert m["f1_macro"] == pytest.approx(1 / 3)
    assert m["accuracy"] == 0.5
    assert m["confusion_matrix"]["matrix"] == [[2, 0], [2, 0]]


# ------------------------------------------------------------------ StreamingMetrics (single label)

def test_streaming_metrics_batch_by_batch_equal_one_call_on_all_rows():
    predicted, gold = rows_from_confusion(CONFUSION)
    logits, labels = logits_for(predicted, 3), torch.as_tensor(gold)
    batched = StreamingMetrics("single_label", NAMES)
    streamed = stream(batched, logits, labels, sizes=[5, 5, 3, 1])
    whole = StreamingMetrics("single_label", NAMES)
    at_once = whole(EvalPrediction(predictions=logits, label_ids=labels))
    assert streamed == at_once
    assert set(streamed) == {"accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro"}
    assert all(isinstance(v, float) for v in streamed.values())
    assert streamed["accuracy"] == pytest.approx(HAND_ACCURACY)
    assert streamed["f1_macro"] == pytest.approx(HAND_F1_MACRO)
    assert batched.details["confusion_matrix"]["matrix"] == CONFUSION
    assert batched.details == whole.details


def test_streaming_metrics_start_afresh_for_each_evaluation():
    predicted, gold = rows_from_confusion(CONFUSION)
    logits, labels = logits_for(predicted, 3), torch.as_tensor(gold)
    metrics = StreamingMetrics("single_label", NAMES)
    first = stream(metrics, logits, labels, sizes=[7, 7])
    # a second evaluation on perfect predictions must not see the first one's rows
    second = stream(metrics, logits_for(gold, 3), labels, sizes=[4, 10])
    assert first["accuracy"] == pytest.approx(HAND_ACCURACY)
    assert second["accuracy"] == 1.0
    assert len(metrics.decision_rows()) == len(gold)


def test_streaming_metrics_take_the_logits_out_of_a_tuple_with_hidden_states():
    predicted, gold = rows_from_confusion(CONFUSION)
    logits, labels = logits_for(predicted, 3), torch.as_tensor(gold)
    plain = stream(StreamingMetrics("single_label", NAMES), logits, labels, sizes=[6, 8])
    with_hidden = StreamingMetrics("single_label", NAMES)
    tupled = stream(with_hidden, logits, labels, sizes=[6, 8], wrap=lambda x: (x, torch.randn(len(x), 7, 16)))
    assert tupled == plain
    assert tupled["accuracy"] == pytest.approx(HAND_ACCURACY)
    assert with_hidden.decisions["score"].shape == (len(gold),)


def test_streaming_metrics_accept_bfloat16_logits():
    predicted, gold = rows_from_confusion(CONFUSION)
    logits, labels = logits_for(predicted, 3), torch.as_tensor(gold)
    result = stream(StreamingMetrics("single_label", NAMES), logits.to(torch.bfloat16), labels, sizes=[9, 5])
    assert result["accuracy"] == pytest.approx(HAND_ACCURACY)


def test_decision_rows_give_label_names_in_input_order_with_the_chosen_score():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.0]])
    gold = torch.tensor([0, 1, 1, 2])
    metrics = StreamingMetrics("single_label", NAMES)
    stream(metrics, logits, gold, sizes=[1, 2, 1])
    rows = metrics.decision_rows()
    assert [r["label"] for r in rows] == ["negative", "neutral", "neutral", "positive"]
    assert [r["predicted"] for r in rows] == ["negative", "positive", "neutral", "negative"]
    # softmax of the winning logit: e^a / (e^a + 2)  for a winner a against two zeros
    expected = [math.exp(2) / (math.exp(2) + 2), math.exp(3) / (math.exp(3) + 2),
                math.e / (math.e + 2), math.exp(0.5) / (math.exp(0.5) + 2)]
    assert [r["score"] for r in rows] == pytest.approx(expected, abs=1e-6)


def test_streaming_metrics_keep_per_example_decisions_not_logits():
    num_labels, n = 50, 40
    gold = torch.arange(n) % num_labels
    logits = logits_for(gold.numpy(), num_labels)
    metrics = StreamingMetrics("single_label", [f"l{i}" for i in range(num_labels)])
    metrics(EvalPrediction(predictions=logits[:25], label_ids=gold[:25]), compute_result=False)

    def arrays(obj):
        for value in vars(obj).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, (np.ndarray, torch.Tensor)):
                    yield item

    held = list(arrays(metrics))
    assert held and all(a.ndim == 1 for a in held)  # nothing of shape (batch, num_labels) mid-evaluation
    metrics(EvalPrediction(predictions=logits[25:], label_ids=gold[25:]), compute_result=True)
    assert set(metrics.decisions) == {"predicted", "score", "gold"}
    assert all(a.shape == (n,) for a in metrics.decisions.values())
    assert all(a.ndim == 1 for a in arrays(metrics))


# ------------------------------------------------------------------ multi-label

ML_NAMES = ["action", "comedy", "drama"]
ML_GOLD = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]
# logit 0.0 -> sigmoid 0.5, which is on (>= threshold); -0.01 is off
ML_LOGITS = [[2.0, -3.0, -0.01], [-1.0, 0.0, -2.0], [1.0, 4.0, 0.3], [-2.0, -1.0, -0.5]]
ML_PREDICTED = [[1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0]]
# action TP2 FP0 FN0 -> F1 1; comedy TP2 FP0 FN0 -> F1 1; drama TP0 FP1 FN2 -> F1 0
# micro: TP4 FP1 FN2 -> 8/11; macro: 2/3; subset accuracy: only row 1 exact -> 1/4


def test_multi_label_metrics_match_hand_computed_numbers():
    m = multi_label_metrics(np.array(ML_PREDICTED), np.array(ML_GOLD), ML_NAMES)
    assert m["f1_micro"] == pytest.approx(8 / 11)
    assert m["f1_macro"] == pytest.approx(2 / 3)
    assert m["subset_accuracy"] == pytest.approx(1 / 4)
    assert m["per_class"]["drama"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["comedy"]["support"] == 2 and m["per_class"]["comedy"]["f1"] == 1.0


def test_streaming_multi_label_thresholds_sigmoid_at_one_half():
    metrics = StreamingMetrics("multi_label", ML_NAMES)
    result = stream(metrics, torch.tensor(ML_LOGITS), torch.tensor(ML_GOLD, dtype=torch.float32), sizes=[3, 1])
    assert metrics.decisions["predicted"].astype(int).tolist() == ML_PREDICTED
    assert result["f1_micro"] == pytest.approx(8 / 11)
    assert result["f1_macro"] == pytest.approx(2 / 3)
    assert result["subset_accuracy"] == pytest.approx(1 / 4)
    rows = metrics.decision_rows()
    assert rows[0] == {"label": ["action", "drama"], "predicted": ["action"],
                       "score": pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-6)}
    assert rows[3]["predicted"] == [] and rows[2]["predicted"] == ML_NAMES


def test_streaming_multi_label_uses_the_given_threshold():
    metrics = StreamingMetrics("multi_label", ML_NAMES, threshold=0.9)  # sigmoid >= 0.9 <=> logit >= 2.197
    stream(metrics, torch.tensor(ML_LOGITS), torch.tensor(ML_GOLD, dtype=torch.float32), sizes=[4])
    assert metrics.decisions["predicted"].astype(int).tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]]


# ------------------------------------------------------------------ regression

REG_GOLD = [1.0, 2.0, 3.0, 4.0]
REG_PRED = [1.5, 2.0, 1.8, 5.0]


def hand_pearson(x, y) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def test_regression_metrics_match_hand_computed_numbers():
    m = regression_metrics(np.array(REG_PRED), np.array(REG_GOLD))
    # errors 0.5, 0, -1.2, 1.0
    assert m["mse"] == pytest.approx((0.25 + 0 + 1.44 + 1.0) / 4)
    assert m["mae"] == pytest.approx((0.5 + 0 + 1.2 + 1.0) / 4)
    assert m["pearson"] == pytest.approx(hand_pearson(REG_PRED, REG_GOLD))
    assert m["pearson"] == pytest.approx(5.15 / math.sqrt(7.9675 * 5))
    # ranks of the predictions: 1, 3, 2, 4 against 1, 2, 3, 4 -> sum d^2 = 2 -> 1 - 6*2 / (4*15)
    assert m["spearman"] == pytest.approx(0.8)


@pytest.mark.parametrize("predicted, gold", [([2.0, 2.0, 2.0, 2.0], REG_GOLD), (REG_PRED, [3.0, 3.0, 3.0, 3.0])])
def test_regression_with_a_constant_side_gives_zero_correlation_not_nan(predicted, gold):
    m = regression_metrics(np.array(predicted), np.array(gold))
    assert m["pearson"] == 0.0 and m["spearman"] == 0.0
    assert all(math.isfinite(v) for v in m.values())


def test_streaming_regression_squeezes_single_output_logits():
    metrics = StreamingMetrics("regression", ["score"])
    logits = torch.tensor(REG_PRED).unsqueeze(-1)  # (n, 1), as the model returns
    result = stream(metrics, logits, torch.tensor(REG_GOLD), sizes=[3, 1])
    assert result["mse"] == pytest.approx(0.6725) and result["mae"] == pytest.approx(0.675)
    assert result["pearson"] == pytest.approx(hand_pearson(REG_PRED, REG_GOLD), abs=1e-6)
    assert metrics.decisions["predicted"].shape == (4,)
    assert [r["predicted"] for r in metrics.decision_rows()] == pytest.approx(REG_PRED)
    constant = stream(StreamingMetrics("regression", ["score"]), torch.full((4, 1), 2.5), torch.tensor(REG_GOLD), [2, 2])
    assert constant["pearson"] == 0.0 and not math.isnan(constant["spearman"])


# ------------------------------------------------------------------ class weights and loss

def test_balanced_class_weights_are_n_over_k_times_count():
    labels = [0, 0, 0, 0, 1, 1, 2]  # counts 4, 2, 1; n = 7, k = 3
    weights = class_weight_tensor("balanced", labels, "single_label", 3)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([7 / 12, 7 / 6, 7 / 3])


def test_explicit_class_weights_are_kept():
    weights = class_weight_tensor([1.0, 2.5, 0.5], [0, 1, 2], "single_label", 3)
    assert weights.tolist() == [1.0, 2.5, 0.5]
    assert class_weight_tensor(None, [0, 1], "single_label", 2) is None


def test_class_weights_of_the_wrong_length_name_both_counts():
    with pytest.raises(NLPTransferError, match=r"class_weights has 2 numbers but there are 3 labels"):
        class_weight_tensor([1.0, 2.0], [0, 1, 2], "single_label", 3)


def test_balanced_multi_label_weights_are_negatives_over_positives():
    labels = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    # positives 2, 1, 3 of 5 -> negatives 3, 4, 2
    weights = class_weight_tensor("balanced", labels, "multi_label", 3)
    assert weights.tolist() == pytest.approx([3 / 2, 4 / 1, 2 / 3])


def test_weighted_loss_with_unit_weights_is_plain_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
    labels = torch.tensor([0, 2, 0])
    loss = weighted_loss(logits, labels, torch.ones(3), "single_label")
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    # by hand: mean of -log softmax at the gold label
    by_hand = sum(-(logits[i, labels[i]] - torch.logsumexp(logits[i], 0)).item() for i in range(3)) / 3
    assert loss.item() == pytest.approx(by_hand)


def test_up_weighting_a_class_raises_the_loss_of_its_misclassified_example():
    # example 0: class 1 predicted as class 0 (high loss); example 1: class 0, correct (low loss)
    logits = torch.tensor([[3.0, -1.0], [3.0, -1.0]])
    labels = torch.tensor([1, 0])
    plain = weighted_loss(logits, labels, torch.tensor([1.0, 1.0]), "single_label")
    heavier = weighted_loss(logits, labels, torch.tensor([1.0, 4.0]), "single_label")
    assert heavier.item() > plain.item()
    # weighted mean: (w1 * l_miss + w0 * l_ok) / (w0 + w1)
    miss, ok = math.log(1 + math.exp(4.0)), math.log(1 + math.exp(-4.0))
    assert heavier.item() == pytest.approx((4 * miss + ok) / 5)


def test_multi_label_weighted_loss_uses_pos_weight():
    logits = torch.tensor([[-2.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0]])  # positive of label 0 missed
    plain = weighted_loss(logits, labels, torch.ones(2), "multi_label")
    assert plain.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item())
    heavier = weighted_loss(logits, labels, torch.tensor([3.0, 1.0]), "multi_label")
    # label 0 term is multiplied by 3: (3 * log(1 + e^2) + log(1 + e^1)) / 2
    assert heavier.item() == pytest.approx((3 * math.log(1 + math.e ** 2) + math.log(1 + math.e)) / 2)
