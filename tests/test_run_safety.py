"""Nothing lost, nothing silently wrong: overwrite, resume and label integrity, and typed recipe values.

Each bad input is run through the CLI in-process: exit code 2, one ``error:`` line naming the key or file, no
traceback, and every file that was there before (a previous run, the user's data) byte-identical afterwards.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import cli_error as strict_cli_error
from conftest import tiny_recipe, tree_hashes, write_card, write_sst2_card

from nlp_transfer import rundir
from nlp_transfer.errors import NLPTransferError
from nlp_transfer.cli import main


def snapshot(folder: Path) -> dict[str, str]:
    return tree_hashes(folder)


def run_cli(argv: list) -> int:
    return main([str(a) for a in argv])


def cli_error(capsys, argv: list) -> str:
    """Errors here may come after training began, behind its progress bars."""
    return strict_cli_error(capsys, argv, progress_before=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_bert):
    """A small SST-2 card and a finished tiny run, built once; tests copy them."""
    root = tmp_path_factory.mktemp("safety")
    card = write_sst2_card(root / "data", 96, 32, name="toy")
    run = root / "finished-run"
    values = tiny_recipe(card, tiny_bert, run, num_train_epochs=1)
    assert run_cli(["train", write_recipe(root / "recipe.yaml", values)]) == 0
    return {"root": root, "card": card, "run": run, "values": values}


def write_recipe(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture()
def previous_run(workspace, tmp_path):
    """A copy of the finished run, its snapshot, and a recipe that writes into it."""
    run = tmp_path / "run"
    shutil.copytree(workspace["run"], run)
    values = {**workspace["values"], "output_dir": str(run)}
    return run, snapshot(run), values


# ---------------------------------------------------------------- overwrite

def test_overwrite_of_the_working_directory_full_of_unrelated_files_touches_nothing(workspace, tmp_path, capsys,
                                                                                     monkeypatch, tiny_bert):
    """`output_dir=. overwrite=true` where the data, model, card and notes live: refused, all of it intact."""
    folder = tmp_path / "project"
    shutil.copytree(workspace["card"].parent, folder / "data")
    shutil.copytree(tiny_bert, folder / "model")
    (folder / "notes.txt").write_text("my notes\n")
    card = folder / "data" / "toy.md"
    recipe = write_recipe(folder / "recipe.yaml", tiny_recipe(card, folder / "model", folder))
    before = snapshot(folder)
    monkeypatch.chdir(folder)
    message = cli_error(capsys, ["train", recipe, "output_dir=.", "overwrite=true"])
    assert "output_dir '.'" in message and "no nlp-transfer run wrote" in message
    assert snapshot(folder) == before


def test_overwrite_with_a_mistyped_model_leaves_the_previous_run_intact(previous_run, tmp_path, capsys):
    run, before, values = previous_run
    recipe = write_recipe(tmp_path / "recipe.yaml", values)
    message = cli_error(capsys, ["train", recipe, "overwrite=true", f"model={tmp_path / 'typo'}"])
    assert "typo" in message
    assert snapshot(run) == before


def test_an_overwrite_that_fails_during_training_leaves_the_previous_run_intact(previous_run, tmp_path, capsys):
    """The error comes from inside Trainer (the warm-up is as long as the run), after the new run has begun."""
    run, before, values = previous_run
    recipe = write_recipe(tmp_path / "recipe.yaml", values)
    message = cli_error(capsys, ["train", recipe, "overwrite=true", "strategy.head_warmup_steps=1000"])
    assert "warm-up" in message
    assert snapshot(run) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the hidden new run is gone


def test_a_successful_overwrite_replaces_the_run_and_leaves_nothing_beside_it(previous_run, tmp_path, capsys):
    run, before, values = previous_run
    (run / "stale.txt").write_text("from the old run\n")
    recipe = write_recipe(tmp_path / "recipe.yaml", values)
    assert run_cli(["train", recipe, "overwrite=true", "seed=8"]) == 0
    assert not (run / "stale.txt").exists()
    record = json.loads((run / rundir.RUN_RECORD).read_text())
    assert record["status"] == "finished" and record["schema"] == rundir.RUN_RECORD_SCHEMA
    assert json.loads((run / "metrics.json").read_text())["seed"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml", "run"]


def test_a_crash_between_the_two_renames_is_repaired_on_the_next_run(previous_run, tmp_path):
    run, before, _ = previous_run
    old = tmp_path / f".run{rundir.OLD_SUFFIX}"
    run.rename(old)  # the moment after `finish` moved the old run aside and before the new one moved in
    rundir.recover(run)
    assert snapshot(run) == before and not old.exists()


def test_overwrite_never_replaces_a_folder_the_run_reads(workspace, tmp_path, capsys):
    """A run folder (it has run.json) that also holds the recipe's data is refused."""
    folder = tmp_path / "run"
    shutil.copytree(workspace["run"], folder)
    shutil.copytree(workspace["card"].parent, folder / "data")
    before = snapshot(folder)
    values = {**workspace["values"], "data": str(folder / "data" / "toy.md"), "output_dir": str(folder)}
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", values), "overwrite=true"])
    assert "which this run reads" in message
    assert snapshot(folder) == before


def test_overwrite_never_replaces_the_home_directory(workspace, tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(workspace["run"], home)  # even a home folder that looks like a run
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(home)
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", workspace["values"]),
                                 "output_dir=~/", "overwrite=true"])
    assert "home directory" in message
    assert snapshot(home) == before


def test_without_overwrite_a_run_folder_is_refused(previous_run, tmp_path, capsys):
    run, before, values = previous_run
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", values)])
    assert "already holds a run" in message and "overwrite=true" in message
    assert snapshot(run) == before


def test_output_dir_that_is_a_file(workspace, tmp_path, capsys):
    target = tmp_path / "run"
    target.write_text("not a folder\n")
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", workspace["values"]),
                                 f"output_dir={target}"])
    assert f"output_dir '{target}' is a file" in message
    assert target.read_text() == "not a folder\n"


def test_a_failed_fresh_run_leaves_no_folder_behind(workspace, tmp_path, capsys):
    out = tmp_path / "new-run"
    cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", workspace["values"]), f"output_dir={out}",
                       "strategy.head_warmup_steps=1000"])
    assert not out.exists() or list(out.iterdir()) == []


# ---------------------------------------------------------------- resume

def test_resume_on_a_finished_run_says_so_and_changes_nothing(previous_run, tmp_path, capsys):
    run, before, values = previous_run
    assert run_cli(["train", write_recipe(tmp_path / "recipe.yaml", values), "resume=true"]) == 0
    out = capsys.readouterr().out
    assert "is a finished run; resume=true has nothing to do" in out
    assert "training" not in out.split("finished run")[0]  # no "nlp-transfer: training ..." line before it
    assert snapshot(run) == before


def test_resume_on_a_finished_run_from_before_run_records(previous_run, tmp_path, capsys):
    """Folders written before run.json existed are recognised by their metrics.json."""
    run, _, values = previous_run
    (run / rundir.RUN_RECORD).unlink()
    before = snapshot(run)
    assert run_cli(["train", write_recipe(tmp_path / "recipe.yaml", values), "resume=true"]) == 0
    assert "finished run" in capsys.readouterr().out
    assert snapshot(run) == before


# ---------------------------------------------------------------- labels

def card_with(tmp_path: Path, train: str, dev: str, **front) -> Path:
    (tmp_path / "train.csv").write_text(train, encoding="utf-8")
    (tmp_path / "dev.csv").write_text(dev, encoding="utf-8")
    return write_card(tmp_path, "labels", splits={"train": "train.csv", "validation": "dev.csv"}, **front)


TRAIN_0_2 = "text,label\n" + "".join(f"good film {i},2\nbad film {i},0\n" for i in range(8))


def test_an_evaluation_label_the_training_split_lacks_is_an_error_not_a_shifted_index(tmp_path, tiny_bert, capsys):
    """Inferred labels {0, 2}: a validation 1 used to be read as index 1, i.e. class '2'."""
    card = card_with(tmp_path, TRAIN_0_2, "text,label\nfine film,1\ngood film,2\n")
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(card, tiny_bert, tmp_path / "run"))
    message = cli_error(capsys, ["train", recipe])
    assert f"{tmp_path / 'dev.csv'}: line 2: label '1' is not one of the labels [0, 2]" in message
    assert not (tmp_path / "run").exists()


def test_declared_labels_still_read_ids_and_reject_unknown_names(tmp_path, tiny_bert, capsys):
    card = card_with(tmp_path, TRAIN_0_2.replace(",2\n", ",1\n"), "text,label\nfine film,neutral\n",
                     labels=["negative", "positive"])
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(card, tiny_bert, tmp_path / "run"))
    message = cli_error(capsys, ["train", recipe])
    assert "dev.csv: line 2: label 'neutral' is not one of the labels [negative, positive]" in message


def test_a_test_split_label_is_checked_before_training(tmp_path, tiny_bert, capsys):
    card = card_with(tmp_path, TRAIN_0_2, "text,label\nfine film,2\n")
    (tmp_path / "test.csv").write_text("text,label\nfine film,0\nodd film,7\n", encoding="utf-8")
    card = write_card(tmp_path, "labels", splits={"train": "train.csv", "validation": "dev.csv", "test": "test.csv"})
    values = {**tiny_recipe(card, tiny_bert, tmp_path / "run"), "test_split": "test"}
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", values)])
    assert "test.csv: line 3: label '7'" in message
    assert not (tmp_path / "run").exists()


def test_an_eval_set_row_is_checked_before_training(tmp_path, tiny_bert, capsys):
    """eval_sets are scored at the end, but their rows are read (and a bad label reported) before training."""
    card = card_with(tmp_path, TRAIN_0_2, "text,label\nfine film,2\n")
    (tmp_path / "extra.csv").write_text("text,label\nfine film,0\nodd film,1\n", encoding="utf-8")
    extra = write_card(tmp_path, "extra", splits={"test": "extra.csv"})
    values = {**tiny_recipe(card, tiny_bert, tmp_path / "run"), "eval_sets": {"more": {"data": str(extra), "split": "test"}}}
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", values)])
    assert "extra.csv: line 3: label '1' is not one of the labels [0, 2]" in message
    assert not (tmp_path / "run").exists()


def test_evaluate_matches_labels_by_name(workspace, tmp_path, tiny_bert, capsys):
    """A model trained on labels {0, 2}: evaluating data with a 1 is an error, a 2 is class '2'."""
    card = card_with(tmp_path, TRAIN_0_2, "text,label\ngood film,2\nbad film,0\n")
    run = tmp_path / "run"
    assert run_cli(["train", write_recipe(tmp_path / "recipe.yaml", tiny_recipe(card, tiny_bert, run,
                                                                            num_train_epochs=1))]) == 0
    (tmp_path / "other.csv").write_text("text,label\nfine film,1\n", encoding="utf-8")
    other = write_card(tmp_path, "other", splits={"validation": "other.csv"})
    message = cli_error(capsys, ["evaluate", run, "--data", other])
    assert "other.csv: line 2: label '1' is not one of the labels [0, 2]" in message


@pytest.mark.parametrize("fmt, content, line", [
    ("jsonl", '{"text": "a", "label": ["x"]}\n{"text": "b", "label": []}\n{"text": "c", "label": ["y"]}\n', 2),
    ("csv", "text,label\na,x\nb,\nc,y\n", 3),
    ("csv", "text,label\na,x\nb,|\nc,y\n", 3),
])
def test_an_empty_multi_label_set_is_an_error_in_every_format_unless_allowed(tmp_path, tiny_bert, capsys, fmt,
                                                                              content, line):
    from nlp_transfer.data.readers import load_data

    (tmp_path / f"train.{fmt}").write_text(content, encoding="utf-8")
    card = write_card(tmp_path, "multi", splits={"train": f"train.{fmt}"}, problem_type="multi_label")
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe(card, tiny_bert, tmp_path / "run"))
    message = cli_error(capsys, ["train", recipe])
    assert f"train.{fmt}: line {line}:" in message and "allow_empty_labels: true" in message
    allowed = write_card(tmp_path, "multi", splits={"train": f"train.{fmt}"}, problem_type="multi_label",
                         allow_empty_labels=True)
    assert load_data(allowed).splits["train"]["label"] == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]


# ---------------------------------------------------------------- typed recipe values

@pytest.mark.parametrize("override, expected", [
    ("threshold=high", "threshold must be a number, got 'high'"),
    ("threshold=1.5", "threshold must be > 0 and < 1, got 1.5"),
    ("max_length=100000", "max_length 100000 is longer than"),
    ("max_length=4", "max_length must be >= 8, got 4"),
    ("training.learning_rate=abc", "training.learning_rate must be a number, got 'abc'"),
    ("training.learning_rate=-1", "training.learning_rate must be > 0, got -1"),
    ("training.per_device_train_batch_size=0", "training.per_device_train_batch_size must be >= 1, got 0"),
    ("training.num_train_epochs=many", "training.num_train_epochs must be a number, got 'many'"),
    ("training.bf16=maybe", "training.bf16 must be true or false, got 'maybe'"),
    ("training.eval_strategy=epochs", "training.eval_strategy 'epochs' is not supported; did you mean 'epoch'?"),
    ("seed=-3", "seed must be >= 0, got -3"),
    ("resume=perhaps", "resume must be true or false, got 'perhaps'"),
    ("strategy={name: last-n, n: 0}", "strategy.n must be >= 1, got 0"),
    ("strategy={name: feature-extraction, probe: head, layers: [-1, top]}",
     "strategy.layers must be a list of integers, got [-1, 'top']"),
    ("strategy={name: feature-extraction, probe: head, pooling: avg}", "strategy.pooling 'avg' is not supported"),
    ("early_stopping.patience=0", "early_stopping.patience must be >= 1, got 0"),
    ("train_rows=0", "train_rows must be >= 1, got 0"),
])
def test_recipe_values_of_the_wrong_type_or_range(previous_run, tmp_path, capsys, override, expected):
    run, before, values = previous_run
    recipe = write_recipe(tmp_path / "recipe.yaml", values)
    message = cli_error(capsys, ["train", recipe, override, "overwrite=true"])
    assert f"{recipe}: {expected}" in message
    assert snapshot(run) == before


def test_numbers_written_as_yaml_strings_are_read_as_numbers(workspace):
    """YAML 1.1 reads 3e-5 as a string; a number field takes it as the number it is."""
    from nlp_transfer.config import load_recipe

    recipe = load_recipe({**workspace["values"], "training": {"learning_rate": "3e-5", "num_train_epochs": 2}})
    assert recipe.training["learning_rate"] == 3e-5 and recipe.training["num_train_epochs"] == 2


def test_max_length_is_checked_against_roberta_style_positions(tmp_path, tiny_xlmr, workspace, capsys):
    """XLM-R's positions start after the padding index: 130 position embeddings read 128 tokens."""
    values = {**workspace["values"], "model": str(tiny_xlmr), "output_dir": str(tmp_path / "run"), "max_length": 129}
    message = cli_error(capsys, ["train", write_recipe(tmp_path / "recipe.yaml", values)])
    assert "(128 positions); set max_length <= 128" in message


def test_an_overwrite_killed_mid_training_leaves_the_previous_run_intact(previous_run, tmp_path):
    """SIGKILL (no handler runs) while the new run trains in its hidden folder: the old run is byte-identical, and
    the next overwrite clears the leftover and finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run, before, values = previous_run
    values = {**values, "training": {**values["training"], "max_steps": 400, "per_device_train_batch_size": 8,
                                     "eval_strategy": "steps", "eval_steps": 10, "save_steps": 10}}
    recipe = write_recipe(tmp_path / "recipe.yaml", values)
    hidden = tmp_path / f".run{rundir.NEW_SUFFIX}"
    command = [sys.executable, "-m", "nlp_transfer", "train", str(recipe), "overwrite=true"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None and rundir.last_complete_checkpoint(hidden) is None:
        time.sleep(0.05)
    assert first.poll() is None, "training finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert snapshot(run) == before
    assert rundir.read_record(hidden)["status"] == "running"

    second = subprocess.run(command + ["training.max_steps=12"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert second.returncode == 0, second.stderr[-2000:]
    assert not hidden.exists()
    assert json.loads((run / "metrics.json").read_text())["train"]["global_step"] == 12


@pytest.mark.parametrize("override", ["threshold=high", "training.learning_rate=-1", "strategy=lroa"])
def test_a_bad_recipe_value_is_reported_before_torch_or_transformers_load(override):
    """Errors come fast: the recipe is checked before the heavy imports (asserted by module, not by time)."""
    import subprocess
    import sys

    code = ("import sys; from nlp_transfer.cli import main; "
            f"rc = main(['train', 'recipes/sst2_demo.yaml', '{override}']); "
            "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.stdout.split() == ["2", "False", "False"], done.stdout + done.stderr
    assert done.stderr.count("error: ") == 1


@pytest.mark.parametrize("override, key", [
    ("strategy.name=lora", "'strategy'"), ("training.learning_rate=1e-3", "'training'"), ("model=minilm-l6", "'model'"),
    ("max_length=64", "'max_length'"), ("early_stopping.patience=2", "'early_stopping'"),
])
def test_a_key_the_static_backend_ignores_is_an_error(tmp_path, capsys, override, key):
    """Static recipes keep their settings under static:; a transformer key there would silently do nothing."""
    recipe = Path(__file__).parents[1] / "recipes" / "sst2_demo_glove.yaml"
    message = cli_error(capsys, ["train", recipe, override, f"output_dir={tmp_path / 'run'}"])
    assert f"{key} does nothing with the static-embedding baseline" in message
    assert not (tmp_path / "run").exists()


def test_a_key_the_probe_ignores_is_an_error(tmp_path, capsys):
    recipe = Path(__file__).parents[1] / "recipes" / "sst2_minilm_probe.yaml"
    message = cli_error(capsys, ["train", recipe, "training.num_train_epochs=3", "strategy.r=4"])
    assert "'training' does nothing with the scikit-learn probe" in message


def test_the_probe_and_static_backends_refuse_several_processes(workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    recipe = Path(__file__).parents[1] / "recipes" / "sst2_demo_glove.yaml"
    message = cli_error(capsys, ["train", recipe, f"output_dir={tmp_path / 'run'}"])
    assert "the static backend runs in one process" in message


def test_a_folder_a_live_run_is_writing_is_refused_and_a_dead_ones_is_not(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    folder = tmp_path / "run"
    folder.mkdir()

    def record(pid: int, start: str | None) -> None:
        (folder / "run.json").write_text(json.dumps({"schema": 1, "status": "running", "started": "today",
                                                     "pid": pid, "pid_start": start, "host": socket.gethostname()}))

    # a live process stands for a run still training into the folder
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = rundir.process_start(writer.pid)
    assert started is not None and started == rundir.process_start(writer.pid)
    try:
        record(writer.pid, started)
        for options in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(NLPTransferError, match=rf"being written by process {writer.pid} on this "
                                                              r"machine .* wait for it to finish"):
                rundir.plan(folder, **options)
        record(other.pid, "1")  # the id now belongs to a process started at another time: the record is stale
        assert rundir.plan(folder, resume=True).work.name == ".run.nlp-transfer-new"
    finally:
        writer.kill()
        other.kill()
        writer.wait()
        other.wait()
    record(writer.pid, started)  # the writer was killed: its unfinished run is started again
    assert rundir.plan(folder, resume=True).replacing
    assert "starting it again" in capsys.readouterr().out


def test_a_run_started_again_resumes_from_the_checkpoints_of_its_hidden_sibling(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    target, sibling = tmp_path / "run", tmp_path / ".run.nlp-transfer-new"
    for folder, status in ((target, "running"), (sibling, "running")):
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({"schema": 1, "status": status, "started": "today"}))
    (sibling / "checkpoint-4").mkdir()
    (sibling / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (sibling / "checkpoint-8").mkdir()  # killed while saving: no trainer_state.json
    plan = rundir.plan(target, resume=True)
    assert plan.work == sibling and plan.checkpoint == str(sibling / "checkpoint-4")
    rundir.begin(plan)
    assert (sibling / "checkpoint-4" / "trainer_state.json").is_file()  # kept, not cleared as a leftover
    assert rundir.read_record(sibling)["resumed_from"] == "checkpoint-4"
    # the sibling written by a live run is refused like the folder itself
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (sibling / "run.json").write_text(json.dumps({"schema": 1, "status": "running", "started": "today",
                                                      "pid": writer.pid, "host": socket.gethostname(),
                                                      "pid_start": rundir.process_start(writer.pid)}))
        with pytest.raises(NLPTransferError, match=f"being written by process {writer.pid}"):
            rundir.plan(target, resume=True)
    finally:
        writer.kill()
        writer.wait()
