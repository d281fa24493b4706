"""A plug-in kind for tests: the real trmph reader, slowed down so a run lasts long enough to watch."""

from __future__ import annotations

import os
import time

from pipeline.kinds import trmph
from pipeline.kinds.base import Kind

SECONDS_PER_FILE = float(os.environ.get("SLOW_TRMPH_SECONDS", "0.2"))


def read(path, settings):
    time.sleep(SECONDS_PER_FILE)
    return trmph.KIND.read(path, settings)


KIND = Kind(name="slow_trmph", version=trmph.KIND.version, read=read, settings=trmph.KIND.settings)
