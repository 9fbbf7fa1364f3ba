"""A run killed with SIGKILL mid-training continues from its last checkpoint when restarted with resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import tiny_recipe

MAX_STEPS = 400


def _complete_checkpoints(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def test_killed_run_resumes_from_its_last_checkpoint(sst2_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(sst2_toy, tiny_bert, out, max_steps=MAX_STEPS, per_device_train_batch_size=8,
                         eval_strategy="steps", eval_steps=10, save_total_limit=3)
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    command = [sys.executable, "-m", "nlp_transfer", "train", str(recipe_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if any(step >= 20 for step in _complete_checkpoints(out)):
            break
        time.sleep(0.05)
    assert first.poll() is None, "training finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (out / "metrics.json").exists()  # nothing final was written by the killed run
    saved = _complete_checkpoints(out)
    assert saved and max(saved) < MAX_STEPS

    second = subprocess.run(command + ["resume=true"], capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming from" in second.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    resumed_step = int(Path(metrics["train"]["resumed_from"]).name.split("-")[1])
    assert resumed_step >= max(saved) - 10 and resumed_step >= 20
    assert metrics["train"]["global_step"] == MAX_STEPS
    # the restored history holds the killed run's evaluations before the resumed step
    assert any(e.get("step", 0) <= resumed_step for e in metrics["history"] if "eval_loss" in e)


def test_partially_written_checkpoint_is_skipped(tmp_path):
    from nlp_transfer.rundir import last_complete_checkpoint

    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10}')
    (tmp_path / "checkpoint-20").mkdir()
    (tmp_path / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # cut off by the kill
    (tmp_path / "checkpoint-30").mkdir()  # killed before the state was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
