"""How the entry scripts in ``experiments/`` end: one line for an expected error, a non-zero exit.

``run(main)`` calls ``main()``. A bad input (``ValueError``, a missing or existing file, a
permission or connection problem, a corrupt YAML file, an MLflow client error) prints
``error: <message>`` on stderr and exits 2; Ctrl-C exits 130; an exception with an
``exit_code`` attribute (e.g. an interrupted sweep) prints its message and exits with that
code. ``--debug`` on the command line or ``CJEPA_DEBUG=1`` shows the full traceback instead.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXPECTED: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ConnectionError,
    TimeoutError,
)


def debugging(argv: list[str] | None = None) -> bool:
    """Whether to show tracebacks: ``--debug`` in ``argv`` (removed from it) or CJEPA_DEBUG."""
    argv = sys.argv if argv is None else argv
    flag = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    return flag or os.environ.get("CJEPA_DEBUG", "") not in ("", "0")


def run(main: Callable[[], object], argv: list[str] | None = None) -> None:
    """Run an entry point under the module's exit rules."""
    if debugging(argv):
        main()
        return
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except BaseException as err:
        code = getattr(err, "exit_code", None)
        if code is None and not (isinstance(err, EXPECTED) or _yaml_error(err) or _mlflow(err)):
            raise
        print(f"error: {err}" if code is None else str(err), file=sys.stderr, flush=True)
        sys.exit(code if code is not None else 2)


def _mlflow(err: BaseException) -> bool:
    """An MLflow client error (an unreachable or failing tracking server), without importing
    mlflow here."""
    return any(c.__name__ == "MlflowException" for c in type(err).__mro__)


def _yaml_error(err: BaseException) -> bool:
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a dependency
        return False
    return isinstance(err, yaml.YAMLError)
