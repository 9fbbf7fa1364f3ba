"""Run folders: which folder a run may write, resume or replace, and the run record that says a folder is ours.

    plan = rundir.plan(output_dir, resume=False, overwrite=True, inputs=[card_path, data_path, model_dir])
    rundir.begin(plan)              # main process only: writes run.json ("running") into plan.work
    ... train, writing every file into plan.work ...
    rundir.finish(plan)             # run.json says "finished"; a replaced run is swapped out only now

Rules (README, "Errors and safety"):
- A folder is a run folder when it holds ``run.json`` (written when a run starts), or, for folders written before
  run records existed, ``nlp_transfer.json`` / ``metrics.json`` / Trainer checkpoints. Anything else is "not ours" and
  is never cleared, whatever ``overwrite`` says.
- ``overwrite=true`` never deletes first: the new run is written in a hidden sibling folder and swapped in when it
  has produced all its outputs, so a failed or interrupted overwrite leaves the previous run as it was. The working
  directory, the home directory, their parents and any folder holding what the recipe reads are refused.
- ``resume=true`` continues from the newest complete checkpoint; on a finished run it says so and does nothing.

`plan` only reads the disk, so every process of a distributed run can call it and get the same answer before the
main process changes anything.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import NLPTransferError
from .io import remove_tree, write_json_atomic

RUN_RECORD = "run.json"
RUN_RECORD_SCHEMA = 1
LEGACY_MARKERS = ("nlp_transfer.json", "metrics.json")  # folders written before run.json existed
NEW_SUFFIX = ".nlp-transfer-new"  # a replacing run is written into the hidden sibling ".NAME" + this
OLD_SUFFIX = ".nlp-transfer-old"  # the replaced run, for the moment between two renames


@dataclass
class RunPlan:
    """Where a run writes. ``work`` is ``target`` except when the run replaces an earlier one."""

    target: Path
    work: Path
    checkpoint: str | None = None  # resume from this Trainer checkpoint
    finished: bool = False  # resume=true on a finished run: nothing to do

    @property
    def replacing(self) -> bool:
        return self.work != self.target


def read_record(folder: Path) -> dict[str, Any] | None:
    """The run record of ``folder``, or None when there is none (or it cannot be read)."""
    try:
        record = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_run_folder(folder: Path) -> bool:
    """True when an nlp-transfer run wrote ``folder`` (run record, or an older run's files)."""
    if read_record(folder) is not None or any((folder / name).is_file() for name in LEGACY_MARKERS):
        return True
    return any((c / "trainer_state.json").is_file() for c in folder.glob("checkpoint-*"))


def is_finished(folder: Path) -> bool:
    record = read_record(folder)
    if record is not None:
        return record.get("status") == "finished"
    return (folder / "metrics.json").is_file()  # an older run: metrics.json is written when it finishes


def last_complete_checkpoint(out: Path) -> str | None:
    """The newest checkpoint that was completely written.

    Trainer writes ``trainer_state.json`` last and not atomically, so a run killed while saving leaves
    a newer, partial checkpoint behind; resuming from it would crash, so we skip it."""
    def step(path: Path) -> int:
        return int(path.name.rsplit("-", 1)[1])

    candidates = sorted((p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()),
                        key=step, reverse=True)
    for checkpoint in candidates:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            print(f"nlp-transfer: skipping incomplete {checkpoint.name} (interrupted while saving)", flush=True)
            continue
        return str(checkpoint)
    return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot, from /proc), or None where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None


def live_writer(folder: Path) -> int | None:
    """The id of a live process on this machine whose unfinished run writes ``folder``, else None. A killed run's
    stale record is not live; neither is a process that took over its id (Linux: the start time differs). The
    processes of one distributed launch share their folder, so under ``WORLD_SIZE`` > 1 nothing is checked."""
    record = read_record(folder)
    if record is None or record.get("status") != "running" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    pid = record.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or record.get("host") != socket.gethostname():
        return None
    if Path("/proc/self/stat").exists():
        started = process_start(pid)
        return pid if started is not None and started == record.get("pid_start") else None
    try:
        os.kill(pid, 0)  # elsewhere: alive is all we can tell
    except (OSError, ValueError):
        return None
    return pid


def _sibling(target: Path, suffix: str) -> Path:
    return target.parent / f".{target.name}{suffix}"


def _has_entries(folder: Path) -> bool:
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())


def plan(output_dir: str | Path, resume: bool = False, overwrite: bool = False, inputs: Iterable[str | Path] = (),
         source: str = "recipe", checkpoints: bool = True) -> RunPlan:
    """Decide where a run writes, without changing anything on disk.

    ``inputs`` are the paths the run reads (recipe, data cards, data files, a local model): a folder holding any of
    them is never replaced. ``checkpoints``: whether the backend can resume from Trainer checkpoints."""
    target = Path(output_dir)
    if target.exists() and not target.is_dir():
        raise NLPTransferError(f"{source}: output_dir '{target}' is a file; give a folder path for the run")
    if not _has_entries(target):
        return RunPlan(target, target)
    ours = is_run_folder(target)
    if not ours:
        raise NLPTransferError(
            f"{source}: output_dir '{target}' holds files that no nlp-transfer run wrote (no {RUN_RECORD}); "
            f"they are left alone: choose a new or empty output_dir")
    work = _sibling(target, NEW_SUFFIX)  # where a run replacing it (or started again) writes
    for folder in (target, work):
        writer = live_writer(folder)
        if writer is not None:
            raise NLPTransferError(
                f"{source}: output_dir '{target}' is being written by process {writer} on this machine (a run "
                f"started {read_record(folder).get('started')}); wait for it to finish, stop it, or choose another "
                f"output_dir")
    if resume:
        if is_finished(target):
            return RunPlan(target, target, finished=True)
        checkpoint = last_complete_checkpoint(target) if checkpoints else None
        if checkpoint is not None:
            return RunPlan(target, target, checkpoint=checkpoint)
        # a run that started again (below) trains in the hidden sibling: its checkpoints are there
        checkpoint = last_complete_checkpoint(work) if checkpoints and is_run_folder(work) else None
        if checkpoint is not None:
            _refuse_protected(target, inputs, source)
            return RunPlan(target, work, checkpoint=checkpoint)
        print(f"nlp-transfer: resume=true but {target} holds an unfinished run with no complete checkpoint; "
              f"starting it again", flush=True)
    elif not overwrite:
        raise NLPTransferError(
            f"{source}: output_dir '{target}' already holds a run; pass resume=true to continue it, overwrite=true to "
            f"replace it (the old run stays until the new one has finished), or choose another output_dir")
    _refuse_protected(target, inputs, source)
    if work.exists() and _has_entries(work) and not is_run_folder(work):
        raise NLPTransferError(f"{source}: '{work}' exists and is not a run folder; remove it or choose another "
                               f"output_dir")
    return RunPlan(target, work)


def _refuse_protected(target: Path, inputs: Iterable[str | Path], source: str) -> None:
    """Folders a replacing run must never swap away: cwd, home, their parents, and any holding the run's inputs."""
    resolved = target.resolve()
    guarded = {Path.cwd().resolve(): "the working directory", Path.home().resolve(): "the home directory"}
    for place, name in guarded.items():
        if resolved == place or resolved in place.parents:
            raise NLPTransferError(f"{source}: output_dir '{target}' is {name} or holds it; it is never replaced: "
                                   f"choose a run folder of its own, e.g. runs/NAME")
    for item in inputs:
        path = Path(item).resolve()
        if path == resolved or resolved in path.parents:
            raise NLPTransferError(f"{source}: output_dir '{target}' holds '{item}', which this run reads; it is never "
                                   f"replaced: choose another output_dir")


def begin(run: RunPlan, description: dict[str, Any] | None = None) -> None:
    """Main process only: make the folder the run writes and record that a run is in it."""
    if run.replacing and run.work.exists() and run.checkpoint is None:
        shutil.rmtree(run.work)  # a replacing run that was interrupted earlier: ours (checked by plan)
    run.work.mkdir(parents=True, exist_ok=True)
    previous = read_record(run.work) or {}
    record = {"schema": RUN_RECORD_SCHEMA, "status": "running", "started": _now(), "pid": os.getpid(),
              "pid_start": process_start(os.getpid()), "host": socket.gethostname(),
              "resumed_from": Path(run.checkpoint).name if run.checkpoint else None,
              "first_started": previous.get("first_started") or previous.get("started") or _now(),
              **(description or {})}
    write_json_atomic(run.work / RUN_RECORD, record)


def finish(run: RunPlan) -> None:
    """Main process only: mark the run finished, then (when replacing) swap it in for the earlier run."""
    record = read_record(run.work) or {"schema": RUN_RECORD_SCHEMA}
    record.update({"status": "finished", "finished": _now()})
    write_json_atomic(run.work / RUN_RECORD, record)
    if not run.replacing:
        return
    old = _sibling(run.target, OLD_SUFFIX)
    if old.exists():
        shutil.rmtree(old)
    if run.target.exists():
        os.replace(run.target, old)
    os.replace(run.work, run.target)
    remove_tree(old, "the replaced run")


def abandon(run: RunPlan) -> None:
    """Main process only, when a run fails or is interrupted: drop what it wrote unless it can be resumed.

    A resumed run, or one that left a complete checkpoint, is kept (``resume=true`` continues it). Otherwise a
    fresh run's files are removed (the folder was empty before) and a replacing run's hidden folder is deleted;
    the earlier run it was to replace is untouched either way."""
    if run.checkpoint is not None or not run.work.is_dir() or last_complete_checkpoint(run.work) is not None:
        return
    if run.replacing:
        remove_tree(run.work, "the unfinished run's folder")
        return
    for entry in run.work.iterdir():
        remove_tree(entry, "a file of the unfinished run")


def recover(target: str | Path) -> None:
    """Main process only, before `plan`: a crash between the two renames of `finish` leaves the old run beside an
    absent target; put it back (the new run it was replaced by is still in its hidden folder, unfinished)."""
    target = Path(target)
    old = _sibling(target, OLD_SUFFIX)
    if old.is_dir() and not target.exists():
        os.replace(old, target)
        print(f"nlp-transfer: restored {target} from an interrupted replacement", flush=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
