"""examples/edge: the systemd unit that runs the executable must be one systemd accepts, and
must say what the README promises (a dedicated user, restart on failure, a graceful stop)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "examples" / "edge" / "actorq.service"


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """The unit file as systemd reads it: sections of keys, a key possibly given many times."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"a directive outside any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_runs_the_executable_as_a_supervised_service() -> None:
    unit = directives(UNIT.read_text())
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] not in ("", "root")
    assert service["WorkingDirectory"].startswith("/")
    assert service["ExecStart"].split()[1:] == ["serve"]
    env = dict(
        pair.split("=", 1) for line in unit["Service"]["Environment"] for pair in line.split()
    )
    grace = float(env["ACTORQ_SHUTDOWN_GRACE"])
    assert float(service["TimeoutStopSec"]) > grace, "running tasks get their grace, then some"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at a stand-in for the executable.
    stand_in = tmp_path / "actorq"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    text = UNIT.read_text().replace("/usr/local/bin/actorq", str(stand_in))
    unit = tmp_path / "actorq.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # It exits 0 even on unknown keys or bad values, which it only warns about.
    assert (done.returncode, done.stderr.strip()) == (0, "")
