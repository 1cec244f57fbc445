"""``make ui``: the sandbox plus ``dagster dev`` on http://127.0.0.1:3000.

``python -m dagster_defs.ui [--host H] [--port P]`` prepares the same environment as the demo
(``DAGSTER_HOME`` default ``.dagster_home/``, the embedded sandbox unless
``MARKETCHECK_BASE_URL`` is set), then runs ``dagster dev -m dagster_defs`` (webserver and
daemon, so schedules and run retries work) until Ctrl-C or SIGTERM, which stop it and the
sandbox.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from dagster_defs._local import dagster_home, local_api

__all__ = ["DEFAULT_PORT", "main"]

DEFAULT_PORT = 3000
_STOP_TIMEOUT = 30.0
#: `dagster dev` warns on every start that it is superseded by `dg dev`, which lives in a
#: separate package (dagster-dg-cli) this project does not need; the warning says nothing else.
_QUIET_SUPERSESSION = "ignore:Function `dev_command` is superseded:FutureWarning"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``dagster dev`` (it stops its webserver, daemon and code server), then reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the UI next to the API; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dagster_defs.ui", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Interface (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="Port (default 3000).")
    args = parser.parse_args(argv)
    # Started in the background by a shell, SIGINT may arrive ignored: restore it, so that both
    # Ctrl-C here and the default disposition in `dagster dev` (exec resets handlers) work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    home = dagster_home()
    with local_api() as api:
        command = [
            sys.executable, "-m", "dagster", "dev", "-m", "dagster_defs",
            "--host", args.host, "--port", str(args.port),
        ]  # fmt: skip
        # Its own session: the terminal's Ctrl-C reaches only us, and we stop it in order.
        warnings = [w for w in (os.environ.get("PYTHONWARNINGS"), _QUIET_SUPERSESSION) if w]
        env = {**os.environ, "PYTHONWARNINGS": ",".join(warnings)}
        process = subprocess.Popen(command, start_new_session=True, env=env)  # noqa: S603
        print(f"MarketMatch API: {api.describe()}", flush=True)
        print(
            f"Dagster UI: http://{args.host}:{args.port}  (DAGSTER_HOME={home}; Ctrl-C stops)",
            flush=True,
        )
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            _stop(process)


if __name__ == "__main__":
    sys.exit(main())
