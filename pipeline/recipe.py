"""Loading and validating a recipe: the TOML file that describes one dataset.

Everything is checked before any work starts; a bad recipe raises :class:`RecipeError`
with a message naming the file and the key.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import toml

from pipeline import kinds
from pipeline.engine.layout import intermediate_dir_problem, output_dir_problem
from pipeline.errors import PipelineError
from pipeline.kinds.base import REQUIRED, Kind, Setting

ON_ERROR = ("skip", "fail")


def _positive(value: Any) -> str | None:
    return None if value >= 1 else "must be 1 or more"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


SCHEMA: dict[str, dict[str, Setting]] = {
    "dataset": {
        "name": Setting(str, help="name of the dataset"),
        "kind": Setting(str, help="recipe kind: a built-in name or 'package.module:attribute'"),
        "input_dir": Setting(str, help="folder of input files, relative to the recipe"),
        "pattern": Setting(str, "**/*", help="glob of input files below input_dir"),
        "output_dir": Setting(str, help="folder of all outputs, relative to the recipe"),
        "intermediate_dir": Setting(str, "", help="folder of the batch files, relative to the recipe "
                                                  "(default: <output_dir>/intermediate)"),
    },
    "process": {
        "on_error": Setting(str, "skip", ON_ERROR, "skip: record bad input and go on; fail: stop the run"),
        "max_failures": Setting((int, float), 1.0, help="failed files allowed: a count, or a fraction up to 1.0",
                                check=lambda v: None if v >= 0 else "must be 0 or more"),
    },
    "batch": {
        "files_per_batch": Setting(int, 500, help="input files per Luigi task", check=_positive),
        "compression": Setting(str, "zstd", ("zstd", "deflate", "none"),
                               "batch files: zstd (level 1, through pyarrow: fast, boards shrink ~50 times), "
                               "deflate (zlib level 1: numpy and the standard library read it) or none"),
    },
    "split": {
        "train": Setting(float, 0.8, help="fraction of groups in train", check=_fraction),
        "val": Setting(float, 0.1, help="fraction of groups in val", check=_fraction),
        "test": Setting(float, 0.1, help="fraction of groups in test", check=_fraction),
        "seed": Setting(int, 0, help="seed of the group hash that assigns splits"),
        "normalize": Setting(bool, False, help="standardise non-binary feature columns with train statistics"),
    },
}
ENGINE_PROCESS_KEYS = frozenset(SCHEMA["process"])


class RecipeError(PipelineError, ValueError):
    """A recipe that cannot be run, with a message naming the file and key."""


@dataclass(frozen=True, eq=False)
class Recipe:
    """A validated recipe: resolved paths, the kind, and every table's values."""

    path: Path
    kind: Kind
    input_dir: Path
    output_dir: Path
    tables: Mapping[str, Mapping[str, Any]]
    intermediate_dir: Path | None = None
    """The batch folder when the recipe puts it outside the output folder; None for ``<output_dir>/intermediate``."""

    @property
    def name(self) -> str:
        return self.tables["dataset"]["name"]

    @property
    def pattern(self) -> str:
        return self.tables["dataset"]["pattern"]

    @property
    def on_error(self) -> str:
        return self.tables["process"]["on_error"]

    @property
    def max_failures(self) -> int | float:
        return self.tables["process"]["max_failures"]

    @property
    def kind_settings(self) -> dict[str, Any]:
        """The [process] values the kind reads (engine keys removed)."""
        return {k: v for k, v in self.tables["process"].items() if k not in ENGINE_PROCESS_KEYS}

    @property
    def files_per_batch(self) -> int:
        return self.tables["batch"]["files_per_batch"]

    @property
    def split(self) -> Mapping[str, Any]:
        return self.tables["split"]


def _type_name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _coerce(value: Any, setting: Setting) -> Any:
    """The value converted to the setting's type, or raise TypeError."""
    types = setting.type if isinstance(setting.type, tuple) else (setting.type,)
    if isinstance(value, bool) and bool not in types:
        raise TypeError
    if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, types):
        raise TypeError
    return value


def validate_table(where: str, values: Mapping[str, Any], schema: Mapping[str, Setting]) -> dict[str, Any]:
    """Check one table against its schema; unknown, missing, mistyped and impossible values fail."""
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise RecipeError(f"{where} unknown key {unknown[0]!r} (known: {', '.join(sorted(schema))})")
    result = {}
    for key, setting in schema.items():
        if key not in values:
            if setting.default is REQUIRED:
                raise RecipeError(f"{where} missing key {key!r} ({setting.help})")
            result[key] = setting.default
            continue
        try:
            value = _coerce(values[key], setting)
        except TypeError:
            raise RecipeError(f"{where} {key} = {values[key]!r} must be {_type_name(setting.type)}") from None
        if setting.choices and value not in setting.choices:
            raise RecipeError(f"{where} {key} = {value!r} must be one of {', '.join(map(repr, setting.choices))}")
        problem = setting.check(value) if setting.check else None
        if problem:
            raise RecipeError(f"{where} {key} = {value!r} {problem}")
        result[key] = value
    return result


def parse_recipe(path: Path, data: Mapping[str, Any]) -> Recipe:
    """Validate parsed TOML ``data`` of the recipe at ``path``."""
    for table, values in data.items():
        if not isinstance(values, dict):
            raise RecipeError(f"{path}: {table} must be a table [{table}]")
    dataset = validate_table(f"{path}: [dataset]", data.get("dataset", {}), SCHEMA["dataset"])
    try:
        kind = kinds.resolve(dataset["kind"])
    except LookupError as exc:
        raise RecipeError(f"{path}: [dataset] kind: {exc}") from None
    overlap = (set(kind.settings) & ENGINE_PROCESS_KEYS) | (set(kind.tables) & set(SCHEMA))
    if overlap:
        raise RecipeError(f"{path}: kind {kind.name!r} redefines engine keys or tables {sorted(overlap)}")
    schemas = {**SCHEMA, "process": {**SCHEMA["process"], **kind.settings}, **kind.tables}
    unknown = sorted(set(data) - set(schemas))
    if unknown:
        raise RecipeError(f"{path}: unknown table [{unknown[0]}] (known: {', '.join(schemas)})")
    tables = {"dataset": dataset}
    for table, schema in schemas.items():
        if table != "dataset":
            tables[table] = validate_table(f"{path}: [{table}]", data.get(table, {}), schema)
    split = tables["split"]
    total = split["train"] + split["val"] + split["test"]
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise RecipeError(f"{path}: [split] train + val + test = {total:g}, must sum to 1")
    base = path.parent
    input_dir = (base / dataset["input_dir"]).resolve()
    if not input_dir.is_dir():
        raise RecipeError(f"{path}: [dataset] input_dir {input_dir} is not a folder")
    output_dir = (base / dataset["output_dir"]).resolve()
    problem = output_dir_problem(output_dir, input_dir)
    if problem:
        raise RecipeError(f"{path}: [dataset] output_dir {output_dir} {problem}")
    intermediate_dir = (base / dataset["intermediate_dir"]).resolve() if dataset["intermediate_dir"] else None
    problem = intermediate_dir and intermediate_dir_problem(intermediate_dir, output_dir, input_dir)
    if problem:
        raise RecipeError(f"{path}: [dataset] intermediate_dir {intermediate_dir} {problem}")
    if intermediate_dir == output_dir / "intermediate":
        intermediate_dir = None
    return Recipe(path=path, kind=kind, input_dir=input_dir, output_dir=output_dir, tables=tables,
                  intermediate_dir=intermediate_dir)


@functools.lru_cache(maxsize=16)
def _load(path: str, stamp: tuple[int, int]) -> Recipe:
    try:
        data = toml.load(path)
    except toml.TomlDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a recipe: a recipe is a UTF-8 TOML text file, this one is binary") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror}; a recipe is a TOML file") from None
    return parse_recipe(Path(path), data)


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Load and validate the recipe at ``path`` (cached while the file is unchanged)."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror}") from None
    return _load(str(path), (stat.st_mtime_ns, stat.st_size))
