"""``python -m pipeline <Task> --recipe R [luigi options]``: Luigi's command, with workers resolved first.

The same as ``luigi --module pipeline <Task> ...``, except that the number of worker
processes comes from ``--workers`` or else ``[processing] workers`` (luigi.cfg), is refused
when 0 or negative and capped to the CPU count with a warning. Luigi's exit codes
(``[retcode]`` in luigi.cfg) and its process lock apply unchanged.
"""

from __future__ import annotations

import sys

import luigi.retcodes

from pipeline.config import processing
from pipeline.engine.resources import WorkersError, resolve_workers


def split_workers(argv: list[str]) -> tuple[list[str], int | None]:
    """``argv`` without its ``--workers N`` / ``--workers=N``, and N (None when absent)."""
    rest, workers, args = [], None, iter(argv)
    for arg in args:
        if arg == "--workers" or arg.startswith("--workers="):
            value = arg.partition("=")[2] if "=" in arg else next(args, "")
            try:
                workers = int(value)
            except ValueError:
                raise WorkersError(f"--workers {value!r}: the number of workers must be a whole number") from None
        else:
            rest.append(arg)
    return rest, workers


def main(argv: list[str] | None = None) -> None:
    try:
        rest, requested = split_workers(list(sys.argv[1:] if argv is None else argv))
        workers = resolve_workers(requested, processing().workers,
                                  warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    except WorkersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    luigi.retcodes.run_with_retcodes(["--module", "pipeline", *rest, "--workers", str(workers)])


if __name__ == "__main__":
    main()
