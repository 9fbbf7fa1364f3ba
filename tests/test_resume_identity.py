"""A run killed mid-epoch and resumed with ``resume=true`` ends with the same weights as an uninterrupted run with
the same seed: bit-identical on the CPU (torch.equal on every tensor of ``model.safetensors``), as transformers'
own checkpoint tests assert, with the same evaluation scores and the same logged loss at every logging step.

The run is 4 epochs of 20 optimizer steps (160 rows, batch 8) with dropout on (the tiny model's default, so the
RNG state matters), a checkpoint every 7 steps (never at an epoch boundary), and the default
``group_by_length`` sampling, which shuffles every epoch. The killed run is killed with a real SIGKILL, but sent by
the process to itself from a TrainerCallback right after optimizer step 37, so it dies at a known point: its last
complete checkpoint is checkpoint-35 (epoch 2 of 4, 15 of its 20 batches done, past the middle of the epoch),
and the two steps it trained after it are lost. A kill sent from outside the process races the training (on a
loaded 2-core machine the run may save one more checkpoint, or finish, before the signal lands), so where in the
epoch the resumed run starts would vary from run to run; this way every run tests the same resume.

The uninterrupted run trains in its own folder beside the killed and the resumed one. Every run gets
OMP_NUM_THREADS=1: a model of this size gains nothing from a second thread, and two processes spinning two threads
each on a loaded 2-core machine made the test 3-4 times slower (the runs are bit-identical with torch's default
threads too). Before the two fixes the last tests below pin, the weights differed from the first step after the
resume on.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe
from transformers import TrainerCallback

ROWS, BATCH, EPOCHS = 160, 8, 4  # sst2_toy's 160 training rows: 20 optimizer steps per epoch, 80 in all
STEPS_PER_EPOCH = ROWS // BATCH
SAVE_STEPS = 7
KILL_AFTER_STEP = 37  # the process kills itself after this optimizer step: checkpoint-35 is its last complete one
RESUMED_STEP = KILL_AFTER_STEP // SAVE_STEPS * SAVE_STEPS

# The killed run: `nlp_transfer.train` (what `nlp-transfer train` calls) with one more TrainerCallback, which
# sends SIGKILL to its own process once optimizer step KILL_AFTER_STEP is done (before anything else is saved).
KILLED_RUN = """
import os, signal, sys
from transformers import TrainerCallback
import nlp_transfer

class KillAfter(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

nlp_transfer.train(sys.argv[1], callbacks=[KillAfter()])
raise SystemExit("the run finished before it could be killed")
"""

STRATEGIES = {
    "full": None,  # the default: everything trains
    # state kept across steps: one more layer group opens every epoch (the resumed epoch must open the same ones),
    # and per-depth learning rates in the optimizer's groups
    "gradual-lr-decay": {"name": "gradual", "every": "epoch", "lr_decay": 0.8},
}

# (strategy, data_storage): "memory" reads the rows into memory, "arrow" into the memory-mapped Arrow cache
# (data.arrow_cache); classification from the cache uses the same length-grouped sampler.
# Masked-LM from the Arrow cache (rows tokenized as read, ScatteredOrder): the first batch after a resume is masked
# before Trainer restores the checkpoint's random state (it restores it after fetching that batch, for dropout), so
# masks drawn from the global state differed there (42 of 44 tensors differed); masks now come from the seed and
# the batch's tokens (tasks.mlm.MaskingCollator).
CASES = {
    "full": ("full", "memory"),
    "gradual-lr-decay": ("gradual-lr-decay", "memory"),
    "full-arrow": ("full", "arrow"),
    "masked-lm-arrow": ("full", "arrow", "masked-lm"),
}


def _recipe(card: Path, model: Path, out: Path, strategy: dict | None, data_storage: str,
            task: str = "sequence-classification") -> dict:
    recipe = tiny_recipe(card, model, out, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
                         eval_strategy="no", save_strategy="steps", save_steps=SAVE_STEPS)
    recipe["task"] = task
    if strategy is not None:
        recipe["strategy"] = strategy
    if data_storage != "memory":
        recipe["data_storage"] = data_storage
    return recipe


def _write(tmp_path: Path, name: str, recipe: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """A Python process writing stdout and stderr to ``log`` (a file, not a pipe: nothing to drain while it runs)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait(process: subprocess.Popen, log: Path) -> tuple[int, str]:
    """Its exit status and what it printed."""
    return process.wait(timeout=600), log.read_text()


def _complete_checkpoints(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _step_logs(metrics: dict) -> list[dict]:
    """The loss, gradient norm and learning rate logged every logging_steps (not the timings or the run summary)."""
    return [entry for entry in metrics["history"] if "loss" in entry]


@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_run_ends_bit_identical(sst2_toy, tiny_bert, tmp_path, monkeypatch, case):
    import torch

    strategy, data_storage, *task = CASES[case]
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))  # the runs' Arrow cache stays in the test
    assert RESUMED_STEP % STEPS_PER_EPOCH > STEPS_PER_EPOCH // 2  # mid-epoch, past its middle
    whole_out, resumed_out = tmp_path / "uninterrupted", tmp_path / "resumed"
    settings = (STRATEGIES[strategy], data_storage, *task)
    whole = _write(tmp_path, "uninterrupted", _recipe(sst2_toy, tiny_bert, whole_out, *settings))
    killed = _write(tmp_path, "killed", _recipe(sst2_toy, tiny_bert, resumed_out, *settings))

    # the uninterrupted run trains beside the other two (most of each run is starting Python and importing torch)
    reference = _start(["-m", "nlp_transfer", "train", str(whole)], tmp_path / "uninterrupted.log")
    try:
        code, log = _wait(_start(["-c", KILLED_RUN, str(killed), str(KILL_AFTER_STEP)], tmp_path / "killed.log"),
                          tmp_path / "killed.log")
        assert code == -signal.SIGKILL, log[-3000:]
        assert not (resumed_out / "metrics.json").exists() and not (resumed_out / "model.safetensors").exists()
        assert max(_complete_checkpoints(resumed_out)) == RESUMED_STEP

        code, log = _wait(_start(["-m", "nlp_transfer", "train", str(killed), "resume=true"], tmp_path / "resumed.log"),
                          tmp_path / "resumed.log")
        assert code == 0, log[-3000:]
        assert f"resuming from checkpoint-{RESUMED_STEP}" in log
        code, log = _wait(reference, tmp_path / "uninterrupted.log")
        assert code == 0, log[-3000:]
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()

    expected, got = _tensors(whole_out), _tensors(resumed_out)
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ after the resume, e.g. {different[:5]}"

    expected_metrics = json.loads((whole_out / "metrics.json").read_text())
    got_metrics = json.loads((resumed_out / "metrics.json").read_text())
    assert got_metrics["train"]["resumed_from"] == f"checkpoint-{RESUMED_STEP}"
    assert expected_metrics["train"]["resumed_from"] is None
    assert got_metrics["train"]["global_step"] == expected_metrics["train"]["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert got_metrics["train"]["epochs"] == expected_metrics["train"]["epochs"]
    assert got_metrics["eval"] == expected_metrics["eval"]  # every score, per class, and the confusion matrix
    assert got_metrics["params"] == expected_metrics["params"]
    # the same loss, gradient norm and learning rate at every logging step, before the kill and after the resume
    assert _step_logs(got_metrics) == _step_logs(expected_metrics)
    assert len(_step_logs(expected_metrics)) == EPOCHS * STEPS_PER_EPOCH // 5


def test_each_epoch_of_group_by_length_is_shuffled_from_the_seed_and_the_epoch_alone():
    """The cause of the first difference: transformers' LengthGroupedSampler (our default group_by_length) drew each
    epoch's order from the global RNG, which a resumed run restores only after its first batch."""
    from types import SimpleNamespace

    import torch
    from torch.utils.data import SequentialSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from nlp_transfer.backends.trainer import epoch_seeded

    lengths = [(7 * i) % 45 + 3 for i in range(ROWS)]

    def order(epoch: int, global_seed: int, seed: int = 7, data_seed: int | None = None) -> list[int]:
        sampler = epoch_seeded(LengthGroupedSampler(BATCH, lengths=lengths), SimpleNamespace(seed=seed, data_seed=data_seed))
        torch.manual_seed(global_seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(2, global_seed=0) == order(2, global_seed=123)  # the global RNG plays no part
    assert sorted(order(2, 0)) == list(range(ROWS))
    assert len({tuple(order(epoch, 0)) for epoch in range(4)}) == 4  # every epoch its own order
    assert order(0, 0, seed=8) != order(0, 0) and order(0, 0, seed=8, data_seed=7) == order(0, 0)
    plain = SequentialSampler(range(5))
    assert epoch_seeded(plain, SimpleNamespace(seed=7, data_seed=None)) is plain


class RecordSamplerEpochs(TrainerCallback):
    """At every optimizer step: the epoch Trainer is in, and the one the training sampler was set to."""

    def __init__(self):
        self.seen = set()

    def on_step_begin(self, args, state, control, train_dataloader=None, **kwargs):
        sampler = train_dataloader.batch_sampler.sampler
        self.seen.add((int(state.epoch or 0), type(sampler).__name__, sampler.epoch))


def test_trainer_sets_the_epoch_of_the_training_sampler(sst2_toy, tiny_bert, tmp_path):
    """Without set_epoch every epoch would read the same order; Trainer sets it through accelerate's loader."""
    from nlp_transfer import train

    recorder = RecordSamplerEpochs()
    train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=3, eval_strategy="no"), callbacks=[recorder])
    assert sorted(recorder.seen) == [(epoch, "EpochSeededLengthGroupedSampler", epoch) for epoch in range(3)]


def test_gradual_unfreezing_resumed_mid_epoch_opens_what_that_epoch_opened(tiny_bert):
    """The cause of the second difference: a run resumed at epoch 1.75 rounded it up and opened epoch 2's layer."""
    from transformers import AutoModelForSequenceClassification, TrainerControl, TrainerState

    from nlp_transfer.strategies import make_gradual_unfreezing

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    callback = make_gradual_unfreezing("epoch")
    state = TrainerState(epoch=1.75, global_step=35)  # checkpoint-35 of 20 steps per epoch
    callback.on_train_begin(None, state, TrainerControl(), model=model)
    callback.on_epoch_begin(None, state, TrainerControl(), model=model)
    layers = model.bert.encoder.layer
    assert callback.opened == 1
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
