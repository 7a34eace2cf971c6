"""The `shared_data` fixture on a fresh clone (no ../shared): its tests are skipped with the
reason, unless CORAL_REQUIRE_SHARED=1 (what .ci/run sets), which makes them errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_with_shared(tmp_path: Path, shared: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    """A one-test pytest session that asks for `shared_data`, with CORAL_SHARED_DIR = `shared`."""
    test = tmp_path / "test_needs_shared.py"
    test.write_text("def test_reads_it(shared_data):\n    assert (shared_data / 'dailydialog').is_dir()\n")
    env = {k: v for k, v in os.environ.items() if k != "CORAL_REQUIRE_SHARED"}
    env.update({"CORAL_SHARED_DIR": str(shared), **({"CORAL_REQUIRE_SHARED": require} if require else {})})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-rsE",
                           "-q", "--rootdir", str(tmp_path), str(test)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_missing_shared_data_skips_with_its_reason_unless_required(tmp_path):
    empty = tmp_path / "empty-shared"
    empty.mkdir()
    skipped = run_with_shared(tmp_path, empty, None)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout and f"shared data not found at {empty / 'data'}" in skipped.stdout
    required = run_with_shared(tmp_path, empty, "1")
    assert required.returncode == 1 and "1 error" in required.stdout
    assert "shared data not found" in required.stdout and "CORAL_REQUIRE_SHARED=1" in required.stdout
    (empty / "data" / "dailydialog").mkdir(parents=True)
    found = run_with_shared(tmp_path, empty, "1")
    assert found.returncode == 0 and "1 passed" in found.stdout, found.stdout
