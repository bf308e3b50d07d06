"""The webhook adapter's options: command-line flags, headers from the environment, defaults.

Kept free of Kafka, HTTP and RocksDB imports so that building the ``orchestrator`` command line
stays fast and the rules below are unit-tested on their own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from orchestrator.adapters.ratelimit import parse_rates
from orchestrator.adapters.retry import RetryPolicy
from orchestrator.core.durations import format_duration_ms, parse_duration_ms
from orchestrator.errors import ConfigError

DEFAULT_WEB_PORT = 6067            # the worker's default is 6066: both can run on one host
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 3600.0             # a revoked partition waits for its requests in flight this long
DEFAULT_RETRY_BUDGET_S = 300.0
MAX_RETRY_BUDGET_S = 30 * 86_400.0
DEFAULT_CONCURRENCY = 4
DEFAULT_DEDUP_WINDOW = "7d"
MIN_DEDUP_WINDOW_MS = 60_000
HEADERS_VAR = "ORCH_ADAPTER_HEADERS"
HEADER_VAR_PREFIX = "ORCH_ADAPTER_HEADER_"
DATA_DIR_VAR = "ORCH_ADAPTER_DATA_DIR"
# The default store is one per topic prefix (it holds how far <prefix>.suppressions was read), never
# per consumer group: a group changes with --channel, and what was delivered must not be forgotten.
DEFAULT_DATA_ROOT = Path(".orch") / "adapter-webhook"
OLD_DATA_ROOT = Path(".orch") / "adapter"        # before: one default store per group, .orch/adapter/<group>
# Set by the adapter on every request; a configured value would contradict them.
RESERVED_HEADERS = frozenset({"idempotency-key", "content-type", "content-length", "host", "transfer-encoding"})
_CHANNEL = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")      # an RFC 9110 token


@dataclass(frozen=True)
class WebhookOptions:
    """Everything ``orchestrator adapter webhook`` needs besides the Kafka settings."""

    url: str
    channels: tuple[str, ...]
    group: str
    data_dir: Path
    old_data_root: Path | None = None      # with the default data dir: where earlier versions kept theirs
    suppressions_url: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = RetryPolicy(DEFAULT_RETRY_BUDGET_S)
    rates: dict[str, float] = field(default_factory=dict)     # channel -> requests/s; absent: no limit
    burst: int = 1
    concurrency: int = DEFAULT_CONCURRENCY
    dedup_window_ms: int = 7 * 86_400_000
    web_port: int = DEFAULT_WEB_PORT
    headers: dict[str, str] = field(default_factory=dict, repr=False)   # may hold tokens: never logged


def add_webhook_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="where each action is POSTed as JSON")
    p.add_argument("--channel", action="append", required=True, metavar="CHANNEL",
                   help="consume <prefix>.actions.CHANNEL; repeat it or give a comma list (email,sms)")
    p.add_argument("--group", help="consumer group (default <prefix>-adapter-webhook-<channels joined by ->)")
    p.add_argument("--suppressions-url", metavar="URL",
                   help="also POST each suppression that names one of the channels to this URL")
    p.add_argument("--timeout", default=str(DEFAULT_TIMEOUT_S), metavar="SECONDS",
                   help=f"per request (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--retry-budget", default=str(DEFAULT_RETRY_BUDGET_S), metavar="SECONDS",
                   help="retry 5xx, 408, 409, 425, 429, timeouts and connection errors for at most this long "
                        f"after the first attempt, then dead-letter (default {DEFAULT_RETRY_BUDGET_S:g})")
    p.add_argument("--max-per-second", action="append", default=[], metavar="RATE",
                   help="token-bucket limit per channel: a number for every channel, or CHANNEL=RATE "
                        "(repeatable); default no limit")
    p.add_argument("--burst", default="1",
                   help="requests a channel may send at once after an idle spell (default 1)")
    p.add_argument("--concurrency", default=str(DEFAULT_CONCURRENCY),
                   help="requests in flight per partition, never two for one customer at once "
                        f"(default {DEFAULT_CONCURRENCY})")
    p.add_argument("--dedup-window", default=DEFAULT_DEDUP_WINDOW, metavar="DURATION",
                   help=f"how long action ids are remembered, e.g. 12h, 7d (default {DEFAULT_DEDUP_WINDOW})")
    p.add_argument("--data-dir", help=f"the adapter's RocksDB, whatever the group (default ${DATA_DIR_VAR}, "
                                      f"else {DEFAULT_DATA_ROOT}/<prefix>)")
    p.add_argument("--web-port", default=str(DEFAULT_WEB_PORT),
                   help=f"port of /metrics and /health on ORCH_WEB_HOST (default {DEFAULT_WEB_PORT})")
    p.add_argument("--loglevel", default="info", help="debug, info, warning or error (default info)")


LOG_LEVELS = ("debug", "info", "warning", "error")


def _number(flag: str, text: str, kind: type, low: float, high: float, what: str) -> float:
    """``text`` as an int or a float within ``low`` .. ``high``; otherwise one sentence naming the flag
    (the documented rule for a bad option value: a ConfigError, exit code 1, not argparse's usage)."""
    try:
        value = kind(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes {what}, got {text!r}") from None
    if not low <= value <= high:            # (also refuses nan and inf)
        raise ConfigError(f"{flag} must be {what}, got {text!r}")
    return value


def check_url(flag: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value itself is not repeated: a URL may carry a token.
        raise ConfigError(f"{flag} must be an http:// or https:// address with a host name")
    return url


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what logs and dead letters name (paths, queries and user
    info may carry tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def parse_channels(values: list[str]) -> tuple[str, ...]:
    channels = sorted({c.strip() for value in values for c in value.split(",") if c.strip()})
    if not channels:
        raise ConfigError("--channel needs at least one channel name, e.g. --channel email")
    for channel in channels:
        if not _CHANNEL.match(channel):
            raise ConfigError(f"--channel {channel!r} is not a channel name: use letters, digits, '_' and '-'")
    return tuple(channels)


def _header_name(var_suffix: str) -> str:
    """``X_API_KEY`` -> ``X-Api-Key`` (environment variables cannot hold ``-``)."""
    return "-".join(word.capitalize() for word in var_suffix.split("_") if word)


def headers_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Request headers: ``ORCH_ADAPTER_HEADERS`` (a JSON object), then every
    ``ORCH_ADAPTER_HEADER_<NAME>`` (``_`` in NAME becomes ``-``), which win. Values never appear in
    an error message."""
    headers: dict[str, str] = {}
    raw = env.get(HEADERS_VAR)
    if raw:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"{HEADERS_VAR} must be a JSON object of header names to strings, "
                              'e.g. {"Authorization": "Bearer <token>"}')
        headers.update(data)
    for var in sorted(env):
        if var.startswith(HEADER_VAR_PREFIX):
            name = _header_name(var[len(HEADER_VAR_PREFIX):])
            if not name:
                raise ConfigError(f"{var} names no header: write {HEADER_VAR_PREFIX}<NAME>, e.g. "
                                  f"{HEADER_VAR_PREFIX}X_API_KEY for X-Api-Key")
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            headers[name] = env[var]
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ConfigError(f"header name {name!r} (from the environment) is not a valid HTTP header name")
        if name.lower() in RESERVED_HEADERS:
            raise ConfigError(f"header {name} is set by the adapter itself; remove it from the environment")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"the value of header {name} (from the environment) contains a line break")
    return headers


def webhook_options(args: argparse.Namespace, *, topic_prefix: str, env: Mapping[str, str]) -> WebhookOptions:
    """Check the flags and the environment; every problem is a :class:`ConfigError` sentence."""
    channels = parse_channels(args.channel)
    url = check_url("--url", args.url)
    suppressions_url = check_url("--suppressions-url", args.suppressions_url) if args.suppressions_url else None
    timeout = _number("--timeout", str(args.timeout), float, 0.001, MAX_TIMEOUT_S,
                      f"a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    budget = _number("--retry-budget", str(args.retry_budget), float, 0, MAX_RETRY_BUDGET_S,
                     f"0 (no retries) or a number of seconds up to {MAX_RETRY_BUDGET_S:.0f} (30 days)")
    concurrency = int(_number("--concurrency", str(args.concurrency), int, 1, 1000, "a whole number from 1 to 1000"))
    burst = int(_number("--burst", str(args.burst), int, 1, 1_000_000, "a whole number of 1 or more"))
    web_port = int(_number("--web-port", str(args.web_port), int, 0, 65535,
                           "a port number from 0 (a free one, named in the start log) to 65535"))
    if str(args.loglevel).lower() not in LOG_LEVELS:
        raise ConfigError(f"--loglevel must be one of {', '.join(LOG_LEVELS)}, got {args.loglevel!r}")
    try:
        rates = parse_rates(args.max_per_second, channels)
        window_ms = parse_duration_ms(args.dedup_window)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("expected a duration", "--dedup-window: expected a duration")) from None
    if window_ms < MIN_DEDUP_WINDOW_MS:
        raise ConfigError(f"--dedup-window must be at least 1m, got {format_duration_ms(window_ms)}")
    group = args.group or f"{topic_prefix}-adapter-webhook-{'-'.join(channels)}"
    chosen = args.data_dir or env.get(DATA_DIR_VAR)
    if not chosen and not topic_prefix.strip("."):
        raise ConfigError(f"the topic prefix {topic_prefix!r} cannot name the adapter's default data dir; "
                          "give it one with --data-dir")
    data_dir = Path(chosen) if chosen else DEFAULT_DATA_ROOT / topic_prefix
    return WebhookOptions(url=url, channels=channels, group=group, data_dir=data_dir,
                          old_data_root=None if chosen else OLD_DATA_ROOT,
                          suppressions_url=suppressions_url, timeout_s=timeout,
                          retry=RetryPolicy(budget), rates=rates, burst=burst,
                          concurrency=concurrency, dedup_window_ms=window_ms, web_port=web_port,
                          headers=headers_from_env(env))
