"""Task modules: each knows its data encoding, head, metrics and post-processing.

`training` asks a task for a `Prepared` bundle (`tasks.base`) and stays task-agnostic.
"""
from __future__ import annotations

def get_task(name: str):
    from . import classification, mlm, ner

    return {"sequence-classification": classification, "token-classification": ner, "masked-lm": mlm}[name]
