"""Engine settings from luigi.cfg: one luigi.Config class per concern, section = class name."""

from __future__ import annotations

import luigi


class resources(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[resources]: memory use of the streaming stages."""

    chunk_mb = luigi.IntParameter(default=64, description="rows streamed per chunk by merge and split, in MiB")

    @property
    def chunk_bytes(self) -> int:
        return max(1, self.chunk_mb) << 20
