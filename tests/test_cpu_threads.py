"""torch's CPU thread team must wait passively, or a busy machine collapses throughput (issue 21).

libgomp prints the settings it really uses with OMP_DISPLAY_ENV=VERBOSE when torch loads it; a spin
count of 0 is the passive wait. Speed itself is measured in benchmarks/cpu_load.py, not here."""
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test starts the CLI or the API in a subprocess


def _spincount(extra_env: dict, command: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env.update(OMP_DISPLAY_ENV="VERBOSE", **extra_env)
    proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", proc.stderr)
    assert found, "libgomp did not display its settings:\n" + proc.stderr[-2000:]
    return int(found.group(1))


@pytest.mark.parametrize("command", [["-m", "cidstream", "models"],
                                     ["-c", "import cidstream.engine, torch; torch.ones(4).sum()"]])
def test_cli_and_api_wait_passively(command):
    assert _spincount({}, command) == 0


def test_a_wait_policy_the_user_set_is_kept():
    assert _spincount({"OMP_WAIT_POLICY": "ACTIVE"}, ["-m", "cidstream", "models"]) > 300000
