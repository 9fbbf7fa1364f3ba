"""Multi-seed runs (`nlp_transfer.seeds`): one ordinary run folder per seed, seeds.json with mean / sample std / each
seed's value, resume retrains only the missing seeds, bad seeds are one-line errors, compare shows mean ± std."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli_error
from test_static_baselines import POSITIVE, NEGATIVE, write_vectors

from nlp_transfer import train
from nlp_transfer.cli import main
from nlp_transfer.analysis.compare import load_runs, markdown_table
from nlp_transfer.static import words

SEEDS = [1, 2, 3]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def bilstm_recipe(sst2_toy, tmp_path):
    """The static BiLSTM for one epoch: seconds per run, and its weights depend on the seed."""
    texts = [line.split("\t")[0] for name in ("train.tsv", "dev.tsv")
             for line in (sst2_toy.parent / name).read_text(encoding="utf-8").splitlines()[1:]]
    vectors = write_vectors(tmp_path / "sst-vectors.txt", {w for t in texts for w in words(t)} | POSITIVE | NEGATIVE)
    values = {"task": "sequence-classification", "data": str(sst2_toy), "output_dir": str(tmp_path / "seeds"),
              "static": {"vectors": str(vectors), "hidden": 16, "epochs": 1, "batch_size": 16}}
    path = tmp_path / "bilstm.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def seed_metrics(out: Path) -> list[dict]:
    return [json.loads((out / f"seed-{seed}" / "metrics.json").read_text()) for seed in SEEDS]


def test_three_seeds_write_three_runs_and_their_mean_and_std(bilstm_recipe, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", str(bilstm_recipe), "--seeds", "1,2,3"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["seed-1", "seed-2", "seed-3", "seeds.json"]
    runs = seed_metrics(out)
    assert [m["seed"] for m in runs] == SEEDS
    for seed in SEEDS:  # each an ordinary run folder, its recipe.yaml trains that seed alone
        saved = yaml.safe_load((out / f"seed-{seed}" / "recipe.yaml").read_text())
        assert saved["seed"] == seed and "seeds" not in saved and saved["output_dir"] == str(out / f"seed-{seed}")
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == SEEDS and summary["main_metric"] == "accuracy"
    assert summary["model"] == runs[0]["model"] and summary["data"] == runs[0]["data"]
    assert summary["task"] == "sequence-classification" and summary["strategy"] == "static-bilstm"
    assert "test" not in summary
    for name in ("accuracy", "f1_macro"):
        values = [m["eval"][name] for m in runs]
        assert summary["eval"][name]["values"] == values
        assert summary["eval"][name]["mean"] == pytest.approx(np.mean(values))
        assert summary["eval"][name]["std"] == pytest.approx(np.std(values, ddof=1))
    accuracy = summary["eval"]["accuracy"]
    assert f"accuracy {accuracy['mean']:.4f} ± {accuracy['std']:.4f} (3 seeds)" in printed
    assert sum("nlp-transfer: seed " in line for line in printed.splitlines()) == 3

    # the Python entry point: the same recipe key, the summary as the result's metrics
    again = train(bilstm_recipe, ["resume=true", "seeds=[1, 2, 3]"])
    assert again.output_dir == out and again.metrics == summary


def test_eval_sets_are_summarised_per_set(bilstm_recipe, sst2_toy, tmp_path):
    out = tmp_path / "seeds"
    assert main(["train", str(bilstm_recipe), "--seeds", "1,2",
                 f"eval_sets={{again: {{data: {sst2_toy}, split: validation}}}}"]) == 0
    runs = [json.loads((out / f"seed-{seed}" / "metrics.json").read_text()) for seed in (1, 2)]
    summary = json.loads((out / "seeds.json").read_text())
    assert list(summary["eval_sets"]) == ["again"]
    values = [m["eval_sets"]["again"]["accuracy"] for m in runs]
    assert summary["eval_sets"]["again"]["accuracy"]["values"] == values
    assert summary["eval_sets"]["again"]["accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert "rows" not in summary["eval_sets"]["again"]  # counts are not averaged


def test_resume_retrains_only_the_missing_seed(bilstm_recipe, tmp_path):
    import shutil

    out = tmp_path / "seeds"
    train(bilstm_recipe, seeds=SEEDS)
    times = {seed: (out / f"seed-{seed}" / "metrics.json").stat().st_mtime_ns for seed in SEEDS}
    shutil.rmtree(out / "seed-2")
    result = train(bilstm_recipe, seeds=SEEDS, resume=True)
    for seed in (1, 3):
        assert (out / f"seed-{seed}" / "metrics.json").stat().st_mtime_ns == times[seed]
    assert (out / "seed-2" / "metrics.json").is_file()
    runs = seed_metrics(out)
    assert result.metrics["eval"]["accuracy"]["values"] == [m["eval"]["accuracy"] for m in runs]
    assert json.loads((out / "seeds.json").read_text()) == result.metrics


def test_seeds_is_a_count_or_a_list():
    from nlp_transfer.seeds import parse_seeds

    assert parse_seeds("3") == [1, 2, 3]
    assert parse_seeds("4,5,6") == [4, 5, 6]
    assert parse_seeds("7,") == [7]


def test_a_count_of_seeds_is_said_to_be_a_count(bilstm_recipe, capsys):
    from nlp_transfer.cli import main
    from nlp_transfer.seeds import count_note

    assert count_note("3") == "nlp-transfer: --seeds 3 is a count: seeds 1, 2, 3 (seed 3 alone: --seeds 3,)"
    assert count_note("10").endswith("seeds 1, 2, ..., 10 (seed 10 alone: --seeds 10,)")
    assert count_note("3,") is None and count_note("2,3") is None and count_note("1") is None
    assert main(["train", str(bilstm_recipe), "--seeds", "2", "max_lenght=64"]) == 2  # stops before any training
    assert "--seeds 2 is a count: seeds 1, 2 (seed 2 alone: --seeds 2,)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--seeds", "1,x"], "--seeds '1,x': give a count (--seeds 3: seeds 1, 2, 3) or seeds separated by commas"),
    (["--seeds", ""], "--seeds '': give a count"),
    (["--seeds", "1,-2"], "--seeds '1,-2': give a count"),
    (["--seeds", "0"], "--seeds 0: give a count of at least 1"),
    (["--seeds", "1,2,1"], "--seeds '1,2,1' lists 1 twice"),
    (["seeds=3"], "seeds must be a list of integers or null, got 3"),
    (["seeds=[1, 2.5]"], "seeds must be a list of integers or null"),
    (["--seeds", "1,2", "max_lenght=64"], "unknown key 'max_lenght'"),  # overrides after an option still count
])
def test_bad_seeds_are_one_line_errors(bilstm_recipe, tmp_path, capsys, argv, expected):
    assert expected in cli_error(capsys, ["train", bilstm_recipe, *argv])
    assert not (tmp_path / "seeds").exists()


def test_an_unknown_option_after_the_overrides_is_still_refused(bilstm_recipe, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", str(bilstm_recipe), "max_length=64", "--seeds", "1", "--bogus"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_a_folder_holding_other_files_is_refused(bilstm_recipe, tmp_path, capsys):
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "notes.txt").write_text("mine")
    assert "holds 'notes.txt', which is not a seed folder" in cli_error(capsys, ["train", bilstm_recipe, "--seeds", "1"])
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == ["notes.txt"]


def test_compare_shows_mean_and_std_for_the_parent_and_for_loose_seed_runs(bilstm_recipe, tmp_path, capsys):
    out = tmp_path / "seeds"
    summary = train(bilstm_recipe, seeds=SEEDS).metrics
    accuracy = summary["eval"]["accuracy"]
    expected = f"{accuracy['mean']:.4f} ± {accuracy['std']:.4f} (3 seeds)"
    single = train(bilstm_recipe, output_dir=str(tmp_path / "single"), seed=9, static={"epochs": 2})  # another recipe
    assert main(["compare", str(out), str(tmp_path / "single"), "--out", str(tmp_path / "report")]) == 0
    table = capsys.readouterr().out
    assert expected in table
    lines = [line for line in table.splitlines() if line.startswith("| ") and "accuracy" in line]
    assert len(lines) == 2  # one row for the three seeds, the single run's row as before
    assert f"{single.metrics['eval']['accuracy']:.4f} |" in next(line for line in lines if "| single |" in line)

    # the seed folders passed one by one (they differ only by seed in recipe.yaml) make the same row
    runs = load_runs([out / f"seed-{seed}" for seed in SEEDS])
    assert len(runs) == 1 and runs[0].name == "seeds"
    assert expected in markdown_table(runs)
    # two of them plus the single run: still grouped by recipe, the single run alone
    runs = load_runs([out / "seed-1", out / "seed-3", tmp_path / "single"])
    assert len(runs) == 2 and "(2 seeds)" in markdown_table(runs)
    # loose run folders of one recipe with different seeds make one row named after them
    other = train(bilstm_recipe, output_dir=str(tmp_path / "single-10"), seed=10, static={"epochs": 2}).metrics
    runs = load_runs([tmp_path / "single", tmp_path / "single-10"])
    assert [run.name for run in runs] == ["single, single-10"]
    values = [single.metrics["eval"]["accuracy"], other["eval"]["accuracy"]]
    assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (2 seeds)" in markdown_table(runs)
