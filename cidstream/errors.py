"""User-facing errors: the CLI prints their message in one line and exits non-zero, no traceback."""


class CidstreamError(Exception):
    """Base of every error caused by what the user gave us (paths, configs, weights, media)."""

    exit_code = 2


class ConfigError(CidstreamError):
    pass


class InputError(CidstreamError):
    pass


class OutputError(CidstreamError):
    pass


class WeightsError(CidstreamError):
    pass


class DeviceError(CidstreamError):
    pass
