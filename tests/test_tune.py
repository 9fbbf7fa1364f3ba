"""Hyperparameter search (`nlp_transfer.analysis.tune`) on tiny real models: a search killed with SIGKILL resumes to its trial
count and its best recipe trains; an interrupted trial runs again with its values in its folder; the pruner stops
trials at an evaluation; --rows searches on a subset and --confirm trains the best on all rows; --holdout selects on
held-out training rows and keeps the card's validation split as a test; bad input is one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import cli_error, tiny_recipe, write_sst2_card

from nlp_transfer.cli import main
from nlp_transfer.config import load_recipe
from nlp_transfer.analysis.tune import DEFAULT_SPACES, STUDY, STUDY_NAME, fit_space, tune

optuna = pytest.importorskip("optuna")
LR = {"training.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def card(tmp_path) -> Path:
    return write_sst2_card(tmp_path / "data", train_rows=120, dev_rows=40)


def write_yaml(path: Path, values) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture()
def recipe_file(tmp_path, card, tiny_bert) -> Path:
    """6 optimizer steps, evaluated (and saved) every 3: two evaluations per trial."""
    values = tiny_recipe(card, tiny_bert, tmp_path / "run", max_steps=6, eval_strategy="steps", eval_steps=3)
    return write_yaml(tmp_path / "recipe.yaml", values)


@pytest.fixture()
def space_file(tmp_path) -> Path:
    return write_yaml(tmp_path / "space.yaml", LR)


def load_study(out: Path):
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{(out / STUDY).resolve()}")


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def complete_checkpoints(folder: Path) -> list[Path]:
    return [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]


def test_a_killed_search_resumes_to_three_trials_and_its_best_recipe_trains(tmp_path, tiny_bert, card, space_file,
                                                                            capsys):
    values = tiny_recipe(card, tiny_bert, tmp_path / "run", max_steps=40, eval_strategy="steps", eval_steps=10)
    recipe = write_yaml(tmp_path / "recipe.yaml", values)
    out = tmp_path / "search"
    command = [sys.executable, "-m", "nlp_transfer", "tune", str(recipe), "--trials", "3", "--space", str(space_file),
               "--out", str(out), "--no-prune"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 300  # killed once the first trial is complete and the second has saved a checkpoint
    while time.time() < deadline and first.poll() is None and not complete_checkpoints(out / "trial-001"):
        time.sleep(0.05)
    assert first.poll() is None, f"the search ended before it could be killed: {first.stderr.read()[-2000:]}"
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stderr.close()
    killed = load_study(out)
    assert states(killed).count("COMPLETE") == 1
    running = [t for t in killed.get_trials() if t.state.name == "RUNNING"]
    assert [t.number for t in running] == [1] and running[0].params

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    study = load_study(out)
    assert states(study).count("COMPLETE") == 3
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    again = study.trials[2]  # the killed trial again: same values, same folder, from its checkpoint
    assert again.user_attrs == {"retry_of": 1, "folder": "trial-001"} and again.params == running[0].params
    assert "trial 1 was interrupted; running it again" in second.stdout and "resuming from checkpoint-" in second.stdout
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    for trial in completed:
        metrics = json.loads((out / trial.user_attrs["folder"] / "metrics.json").read_text())
        assert metrics["eval"]["accuracy"] == trial.value and "test" not in metrics
        assert metrics["train"]["global_step"] == 40
        resumed = metrics["train"]["resumed_from"]
        assert (resumed is not None) == (trial.number == again.number)
        # every evaluation reported; the resumed trial's count on from the checkpoint's
        first_step = 1 + int(resumed.split("-")[1]) // 10 if resumed else 1
        assert sorted(trial.intermediate_values) == list(range(first_step, 5))
    summary = json.loads((out / "tune.json").read_text())
    best = max(completed, key=lambda t: (t.value, -t.number))
    assert summary["finished"] == 3 and summary["best"]["number"] == best.number
    assert summary["best"]["params"] == best.params and summary["main_metric"] == "accuracy"
    for trial in completed:  # only the best trial keeps its weights (--keep-weights best, the default)
        folder = out / trial.user_attrs["folder"]
        assert (folder / "model.safetensors").is_file() == (trial.number == best.number), trial.number
        assert (folder / "metrics.json").is_file() and not list(folder.glob("checkpoint-*"))
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert [row["number"] for row in rows] == [t.number for t in study.trials]
    assert "| trial | state | accuracy |" in (out / "trials.md").read_text()
    assert (out / "trials.png").stat().st_size > 1000

    best_yaml = out / "best.yaml"
    saved = load_recipe(best_yaml)
    assert saved.training["learning_rate"] == pytest.approx(best.params["training.learning_rate"])
    assert Path(saved.output_dir) == out / "best" and not saved.resume
    assert main(["train", str(best_yaml)]) == 0  # nlp-transfer train takes it as it is
    assert json.loads((out / "best" / "metrics.json").read_text())["train"]["global_step"] == 40
    capsys.readouterr()

    # compare on the search folder: its complete trials and best run as rows, the trials table and plot in the report
    from nlp_transfer import compare

    report = compare([out], tmp_path / "report")
    text = (report / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| trial-", "| best |"))
            and "| sequence-classification |" in line]  # the runs table (calibration rows name runs too)
    assert len(rows) == len(completed) + 1
    assert f"## Hyperparameter search: `{out}`" in text and "| trial | state | accuracy |" in text
    assert "![trials of search](" in text
    assert (report / "report.html").read_text().count("data:image/png;base64") >= 2  # the trials plot embedded too

    # run again: nothing to do; another space: refused
    assert main(["tune", str(recipe), "--trials", "3", "--space", str(space_file), "--out", str(out)]) == 0
    assert "already holds 3 finished trials" in capsys.readouterr().out
    assert len(load_study(out).trials) == len(study.trials)
    other = write_yaml(tmp_path / "other.yaml", {"training.learning_rate": [1e-3, 2e-3]})
    error = cli_error(capsys, ["tune", recipe, "--trials", "4", "--space", other, "--out", out])
    assert "another search space" in error and "--out" in error


def test_an_interrupted_trial_runs_again_with_its_values_in_its_folder(recipe_file, tmp_path, capsys):
    out = tmp_path / "search"
    tune(recipe_file, 1, space=LR, out=out, pruner=False)
    study = load_study(out)
    stale = study.ask({"training.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    stale.set_user_attr("folder", "trial-001")  # as a killed search leaves it
    result = tune(recipe_file, 2, space=LR, out=out, pruner=False)
    assert "trial 1 was interrupted; running it again" in capsys.readouterr().out
    trials = load_study(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].user_attrs == {"retry_of": 1, "folder": "trial-001"}
    assert trials[2].params == trials[1].params
    assert (out / "trial-001" / "metrics.json").is_file() and not (out / "trial-002").exists()
    assert result.summary["states"] == {"complete": 2, "fail": 1}
    assert result.trials[1]["error"] == "interrupted; run again as trial 2"


def test_a_pruner_stops_trials_at_their_first_evaluation(recipe_file, tmp_path):
    out = tmp_path / "search"
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # accuracy never reaches 2: every evaluation prunes
    result = tune(recipe_file, 2, space=LR, out=out, pruner=always)
    assert result.best is None and result.best_recipe is None and not (out / "best.yaml").exists()
    assert [row["state"] for row in result.trials] == ["pruned", "pruned"]
    for row in result.trials:
        assert list(row["evaluations"]) == ["1"] and row["folder"] is None  # stopped at the first of 2 evaluations
    assert not list(out.glob("trial-*"))  # a pruned trial's folder is removed
    assert result.summary["finished"] == 2 and result.summary["pruner"] == "ThresholdPruner"


def test_keep_weights_all_keeps_every_complete_trials_model(recipe_file, tmp_path):
    out = tmp_path / "search"
    result = tune(recipe_file, 2, space=LR, out=out, pruner=False, keep_weights="all")
    assert [row["state"] for row in result.trials] == ["complete", "complete"]
    assert all((out / row["folder"] / "model.safetensors").is_file() for row in result.trials)


def test_rows_searches_on_a_subset_and_confirm_trains_the_best_on_all_rows(recipe_file, tmp_path, capsys):
    out = tmp_path / "search"
    result = tune(recipe_file, 1, space=LR, out=out, rows=48, confirm=True)
    trial = json.loads((out / "trial-000" / "metrics.json").read_text())
    assert trial["rows"]["train"] == 48
    assert load_recipe(result.best_recipe).train_rows is None
    best = json.loads((out / "best" / "metrics.json").read_text())
    assert best["rows"]["train"] == 120
    assert result.summary["confirm"]["eval"] == best["eval"]["accuracy"]
    capsys.readouterr()
    again = tune(recipe_file, 1, space=LR, out=out, rows=48, confirm=True)  # nothing new: the confirmed run stays
    assert "resume=true has nothing to do" in capsys.readouterr().out
    assert again.summary["confirm"]["eval"] == best["eval"]["accuracy"]


def test_holdout_selects_on_training_rows_and_keeps_the_validation_split_as_a_test(tmp_path, tiny_bert, card, capsys):
    values = tiny_recipe(card, tiny_bert, tmp_path / "run")
    values.pop("training")
    values["strategy"] = {"name": "feature-extraction"}  # the probe: its default space is the features'
    recipe = write_yaml(tmp_path / "recipe.yaml", values)
    out = tmp_path / "search"
    result = tune(recipe, 2, holdout=0.25, out=out, seed=3)
    data = out / "data"
    read = {name: [json.loads(line) for line in (data / f"{name}.jsonl").read_text().splitlines()]
            for name in ("train", "validation", "test")}
    assert [len(read[name]) for name in ("train", "validation", "test")] == [90, 30, 40]
    def rows_of(name: str) -> list[tuple[str, str]]:  # as the reader reads them: texts stripped
        return [(text.strip(), label) for text, label in
                (line.rsplit("\t", 1) for line in (card.parent / name).read_text().splitlines()[1:])]

    source_train = rows_of("train.tsv")
    assert sorted((r["text"], r["label"]) for r in read["train"] + read["validation"]) == sorted(source_train)
    assert [(r["text"], r["label"]) for r in read["test"]] == rows_of("dev.tsv")  # the card's validation, as it is
    shares = [sum(r["label"] == label for r in read["validation"]) for label in ("0", "1")]
    expected = [sum(row[1] == label for row in source_train) * 30 / 120 for label in ("0", "1")]
    assert all(abs(got - want) <= 1 for got, want in zip(shares, expected))  # stratified
    for row in result.trials:
        metrics = json.loads((out / row["folder"] / "metrics.json").read_text())
        assert metrics["rows"] == {"train": 90, "validation": 30} and "test" not in metrics
    assert result.summary["holdout"]["rows"] == {"train": 90, "validation": 30, "test": 40}
    best = load_recipe(result.best_recipe)
    assert best.test_split == "test" and best.eval_split == "validation" and Path(best.data) == data / "card.md"
    capsys.readouterr()
    assert main(["train", str(result.best_recipe)]) == 0
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["rows"]["validation"] == 30 and metrics["test"]["accuracy"] >= 0  # dev scored once, as the test
    again = tune(recipe, 2, holdout=0.25, out=out, seed=3)  # the derived files are the same: resumes
    assert again.summary["finished"] == 2
    capsys.readouterr()
    error = cli_error(capsys, ["tune", recipe, "--trials", "2", "--holdout", "0.3", "--seed", "3", "--out", out])
    assert "--holdout" in error and "another --out" in error


def test_default_spaces_fit_their_strategies(tmp_path, card, tiny_bert):
    base = tiny_recipe(card, tiny_bert, tmp_path / "run")
    for name, space in DEFAULT_SPACES.items():
        values = dict(base, strategy={"name": name.split("/")[0]})
        if name == "feature-extraction/head":
            values["strategy"]["probe"] = "head"
        elif name in ("feature-extraction", "contrastive"):
            values.pop("training")
        fit_space(space, load_recipe(values), name)


def test_bad_spaces_and_options_are_one_line(recipe_file, tmp_path, capsys, monkeypatch):
    def error(space, *more) -> str:
        path = tmp_path / "space.yaml"
        path.write_text(space if isinstance(space, str) else yaml.safe_dump(space), encoding="utf-8")
        message = cli_error(capsys, ["tune", recipe_file, "--trials", "2", "--space", path, "--out",
                                     tmp_path / "search", *more])
        assert str(path) in message
        return message

    assert "did you mean 'training.learning_rate'" in error({"training.learnin_rate": [1e-4, 1e-3]})
    assert "did you mean 'float'" in error({"training.learning_rate": {"type": "flaot", "low": 1e-5, "high": 1e-4}})
    assert "low 0.001 is not below high 0.0001" in error({"training.learning_rate": {"type": "float", "low": 1e-3,
                                                                                      "high": 1e-4}})
    assert "log: true needs low > 0" in error({"training.weight_decay": {"type": "float", "low": 0, "high": 0.1,
                                                                         "log": True}})
    assert "strategy full has no option 'r'" in error({"strategy.r": [4, 8]})
    assert "learning_rate" in error({"training.learning_rate": {"type": "float", "low": -1.0, "high": 1.0}})
    assert "set by tune itself" in error({"output_dir": ["a", "b"]})
    assert "one dotted key per value" in error({"training": {"learning_rate": {"type": "float", "low": 1e-5,
                                                                               "high": 1e-4}}})
    assert "non-empty list" in error({"strategy.lr_decay": {"type": "categorical", "choices": []}})
    assert "fix the YAML syntax" in error("training.learning_rate: {type: float, low: [1\n")
    assert "maps recipe keys" in error("- a\n- b\n")
    assert "file not found" in cli_error(capsys, ["tune", recipe_file, "--trials", "2", "--space",
                                                  tmp_path / "missing.yaml"])
    assert "did you mean 'all'" in cli_error(capsys, ["tune", recipe_file, "--trials", "2", "--keep-weights", "al"])
    for option, value in (("--trials", "0"), ("--rows", "0"), ("--holdout", "1.5")):
        argv = ["tune", recipe_file, "--trials", "2", option, value] if option != "--trials" else \
            ["tune", recipe_file, option, value]
        assert option in cli_error(capsys, argv)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "accelerate launch" in cli_error(capsys, ["tune", recipe_file, "--trials", "2"])
