"""What LiteLLM prints that keypool says better, quieted inside the proxy.

- At start LiteLLM prints one line per deployment (1,363 at a real pool); keypool prints one line
  for the list and its own summary.
- For every request that ends in an error LiteLLM logs the whole exception with its traceback
  (45 lines for an ordinary client 400) and a second "error while trying to do fallbacks" line.
  keypool logs each failed attempt once (`upstream_failure`: class, group, key fingerprint) and
  each answer it makes (`answered`), so LiteLLM's lines for those become one line, without the
  traceback. An exception keypool does not know (a bug, an unexpected error) keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from hooks import answers

_MODEL_LIST_HEADER = "Proxy initialized with Config, Set models:"
_MODEL_LINE = "\x1b[32m    "
_EXCEPTION_LINE = "litellm.proxy.proxy_server._handle_llm_api_exception(): Exception occured"
_FALLBACK_LINE = "litellm.router.py::async_function_with_fallbacks() - Error occurred while trying to do fallbacks"


class ModelListFilter:
    """Wraps stdout until LiteLLM's model list is printed: the header becomes one line, the
    per-deployment lines are counted instead of printed, then stdout is given back."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.listing = False
        self.hidden = 0

    def write(self, text: str) -> int:
        if _MODEL_LIST_HEADER in text:
            self.listing = True
            self.inner.write("LiteLLM: proxy initialized with the config (keypool: one line per deployment left out)")
            return len(text)
        if self.listing and (text.startswith(_MODEL_LINE) or text == "\n"):
            if text != "\n":
                self.hidden += 1
            return len(text)
        if self.listing:
            self.release()
            self.inner.write("\n")
        return self.inner.write(text)

    def release(self) -> None:
        if sys.stdout is self:
            sys.stdout = self.inner  # type: ignore[assignment]
        self.listing = False

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...
        return getattr(self.inner, name)


def quiet_model_list() -> ModelListFilter | None:
    if isinstance(sys.stdout, ModelListFilter):
        return None
    wrapper = ModelListFilter(sys.stdout)
    sys.stdout = wrapper  # type: ignore[assignment]
    return wrapper


def known(exc: object) -> bool:
    """An error keypool accounted for: its own answer, or a provider's (a LiteLLM exception with
    a status, which keypool's failure hook has classified and logged)."""
    if not isinstance(exc, BaseException):
        return False
    if answers.attached(exc) is not None:
        return True
    return isinstance(getattr(exc, "status_code", None), int) and bool(getattr(exc, "llm_provider", None))


class HandledErrors(logging.Filter):
    """One line instead of a traceback for errors keypool logged itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith(_FALLBACK_LINE):
            return False  # the proxy's own line for the same error follows
        if msg.startswith(_EXCEPTION_LINE) and isinstance(record.args, tuple) and len(record.args) == 2:
            call_id, exc = record.args
            if known(exc):
                said = answers.attached(exc)  # type: ignore[arg-type]
                status = said.status if said is not None else getattr(exc, "status_code", None)
                record.msg = "%s: request %s ended with %s %s (see keypool's line for it)"
                record.args = (_EXCEPTION_LINE.split("(")[0], call_id, type(exc).__name__, status)
                record.exc_info = None
                record.exc_text = None
                if record.levelno > logging.INFO and isinstance(status, int) and status < 500:
                    record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    handled = HandledErrors()
    for name in ("LiteLLM Proxy", "LiteLLM Router"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, HandledErrors) for f in logger.filters):
            # First: LiteLLM's own filters turn the arguments (the exception) into text.
            logger.filters.insert(0, handled)
    quiet_model_list()
