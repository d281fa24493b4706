"""The recipe kinds: built-ins by name, plug-ins as ``"package.module:attribute"`` or entry points.

A plug-in is a :class:`~pipeline.kinds.base.Kind`, or a plain reader function (its
``version`` and ``settings`` attributes are used when present). Packages can also
register kinds under the ``pipeline.kinds`` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from pipeline.kinds.base import Kind

BUILTIN = {name: f"pipeline.kinds.{name}" for name in ("trmph", "csv_games", "splendor", "ticks", "ptv", "command")}
"""Built-in kinds by name: the module whose ``KIND`` it is, imported when a recipe names it
(a run imports only its own kind: pyarrow, pandas and pyptv load only for the kinds that need them)."""
ENTRY_POINTS = "pipeline.kinds"


def _as_kind(name: str, target: object) -> Kind:
    if isinstance(target, Kind):
        return target
    if callable(target):
        return Kind(name=name, version=str(getattr(target, "version", "1")), read=target,
                    settings=getattr(target, "settings", {}))
    raise LookupError(f"plug-in kind {name!r} is neither a Kind nor a function")


def resolve(name: str) -> Kind:
    """The kind a recipe names: a built-in, an entry point, or ``module:attribute``."""
    if name in BUILTIN:
        return importlib.import_module(BUILTIN[name]).KIND
    registered = {point.name: point for point in entry_points(group=ENTRY_POINTS)}
    if name in registered:
        try:
            return _as_kind(name, registered[name].load())
        except Exception as exc:  # noqa: BLE001 - any import failure becomes a recipe error
            raise LookupError(f"cannot load kind {name!r} from its entry point: {exc}") from None
    module_name, sep, attribute = name.partition(":")
    if not sep:
        known = sorted(BUILTIN) + sorted(registered)
        raise LookupError(f"unknown kind {name!r}: known kinds are {', '.join(known)}; "
                          "a plug-in is written 'package.module:attribute'")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"cannot load plug-in kind {name!r}: {exc}") from None
    return _as_kind(name, target)
