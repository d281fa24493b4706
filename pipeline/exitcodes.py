"""Exit codes of the pipeline's commands, the same wherever a run starts (docs/operations.md has the table).

Luigi exits 0 even when a task fails unless its ``[retcode]`` section says otherwise, and that
section used to live only in the project's luigi.cfg. :func:`set_retcode_defaults` (called on
import of ``pipeline``, so for ``luigi --module pipeline`` and ``python -m pipeline`` alike) fills
in every ``[retcode]`` key that no config file set.
"""

from __future__ import annotations

from pipeline.config import set_defaults

SUCCESS = 0
USAGE = 2
"""A bad command line or recipe (one line on stderr)."""
NOT_BUILT = 3
"""``status``: the final outputs or the report are missing or stale; ``cleanup``: refused for that reason."""
SKIPPED_FILES = 5
"""``python -m pipeline BuildDataset``: the build is complete, but some input files failed (within max_failures)."""
RETCODES = {
    "already_running": 10,
    "missing_data": 20,
    "not_run": 25,
    "task_failed": 30,
    "scheduling_error": 35,
    "unhandled_exception": 40,
}
"""Luigi's ``[retcode]`` keys and the codes this project gives them."""


def interrupted(signum: int) -> int:
    """The code of a run stopped by ``signum``, as a shell reports it: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def set_retcode_defaults(config=None) -> None:
    """Give every ``[retcode]`` key its code from :data:`RETCODES` unless a config file already set it."""
    set_defaults("retcode", RETCODES, config)
