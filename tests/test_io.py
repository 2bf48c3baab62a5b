"""Atomic writes: a killed writer leaves the old file intact, and its temp file is swept on the next start."""

import os
import signal
import subprocess
import sys

from marl_gym.io import atomic_write_text, remove_stale_temp_files


def test_a_writer_killed_mid_write_leaves_the_old_file_and_a_temp_file_that_is_swept(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_text(target, "old")
    # a child process starts an atomic write and is SIGKILLed while it holds the temp file open
    code = (
        "import sys, time\n"
        "from marl_gym.io import atomic_write\n"
        "def slow(fh):\n"
        "    fh.write('new, half'); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"atomic_write({str(target)!r}, slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old"
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].name.startswith(".result.json.")

    keep = tmp_path / "notes.tmp"  # not of atomic_write's shape: left alone
    keep.write_text("mine")
    assert remove_stale_temp_files(tmp_path) == stale
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "result.json"]
    assert remove_stale_temp_files(tmp_path / "missing") == []
    assert os.path.exists(keep)
