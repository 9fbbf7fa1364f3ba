"""Learning curves (`nlp_transfer.curve`): real tiny runs per strategy, size and seed; curve.json's numbers are the run
folders' numbers; an interrupted curve resumes without retraining finished points; the advice follows the numbers;
bad input is one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli_error, tiny_recipe, write_sst2_card

from nlp_transfer.cli import main
from nlp_transfer.curve import SUMMARY, advice, curve, markdown, point_folder
from nlp_transfer.training import stratified_choice


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def recipe_file(tmp_path, tiny_bert) -> Path:
    card = write_sst2_card(tmp_path / "data", train_rows=120, dev_rows=40)
    values = tiny_recipe(card, tiny_bert, tmp_path / "unused", max_steps=2)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def run_metrics(out: Path, strategy: str, size: int, seed: int) -> dict:
    return json.loads((point_folder(out, strategy, size, seed) / "metrics.json").read_text())


def test_a_tiny_curve_writes_each_point_and_their_means(recipe_file, tmp_path, capsys):
    out = tmp_path / "curve"
    data = curve(str(recipe_file), [24, 48], ["feature-extraction", "full"], [1, 2], out)
    printed = [line for line in capsys.readouterr().out.splitlines() if "nlp-transfer: curve [" in line]
    assert len(printed) == 8 and "feature-extraction 24 rows seed 1" in printed[0] and "full 48 rows seed 2" in printed[-1]
    assert json.loads((out / SUMMARY).read_text()) == data
    assert data["main_metric"] == "accuracy" and data["eval_split"] == "validation"
    assert data["task"] == "sequence-classification" and data["sizes"] == [24, 48] and data["training_rows"] == 120
    for strategy in ("feature-extraction", "full"):
        for size in (24, 48):
            runs = [run_metrics(out, strategy, size, seed) for seed in (1, 2)]
            assert [m["seed"] for m in runs] == [1, 2] and all(m["rows"]["train"] == size for m in runs)
            cell = data["points"][strategy][str(size)]
            values = [m["eval"]["accuracy"] for m in runs]
            assert cell["values"] == values and cell["n"] == 2 and cell["seeds"] == [1, 2]
            assert cell["mean"] == pytest.approx(np.mean(values))
            assert cell["std"] == pytest.approx(np.std(values, ddof=1))
            assert cell["train_time_s"] == pytest.approx(np.mean([m["train"]["runtime_s"] for m in runs]))
    assert [item["size"] for item in data["advice"]] == [24, 48]
    report = (out / "curve.md").read_text()
    assert "| feature-extraction |" in report and "best" in report
    assert (out / "curve.png").stat().st_size > 1000 and (out / "curve-time.png").stat().st_size > 1000


def test_an_interrupted_curve_resumes_without_retraining_finished_points(recipe_file, tmp_path, capsys):
    out = tmp_path / "curve"
    argv = ["curve", str(recipe_file), "--sizes", "24,500", "--strategies", "feature-extraction", "--seeds", "1,2",
            "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    sizes = json.loads((out / SUMMARY).read_text())["sizes"]
    assert sizes == [24, 120]  # 500 >= the split's 120 rows: all of them, once
    assert run_metrics(out, "feature-extraction", 120, 1)["rows"]["train"] == 120
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("feature-extraction/*/seed-*/metrics.json")}
    assert len(stamps) == 4
    lost = point_folder(out, "feature-extraction", 24, 2)
    for path in sorted(lost.rglob("*"), reverse=True):  # the point interrupted: its folder gone
        path.unlink() if path.is_file() else path.rmdir()
    lost.rmdir()
    partial = json.loads((out / SUMMARY).read_text())
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("resume=true has nothing to do") == 3
    for path, stamp in stamps.items():
        if lost not in path.parents:
            assert path.stat().st_mtime_ns == stamp, path
    data = json.loads((out / SUMMARY).read_text())
    assert all(data["points"]["feature-extraction"][str(size)]["n"] == 2 for size in (24, 120))
    assert data["points"]["feature-extraction"]["120"] == partial["points"]["feature-extraction"]["120"]


def fabricated(metric: str = "accuracy") -> dict:
    def cell(mean, std, seconds):
        return {"mean": mean, "std": std, "n": 3, "values": [mean] * 3, "train_time_s": seconds}
    return {"main_metric": metric, "sizes": [32, 1000], "model": "m", "data": "d", "eval_split": "validation",
            "seeds": [1, 2, 3], "training_rows": 5000,
            "points": {"full": {"32": cell(0.70, 0.05, 60.0), "1000": cell(0.90, 0.01, 600.0)},
                       "lora": {"32": cell(0.72, 0.04, 40.0), "1000": cell(0.88, 0.01, 300.0)},
                       "feature-extraction": {"32": cell(0.69, 0.01, 2.0), "1000": cell(0.80, 0.01, 20.0)}}}


def test_the_advice_follows_the_numbers():
    data = fabricated()
    picks = {item["size"]: (item["best"]["strategy"], item["cheapest"]["strategy"]) for item in advice(data)}
    assert picks == {32: ("lora", "feature-extraction"), 1000: ("full", "full")}
    first = advice(data)[0]
    assert first["best"]["mean"] == 0.72 and first["best"]["std"] == 0.04 and first["cheapest"]["train_time_s"] == 2.0
    data["points"]["feature-extraction"]["32"]["mean"] = 0.65  # now outside one std of lora's 0.72 ± 0.04
    picks = {item["size"]: (item["best"]["strategy"], item["cheapest"]["strategy"]) for item in advice(data)}
    assert picks[32] == ("lora", "lora")
    data["points"]["lora"]["1000"]["std"] = 0.05  # full's 0.90 is the best; its std decides who is close
    data["points"]["full"]["1000"]["std"] = 0.03
    assert advice(data)[1]["cheapest"]["strategy"] == "lora"
    data["points"]["full"]["1000"]["mean"] = 0.95  # lora falls out of one std again
    assert advice(data)[1]["cheapest"]["strategy"] == "full"
    data["advice"] = advice(data)
    assert "lora 0.7200 ± 0.0400" in markdown(data)


def test_lower_is_better_metrics_pick_the_lowest_mean():
    data = fabricated("perplexity")
    assert advice(data)[0]["best"]["strategy"] == "feature-extraction"
    assert advice(data)[1]["best"]["strategy"] == "feature-extraction"


def test_the_stratified_subset_keeps_the_label_shares():
    labels = [0] * 70 + [1] * 30
    chosen = stratified_choice(labels, 10, np.random.default_rng(1))
    assert len(set(chosen)) == 10 and list(np.bincount(np.array(labels)[chosen])) == [7, 3]
    other = stratified_choice(labels, 10, np.random.default_rng(2))
    assert list(other) != list(chosen)  # another seed, another subset


@pytest.mark.parametrize("extra, expected", [
    (["--sizes", "32,ten", "--strategies", "full", "--seeds", "1"], "--sizes '32,ten': give integers"),
    (["--sizes", "32", "--strategies", "full,lroa", "--seeds", "1"], "unknown strategy 'lroa'"),
    (["--sizes", "32", "--strategies", "static-bilstm", "--seeds", "1"], "--static-recipe"),
    (["--sizes", "32,32", "--strategies", "full", "--seeds", "1"], "listed twice"),
    (["--sizes", "32", "--strategies", "full", "--seeds", "1,x"], "--seeds '1,x'"),
])
def test_bad_input_is_one_line(recipe_file, tmp_path, capsys, extra, expected):
    line = cli_error(capsys, ["curve", recipe_file, *extra, "--out", tmp_path / "bad"])
    assert expected in line
    assert not (tmp_path / "bad").exists()
