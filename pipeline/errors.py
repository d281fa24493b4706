"""The pipeline's own errors: each message names the file or key and what is wrong."""


class PipelineError(Exception):
    """An error the user can act on; reported as one clear line, not a traceback."""
