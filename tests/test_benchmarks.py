"""The benchmark entry point's bookkeeping: goals decide the exit code, RESULTS.md keeps everything but its section."""
from __future__ import annotations

import importlib

bench = importlib.import_module("benchmarks.__main__")


def test_a_ratio_below_its_goal_is_reported_and_fails_the_run():
    figures = {"train/sst2/vs_padded_trainer_speedup": 6.0, "train/sst2/vs_dynamic_trainer_speedup": 0.97,
               "predict/sst2/vs_pipeline_speedup": 1.8, "predict/sst2/agreement_with_pipeline": 1.0}
    missed = bench.failures(figures)
    assert missed == ["train/sst2/vs_dynamic_trainer_speedup = 0.97 < 1.0"]
    figures["train/sst2/vs_dynamic_trainer_speedup"] = 1.2
    assert bench.failures(figures) == []
    figures["predict/sst2/agreement_with_pipeline"] = 0.98  # faster but different predictions does not count
    assert len(bench.failures(figures)) == 1


def test_results_section_is_replaced_in_place(tmp_path, monkeypatch):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nbefore\n\n<!-- bench:start -->\nold table\n<!-- bench:end -->\n\nafter\n")
    monkeypatch.setattr(bench, "RESULTS_MD", results)
    bench.update_results("| new | table |", "python -m benchmarks --quick")
    text = results.read_text()
    assert "old table" not in text and "| new | table |" in text
    assert text.startswith("# Results\n\nbefore\n") and text.rstrip().endswith("after")
    assert "`python -m benchmarks --quick`" in text and text.count("<!-- bench:start -->") == 1


def test_the_table_shows_each_ratio_next_to_its_goal():
    text = bench.table({"train/sst2/vs_padded_trainer_speedup": 6.26, "train/sst2/nlp_transfer_samples_per_s": 89.7,
                        "train/sst2/padded_trainer_samples_per_s": 14.3})
    assert "| train SST-2, samples/s vs Trainer, padded to 128 | 89.7 | 14.3 | **6.26x** | >= 1.5x |" in text
