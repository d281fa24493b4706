"""Engine settings from luigi.cfg: one luigi.Config class per concern, section = class name."""

from __future__ import annotations

import luigi


class resources(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[resources]: memory use of the streaming stages."""

    chunk_mb = luigi.IntParameter(
        default=64, description="rows per chunk streamed by merge and split, and held in memory by a batch, in MiB")

    @property
    def chunk_bytes(self) -> int:
        return max(1, self.chunk_mb) << 20
