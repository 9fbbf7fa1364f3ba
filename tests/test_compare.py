"""`nlp-transfer compare`: the side-by-side report of finished runs, built from real metrics.json files
(hand-written in the shapes training, the probe, a static baseline and NER write) and one genuine tiny run."""
from __future__ import annotations

import base64
import importlib
import json
from pathlib import Path

import pytest
from conftest import tiny_recipe

import nlp_transfer
from nlp_transfer import NLPTransferError, compare, train
from nlp_transfer.cli import main
from nlp_transfer.analysis.compare import load_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("metrics.png", "learning_curves.png", "confusion.png")


def per_label(f1s: dict[str, float], support: int = 100) -> dict:
    return {label: {"precision": f1 + 0.01, "recall": f1 - 0.01, "f1": f1, "support": support}
            for label, f1 in f1s.items()}


def classification_metrics(accuracy: float, f1s: dict[str, float], **extra) -> dict:
    return {
        "task": "sequence-classification", "problem_type": "single_label", "model": "minilm-l6", "data": "sst2",
        "strategy": "full", "eval_split": "validation", "main_metric": "accuracy",
        "eval": {"accuracy": accuracy, "f1_macro": sum(f1s.values()) / len(f1s), "per_class": per_label(f1s),
                 "confusion_matrix": {"labels": list(f1s), "matrix": [[375, 53], [38, 406]]}},
        "seed": 42, "date": "2026-11-23T12:00:00+00:00", **extra,
    }


def full_run() -> dict:
    history = [{"loss": 0.7 - 0.1 * i, "epoch": i / 6, "step": 50 * i} for i in range(1, 7)]
    history += [{"eval_loss": 0.4, "eval_accuracy": acc, "eval_samples_per_second": 150.0, "epoch": step / 300,
                 "step": step} for step, acc in ((100, 0.85), (200, 0.88), (300, 0.9013))]
    return classification_metrics(
        0.9013, {"negative": 0.8918, "positive": 0.9101},
        train={"runtime_s": 1302.82, "samples_per_second": 51.7, "loss": 0.27, "global_step": 300, "epochs": 1.0},
        params={"trainable": 22713986, "total": 22713986}, predict={"samples_per_second": 212.4}, history=history)


def probe_run() -> dict:  # feature-extraction probe: no history, no predict throughput
    return classification_metrics(
        0.8142, {"negative": 0.8112, "positive": 0.8172}, strategy="feature-extraction",
        train={"runtime_s": 134.56, "feature_seconds": 131.88, "probe": "logistic-regression", "C": 10.0},
        params={"trainable": 770, "total": 22713986})


def static_run() -> dict:  # static-embedding baseline: same keys, its own model/strategy names
    return classification_metrics(
        0.7741, {"negative": 0.7702, "positive": 0.7779}, model="glove.6B.50d.100k (static)",
        strategy="static-average", train={"runtime_s": 3.21}, params={"trainable": 102, "total": 5000102},
        predict={"samples_per_second": 15230.5}, history=None)


def ner_run() -> dict:
    per_type = per_label({"LOC": 0.9406, "MISC": 0.8548, "ORG": 0.8518, "PER": 0.9577})
    history = [{"loss": 1.2 / i, "epoch": i, "step": 878 * i} for i in range(1, 4)]
    history += [{"eval_f1": f1, "eval_samples_per_second": 300.0, "epoch": i, "step": 878 * i}
                for i, f1 in ((1, 0.87), (2, 0.8963), (3, 0.9126))]
    return {
        "task": "token-classification", "problem_type": "token", "model": "minilm-l6", "data": "conll2003",
        "strategy": "full", "eval_split": "validation", "main_metric": "f1",
        "eval": {"f1": 0.9126, "precision": 0.9067, "recall": 0.9187, "accuracy": 0.9825, "per_type": per_type},
        "test_split": "test", "test": {"rows": 3453, "f1": 0.8737, "precision": 0.8664, "recall": 0.881},
        "train": {"runtime_s": 2104.98, "global_step": 2634}, "params": {"trainable": 22568841, "total": 22568841},
        "predict": {"samples_per_second": None}, "history": history,
    }


def write_run(folder: Path, metrics: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return folder


@pytest.fixture()
def written_runs(tmp_path) -> list[Path]:
    """Four runs in the order given on the command line (not the report's order)."""
    runs = tmp_path / "runs"
    return [write_run(runs / "conll-ner", ner_run()), write_run(runs / "sst2-probe", probe_run()),
            write_run(runs / "sst2-glove-avg", static_run()), write_run(runs / "sst2-full", full_run())]


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The comparison table as {run: {column: cell}}, in the order of the rows (dicts keep order)."""
    all_lines = markdown.splitlines()
    first = next(i for i, line in enumerate(all_lines) if line.startswith("| "))
    lines = []
    for line in all_lines[first:]:  # the first table only (calibration and group tables follow it)
        if not line.startswith("|"):
            break
        if line.startswith("| "):
            lines.append(line)
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split(" | ")))) for line in lines[1:]]
    return {row["run"]: row for row in rows}


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    image = imread(path)
    assert image.shape[0] > 0 and image.shape[1] > 0, path


def test_report_from_a_genuine_run_and_written_runs_holds_their_numbers_in_order(written_runs, sst2_toy, tiny_bert,
                                                                                   tmp_path):
    tiny = tmp_path / "runs" / "tiny-bert"
    train(tiny_recipe(sst2_toy, tiny_bert, tiny, eval_strategy="epoch"))
    genuine = json.loads((tiny / "metrics.json").read_text())

    out = compare([*written_runs, tiny], output=tmp_path / "report")
    assert out == tmp_path / "report"
    markdown = (out / "report.md").read_text()
    rows = table_rows(markdown)
    # task, then data set (sst2 before sst2-toy), then main metric descending
    assert list(rows) == ["sst2-full", "sst2-probe", "sst2-glove-avg", "tiny-bert", "conll-ner"]
    assert rows["sst2-full"] == {
        "run": "sst2-full", "task": "sequence-classification", "data": "sst2", "model": "minilm-l6", "strategy": "full",
        "metric": "accuracy", "eval": "0.9013", "test": "—",
        "per-class / per-type F1": "negative 0.8918, positive 0.9101",
        "trainable params": "22.7M (100%)", "train time": "21.7 min", "predict samples/s": "212"}
    assert rows["sst2-probe"]["trainable params"] == "770 (0.0034%)"
    assert rows["sst2-probe"]["train time"] == "2.2 min"
    assert rows["sst2-probe"]["predict samples/s"] == "—"  # no predict key and no history to fall back on
    assert rows["sst2-glove-avg"]["model"] == "glove.6B.50d.100k (static)"
    assert rows["sst2-glove-avg"]["strategy"] == "static-average"
    assert rows["sst2-glove-avg"]["predict samples/s"] == "15,230"
    assert rows["sst2-glove-avg"]["trainable params"] == "102 (0.002%)"
    ner = rows["conll-ner"]
    assert (ner["metric"], ner["eval"], ner["test"]) == ("f1", "0.9126", "0.8737")
    assert ner["per-class / per-type F1"] == "LOC 0.9406, MISC 0.8548, ORG 0.8518, PER 0.9577"
    assert ner["predict samples/s"] == "300"  # predict is null: the evaluation throughput logged in history

    mine = rows["tiny-bert"]
    assert mine["data"] == f"sst2-toy ({genuine['rows']['train']} train)"  # 160 rows: training set size shown
    assert mine["eval"] == f"{genuine['eval']['accuracy']:.4f}"
    for label, scores in genuine["eval"]["per_class"].items():
        assert f"{label} {scores['f1']:.4f}" in mine["per-class / per-type F1"]
    assert mine["trainable params"].endswith("(100%)")
    assert mine["train time"] == f"{genuine['train']['runtime_s']:.1f} s"
    rate = genuine["predict"]["samples_per_second"]
    assert mine["predict samples/s"] == (f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}")

    for name in PLOTS:
        assert f"]({name})" in markdown  # linked relatively, beside report.md
        assert_png(out / name)
    assert "Confusion matrix of the best classification run (sst2-full)" in markdown


def test_html_is_self_contained_with_the_same_table_and_embedded_pngs(written_runs, tmp_path):
    out = compare(written_runs, output=tmp_path / "report", title="SST-2 & CoNLL <runs>")
    page = (out / "report.html").read_text()
    assert "<title>SST-2 &amp; CoNLL &lt;runs&gt;</title>" in page
    assert page.count("<tr>") == 1 + len(written_runs)
    assert "<td>negative 0.8918, positive 0.9101</td>" in page and "<td>0.8737</td>" in page
    assert "src=\"metrics.png\"" not in page and "http" not in page  # nothing to fetch
    embedded = [chunk.split('"', 1)[0] for chunk in page.split('src="data:image/png;base64,')[1:]]
    assert [base64.b64decode(data) for data in embedded] == [(out / name).read_bytes() for name in PLOTS]


def test_cli_prints_the_table_and_the_report_paths(written_runs, tmp_path, capsys):
    out = tmp_path / "cli-report"
    assert main(["compare", *map(str, written_runs), "--out", str(out), "--title", "four runs"]) == 0
    printed = capsys.readouterr().out
    assert "| run | task | data |" in printed
    assert list(table_rows(printed)) == ["sst2-full", "sst2-probe", "sst2-glove-avg", "conll-ner"]
    assert str(out / "report.md") in printed and str(out / "report.html") in printed
    assert (out / "report.md").read_text().startswith("# four runs\n")


def test_missing_metrics_json_exits_2_with_one_line_and_the_close_sibling(written_runs, tmp_path, capsys):
    typo = tmp_path / "runs" / "sst2-ful"
    assert main(["compare", str(written_runs[0]), str(typo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(typo) in err and f"did you mean '{tmp_path / 'runs' / 'sst2-full'}'?" in err

    unfinished = tmp_path / "runs" / "sst2-probe-2"
    unfinished.mkdir()
    with pytest.raises(NLPTransferError, match=r"has no metrics\.json.*did you mean '.*sst2-probe'"):
        compare([unfinished])
    with pytest.raises(NLPTransferError, match=r"holds no metrics\.json but 4 run folder\(s\) inside it do"):
        compare([tmp_path / "runs"])

    running = tmp_path / "runs" / "sst2-mlm"
    for step in (125, 250):
        (running / f"checkpoint-{step}").mkdir(parents=True)
    with pytest.raises(NLPTransferError, match="no metrics.json yet, only checkpoint-250: training is still running"):
        compare([running])


def test_corrupt_metrics_json_names_the_file(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text('{"task": "sequence-classification", "eval": {', encoding="utf-8")
    assert main(["compare", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(broken / "metrics.json") in err and "corrupt" in err
    (broken / "metrics.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(NLPTransferError, match="corrupt metrics.json"):
        compare([broken])


def test_missing_keys_show_a_dash_and_a_plot_without_data_is_not_written(tmp_path):
    bare = write_run(tmp_path / "old-run", {"task": "sequence-classification", "main_metric": "accuracy"})
    out = tmp_path / "report"
    out.mkdir()
    (out / "learning_curves.png").write_bytes(b"stale picture from an older report")
    compare([bare], output=out)
    row = table_rows((out / "report.md").read_text())["old-run"]
    assert row["task"] == "sequence-classification"
    assert {row[c] for c in row if c not in ("run", "task", "metric")} == {"—"}
    assert not any((out / name).exists() for name in PLOTS)  # nothing to plot, and no stale picture left
    assert "![" not in (out / "report.md").read_text() and "<img" not in (out / "report.html").read_text()


def test_a_failure_while_rendering_leaves_the_previous_report_untouched(written_runs, tmp_path, monkeypatch):
    module = importlib.import_module("nlp_transfer.analysis.compare")  # the package attribute stays the function

    assert callable(nlp_transfer.compare) and nlp_transfer.compare is module.compare
    out = compare(written_runs, output=tmp_path / "report")
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def explode(run):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(module, "confusion_plot", explode)
    with pytest.raises(RuntimeError):
        compare(written_runs[:2], output=out)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # no half or temp files


def test_same_named_folders_get_names_that_tell_them_apart(tmp_path):
    first = write_run(tmp_path / "lr-3e-5" / "full", probe_run())
    second = write_run(tmp_path / "lr-1e-4" / "full", full_run())
    out = compare([first, second, first], output=tmp_path / "report")  # a folder given twice counts once
    assert list(table_rows((out / "report.md").read_text())) == ["lr-1e-4/full", "lr-3e-5/full"]


def test_a_lower_is_better_main_metric_sorts_ascending(tmp_path):
    def mlm(loss: float) -> dict:
        return {"task": "masked-lm", "data": "sst2-text", "main_metric": "loss", "eval": {"loss": loss}}

    runs = [write_run(tmp_path / "mlm-short", mlm(2.31)), write_run(tmp_path / "mlm-long", mlm(1.87))]
    out = compare(runs, output=tmp_path / "report")
    rows = table_rows((out / "report.md").read_text())
    assert list(rows) == ["mlm-long", "mlm-short"] and rows["mlm-long"]["eval"] == "1.8700"
    assert not (out / "confusion.png").exists()  # no classification run


def test_strategy_cell_names_the_options_that_distinguish_runs():
    from nlp_transfer.analysis.compare import strategy_note

    assert strategy_note({"strategy": {"name": "full", "lr_decay": 0.8, "n": 2}}) == "lr decay 0.8"  # n: last-n only
    assert strategy_note({"strategy": {"name": "last-n", "n": 2, "head_warmup_steps": 60}}) == "n 2, head warmup steps 60"
    assert strategy_note({"strategy": {"name": "full", "group_lrs": {"embeddings": 2e-5, "head": 1e-3}}}) == \
        "group lrs 2e-05/0.001"
    assert strategy_note(None) == "" and strategy_note({"strategy": "full"}) == ""


def test_an_unfinished_run_is_named_from_its_run_record(tmp_path):
    from nlp_transfer.rundir import RunPlan, begin

    folder = tmp_path / "running"
    begin(RunPlan(folder, folder))
    (folder / "checkpoint-40").mkdir()
    with pytest.raises(NLPTransferError, match=r"holds a run that has not finished \(run.json: running since .*"
                                               r"newest checkpoint-40\)"):
        load_runs([folder])
