"""The recipe kinds: built-ins by name, plug-ins as ``"package.module:attribute"``."""

from __future__ import annotations

import importlib

from pipeline.kinds import csv_games, trmph
from pipeline.kinds.base import Kind

BUILTIN: dict[str, Kind] = {kind.name: kind for kind in (trmph.KIND, csv_games.KIND)}


def resolve(name: str) -> Kind:
    """The kind a recipe names: a built-in, or a plug-in ``module:attribute`` (a Kind or a reader)."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, sep, attribute = name.partition(":")
    if not sep:
        raise LookupError(f"unknown kind {name!r}: built-ins are {', '.join(sorted(BUILTIN))}, "
                          "a plug-in is written 'package.module:attribute'")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"cannot load plug-in kind {name!r}: {exc}") from None
    if isinstance(target, Kind):
        return target
    if callable(target):
        return Kind(name=name, version=str(getattr(target, "version", "1")), read=target)
    raise LookupError(f"plug-in kind {name!r} is neither a Kind nor a function")
