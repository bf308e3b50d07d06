"""The webhook adapter's flags and headers from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.adapters.options import add_webhook_arguments, headers_from_env, url_origin, webhook_options
from orchestrator.cli import build_parser
from orchestrator.errors import ConfigError


def parse(*argv: str, env: dict[str, str] | None = None):
    args = build_parser().parse_args(["adapter", "webhook", *argv])
    return webhook_options(args, topic_prefix="orch", env=env or {})


def test_defaults_and_channels():
    o = parse("--url", "https://hooks.example.com/send", "--channel", "sms", "--channel", "email,push")
    assert o.channels == ("email", "push", "sms")
    assert o.group == "orch-adapter-webhook-email-push-sms"
    # The store is one per topic prefix, not per group: another --channel (so another group) or
    # --group keeps it.
    assert o.data_dir == Path(".orch/adapter-webhook/orch") and o.old_data_root == Path(".orch/adapter")
    for other in (parse("--url", "http://h/x", "--channel", "email"),
                  parse("--url", "http://h/x", "--channel", "email", "--group", "mine")):
        assert other.data_dir == o.data_dir and other.group != o.group
    assert o.rates == {} and o.burst == 1 and o.concurrency == 4 and o.timeout_s == 10.0
    assert o.retry.budget_s == 300.0 and o.dedup_window_ms == 7 * 86_400_000 and o.web_port == 6067
    chosen = parse("--url", "http://h/x", "--channel", "email", env={"ORCH_ADAPTER_DATA_DIR": "/var/lib/a"})
    assert chosen.data_dir == Path("/var/lib/a") and chosen.old_data_root is None


def test_every_option():
    o = parse("--url", "http://h/x", "--channel", "sms", "--group", "g", "--suppressions-url", "http://h/s",
              "--timeout", "2.5", "--retry-budget", "0", "--max-per-second", "sms=3", "--burst", "5",
              "--concurrency", "16", "--dedup-window", "12h", "--data-dir", "/d", "--web-port", "0")
    assert (o.group, o.suppressions_url, o.timeout_s, o.retry.budget_s, o.rates, o.burst, o.concurrency,
            o.dedup_window_ms, o.data_dir, o.web_port) == ("g", "http://h/s", 2.5, 0.0, {"sms": 3.0}, 5, 16,
                                                           12 * 3_600_000, Path("/d"), 0)


@pytest.mark.parametrize("argv,message", [
    (["--url", "ftp://h/x"], "--url must be an http"),
    (["--url", "http:///nohost"], "--url must be an http"),
    (["--suppressions-url", "mailto:x"], "--suppressions-url must be"),
    (["--channel", "e mail"], "is not a channel name"),
    (["--channel", ","], "at least one channel"),
    (["--timeout", "0"], "--timeout must be a number of seconds above 0"),
    (["--timeout", "inf"], "at most 3600"),                 # once a traceback (an int of infinity)
    (["--timeout", "3000000"], "at most 3600"),             # once accepted, then a 32-bit overflow in the client
    (["--timeout", "abc"], "--timeout takes a number"),     # once argparse's usage text and exit 2
    (["--retry-budget", "-1"], "--retry-budget must be"),
    (["--retry-budget", "inf"], "--retry-budget must be"),  # once: retried for ever, never dead-lettered
    (["--retry-budget", "nan"], "--retry-budget must be"),
    (["--concurrency", "0"], "--concurrency must be a whole number from 1 to 1000"),
    (["--burst", "0"], "--burst must be a whole number of 1 or more"),
    (["--burst", "1.5"], "--burst takes a whole number"),
    (["--max-per-second", "1e-300"], "between 0.001"),      # once: a token that never came, a stuck partition
    (["--max-per-second", "email=5,email=7"], "two rates"),
    (["--loglevel", "bogus"], "--loglevel must be one of"),
    (["--dedup-window", "7 days"], "--dedup-window: expected a duration"),
    (["--dedup-window", "30s"], "at least 1m"),
    (["--max-per-second", "fax=1"], "does not consume"),
    (["--web-port", "70000"], "--web-port must be a port"),
])
def test_bad_options_are_one_sentence(argv, message):
    base = {"--url": "http://h/x", "--channel": "email"}
    flags = dict(base)
    rest = []
    for i in range(0, len(argv), 2):
        if argv[i] in flags:
            flags[argv[i]] = argv[i + 1]
        else:
            rest += argv[i:i + 2]
    with pytest.raises(ConfigError, match=message):
        parse(*[x for kv in flags.items() for x in kv], *rest)


def test_a_prefix_that_cannot_name_a_folder_needs_a_data_dir():
    args = build_parser().parse_args(["adapter", "webhook", "--url", "http://h/x", "--channel", "email"])
    with pytest.raises(ConfigError, match="cannot name the adapter's default data dir; give it one with --data-dir"):
        webhook_options(args, topic_prefix="..", env={})
    assert webhook_options(args, topic_prefix="..", env={"ORCH_ADAPTER_DATA_DIR": "/d"}).data_dir == Path("/d")


def test_a_url_with_a_token_is_not_repeated_in_errors_or_logs():
    with pytest.raises(ConfigError) as err:
        parse("--url", "ftp://user:secret@h/x?key=secret", "--channel", "email")
    assert "secret" not in str(err.value)
    assert url_origin("https://user:pw@api.example.com:8443/v1/send?key=tok") == "https://api.example.com:8443"


def test_headers_from_json_and_single_variables():
    env = {"ORCH_ADAPTER_HEADERS": '{"Authorization": "Bearer a", "X-Tenant": "acme"}',
           "ORCH_ADAPTER_HEADER_AUTHORIZATION": "Bearer b", "ORCH_ADAPTER_HEADER_X_API_KEY": "k",
           "ORCH_OTHER": "ignored"}
    assert headers_from_env(env) == {"X-Tenant": "acme", "Authorization": "Bearer b", "X-Api-Key": "k"}
    assert headers_from_env({}) == {}


@pytest.mark.parametrize("env,message", [
    ({"ORCH_ADAPTER_HEADERS": "Bearer zq7"}, "must be a JSON object"),
    ({"ORCH_ADAPTER_HEADERS": '{"A": 1, "B": "zq7"}'}, "must be a JSON object"),
    ({"ORCH_ADAPTER_HEADERS": '{"Bad Name": "zq7"}'}, "not a valid HTTP header name"),
    ({"ORCH_ADAPTER_HEADER_IDEMPOTENCY_KEY": "zq7"}, "set by the adapter"),
    ({"ORCH_ADAPTER_HEADERS": '{"content-type": "zq7"}'}, "set by the adapter"),
    ({"ORCH_ADAPTER_HEADER_X_TOKEN": "zq7\r\nX-Evil: 1"}, "line break"),
    ({"ORCH_ADAPTER_HEADER_": "zq7"}, "names no header"),          # once silently ignored
    ({"ORCH_ADAPTER_HEADER___": "zq7"}, "names no header"),
])
def test_bad_headers_are_refused_without_showing_values(env, message):
    with pytest.raises(ConfigError, match=message) as err:
        headers_from_env(env)
    assert "zq7" not in str(err.value)


def test_headers_never_show_in_the_options_repr():
    o = parse("--url", "http://h/x", "--channel", "email", env={"ORCH_ADAPTER_HEADER_AUTHORIZATION": "Bearer zz9"})
    assert o.headers == {"Authorization": "Bearer zz9"} and "zz9" not in repr(o)


def test_the_arguments_are_the_ones_the_command_line_registers():
    import argparse
    p = argparse.ArgumentParser()
    add_webhook_arguments(p)
    assert p.parse_args(["--url", "http://h", "--channel", "email"]).channel == ["email"]
