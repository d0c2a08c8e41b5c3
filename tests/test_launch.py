"""glsr-train's own rank launcher: the exit code says why a run failed, not how we stopped it."""

import textwrap

import pytest
from glsr_train import distributed
from glsr_train.distributed import launch

# rank 1 fails at once; rank 0 fails a little later with its own (usage) code
BOTH_FAIL = """
    import os, sys, time
    if os.environ["RANK"] == "0":
        time.sleep(1.5)
        print("rank 0: bad folder", file=sys.stderr)
        sys.exit(2)
    sys.exit(2)
"""
# rank 0 fails; rank 1 would wait on it forever
ONE_HANGS = """
    import os, sys, time
    if os.environ["RANK"] == "0":
        sys.exit(3)
    time.sleep(600)
"""
# rank 1 fails alone; rank 0 would wait on it forever
OTHER_FAILS = """
    import os, sys, time
    if os.environ["RANK"] == "1":
        sys.exit(4)
    time.sleep(600)
"""


@pytest.fixture
def module(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(distributed, "RANK_GRACE_SECONDS", 3.0)

    def write(body: str) -> str:
        (tmp_path / "fake_rank.py").write_text(textwrap.dedent(body))
        return "fake_rank"

    return write


def test_a_rank_that_ends_by_itself_within_the_grace_keeps_its_exit_code(module, capfd):
    assert launch(module(BOTH_FAIL), [], 2) == 2  # not 143: rank 0 was not stopped
    assert "rank 0: bad folder" in capfd.readouterr().err


def test_a_rank_left_waiting_is_stopped_and_the_failed_one_gives_the_code(module):
    assert launch(module(ONE_HANGS), [], 2) == 3


def test_a_failed_other_rank_is_named_with_its_log(module, capfd):
    assert launch(module(OTHER_FAILS), [], 2) == 4
    assert "rank 1 failed (exit 4); its log:" in capfd.readouterr().err
