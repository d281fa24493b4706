"""Engine settings from luigi.cfg: one luigi.Config class per concern, section = class name."""

from __future__ import annotations

import luigi


class resources(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[resources]: memory use of the streaming stages."""

    chunk_mb = luigi.IntParameter(default=64, description="rows streamed per chunk by merge and split, in MiB")

    @property
    def chunk_bytes(self) -> int:
        return max(1, self.chunk_mb) << 20


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
