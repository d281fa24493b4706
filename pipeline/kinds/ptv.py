"""Particle tracking (PTV) frame sequences: experiment validation, frame chunks and the plan of a run.

An experiment folder is what OpenPTV's pyptv 0.4 works on: ``img/`` (frames, or targets
files when ``Existing_Target`` is set), ``cal/`` (``.ori`` and ``.addpar`` per camera) and
the parameters, either ``parameters_Run*.yaml`` or the legacy ``parameters/*.par`` folder.
Everything is checked before any work: each problem raises :class:`ExperimentError`
naming the path and what is wrong. The frames ``first..last`` are split into chunks of
as-even size, the remainder spread over the first chunks; each chunk is one Luigi task.

The processing itself (pyptv's sequence loop and optv's tracker) is in
:mod:`pipeline.kinds.ptv_engine`; this module uses only pyptv's ParameterManager, to read
the parameters exactly as pyptv does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.engine.records import record_path
from pipeline.engine.storage import digest, file_checksum
from pipeline.errors import PipelineError
from pipeline.kinds.base import Kind, Setting

if TYPE_CHECKING:
    from pipeline.recipe import Recipe

KIND_VERSION = "1"
TRACKING = "ptv/tracking"
"""Stage name of tracking (its record is ``records/ptv/tracking.json``)."""
MAX_CAMERAS = 4
"""liboptv handles at most four cameras."""
ENGINE_PACKAGES = ("optv", "pyptv")
INSTALL_HINT = ("install the OpenPTV engine: pip install 'luigi-dataset-pipeline[ptv]' && "
                "pip install --no-deps -r scripts/nodeps-ptv.txt")


class ExperimentError(PipelineError):
    """An experiment folder or [ptv] setting that cannot be run; the message names the path."""


def _positive(value: Any) -> str | None:
    return None if value >= 1 else "must be 1 or more"


SETTINGS: dict[str, Setting] = {
    "parameters": Setting(str, "", help="parameters_Run*.yaml or a folder of .par files, relative to the "
                                        "experiment; empty: the only parameters_Run*.yaml, else parameters/"),
    "first": Setting(int, None, help="first frame (default: the parameters' sequence first)"),
    "last": Setting(int, None, help="last frame, included (default: the parameters' sequence last)"),
    "chunks": Setting(int, None, help="number of frame chunks (Luigi tasks); give this or chunk_size",
                      check=_positive),
    "chunk_size": Setting(int, None, help="frames per chunk at most; give this or chunks", check=_positive),
}


def split_frames(first: int, last: int, chunks: int | None = None, chunk_size: int | None = None) -> list[range]:
    """Frames ``first..last`` in as-even chunks; the first ``n % k`` chunks get one frame more.

    ``chunks`` gives the number of chunks (capped at the number of frames, so no chunk is
    empty); ``chunk_size`` gives the most frames per chunk. Exactly one must be given.
    """
    if first > last:
        raise ExperimentError(f"[ptv] first = {first} is after last = {last}")
    if (chunks is None) == (chunk_size is None):
        raise ExperimentError(f"[ptv] give exactly one of chunks and chunk_size (got chunks = {chunks}, "
                              f"chunk_size = {chunk_size})")
    count = chunks if chunks is not None else chunk_size
    if count < 1:
        raise ExperimentError(f"[ptv] {'chunks' if chunks is not None else 'chunk_size'} = {count} must be 1 or more")
    frames = last - first + 1
    parts = min(chunks, frames) if chunks is not None else -(-frames // chunk_size)
    size, extra = divmod(frames, parts)
    result, start = [], first
    for index in range(parts):
        stop = start + size + (index < extra)
        result.append(range(start, stop))
        start = stop
    return result


@dataclass(frozen=True)
class Experiment:
    """A validated experiment folder: where its parameters, images and calibrations are."""

    root: Path
    parameters: Path
    """The YAML file or the folder of legacy .par files."""
    cameras: int
    image_bases: tuple[str, ...]
    """Per camera, the frame file pattern relative to ``root`` (``img/cam1.%d``)."""
    target_bases: tuple[str, ...]
    """Per camera, the targets file base relative to ``root`` (``img/cam1``: ``img/cam1.10000_targets``)."""
    calibrations: tuple[str, ...]
    """The calibration files (``.ori`` and ``.addpar`` of each camera), relative to ``root``."""
    masks: tuple[str, ...]
    existing_targets: bool
    first: int
    last: int
    fingerprint: str
    """What the outputs depend on besides the frames: parameters, calibrations, engine versions."""

    def frame_inputs(self, frame: int) -> list[str]:
        """The input files of one frame, relative to ``root``: images, or targets files."""
        if self.existing_targets:
            return [targets_name(base, frame) for base in self.target_bases]
        return [base % frame for base in self.image_bases]

    def frame_outputs(self, frame: int) -> list[str]:
        """The files the sequence step writes for one frame, relative to its working folder."""
        return [f"res/rt_is.{frame}"] + [targets_name(base, frame) for base in self.target_bases]


def targets_name(base: str, frame: int) -> str:
    """pyptv's targets file name of a camera base and frame (``img/cam1.10000_targets``)."""
    return f"{base}.{frame:04d}_targets"


def load_parameters(path: Path) -> Any:
    """pyptv's ParameterManager loaded from a YAML file or a legacy .par folder."""
    try:
        from pyptv.parameter_manager import ParameterManager
    except ImportError as exc:
        raise ExperimentError(f"{path}: cannot read PTV parameters without pyptv ({exc}); {INSTALL_HINT}") from None
    manager = ParameterManager()
    try:
        if path.is_dir():
            if not (path / "ptv.par").is_file():
                raise ExperimentError(f"{path}: legacy parameters folder has no ptv.par")
            manager.from_directory(path)
        else:
            manager.from_yaml(path)
    except ExperimentError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure becomes one clear message
        raise ExperimentError(f"{path}: cannot read parameters: {type(exc).__name__}: {exc}") from None
    if not isinstance(manager.parameters, dict):
        raise ExperimentError(f"{path}: parameters are not a YAML mapping")
    return manager


def find_parameters(root: Path, name: str) -> Path:
    """The parameter source: ``name`` if given, else the only ``parameters_Run*.yaml``, else ``parameters/``."""
    if name:
        path = root / name
        if not path.exists():
            raise ExperimentError(f"{path}: parameters not found ([ptv] parameters = {name!r})")
        return path
    runs = sorted(root.glob("parameters_Run*.yaml"))
    if len(runs) == 1:
        return runs[0]
    if len(runs) > 1:
        raise ExperimentError(f"{root}: several parameter files ({', '.join(p.name for p in runs)}); "
                              "choose one with [ptv] parameters")
    if (root / "parameters").is_dir():
        return root / "parameters"
    raise ExperimentError(f"{root}: no parameters_Run*.yaml and no parameters/ folder")


def _section(params: Mapping, source: Path, name: str, keys: tuple[str, ...]) -> Mapping:
    section = params.get(name)
    if not isinstance(section, Mapping):
        raise ExperimentError(f"{source}: missing parameter section {name!r}")
    missing = [key for key in keys if key not in section]
    if missing:
        raise ExperimentError(f"{source}: section {name!r} misses {', '.join(missing)}")
    return section


def _relative(root: Path, source: Path, value: Any, what: str) -> str:
    """A path from the parameters that must stay inside the experiment folder."""
    if not isinstance(value, str) or not value:
        raise ExperimentError(f"{source}: {what} is {value!r}, not a file name")
    if Path(value).is_absolute() or ".." in Path(value).parts:
        raise ExperimentError(f"{source}: {what} {value!r} must be a path inside {root}")
    return value


def _listing(folder: Path, cache: dict[Path, dict[str, os.stat_result]]) -> dict[str, os.stat_result]:
    """Name → stat of the files in ``folder``, one scandir per folder."""
    if folder not in cache:
        entries = {}
        try:
            for entry in os.scandir(folder):
                if entry.is_file():
                    entries[entry.name] = entry.stat()
        except OSError:
            pass
        cache[folder] = entries
    return cache[folder]


def validate_experiment(root: Path, settings: Mapping[str, Any]) -> Experiment:
    """Check the experiment folder, its parameters and calibrations (frames: :func:`frame_stats`)."""
    root = Path(root)
    if not root.is_dir():
        raise ExperimentError(f"{root}: experiment folder not found")
    source = find_parameters(root, settings.get("parameters", ""))
    manager = load_parameters(source)
    params = manager.parameters
    cameras = manager.num_cams
    if not isinstance(cameras, int) or not 1 <= cameras <= MAX_CAMERAS:
        raise ExperimentError(f"{source}: num_cams = {cameras!r} must be 1 to {MAX_CAMERAS}")
    ptv = _section(params, source, "ptv", ("img_cal", "imx", "imy", "pix_x", "pix_y"))
    sequence = _section(params, source, "sequence", ("base_name", "first", "last"))
    for name in ("criteria", "targ_rec", "track"):
        _section(params, source, name, ())
    if ptv.get("splitter"):
        raise ExperimentError(f"{source}: ptv splitter mode (one image for all cameras) is not supported")
    plugins = params.get("plugins") or {}
    for step in ("sequence", "tracking"):
        chosen = plugins.get(f"selected_{step}", "default")
        if chosen != "default":
            raise ExperimentError(f"{source}: {step} plugin {chosen!r} is not supported, only 'default'")
    bases, cals = list(sequence["base_name"] or []), list(ptv["img_cal"] or [])
    for what, values in (("sequence base_name", bases), ("ptv img_cal", cals)):
        if len(values) < cameras:
            raise ExperimentError(f"{source}: {what} lists {len(values)} cameras, num_cams is {cameras}")
    image_bases = tuple(_relative(root, source, base, f"base_name of camera {camera}")
                        for camera, base in enumerate(bases[:cameras], start=1))
    for base in image_bases:
        try:
            base % 0
        except (TypeError, ValueError):
            raise ExperimentError(f"{source}: base_name {base!r} has no frame number field such as %d") from None
    target_bases = tuple(str(Path(base).parent / f"cam{i + 1}") for i, base in enumerate(image_bases))
    existing = bool((params.get("pft_version") or {}).get("Existing_Target", False))

    listings: dict[Path, dict[str, os.stat_result]] = {}
    for folder in sorted({(root / name).parent for name in image_bases}):
        if not folder.is_dir():
            raise ExperimentError(f"{folder}: image folder not found (named by the sequence base_name)")
    calibrations = []
    for camera, base in enumerate(cals[:cameras], start=1):
        base = _relative(root, source, base, f"img_cal of camera {camera}")
        if not (root / base).parent.is_dir():
            raise ExperimentError(f"{(root / base).parent}: calibration folder not found")
        for suffix in (".ori", ".addpar"):
            path = root / f"{base}{suffix}"
            if path.name not in _listing(path.parent, listings):
                raise ExperimentError(f"{path}: calibration file of camera {camera} not found")
            calibrations.append(f"{base}{suffix}")
    masking = params.get("masking") or {}
    masks = ()
    if masking.get("mask_flag"):
        pattern = _relative(root, source, masking.get("mask_base_name"), "masking mask_base_name")
        masks = tuple(pattern % camera for camera in range(1, cameras + 1))
        for mask in masks:
            if not (root / mask).is_file():
                raise ExperimentError(f"{root / mask}: mask image not found")

    first = settings.get("first")
    last = settings.get("last")
    first = sequence["first"] if first is None else first
    last = sequence["last"] if last is None else last
    if first > last:
        raise ExperimentError(f"[ptv] first = {first} is after last = {last}")
    versions = {}
    for package in ENGINE_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    inputs = [source] if source.is_file() else sorted(source.glob("*.par"))
    inputs += [root / name for name in (*calibrations, *masks)]
    checksums = {str(path.relative_to(root)): file_checksum(path) for path in inputs}
    fingerprint = digest(["ptv", KIND_VERSION, versions, params, checksums])
    return Experiment(root, source, cameras, image_bases, target_bases, tuple(calibrations), masks,
                      existing, first, last, fingerprint)


def frame_stats(experiment: Experiment, frames: range) -> dict[int, list]:
    """Size and mtime of each input of each frame; a missing input is an ExperimentError naming it."""
    listings: dict[Path, dict[str, os.stat_result]] = {}
    stats, missing = {}, []
    for frame in frames:
        row = []
        for camera, name in enumerate(experiment.frame_inputs(frame), start=1):
            path = experiment.root / name
            stat = _listing(path.parent, listings).get(path.name)
            if stat is None:
                missing.append((frame, camera, path))
            else:
                row.append([name, stat.st_size, stat.st_mtime_ns])
        stats[frame] = row
    if missing:
        frame, camera, path = missing[0]
        what = "targets file" if experiment.existing_targets else "image"
        more = f" ({len(missing)} inputs missing in all)" if len(missing) > 1 else ""
        raise ExperimentError(f"{path}: {what} of camera {camera} for frame {frame} not found{more}")
    return stats


@dataclass(frozen=True)
class Chunk:
    """One Luigi task's frames, with the fingerprint of each frame and of the chunk."""

    index: int
    frames: range
    frame_fingerprints: Mapping[int, str]
    fingerprint: str


@dataclass(frozen=True)
class PtvLayout:
    """Output paths of one PTV run, derived from its output folder only."""

    root: Path

    @property
    def sequence(self) -> Path:
        """Per-frame outputs of the chunks (upstream's sequence step), before tracking rewrites them."""
        return self.root / "sequence"

    def frame_record(self, frame: int) -> Path:
        """A frame's record (fingerprint, counts, failure); written after its outputs."""
        return self.sequence / "frames" / f"{frame}.json"

    def chunk_record(self, index: int) -> Path:
        return self.root / "chunks" / f"chunk_{index:04d}.json"

    def log(self, name: str) -> Path:
        """The engine's printed output of one task (``chunk_0000``, ``tracking``)."""
        return self.root / "logs" / f"{name}.log"

    def scratch(self, name: str) -> Path:
        """A working folder for optv, which reads and writes relative to the current directory."""
        return self.root / "scratch" / name

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories.parquet"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def tracking_record(self) -> Path:
        """The tracking stage's record, written last: marks the whole run complete (engine/records.py)."""
        return record_path(self.root, TRACKING)


@dataclass(frozen=True)
class PtvPlan:
    """Everything a PTV run derives from its recipe and experiment folder, computed once."""

    experiment: Experiment
    layout: PtvLayout
    chunks: tuple[Chunk, ...]
    on_error: str
    tracking_fingerprint: str

    @property
    def frames(self) -> range:
        return range(self.experiment.first, self.experiment.last + 1)

    def chunk(self, index: int) -> Chunk:
        if not 0 <= index < len(self.chunks):
            raise ExperimentError(f"chunk {index} does not exist: the run has chunks 0 to {len(self.chunks) - 1}")
        return self.chunks[index]


def make_plan(input_dir: Path, output_dir: Path, settings: Mapping[str, Any], on_error: str = "fail") -> PtvPlan:
    """Validate the experiment and every frame's inputs, split the frames into chunks, fingerprint them."""
    experiment = validate_experiment(input_dir, settings)
    ranges = split_frames(experiment.first, experiment.last, settings.get("chunks"), settings.get("chunk_size"))
    stats = frame_stats(experiment, range(experiment.first, experiment.last + 1))
    chunks = []
    for index, frames in enumerate(ranges):
        prints = {frame: digest([experiment.fingerprint, frame, stats[frame]]) for frame in frames}
        chunks.append(Chunk(index, frames, prints, digest([on_error, list(prints.values())])))
    tracking = digest([experiment.fingerprint, [chunk.fingerprint for chunk in chunks]])
    return PtvPlan(experiment, PtvLayout(Path(output_dir)), tuple(chunks), on_error, tracking)


@functools.lru_cache(maxsize=8)
def recipe_plan(recipe: Recipe) -> PtvPlan:
    """The validated plan of a ptv recipe, made once per process (Luigi's workers inherit it)."""
    return make_plan(recipe.input_dir, recipe.output_dir, recipe.tables["ptv"], recipe.on_error)


KIND = Kind(name="ptv", version=KIND_VERSION, read=None, flow="ptv", tables={"ptv": SETTINGS})
