"""Run folders written before one sidecar format (tests/fixtures/old_runs, checked in as that code wrote them) still
open: `load_model`, `evaluate` and `nlp-transfer predict` give the scores recorded when they were trained."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO

from nlp_transfer import evaluate, load_model
from nlp_transfer.cli import main
from nlp_transfer.sidecar import FORMAT, read_sidecar

OLD = REPO / "tests" / "fixtures" / "old_runs"
CARD = OLD / "data" / "card.md"
KINDS = {"trainer": "TextClassifier", "probe": "ProbeClassifier", "static": "StaticClassifier"}


@pytest.fixture(autouse=True)
def from_the_repository(monkeypatch):
    monkeypatch.chdir(REPO)  # the probe names its encoder relative to the repository, as its recipe did


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_old_folder_reads_as_the_backend_that_wrote_it(kind):
    sidecar = read_sidecar(OLD / kind)
    assert sidecar["backend"] == kind and sidecar["format"] == 1 < FORMAT
    assert sidecar["label_names"] == ["negative", "positive"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_old_folder_loads_and_scores_as_when_it_was_trained(kind):
    model = load_model(OLD / kind, device="cpu")
    assert type(model).__name__ == KINDS[kind]
    recorded = json.loads((OLD / kind / "metrics.json").read_text())["eval"]
    scores = evaluate(OLD / kind, CARD, "validation", device="cpu")
    assert scores["rows"] == 32
    assert scores["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-6)
    assert model.calibration.temperature == json.loads((OLD / kind / "calibration.json").read_text())["temperature"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_old_folder_predicts_through_the_cli(kind, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous , witty film .\nthe plot is nothing but boilerplate .\n")
    assert main(["predict", str(OLD / kind), "--input", str(texts), "--output", str(tmp_path / "p.jsonl"),
                 "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [row["text"] for row in rows] == texts.read_text().splitlines()
    for row in rows:
        assert row["label"] in ("negative", "positive")
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    again = load_model(OLD / kind, device="cpu").predict(texts.read_text().splitlines())
    assert np.allclose([r["score"] for r in rows], [r["score"] for r in again], atol=1e-6)
