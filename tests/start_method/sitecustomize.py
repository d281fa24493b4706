"""On PYTHONPATH of a test's runs when PIPELINE_TEST_START_METHOD is set (conftest.python_path): every Python
process of the run, Luigi's workers included, starts its worker processes with that method (spawn, forkserver),
so that nothing depends on fork inheritance."""

import multiprocessing
import os

multiprocessing.set_start_method(os.environ["PIPELINE_TEST_START_METHOD"], force=True)
