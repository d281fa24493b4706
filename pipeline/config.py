"""Engine settings from luigi.cfg: one luigi.Config class per concern, section = class name; the heavy stages'
scheduler resources (Luigi's own ``[resources]``)."""

from __future__ import annotations

import configparser

import luigi
import luigi.configuration

HEAVY = {"merge": "pipeline_merge", "split": "pipeline_split", "universe": "pipeline_universe",
         "tracking": "pipeline_tracking"}
"""The scheduler resource each heavy stage takes one of while it runs (MergeBatches, SplitDataset, AnalyseChunk and
ConsolidateUniverse, TrackParticles): the scheduler's ``[resources]`` caps how many run at once over all its workers."""
RESOURCE_DEFAULT = 64
"""How many of each a scheduler allows unless its ``[resources]`` sets it (Luigi's own default is 1)."""


def set_defaults(section: str, values: dict[str, int], config=None) -> None:
    """Set every key of ``values`` in ``section`` of Luigi's config unless a config file already set it."""
    config = config if config is not None else luigi.configuration.get_config()
    if isinstance(config, configparser.ConfigParser) and not config.has_section(section):
        config.add_section(section)
    for key, value in values.items():
        if not config.has_option(section, key):
            config.set(section, key, str(value))


def set_resource_defaults(config=None) -> None:
    """Give every :data:`HEAVY` resource :data:`RESOURCE_DEFAULT` unless a config file sets it.

    This reaches the schedulers of the processes that import ``pipeline`` (the local scheduler);
    luigid reads only its own config (docs/scale-out.md).
    """
    set_defaults("resources", dict.fromkeys(HEAVY.values(), RESOURCE_DEFAULT), config)


class streaming(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[streaming]: memory use of the merge and split, which stream their rows chunk by chunk."""

    chunk_mb = luigi.IntParameter(
        default=64, description="rows per chunk streamed by the split, in MiB")

    @property
    def chunk_bytes(self) -> int:
        return max(1, self.chunk_mb) << 20


class guard(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[guard]: the resource guard's thresholds (Luigi keeps ``[resources]`` for scheduler resources)."""

    min_available_mb = luigi.IntParameter(
        default=512, description="the guard waits while the machine's available memory is under this, in MiB; 0: off")
    max_load_percent = luigi.IntParameter(
        default=300, description="the guard waits while the CPU load average per CPU is over this percentage; 0: off")
    load_minutes = luigi.ChoiceParameter(
        default=1, var_type=int, choices=(1, 5, 15),
        description="how long the CPU must have stayed busy: the load average over 1, 5 or 15 minutes")
    max_wait_s = luigi.IntParameter(default=600, description="longest total wait of one task for resources, seconds")
    poll_s = luigi.IntParameter(default=5, description="seconds between two checks while waiting")


class processing(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[processing]: how many tasks run at once, and how a command waits for other hosts."""

    workers = luigi.IntParameter(
        default=1, description="parallel worker processes; `python -m pipeline ... --workers N` overrides it; "
                               "capped to the CPU count")
    others_poll_s = luigi.FloatParameter(
        default=5.0, description="while tasks of the build run on another worker (another host), python -m pipeline "
                                 "looks again this often and exits once the build is complete or a task fails; "
                                 "0: exit at once with Luigi's code 10")


class progress(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[progress]: the terminal progress of a whole run (never on stdout)."""

    console = luigi.ChoiceParameter(
        default="auto", choices=("auto", "bar", "log", "off"),
        description="auto: a bar when stderr is a terminal, else log lines; bar, log or off to choose")
    refresh_s = luigi.FloatParameter(default=0.5, description="seconds between two redraws of the bar")
    log_every_s = luigi.FloatParameter(default=30.0, description="seconds between two progress log lines")


class series(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[series]: streaming sizes of the time-series ("ticks") flow."""

    block_mb = luigi.IntParameter(default=16, description="input read per block while chunking, in MiB")
    row_group_rows = luigi.IntParameter(default=65536, description="rows per Parquet row group of a chunk file; "
                                        "a task reads a neighbour chunk's edge a row group at a time")
    compression = luigi.ChoiceParameter(default="none", choices=["none", "snappy", "lz4", "zstd"],
                                        description="codec of the chunk files; every universe reads each chunk, "
                                        "and uncompressed reads are about twice as fast for 2.5 times the disk")

    @property
    def block_bytes(self) -> int:
        return max(1, self.block_mb) << 20
