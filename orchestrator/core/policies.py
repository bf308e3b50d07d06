"""Policies (docs/policies.md): channels, frequency caps, quiet hours, consent, holdout, event age."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.core import yamlsrc
from orchestrator.core.durations import parse_duration_ms, parse_percent
from orchestrator.core.localtime import parse_clock
from orchestrator.errors import ConfigError, DefinitionError

DEFAULT_CHANNELS = ("email", "sms", "push", "inapp", "web", "ads")
CHANNEL = re.compile(r"^[a-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class FrequencyRule:
    max: int
    per_ms: int
    channel: str | None = None       # None: counts sends on every channel

    def applies_to(self, channel: str) -> bool:
        return self.channel is None or self.channel == channel


@dataclass(frozen=True)
class QuietHours:
    channels: tuple[str, ...]
    start_min: int                   # minutes after local midnight, window start
    end_min: int                     # window end (sends are deferred to it)


@dataclass(frozen=True)
class Policies:
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    frequency: tuple[FrequencyRule, ...] = ()
    quiet_hours: QuietHours | None = None
    consent: dict[str, str] = field(default_factory=dict)   # channel -> "opt_in" | "opt_out"
    global_holdout: float = 0.0
    max_event_age_ms: int = 86_400_000
    source: str = "(defaults)"

    def consent_mode(self, channel: str) -> str:
        return self.consent.get(channel, "opt_out")


POLICIES_DOC = "docs/policies.md"
# Every mapping of a policies file: the keys it accepts, and the section of docs/policies.md that
# documents them (its heading's anchor). The parser checks each mapping against this table;
# tests/repo/test_reference_docs.py checks that each section lists exactly these keys.
MAPPINGS: dict[str, tuple[frozenset[str], str]] = {
    "policies": (frozenset({"channels", "frequency", "quiet_hours", "consent", "global_holdout", "max_event_age"}),
                 "keys"),
    "frequency rule": (frozenset({"max", "per", "channel"}), "frequency"),
    "quiet_hours": (frozenset({"channels", "from", "to"}), "quiet_hours"),
}
_KEYS = MAPPINGS["policies"][0]


def _see(anchor: str) -> str:
    return f" (see {POLICIES_DOC}#{anchor})"


def parse_policies(text: str, filename: str) -> Policies:
    doc = yamlsrc.load(text, filename, see=_see("the-file"))
    problems: list[str] = []
    lines: list[int] = []       # the line of each problem: they are reported in file order

    def err(path: tuple[Any, ...], msg: str) -> None:
        """A problem at ``path``, pointing at the section of docs/policies.md about its key."""
        lines.append(doc.line(path))
        problems.append(f"{filename}:{lines[-1]}: {msg}{_see(path[0] if path[0] in _KEYS else 'keys')}")

    def unknown(path: tuple[Any, ...], value: dict[Any, Any], name: str) -> None:
        allowed = MAPPINGS[name][0]
        for key in value:
            if key not in allowed:
                where = f" in {path[0]}" if path else ""
                err(path + (key,), f"unknown key {key!r}{where} (expected one of: {', '.join(sorted(allowed))})")

    raw = doc.data if doc.data is not None else {}
    if not isinstance(raw, dict):
        raise DefinitionError([f"{filename}:1: a policies file must be a mapping{_see('the-file')}"])
    unknown((), raw, "policies")

    channels = DEFAULT_CHANNELS
    if "channels" in raw:
        value = raw["channels"]
        if not isinstance(value, list) or not value or not all(isinstance(c, str) and CHANNEL.match(c) for c in value):
            err(("channels",), "channels must be a non-empty list of names ([a-z0-9_-]+)")
        elif len(set(value)) != len(value):
            err(("channels",), "channels lists a channel twice")
        else:
            channels = tuple(value)

    rules: list[FrequencyRule] = []
    freq = raw.get("frequency", [])
    if not isinstance(freq, list):
        err(("frequency",), "frequency must be a list of {max, per, channel?}")
        freq = []
    for i, rule in enumerate(freq):
        p = ("frequency", i)
        if not isinstance(rule, dict):
            err(p, "a frequency rule must be a mapping like {max: 5, per: 7d}")
            continue
        # Every problem of the rule is reported (a bad per: must not hide an unknown channel).
        before = len(problems)
        unknown(p, rule, "frequency rule")
        mx = rule.get("max")
        if not isinstance(mx, int) or isinstance(mx, bool) or mx < 0:
            err(p + ("max",) if "max" in rule else p, "frequency max must be a whole number >= 0")
        per = 0
        try:
            per = parse_duration_ms(rule.get("per"))
        except ValueError as exc:
            err(p + ("per",) if "per" in rule else p, f"frequency per: {exc}")
        else:
            if per == 0:
                err(p + ("per",), "frequency per must be positive: a window of 0 counts no send, so the rule "
                                  "would never cap")
        ch = rule.get("channel")
        if ch is not None and ch not in channels:
            err(p + ("channel",), f"unknown channel {ch!r} (channels: {', '.join(channels)})")
        if len(problems) == before:
            rules.append(FrequencyRule(mx, per, ch))

    quiet = None
    if "quiet_hours" in raw:
        q = raw["quiet_hours"]
        if not isinstance(q, dict):
            err(("quiet_hours",), 'quiet_hours must be a mapping like {channels: [sms], from: "21:00", to: "08:00"}')
        else:
            unknown(("quiet_hours",), q, "quiet_hours")
            qch = q.get("channels", list(channels))
            if not isinstance(qch, list):
                bad = [qch]
                err(("quiet_hours", "channels"), f"quiet_hours.channels must be a list of channels, e.g. [sms], "
                                                 f"got {qch!r}")
            else:
                bad = [c for c in qch if c not in channels]
                if bad:
                    err(("quiet_hours", "channels"), f"quiet_hours.channels: unknown channel(s) {bad} "
                                                     f"(channels: {', '.join(channels)})")
                elif not qch:
                    bad = [qch]
                    err(("quiet_hours", "channels"), "quiet_hours.channels is empty: list the channels the quiet "
                                                     "hours apply to, or leave the key out for every channel")
            times = []
            for key in ("from", "to"):
                minute = parse_clock(q.get(key))
                if minute is None:
                    err(("quiet_hours", key), f'quiet_hours.{key} must be a time of day like "21:00" (HH:MM), '
                                              f"got {q.get(key)!r}")
                else:
                    times.append(minute)
            if not bad and len(times) == 2:
                if times[0] == times[1]:
                    err(("quiet_hours",), "quiet_hours.from and .to must differ")
                else:
                    quiet = QuietHours(tuple(qch), times[0], times[1])

    consent: dict[str, str] = {}
    c = raw.get("consent", {})
    if not isinstance(c, dict):
        err(("consent",), "consent must be a mapping of channel to opt_in or opt_out")
        c = {}
    for ch, mode in c.items():
        if ch not in channels:
            err(("consent", ch), f"unknown channel {ch!r} (channels: {', '.join(channels)})")
        elif mode not in ("opt_in", "opt_out"):
            err(("consent", ch), f"consent for {ch} must be opt_in or opt_out, got {mode!r}")
        else:
            consent[ch] = mode

    holdout = 0.0
    if "global_holdout" in raw:
        try:
            holdout = parse_percent(raw["global_holdout"])
        except ValueError as exc:
            err(("global_holdout",), f"global_holdout: {exc}")
    age = 86_400_000
    if "max_event_age" in raw:
        try:
            age = parse_duration_ms(raw["max_event_age"])
        except ValueError as exc:
            err(("max_event_age",), f"max_event_age: {exc}")
        else:
            if age == 0:
                err(("max_event_age",), "max_event_age must be positive: with 0 no event would be recent "
                                        "enough to enrol anyone")
    if problems:
        raise DefinitionError([problems[i] for i in sorted(range(len(problems)), key=lines.__getitem__)])
    return Policies(channels, tuple(rules), quiet, consent, holdout, age, filename)


DEFAULT_POLICIES_PATH = "policies.yaml"


def load_policies(path: str | Path | None) -> Policies:
    """Load a policies file; ``None`` or a missing default file means the documented defaults.

    The default path (``policies.yaml``, relative to the working directory) may be absent; any
    other path was given on purpose (``--policies``, ``ORCH_POLICIES``), so a missing file there
    is an error rather than a silent run on the defaults.
    """
    if path is None:
        return Policies()
    p = Path(path)
    if not p.exists():
        if str(path) == DEFAULT_POLICIES_PATH:
            return Policies()
        raise ConfigError(f"policies file {str(path)!r} does not exist; give an existing file "
                          "(--policies or ORCH_POLICIES), or set neither to use policies.yaml or the defaults")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([f"{p}:1: cannot read file: {exc}{_see('the-file')}"]) from None
    return parse_policies(text, str(p))


def zone(name: object) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
