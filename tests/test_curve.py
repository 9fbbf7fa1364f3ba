"""Learning curves (`nlp_transfer.analysis.curve`): real tiny runs per strategy, size and seed; curve.json's numbers are the run
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
from nlp_transfer.analysis.curve import SUMMARY, advice, curve, markdown, point_folder
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


def test_a_killed_curve_process_resumes_without_retraining_finished_points(recipe_file, tmp_path):
    """The real interruption: the curve's process is killed (SIGKILL) once five of its eight points have printed,
    whatever it is doing then; the re-run leaves those five as they were and completes curve.json."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "curve"
    argv = [sys.executable, "-m", "nlp_transfer", "curve", str(recipe_file), "--sizes", "24,48", "--strategies",
            "feature-extraction,full", "--seeds", "2", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    finished = []
    for line in process.stdout:
        if "nlp-transfer: curve [" in line:
            finished.append(line)
        if len(finished) == 5:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert len(finished) == 5, "the curve ended before it could be interrupted"
    done = [point_folder(out, s, size, seed) for s in ("feature-extraction", "full") for size in (24, 48)
            for seed in (1, 2)][:5]
    stamps = {folder: (folder / "metrics.json").stat().st_mtime_ns for folder in done}
    partial = json.loads((out / SUMMARY).read_text())  # rewritten after each point's line: the kill may beat the 5th
    assert sum(cell["n"] for table in partial["points"].values() for cell in table.values()) in (4, 5)
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("resume=true has nothing to do") == 5
    for folder, stamp in stamps.items():
        assert (folder / "metrics.json").stat().st_mtime_ns == stamp, folder  # not retrained
    data = json.loads((out / SUMMARY).read_text())
    assert all(cell["n"] == 2 for table in data["points"].values() for cell in table.values())
    assert sorted(data["points"]) == ["feature-extraction", "full"] and data["sizes"] == [24, 48]


def test_per_class_sizes_min_steps_and_strategy_overrides_shape_the_points(tmp_path, tiny_bert):
    from nlp_transfer.analysis.curve import plan_points

    card = write_sst2_card(tmp_path / "data", train_rows=120, dev_rows=40)
    values = tiny_recipe(card, tiny_bert, tmp_path / "unused")  # 2 epochs at batch 16, no max_steps
    points, description = plan_points(values, [4, 40], ["full", "lora", "feature-extraction"], [1], tmp_path / "c",
                                      None, None, per_class=True, min_steps=10,
                                      strategy_overrides={"lora": ["training.learning_rate=5e-4"]})
    by = {(strategy, size): recipe for strategy, size, _, recipe in points}
    assert description["unit"] == "rows per label" and description["min_steps"] == 10
    assert by["full", 4].train_rows_per_class == 4 and by["full", 4].train_rows is None
    assert by["full", 4].training["max_steps"] == 10  # 8 rows, 2 epochs at batch 16: 2 steps, raised to 10
    assert "max_steps" not in by["full", 40].training  # 80 rows: 5 steps x 2 epochs = 10, enough
    assert by["lora", 4].training["learning_rate"] == 5e-4 and by["full", 4].training["learning_rate"] == 1e-3
    assert by["feature-extraction", 4].backend == "probe"  # the probe has no steps to raise
    values.pop("training")  # nlp_transfer's own defaults count: batch 32, 3 epochs -> 80 rows are 9 steps
    points, _ = plan_points(values, [40], ["full"], [1], tmp_path / "d", None, None, per_class=True, min_steps=10)
    assert points[0][3].training["max_steps"] == 10
    result = train_point(by["full", 4])
    assert result["rows"]["train"] == 8 and result["train"]["global_step"] == 10
    predictions = (Path(by["full", 4].output_dir) / "predictions_validation.jsonl").read_text().splitlines()
    assert len(predictions) == 40  # scored on the whole evaluation split, whatever the subset


def train_point(recipe) -> dict:
    from nlp_transfer import train

    return train(recipe).metrics


def test_per_class_subsets_hold_that_many_rows_of_each_label(tmp_path, tiny_bert):
    from nlp_transfer import train

    card = write_sst2_card(tmp_path / "data", train_rows=120, dev_rows=40)
    values = tiny_recipe(card, tiny_bert, tmp_path / "run", max_steps=1)
    values["train_rows_per_class"] = 5
    out = train(values).output_dir
    used = yaml.safe_load((out / "recipe.yaml").read_text())
    assert used["train_rows_per_class"] == 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"]["train"] == 10


def test_eval_rows_scores_every_seed_on_the_same_sample(tmp_path, tiny_bert):
    from nlp_transfer import train

    card = write_sst2_card(tmp_path / "data", train_rows=120, dev_rows=40)
    texts = []
    for seed in (1, 2):
        values = tiny_recipe(card, tiny_bert, tmp_path / f"run-{seed}", max_steps=1)
        values.update(eval_rows=10, seed=seed)
        out = train(values).output_dir
        rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
        texts.append([row["text"] for row in rows])
        assert json.loads((out / "metrics.json").read_text())["rows"]["validation"] == 10
    assert len(texts[0]) == 10 and texts[0] == texts[1]  # the same ten dev rows whatever the run's seed


@pytest.mark.parametrize("extra, expected", [
    (["--sizes", "8", "--per-class", "--strategies", "full", "--seeds", "1", "train_rows=10"],
     "train_rows and train_rows_per_class both"),
    (["--sizes", "500", "--per-class", "--strategies", "full", "--seeds", "1"], "give sizes up to"),
    (["--sizes", "8", "--strategies", "full", "--seeds", "1", "--strategy-override", "lora:training.x=1"],
     "'lora' is not one of --strategies"),
    (["--sizes", "8", "--strategies", "full", "--seeds", "1", "--strategy-override", "full=1"],
     "give STRATEGY:KEY=VALUE"),
])
def test_bad_curve_options_are_one_line(recipe_file, tmp_path, capsys, extra, expected):
    line = cli_error(capsys, ["curve", recipe_file, *extra, "--out", tmp_path / "bad"])
    assert expected in line
    assert not (tmp_path / "bad").exists()


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
