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


class processing(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section
    """[processing]: how batches trade resumability against speed."""

    checkpoint_ms = luigi.FloatParameter(
        default=20.0, description="a file whose processing took less than this (ms) gets no output of its own: "
                                  "redoing it after a crash costs less than writing one more file")
