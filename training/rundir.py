"""A run's directory: config.json, metrics.jsonl (one line per evaluation), latest.pt and
previous.pt (the last two checkpoints, written atomically) and best.pt. A staged recipe's
earlier stages train in ``OUT/stages/K-NAME``, each marked ``finished`` when done; the last
stage trains in OUT itself, so OUT/best.pt is the model's."""

from __future__ import annotations

import json
import os
from pathlib import Path

FINISHED = "finished"


def stage_folder(out: Path, index: int, name: str, last: bool) -> Path:
    """Where stage ``index`` (0-based) trains: OUT/stages/1-NAME ..., the last in OUT."""
    return out if last else out / "stages" / f"{index + 1}-{name}"


def write_config(out: Path, config_dict: dict, digest: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**config_dict, "digest": digest}, indent=2))


def append_metrics(out: Path, record: dict) -> None:
    """Append one line with a single write: a kill leaves whole lines or a torn last one,
    which ``read_metrics`` skips."""
    line = (json.dumps(record) + "\n").encode()
    descriptor = os.open(out / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def read_metrics(path: Path) -> list[dict]:
    """The whole records of a metrics log; a line torn by a kill is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def forget_metrics_after(path: Path, step: int) -> None:
    """Drop log lines newer than the checkpoint we resume from (they will be written again),
    and any torn line; rewritten atomically."""
    if not path.exists():
        return
    kept = [record for record in read_metrics(path) if record["step"] <= step]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
    os.replace(temporary, path)
