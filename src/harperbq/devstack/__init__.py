"""Local Harper (from npm) and local BigQuery emulator for development, tests and the demo."""


class DevStackError(RuntimeError):
    """A local service could not be installed or started; the message names cause and fix."""
