"""Few-shot contrastive fine-tuning (strategy contrastive): pairs from the labels, the encoder trained by
sentence-transformers and saved into the run folder, a probe on its features; the folder reloads."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_error, tiny_recipe, write_card
from safetensors.numpy import load_file

from nlp_transfer import load_model, train
from nlp_transfer.config import load_recipe
from nlp_transfer.contrastive import sentence_pairs


pytestmark = pytest.mark.usefixtures("feature_cache")  # conftest: the features cache in tmp_path


def contrastive_recipe(card, model, out, **strategy):
    recipe = tiny_recipe(card, model, out)
    recipe.pop("training")
    recipe["strategy"] = {"name": "contrastive", "iterations": 2, "learning_rate": 1e-3, **strategy}
    return recipe


def test_pairs_pair_each_row_with_its_label_and_another_per_iteration():
    labels = [0, 0, 0, 1, 1, 2]
    first, second, target = sentence_pairs(labels, iterations=3, max_pairs=None, seed=5)
    labels = np.asarray(labels)
    same = labels[first] == labels[second]
    assert np.array_equal(same, target == 1.0)  # the target says whether the labels match
    assert not np.any(first[target == 1.0] == second[target == 1.0])  # never a row with itself
    # per iteration: one positive for every row whose label has another row (5 of 6), one negative for each row
    assert int(target.sum()) == 3 * 5 and int((target == 0).sum()) == 3 * 6
    assert np.array_equal(np.bincount(first, minlength=6), [6, 6, 6, 6, 6, 3])
    again = sentence_pairs(list(labels), iterations=3, max_pairs=None, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip((first, second, target), again))  # seeded
    other = sentence_pairs(list(labels), iterations=3, max_pairs=None, seed=6)
    assert not np.array_equal(other[1], second)
    capped = sentence_pairs(list(labels), iterations=3, max_pairs=7, seed=5)
    assert len(capped[0]) == 7


def test_pairs_need_two_labels():
    from nlp_transfer.errors import NLPTransferError

    with pytest.raises(NLPTransferError, match="at least two labels"):
        sentence_pairs([1, 1, 1], iterations=1, max_pairs=None, seed=0)


def test_contrastive_trains_the_encoder_saves_it_and_the_folder_reloads(sst2_toy, tiny_bert, tmp_path,
                                                                        feature_cache):
    out = tmp_path / "contrastive"
    metrics = train(contrastive_recipe(sst2_toy, tiny_bert, out, max_pairs=200)).metrics
    assert metrics["strategy"] == "contrastive" and metrics["backend"] == "probe"
    pairs = metrics["train"]["contrastive"]
    assert pairs["pairs"] == 200 and pairs["steps"] == 13  # 200 pairs, batch 16, one epoch
    assert metrics["params"]["trainable"] == metrics["params"]["total"]  # the encoder trained too
    encoder = out / "encoder"
    assert (encoder / "model.safetensors").is_file() and not list(encoder.glob("*.bin"))
    base = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_file(str(encoder / "model.safetensors"))
    moved = [k for k in tuned if k in base and k.endswith(".weight") and not np.allclose(base[k], tuned[k])]
    assert any("encoder.layer.0" in k for k in moved)  # the pair loss moved the encoder's weights
    assert not list(feature_cache.glob("*.npy"))  # features of a run's own encoder are not cached
    card = (out / "README.md").read_text()
    assert "library_name: nlp_transfer" in card and "200 sentence pairs" in card and "pipeline(" not in card
    sidecar = json.loads((out / "nlp_transfer.json").read_text())
    assert sidecar["encoder"] == "encoder" and sidecar["encoder_in_folder"] and sidecar["base_model"] == str(tiny_bert)
    rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    model = load_model(out)  # the probe on the folder's own encoder, not the base model
    again = model.predict([r["text"] for r in rows])
    assert [a["label"] for a in again] == [r["predicted"] for r in rows]
    moved_folder = tmp_path / "moved"
    out.rename(moved_folder)  # the encoder is found inside the folder, wherever it is
    assert [a["label"] for a in load_model(moved_folder).predict([r["text"] for r in rows])] == \
        [r["predicted"] for r in rows]


def test_contrastive_refuses_what_it_cannot_pair(tmp_path, tiny_bert, capsys):
    import yaml

    rows = [json.dumps({"text": f"row {i}", "tags": ["a", "b"][: 1 + i % 2]}) for i in range(8)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    card = write_card(tmp_path, "topics", splits={"train": "train.jsonl", "validation": "train.jsonl"}, label="tags",
                      problem_type="multi_label")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(contrastive_recipe(card, tiny_bert, tmp_path / "out")))
    line = cli_error(capsys, ["train", recipe])
    assert "contrastive" in line and "multi-label" in line and "feature-extraction" in line
    assert not (tmp_path / "out").exists()


def test_contrastive_options_are_checked():
    from nlp_transfer.errors import NLPTransferError

    base = {"task": "sequence-classification", "data": "d.md", "model": "m"}
    recipe = load_recipe({**base, "strategy": {"name": "contrastive", "iterations": 5}})
    assert recipe.backend == "probe" and recipe.strategy.describe() == "iterations 5, max pairs 2000"
    with pytest.raises(NLPTransferError, match="iterations"):
        load_recipe({**base, "strategy": {"name": "contrastive", "iterations": 0}})
    with pytest.raises(NLPTransferError, match="layers"):  # the pair-trained encoder is pooled at its last layer
        load_recipe({**base, "strategy": {"name": "contrastive", "layers": [-2]}})
    with pytest.raises(NLPTransferError, match="end_to_end=true"):  # an option of a phase that is off
        load_recipe({**base, "strategy": {"name": "contrastive", "end_to_end_epochs": 4}})
    with pytest.raises(NLPTransferError, match="training"):  # its own epochs/batch_size/learning_rate, not Trainer's
        load_recipe({**base, "strategy": "contrastive", "training": {"num_train_epochs": 3}})


def test_the_pair_learning_rate_follows_the_encoder_width_unless_the_recipe_gives_one(sst2_toy, tiny_bert,
                                                                                       tmp_path):
    from nlp_transfer.contrastive import pair_learning_rate

    assert pair_learning_rate(384) == 1e-4 and pair_learning_rate(768) == 2e-5 and pair_learning_rate(1024) == 2e-5
    recipe = contrastive_recipe(sst2_toy, tiny_bert, tmp_path / "auto", max_pairs=32)
    recipe["strategy"].pop("learning_rate")  # null: from the width (the tiny model's hidden size is 32)
    info = train(recipe).metrics["train"]["contrastive"]
    assert info["learning_rate"] == 1e-4 and info["learning_rate_from"] == "encoder width"
    given = train(contrastive_recipe(sst2_toy, tiny_bert, tmp_path / "given", max_pairs=32)).metrics
    assert given["train"]["contrastive"]["learning_rate"] == 1e-3
    assert given["train"]["contrastive"]["learning_rate_from"] == "recipe"
    assert given["train"]["C"] == 1.0 and len(given["train"]["search"]) == 1  # a fixed C: nothing chosen on dev


def test_the_pair_loss_is_chosen_by_name_and_changes_the_training(sst2_toy, tiny_bert, tmp_path):
    from nlp_transfer.contrastive import PAIR_LOSSES
    from nlp_transfer.errors import NLPTransferError

    weights = {}
    for name, cls in PAIR_LOSSES.items():
        out = tmp_path / name
        metrics = train(contrastive_recipe(sst2_toy, tiny_bert, out, max_pairs=64, loss=name)).metrics
        info = metrics["train"]["contrastive"]
        assert info["loss_function"] == cls and np.isfinite(info["loss"])
        weights[name] = load_file(str(out / "encoder" / "model.safetensors"))["encoder.layer.0.output.dense.weight"]
    base = load_file(str(tiny_bert / "model.safetensors"))["encoder.layer.0.output.dense.weight"]
    assert all(not np.allclose(w, base) for w in weights.values())  # each loss trained the encoder
    assert not np.allclose(weights["cosine"], weights["contrastive"])  # the same pairs and seed, another objective
    with pytest.raises(NLPTransferError, match="cosine"):  # a close-match suggestion for a typo
        load_recipe({"task": "sequence-classification", "data": "d.md", "model": "m",
                     "strategy": {"name": "contrastive", "loss": "cosin"}})


def test_end_to_end_trains_the_encoder_through_a_head_after_the_pairs(sst2_toy, tiny_bert, tmp_path):
    plain = train(contrastive_recipe(sst2_toy, tiny_bert, tmp_path / "plain", max_pairs=32)).metrics
    out = tmp_path / "e2e"
    metrics = train(contrastive_recipe(sst2_toy, tiny_bert, out, max_pairs=32, end_to_end=True,
                                       end_to_end_epochs=3)).metrics
    info = metrics["train"]["contrastive"]
    assert "end_to_end" not in plain["train"]["contrastive"]
    assert info["end_to_end"]["epochs"] == 3 and np.isfinite(info["end_to_end"]["loss"])
    assert info["pairs"] == plain["train"]["contrastive"]["pairs"]  # the same pairs first
    key = "encoder.layer.1.output.dense.weight"
    after_pairs = load_file(str(tmp_path / "plain" / "encoder" / "model.safetensors"))[key]
    assert not np.allclose(load_file(str(out / "encoder" / "model.safetensors"))[key], after_pairs)
    rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert [p["label"] for p in load_model(out).predict([r["text"] for r in rows])] == [r["predicted"] for r in rows]
