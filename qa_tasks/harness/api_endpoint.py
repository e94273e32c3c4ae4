"""One line for what goes wrong between lm-eval's API models and the server they call.

lm-eval's ``local-completions`` / ``local-chat-completions`` retry a failed request, then end the run with
one to eight chained tracebacks (requests, urllib3, aiohttp, tenacity) that never say which endpoint failed.
The CLI hook (``qa_tasks.harness.hook``) checks the endpoint before any work, and turns a failure during the run
into one line naming the endpoint and what to check.
"""

from __future__ import annotations

import socket
import urllib.parse

from qa_tasks.errors import QAPackError

__all__ = ["API_MODELS", "CHAT_API_MODELS", "RunFault", "check_endpoint", "describe_failure"]

API_MODELS = ("local-completions", "local-chat-completions", "openai-completions", "openai-chat-completions")
# lm-eval sends these chat messages only when the prompt is rendered through --apply_chat_template
CHAT_API_MODELS = ("local-chat-completions", "openai-chat-completions")
CONNECT_TIMEOUT_S = 5.0


class RunFault(QAPackError):
    """A fault during work (not a usage error): one line, exit 1."""

    exit_code = 1


def check_endpoint(url: str) -> None:
    """``url`` is an http(s) URL whose host accepts connections: a typo or a stopped server is one line
    before any request instead of lm-eval's retries."""
    parts = urllib.parse.urlsplit(url)
    example = "e.g. base_url=http://127.0.0.1:8000/v1/completions"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QAPackError(f"base_url={url} is not an http(s) URL; give the endpoint's full URL, {example}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise QAPackError(f"base_url={url} has an invalid port; {example}") from None
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise QAPackError(f"base_url={url}: nothing answers at {parts.hostname}:{port} ({reason}); start the "
                          "server or fix base_url") from None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def describe_failure(exc: BaseException, url: str) -> RunFault | None:
    """The one line for an exception that ended a run of an API model, or None when it is not a failure of
    the request itself (then lm-eval's own traceback stands)."""
    for e in _chain(exc):
        module = type(e).__module__.split(".")[0]
        status = getattr(getattr(e, "response", None), "status_code", None) or getattr(e, "status", None)
        if "JSONDecodeError" in type(e).__name__ or type(e).__name__ == "ContentTypeError":
            return RunFault(f"the server at {url} did not answer with JSON; base_url must be the API endpoint "
                            "itself (…/v1/completions or …/v1/chat/completions), not a web page")
        if module in ("requests", "aiohttp") and isinstance(status, int):
            return RunFault(f"the server at {url} answered HTTP {status} ({_first_line(e)}); its log says why, "
                            "check that model= is a model it serves (GET …/v1/models)")
        if module in ("requests", "aiohttp", "urllib3") or isinstance(e, (ConnectionError, TimeoutError)):
            return RunFault(f"the request to {url} failed ({_first_line(e)}); check that the server is still "
                            "running and reachable")
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:200] if text else type(e).__name__)
