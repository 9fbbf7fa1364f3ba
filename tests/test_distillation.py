"""Strategy distill: a real teacher run's soft targets steer a real student (tiny BERT), the teacher's logits are cached
per (teacher, texts), augmentation follows Tang et al. (masking, n-grams), and bad settings fail before training."""
from __future__ import annotations

import random
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import tiny_recipe, write_card

from nlp_transfer import NLPTransferError, train
from nlp_transfer.config import load_recipe
from nlp_transfer.distillation import augmented, softened, teacher_logits
from nlp_transfer.strategies import distillation_loss

POSITIVE, NEGATIVE = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "dull"]
FILLER = ["the", "movie", "was", "a", "plot", "story"]


def keyword_card(folder: Path, flipped: bool = False, rows: int = 160) -> Path:
    """A learnable sentiment card: three filler words and one keyword; ``flipped`` swaps every label."""
    rng = random.Random(3)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.tsv", rows), ("dev.tsv", 60)):
        lines = ["sentence\tlabel"]
        for i in range(count):
            label = i % 2
            words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label else NEGATIVE)]
            rng.shuffle(words)
            lines.append(f"{' '.join(words)}\t{1 - label if flipped else label}")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return write_card(folder, "keywords", splits={"train": "train.tsv", "validation": "dev.tsv"}, format="tsv",
                      text="sentence", label="label", labels=["negative", "positive"])


@pytest.fixture(scope="module")
def flipped_teacher(tmp_path_factory, tiny_bert) -> Path:
    """A real teacher run that learned the keywords with every label swapped (dev accuracy on its own labels > 0.9)."""
    folder = tmp_path_factory.mktemp("teacher")
    out = folder / "run"
    result = train(tiny_recipe(keyword_card(folder / "data", flipped=True), tiny_bert, out, num_train_epochs=12,
                               eval_strategy="no", save_strategy="no", load_best_model_at_end=False))
    assert result.metrics["eval"]["accuracy"] > 0.9 and result.metrics["eval"]["loss"] < 0.5  # right, and confident
    return out


def student(card: Path, model: Path, out: Path, teacher: Path, **strategy) -> dict:
    # the final model, not the checkpoint the gold dev labels would pick
    recipe = tiny_recipe(card, model, out, num_train_epochs=8, eval_strategy="no", save_strategy="no",
                         load_best_model_at_end=False)
    recipe["seed"] = 11
    recipe["strategy"] = {"name": "distill", "teacher": str(teacher), "temperature": 1.0, **strategy}
    return recipe


def test_the_soft_loss_steers_the_student_and_the_hard_loss_the_gold(tmp_path, tiny_bert, flipped_teacher,
                                                                     monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    card = keyword_card(tmp_path / "data")  # the gold labels, unflipped
    teacher_only = train(student(card, tiny_bert, tmp_path / "soft", flipped_teacher, soft_weight=1.0))
    gold_only = train(student(card, tiny_bert, tmp_path / "hard", flipped_teacher, soft_weight=0.0))
    # scored against the gold labels: the student that learned from the flipped teacher alone is wrong where the
    # teacher is, the one that learned from the gold alone is right
    assert teacher_only.metrics["eval"]["accuracy"] < 0.2
    assert gold_only.metrics["eval"]["accuracy"] > 0.8
    recorded = teacher_only.metrics["teacher"]  # metrics.json says what the teacher labelled
    assert recorded["labelled_rows"] == 160 and recorded["teacher_only_rows"] == 0
    assert recorded["agreement_with_training_labels"] < 0.1  # it learned the flipped labels
    again = load_recipe(str(tmp_path / "soft" / "recipe.yaml"))
    assert again.strategy.name == "distill" and again.strategy.teacher == str(flipped_teacher)


def test_teacher_logits_are_cached_per_teacher_and_texts(tmp_path, tiny_bert, flipped_teacher, monkeypatch, capsys):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    card = keyword_card(tmp_path / "data", rows=40)
    unlabelled = tmp_path / "more.txt"
    unlabelled.write_text("a great story\n\nthe awful plot\n", encoding="utf-8")
    train(student(card, tiny_bert, tmp_path / "a", flipped_teacher, augment=2, unlabelled=str(unlabelled),
                  soft_weight=0.7))
    assert "labels 40 training rows and 82 more texts" in capsys.readouterr().err  # 2 lines + 2 x 40 copies
    cache = tmp_path / "cache" / "teacher"
    first = sorted(cache.glob("*.npy"))
    assert len(first) == 1 and np.load(first[0]).shape == (40 + 82, 2)
    stamp = first[0].stat().st_mtime_ns
    # the training split went to disk through the Arrow cache, not a list in memory
    written = [datasets.Dataset.from_file(str(p)) for p in (tmp_path / "cache" / "data").glob("*.arrow")
               if not p.name.startswith("cache-")]  # not the tokenized copies datasets writes beside it
    distilled = [d for d in written if "soft_labels" in d.column_names]
    assert len(distilled) == 1 and len(distilled[0]) == 122
    labels, soft = distilled[0]["label"], np.asarray(distilled[0]["soft_labels"])
    assert -100 not in labels[:40] and set(labels[40:]) == {-100}
    np.testing.assert_allclose(soft, softened(np.load(first[0]), 1.0), atol=1e-6)
    other_seed = student(card, tiny_bert, tmp_path / "b", flipped_teacher, augment=2, unlabelled=str(unlabelled),
                         soft_weight=0.3)
    other_seed["seed"] = 12  # another student and run seed; the copies follow augment_seed: the same texts
    metrics = train(other_seed).metrics
    assert sorted(cache.glob("*.npy")) == first and first[0].stat().st_mtime_ns == stamp
    assert metrics["teacher"]["augment_seed"] == 0 and metrics["teacher"]["teacher_only_rows"] == 82
    train(student(card, tiny_bert, tmp_path / "c", flipped_teacher, augment=1))  # other texts: a new entry
    assert len(list(cache.glob("*.npy"))) == 2 and not list(cache.glob("*.partial*"))


class Stopping:
    """The real teacher, stopped (as a killed process would be) after ``calls`` chunks; counts the rows it scores."""

    def __init__(self, predictor, calls: int | None = None):
        self.predictor, self.calls, self.rows = predictor, calls, 0

    def logits(self, texts, batch_size: int = 32):
        if self.calls is not None and self.calls == 0:
            raise KeyboardInterrupt
        self.calls = None if self.calls is None else self.calls - 1
        self.rows += len(texts)
        return self.predictor.logits(texts, batch_size=batch_size)


def test_a_stopped_teacher_scoring_continues_from_its_last_chunk(tmp_path, flipped_teacher, monkeypatch):
    from nlp_transfer import distillation, load_model

    monkeypatch.setattr(distillation, "CHUNK", 16)
    predictor = load_model(flipped_teacher, device="cpu")
    texts = [f"the {word} movie number {i}" for i in range(70) for word in POSITIVE[i % 4:i % 4 + 1]]
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "whole"))
    whole = np.asarray(teacher_logits(str(flipped_teacher), predictor, texts))
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "stopped"))
    with pytest.raises(KeyboardInterrupt):
        teacher_logits(str(flipped_teacher), Stopping(predictor, calls=2), texts)
    cache = tmp_path / "stopped" / "teacher"
    assert not list(cache.glob("*[0-9a-f].npy")) and [p.suffix for p in cache.glob("*.done")] == [".done"]
    again = Stopping(predictor)
    resumed = np.asarray(teacher_logits(str(flipped_teacher), again, texts))
    assert again.rows == 70 - 32  # the two finished chunks were not scored again
    np.testing.assert_allclose(resumed, whole, atol=1e-5)
    assert [p.name.count(".") for p in cache.iterdir()] == [1]  # only the finished .npy is left


def test_more_texts_reuse_the_cached_labels_of_their_first_rows(tmp_path, flipped_teacher, monkeypatch, capsys):
    from nlp_transfer import distillation, load_model

    monkeypatch.setattr(distillation, "CHUNK", 16)
    predictor = load_model(flipped_teacher, device="cpu")
    rows = [f"the {POSITIVE[i % 4]} movie number {i}" for i in range(30)]
    one, three = list(augmented(rows, 1, 0.3, 0.3, "[MASK]", 0)), list(augmented(rows, 3, 0.3, 0.3, "[MASK]", 0))
    assert three[:30] == one  # copy by copy: one copy's texts begin three copies'
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "fresh"))
    whole = np.asarray(teacher_logits(str(flipped_teacher), predictor, rows + three))
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "grown"))
    teacher_logits(str(flipped_teacher), predictor, rows + one)
    teacher_logits(str(flipped_teacher), predictor, rows[:7])  # a shorter run of other length: also a prefix
    teacher_logits(str(flipped_teacher), predictor, list(reversed(rows)))  # 30 rows, not a prefix
    counted = Stopping(predictor)
    capsys.readouterr()
    grown = np.asarray(teacher_logits(str(flipped_teacher), counted, rows + three))
    assert counted.rows == 120 - 60  # only the two new copies were scored: the longest cached prefix was used
    assert "the first 60 texts come from the cached" in capsys.readouterr().err
    np.testing.assert_allclose(grown, whole, atol=1e-5)
    other = Stopping(predictor)
    teacher_logits(str(flipped_teacher), other, ["a new text", *rows])  # same texts shifted: nothing reused
    assert other.rows == 31

def test_augmentation_masks_words_and_samples_ngrams_reproducibly():
    texts = ["one two three four five six seven eight nine ten"] * 200
    first = list(augmented(texts, 2, mask_prob=0.1, ngram_prob=0.25, mask_token="[MASK]", seed=5))
    assert first == list(augmented(texts, 2, mask_prob=0.1, ngram_prob=0.25, mask_token="[MASK]", seed=5))
    assert len(first) == 400
    lengths = [len(text.split()) for text in first]
    short = sum(length < 10 for length in lengths)
    assert 60 < short < 140 and min(lengths) >= 1  # about a quarter are n-grams of 1 to 5 words
    assert all(length <= 5 for length in lengths if length < 10)
    masked = sum(text.split().count("[MASK]") for text in first) / sum(lengths)
    assert 0.05 < masked < 0.15
    assert list(augmented(texts, 0, 0.1, 0.25, "[MASK]", 5)) == []


def test_distillation_loss_mixes_kl_and_cross_entropy_and_skips_unlabelled_rows():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    labels = torch.tensor([0, -100, 1])
    soft = torch.from_numpy(softened(np.array([[1.0, 0.0], [0.0, 2.0], [0.2, 0.1]]), 2.0))
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / 2.0, -1), soft, reduction="batchmean") * 4.0
    ce = torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(distillation_loss(logits, labels, soft, 2.0, 1.0), kl)
    assert torch.allclose(distillation_loss(logits, labels, soft, 2.0, 0.0), ce)
    assert torch.allclose(distillation_loss(logits, labels, soft, 2.0, 0.25), 0.25 * kl + 0.75 * ce)
    only_unlabelled = distillation_loss(logits[1:2], labels[1:2], soft[1:2], 2.0, 0.5)
    assert torch.isfinite(only_unlabelled)


def test_bad_distill_settings_fail_before_training(tmp_path, tiny_bert, flipped_teacher):
    card = keyword_card(tmp_path / "data")
    recipe = student(card, tiny_bert, tmp_path / "x", flipped_teacher)
    del recipe["strategy"]["teacher"]
    with pytest.raises(NLPTransferError, match="strategy distill needs strategy.teacher"):
        load_recipe(recipe)
    load_recipe(student(card, tiny_bert, tmp_path / "x", tmp_path))  # a shipped recipe may name a teacher made later
    with pytest.raises(NLPTransferError, match="is not a trained run folder"):
        train(student(card, tiny_bert, tmp_path / "x", tmp_path))
    with pytest.raises(NLPTransferError, match="strategy.unlabelled .* is not a file"):
        train(student(card, tiny_bert, tmp_path / "x", flipped_teacher, unlabelled=str(tmp_path / "none.txt")))
    assert not (tmp_path / "x").exists()
    (tmp_path / "three").mkdir()
    three = write_card(tmp_path / "three", "three", splits={"train": "t.tsv", "validation": "t.tsv"}, format="tsv",
                       text="sentence", label="label", labels=["a", "b", "c"])
    (tmp_path / "three" / "t.tsv").write_text("sentence\tlabel\ngood film\t0\nbad film\t1\nok film\t2\n")
    with pytest.raises(NLPTransferError, match="the teacher .* predicts labels \\['negative', 'positive'\\]"):
        train(student(three, tiny_bert, tmp_path / "y", flipped_teacher))
    assert not (tmp_path / "y").exists()


def test_the_learning_curve_takes_distill_as_a_strategy(tmp_path, tiny_bert, flipped_teacher, monkeypatch):
    """`nlp-transfer curve --strategies full,distill --strategy-override distill:strategy.teacher=DIR`: the student
    with a teacher is a curve beside the rest."""
    from nlp_transfer.analysis.curve import curve

    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = tiny_recipe(keyword_card(tmp_path / "data"), tiny_bert, tmp_path / "unused")
    data = curve(recipe, [24, 48], ["full", "distill"], [1], tmp_path / "curve",
                 strategy_overrides={"distill": [f"strategy.teacher={flipped_teacher}", "strategy.soft_weight=1.0",
                                                 "strategy.temperature=1.0"]})
    assert set(data["points"]) == {"full", "distill"} and set(data["points"]["distill"]) == {"24", "48"}
    saved = load_recipe(str(tmp_path / "curve" / "distill" / "48" / "seed-1" / "recipe.yaml"))
    assert saved.strategy.teacher == str(flipped_teacher) and saved.train_rows == 48
    with pytest.raises(NLPTransferError, match="strategy distill needs strategy.teacher"):
        curve(recipe, [24], ["distill"], [1], tmp_path / "curve2")


def test_a_static_bilstm_student_learns_from_the_teacher(tmp_path, flipped_teacher, monkeypatch):
    """The frozen-GloVe BiLSTM as the student (`static:` + strategy distill): soft targets steer it too; the
    averaged-vectors baseline is refused with the reason."""
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    card = keyword_card(tmp_path / "data")
    rng = np.random.default_rng(0)
    lines = []
    for word in POSITIVE + NEGATIVE + FILLER + ["[MASK]"]:
        vector = rng.normal(0, 0.3, 8)
        vector[0] = 2.0 if word in POSITIVE else -2.0 if word in NEGATIVE else vector[0]
        lines.append(word + " " + " ".join(f"{x:.5f}" for x in vector))
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def static_student(out: str, **strategy) -> dict:
        return {"task": "sequence-classification", "data": str(card), "output_dir": str(tmp_path / out), "seed": 7,
                "static": {"vectors": str(vectors), "hidden": 16, "epochs": 1, "batch_size": 16,
                           "learning_rate": 5e-3},
                "strategy": {"name": "distill", "teacher": str(flipped_teacher), "temperature": 1.0, "augment": 4,
                             **strategy}}

    soft = train(static_student("soft", soft_weight=1.0))
    gold = train(static_student("gold", soft_weight=0.0))
    assert soft.metrics["eval"]["accuracy"] < 0.2 and gold.metrics["eval"]["accuracy"] > 0.8
    assert soft.metrics["teacher"]["teacher_only_rows"] == 4 * 160
    average = static_student("average")
    average["static"]["baseline"] = "average"
    with pytest.raises(NLPTransferError, match="static.baseline: bilstm"):
        train(average)
    assert not (tmp_path / "average").exists()
    saved = load_recipe(str(tmp_path / "soft" / "recipe.yaml"))  # the saved recipe keeps the teacher
    assert saved.backend == "static" and saved.strategy.name == "distill" and saved.strategy.augment == 4


def test_distill_refuses_tasks_it_does_not_train(tmp_path, tiny_bert, flipped_teacher, conll_toy):
    recipe = {"task": "token-classification", "data": str(conll_toy), "model": str(tiny_bert),
              "output_dir": str(tmp_path / "ner"), "strategy": {"name": "distill", "teacher": str(flipped_teacher)}}
    with pytest.raises(NLPTransferError, match="does not train with strategy distill"):
        load_recipe(recipe)
