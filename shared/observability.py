"""Structured JSON logs and CloudWatch embedded metrics.

Log records carry only whitelisted fields (request id, function, user id,
outcome, ...): a token, secret or push key can reach the log only if code
puts it in the message itself, and messages are constants. Metrics use the
CloudWatch Embedded Metric Format: one JSON line on stdout that CloudWatch
turns into a metric, with no API call on the request path.

Inside Lambda, `configure_logging()` runs at init (shared/lambda_adapter.py
and the scheduled handlers) and switches metrics on; elsewhere (tests, `make
dev`) `count()` writes nothing, so local output stays readable.

Every HTTP request ends in one line (shared/http.py): its log fields and, as
an EMF record in the same line, whatever the request counted (TokensMinted,
ServerErrors, ...). One write per request, formatted without the logging
machinery, because it is paid on every request (bench/: a LogRecord plus a
second line for the metric cost more than the rest of the overhead budget).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from functools import lru_cache
from typing import Any

# Fields a log line may carry besides the message; anything else passed in
# `extra` is dropped rather than risk logging a secret.
LOG_FIELDS = (
    "function", "request_id", "aws_request_id", "method", "status", "outcome", "user_id",
    "duration_ms", "event_type", "event_id", "room", "count", "job", "attempt", "reason",
)
# One encoder: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, in C
# Per stage in AWS (template.yaml sets NomadNexus/<stage>), so two stacks in one account keep apart.
DEFAULT_NAMESPACE = "NomadNexus"


_namespace: str | None = None  # fixed by configure_logging() for the container's life


def metric_namespace() -> str:
    return _namespace or os.environ.get("NEXUS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE


def _record(created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ts": round(created, 3), "level": level, "logger": logger, "message": message}
    for name in LOG_FIELDS:
        value = fields.get(name)
        if value is not None:
            out[name] = value
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = _record(record.created, record.levelname, record.name, record.getMessage(), record.__dict__)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _encode(out)


class _Stdout:
    """sys.stdout as it is at each write (Lambda's, or a test's capture), not as it was at configure time."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


_configured = False
_metrics_on = False
_LOGGING_DEFAULTS = (logging._srcfile, logging.logThreads, logging.logProcesses,  # type: ignore[attr-defined]
                     logging.logMultiprocessing)


def configure_logging(level: str | None = None) -> None:
    """JSON lines on stdout for every `nexus.*` logger, and metrics on (once per container)."""
    global _configured, _metrics_on, _namespace
    _metrics_on = True
    if _configured:
        return
    _namespace = os.environ.get("NEXUS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    # Our lines carry none of these; skipping them (the logging docs' own
    # "Optimization" advice) makes a record several µs cheaper on every request.
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller frame search
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("nexus")
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL") or "INFO")
    root.propagate = False
    _configured = True


def metrics_enabled() -> bool:
    return _metrics_on


@lru_cache(maxsize=256)
def _emf_template(namespace: str, name: str, unit: str, function: str) -> str:
    """The record with `%d` for the timestamp and `%s` for the value, built once per metric."""
    record = {
        "_aws": {
            "Timestamp": 0,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["function"]],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
        "function": function,
        name: 0,
    }
    text = json.dumps(record, separators=(",", ":")).replace("%", "%%")
    text = text.replace('"Timestamp":0', '"Timestamp":%d', 1)
    return text[: text.rindex(":0}")] + ":%s}\n"


def _finite(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise ValueError("a metric value must be a finite number")
    return value


def emit_metric(name: str, value: float = 1, unit: str = "Count", *, function: str, stream=None) -> None:
    """One CloudWatch EMF record, dimensioned by function."""
    line = _emf_template(metric_namespace(), name, unit, function) % (time.time() * 1000, repr(_finite(value)))
    out = stream or sys.stdout
    out.write(line)
    out.flush()


_request = threading.local()


def count(name: str, value: float = 1, *, function: str) -> None:
    """A metric from request or job code: emitted in Lambda, nothing elsewhere.

    During an HTTP request it joins that request's log line; otherwise
    (scheduled jobs) it is written at once.
    """
    if not _metrics_on or not value:
        return
    pending: dict[tuple[str, str], float] | None = getattr(_request, "metrics", None)
    if pending is None:
        emit_metric(name, value, function=function)
    else:
        pending[(name, function)] = pending.get((name, function), 0) + _finite(value)


def start_request() -> None:
    if _metrics_on:
        _request.metrics = {}


@lru_cache(maxsize=256)
def _emf_block(namespace: str, names: tuple[str, ...]) -> str:
    """`"_aws":{...}` declaring these metrics, with `%d` for the timestamp."""
    declared = _encode([{"Namespace": namespace, "Dimensions": [["function"]],
                         "Metrics": [{"Name": name, "Unit": "Count"} for name in names]}])
    return '"_aws":{"Timestamp":%d,"CloudWatchMetrics":' + declared.replace("%", "%%") + "}"


_FIELDS = frozenset(LOG_FIELDS)


def _json_value(value: Any) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool) or value is None:
        return "true" if value else "false" if value is False else "null"
    if isinstance(value, int) or (isinstance(value, float) and value == value and abs(value) != float("inf")):
        return repr(value)
    return _encode(value)


def end_request(logger: logging.Logger, message: str, fields: dict[str, Any] | None) -> None:
    """The request's one line: `fields` (None when INFO is off) with its metrics embedded."""
    metrics: dict[tuple[str, str], float] | None = getattr(_request, "metrics", None)
    _request.metrics = None
    if not _configured:
        if fields is not None:
            logger.info(message, extra=fields)
        return
    now = time.time()
    parts = None
    if fields is not None:
        # Field names come from LOG_FIELDS (plain identifiers); values are escaped.
        parts = [f'{{"ts":{now:.3f},"level":"INFO","logger":{_quote(logger.name)},"message":{_quote(message)}']
        parts += [f'"{name}":{_json_value(value)}' for name, value in fields.items()
                  if value is not None and name in _FIELDS]
    if metrics:
        function = fields.get("function") if fields else None
        if parts is None or any(fn != function for _, fn in metrics):
            for (name, fn), value in metrics.items():  # no line to join: a record each
                emit_metric(name, value, function=fn)
        else:
            parts.append(_emf_block(metric_namespace(), tuple(name for name, _ in metrics)) % (now * 1000))
            parts += [f"{_quote(name)}:{value!r}" for (name, _), value in metrics.items()]
    if parts is not None:
        sys.stdout.write(",".join(parts) + "}\n")
        sys.stdout.flush()


def reset_for_tests() -> None:
    global _configured, _metrics_on, _namespace
    _configured = _metrics_on = False
    _namespace = None
    (logging._srcfile, logging.logThreads, logging.logProcesses,  # type: ignore[attr-defined]
     logging.logMultiprocessing) = _LOGGING_DEFAULTS
    _request.metrics = None
    logging.getLogger("nexus").handlers[:] = []
    logging.getLogger("nexus").propagate = True
    logging.getLogger("nexus").setLevel(logging.NOTSET)
