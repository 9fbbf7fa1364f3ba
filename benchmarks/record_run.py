"""Record a finished run's numbers in benchmarks/results.json.

    python -m benchmarks.record_run runs/sst2-minilm --key sst2/minilm-l6/full \
        --command "nlp-transfer train recipes/sst2_minilm.yaml"

Writes ``KEY/dev_<metric>`` for the run's scalar evaluation metrics plus ``KEY/train_time_s`` and
``KEY/trainable_params``, each as ``{"value", "command", "date"}``. Existing keys are replaced; the file
is rewritten atomically.
"""
from __future__ import annotations

import argparse
import json
import re
from datetime import date
from pathlib import Path

from nlp_transfer.io import write_json_atomic, write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(entries: dict[str, float], command: str, results: Path = RESULTS) -> dict:
    current = json.loads(results.read_text()) if results.is_file() else {}
    today = date.today().isoformat()
    for key, value in entries.items():
        current[key] = {"value": value, "command": command, "date": today}
    write_json_atomic(results, dict(sorted(current.items())))
    return current


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (or append it), atomically."""
    current = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n"
    if start in current and end in current:
        current = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, current, flags=re.S)
    else:
        current = current.rstrip() + "\n\n" + section + "\n"
    write_text_atomic(path, current)


def run_entries(run_dir: Path, key: str, split_name: str = "dev") -> dict[str, float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    entries = {f"{key}/{split_name}_{name}": round(value, 4) for name, value in metrics["eval"].items()
               if isinstance(value, float) and name != "loss"}
    entries[f"{key}/train_time_s"] = metrics["train"]["runtime_s"]
    entries[f"{key}/trainable_params"] = metrics["params"]["trainable"]
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--key", required=True, help="prefix, e.g. sst2/minilm-l6/full")
    parser.add_argument("--command", required=True, help="the command that produced the run")
    parser.add_argument("--split-name", default="dev")
    args = parser.parse_args()
    entries = run_entries(args.run_dir, args.key, args.split_name)
    record(entries, args.command)
    for key, value in entries.items():
        print(f"{key} = {value}")


if __name__ == "__main__":
    main()
