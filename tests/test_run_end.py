"""The end of a run (`nlp_transfer.outputs.finish`): calibration, the test split and every eval set are scored by
one predictor, opened once from the staged folder, with the same scores a fresh `load_model` + `evaluate` gives."""
from __future__ import annotations

import pytest
from conftest import tiny_recipe, write_card, write_sst2_card

from nlp_transfer import evaluate, train
from nlp_transfer.backends.trainer import TrainerBackend


def test_final_scoring_opens_the_trained_model_once(tiny_bert, tmp_path, monkeypatch):
    card = write_sst2_card(tmp_path / "data", 96, 32)
    card = write_card(card.parent, "sst2-toy", splits={"train": "train.tsv", "validation": "dev.tsv", "test": "dev.tsv"},
                      format="tsv", text="sentence", labels=["negative", "positive"])
    loads = []
    original = TrainerBackend.load

    def counted(self, *args, **kwargs):
        loads.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainerBackend, "load", counted)
    recipe = {**tiny_recipe(card, tiny_bert, tmp_path / "run", max_steps=4), "test_split": "test",
              "eval_sets": {"again": {"data": str(card), "split": "test"}, "dev": {"data": str(card), "split": "validation"}}}
    metrics = train(recipe).metrics
    assert len(loads) == 1  # calibration + test split + two eval sets
    assert set(metrics["eval_sets"]) == {"again", "dev"} and "calibration" in metrics
    monkeypatch.undo()
    fresh = evaluate(tmp_path / "run", card, "test", device="cpu")
    for key in ("accuracy", "f1_macro"):
        assert metrics["test"][key] == pytest.approx(fresh[key], abs=1e-6)
        assert metrics["eval_sets"]["again"][key] == pytest.approx(fresh[key], abs=1e-6)


def test_train_runs_where_the_command_line_says(tiny_bert, sst2_toy, tmp_path, capsys):
    import yaml

    from nlp_transfer.cli import main
    from conftest import cli_error

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=2)))
    assert main(["train", str(recipe), "--device", "cpu", "--precision", "bfloat16"]) == 0  # autocast: GPUs only
    capsys.readouterr()
    message = cli_error(capsys, ["train", str(recipe), "--device", "tpu", "output_dir=" + str(tmp_path / "other")])
    assert "device 'tpu' is not one of auto, cpu, cuda, cuda:N, mps" in message
    assert not (tmp_path / "other").exists()
