"""Universe analyses of the ticks flow: built-ins by name, plug-ins as ``"package.module:function"``.

See ``pipeline/analyses/base.py`` for the contract and ``docs/ticks.md`` for the analyses.
"""

from __future__ import annotations

import importlib

from pipeline.analyses.base import Analysis, load_plugin

BUILTIN = {"necrozma": "pipeline.analyses.necrozma", "next_candle": "pipeline.analyses.next_candle"}
"""Built-in analyses by name: the module holding its ``ANALYSIS``."""


def resolve(name: str) -> Analysis:
    """The analysis a recipe names; LookupError with one line when there is none."""
    if name in BUILTIN:
        return importlib.import_module(BUILTIN[name]).ANALYSIS
    if ":" not in name:
        raise LookupError(f"unknown analysis {name!r}: built-in analyses are {', '.join(sorted(BUILTIN))}; "
                          "a plug-in is written 'package.module:function'")
    return load_plugin(name)


def problem(name: object) -> str | None:
    """Why ``name`` is not a usable analysis (for the recipe check), or None."""
    try:
        resolve(str(name))
    except LookupError as exc:
        return str(exc)
    return None
