"""Tasks: `base.TASKS` is the registry (`get_task(name)` gives a `Task`: its facts, and its implementation module
with data encoding, head, metrics and post-processing). `training` asks a task for a `Prepared` bundle and stays
task-agnostic."""
from __future__ import annotations

from .base import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
