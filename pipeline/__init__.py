"""Luigi batch pipeline turning folders of raw data files into ML-ready datasets.

``luigi --module pipeline BuildDataset --recipe recipe.toml`` imports this package,
which exposes the tasks, makes recipe errors print as one clear line and gives Luigi the
project's exit codes (``[retcode]``) and heavy-stage resource limits (``[resources]``) wherever the
command starts, unless a config file sets them. In a worker process started by spawn or
forkserver (which inherits no logging set-up), it sets up Luigi's logging as the main process has it.
"""

import logging
import multiprocessing

import luigi.interface
from luigi.setup_logging import InterfaceLogging

from pipeline.config import set_resource_defaults
from pipeline.errors import PipelineError
from pipeline.exitcodes import set_retcode_defaults
from pipeline.tasks import *  # noqa: F403 - the tasks are what `luigi --module pipeline` looks for
from pipeline.tasks import __all__  # noqa: F401 - re-exported


class _ClearErrors(logging.Filter):
    """Turn Luigi's traceback of a PipelineError raised while parsing the command into its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, PipelineError):
            record.msg, record.args, record.exc_info, record.exc_text = str(error), (), None, None
        return True


logging.getLogger("luigi-interface").addFilter(_ClearErrors())
if multiprocessing.current_process().name != "MainProcess" and not logging.getLogger("luigi-interface").handlers:
    InterfaceLogging.setup(luigi.interface.core())  # a spawned worker: its tasks log as a forked one's do
set_retcode_defaults()
set_resource_defaults()
