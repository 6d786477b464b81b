"""Camera passwords never reach a terminal, a log or a file: ``redact_url`` masks them in any text.

Sources name themselves with the masked form (so every report, log and output gets it), the real URL
is kept only to open the stream, and the CLI's error printer and the camera logger mask once more,
for text that quotes a URL some other way (FFmpeg's error strings do)."""
from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://user:password@host: the password runs to the last '@' of the authority, as FFmpeg reads it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s:/?#@]*):([^\s/?#]*)@")
# ?password=... and the like in a query string (camera HTTP APIs and signed links carry them there).
_QUERY_SECRET = re.compile(r"(?i)([?&;](?:password|passwd|pass|pwd|secret|token|access_token|api_key|apikey|"
                           r"auth|key|sig|signature|x-amz-signature)=)[^&#\s'\"]*")


def redact_url(text: str) -> str:
    """``text`` with every ``scheme://user:pass@`` written ``scheme://user:***@`` and every password-like
    query value ``***``; anything else unchanged (idempotent)."""
    text = _USERINFO.sub(lambda m: f"{m[1]}{m[2]}:{MASK}@", str(text))
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks credentials in a record's final message, whatever handler prints it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it as it always does
            return True
        record.msg, record.args = redact_url(message), ()
        return True


def redacting_logger(name: str) -> logging.Logger:
    """The logger ``name`` with a RedactingFilter (added once), for modules that log stream URLs."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
