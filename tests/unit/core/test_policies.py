"""SPEC §5 policies: the shipped file parses, errors carry file:line, a missing file means defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core import Policies, load_policies, parse_policies
from orchestrator.core.policies import DEFAULT_CHANNELS, FrequencyRule, QuietHours
from orchestrator.errors import ConfigError, DefinitionError
from tests.unit.core.helpers import DAY, HOUR, SPEC_POLICIES, line_of
from tests.repo.test_reference_docs import unresolved_sees

REPO = Path(__file__).resolve().parents[3]


def refused(text: str, filename: str = "pol.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_policies(text, filename)
    assert info.value.problems
    assert not unresolved_sees(info.value.problems), "each problem ends with (see docs/policies.md#<a heading>)"
    return info.value.problems


def assert_problem_at(text: str, needle: str, *words: str) -> None:
    problems = refused(text)
    prefix = f"pol.yaml:{line_of(text, needle)}: "
    matching = [p for p in problems if p.startswith(prefix)]
    assert matching, f"no problem at {prefix!r}: {problems}"
    for w in words:
        assert any(w in p for p in matching), (w, matching)


def check_spec_values(p: Policies) -> None:
    assert p.channels == ("email", "sms", "push", "inapp", "web", "ads")
    assert p.frequency == (FrequencyRule(5, 7 * DAY, None), FrequencyRule(2, 7 * DAY, "sms"))
    assert p.quiet_hours == QuietHours(("sms", "push"), 21 * 60, 8 * 60)
    assert p.consent == {"sms": "opt_in", "email": "opt_out", "push": "opt_out"}
    assert p.consent_mode("sms") == "opt_in" and p.consent_mode("email") == "opt_out"
    assert p.consent_mode("web") == "opt_out"          # unlisted channels need no explicit consent
    assert p.global_holdout == pytest.approx(0.05)
    assert p.max_event_age_ms == 24 * HOUR


def test_spec_example_parses() -> None:
    check_spec_values(parse_policies(SPEC_POLICIES, "policies.yaml"))


def test_shipped_policies_file_parses() -> None:
    p = load_policies(REPO / "policies.yaml")
    check_spec_values(p)
    assert p.source == str(REPO / "policies.yaml")


def test_missing_default_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)                     # no policies.yaml here
    p = load_policies("policies.yaml")
    assert p == Policies()
    assert load_policies(None) == Policies()
    assert p.channels == DEFAULT_CHANNELS == ("email", "sms", "push", "inapp", "web", "ads")
    assert p.frequency == () and p.quiet_hours is None and p.consent == {} and p.global_holdout == 0.0
    assert p.max_event_age_ms == 24 * HOUR


def test_empty_file_means_defaults() -> None:
    p = parse_policies("# nothing here\n", "pol.yaml")
    assert (p.channels, p.frequency, p.quiet_hours, p.consent, p.global_holdout, p.max_event_age_ms) == \
        (DEFAULT_CHANNELS, (), None, {}, 0.0, 24 * HOUR)


def test_custom_channels_and_unquoted_times() -> None:
    p = parse_policies("channels: [email, whatsapp]\nquiet_hours: {channels: [whatsapp], from: 22:30, to: 7:15}\n"
                       "consent: {whatsapp: opt_in}\n", "pol.yaml")
    assert p.channels == ("email", "whatsapp")
    assert p.quiet_hours == QuietHours(("whatsapp",), 22 * 60 + 30, 7 * 60 + 15)
    assert p.consent_mode("whatsapp") == "opt_in"


def test_quiet_hours_without_channels_cover_every_channel() -> None:
    p = parse_policies('quiet_hours: {from: "01:00", to: "06:00"}\n', "pol.yaml")
    assert p.quiet_hours is not None and p.quiet_hours.channels == DEFAULT_CHANNELS


# ---------------------------------------------------------------------------- refusals with file:line
def test_unknown_top_level_key() -> None:
    assert_problem_at(SPEC_POLICIES + "colour: red\n", "colour", "unknown key", "colour")


@pytest.mark.parametrize("old, new, needle", [
    ("  - {max: 5, per: 7d}", "  - {max: five, per: 7d}", "max: five"),
    ("  - {max: 5, per: 7d}", "  - {max: 5, per: weekly}", "per: weekly"),
    ("  - {max: 5, per: 7d}", "  - {max: 5, per: 7d, burst: 2}", "burst"),
    ("  - {channel: sms, max: 2, per: 7d}", "  - {channel: fax, max: 2, per: 7d}", "channel: fax"),
    ('from: "21:00"', 'from: "25:00"', "quiet_hours"),
    ('to: "08:00"', 'to: "8am"', "quiet_hours"),
    ('to: "08:00"}', 'to: "08:00", days: [mon, tue]}', "quiet_hours"),          # unknown keys, not ignored
    ('to: "08:00"}', 'to: "08:00", timezone: Europe/Oslo}', "quiet_hours"),
    ("channels: [sms, push], from", "channels: sms, from", "quiet_hours"),
    ("channels: [sms, push], from", "channels: [sms, pager], from", "quiet_hours"),
    ("sms: opt_in", "sms: maybe", "consent:"),
    ("push: opt_out}", "push: opt_out, fax: opt_in}", "consent:"),
    ("global_holdout: 5%", "global_holdout: 500%", "global_holdout"),
    ("global_holdout: 5%", "global_holdout: some", "global_holdout"),
    ("max_event_age: 24h", "max_event_age: a day", "max_event_age"),
    ("max_event_age: 24h", "max_event_age: 0m", "max_event_age"),                # nobody could ever enrol
    ("  - {max: 5, per: 7d}", "  - {max: 5, per: 0s}", "per: 0s"),               # a cap that never caps
    ("channels: [sms, push], from", "channels: [], from", "quiet_hours"),         # quiet hours on nothing
    ("channels: [email, sms, push, inapp, web, ads]", "channels: [email, email]", "channels:"),
    ("channels: [email, sms, push, inapp, web, ads]", "channels: [Email!]", "channels:"),
])
def test_invalid_values_are_refused_at_their_line(old: str, new: str, needle: str) -> None:
    text = SPEC_POLICIES.replace(old, new)
    assert text != SPEC_POLICIES
    assert_problem_at(text, needle)


def test_every_problem_of_a_frequency_rule_is_reported() -> None:
    # A bad per: must not hide the unknown channel (nor a bad max: either of them).
    text = SPEC_POLICIES.replace("  - {channel: sms, max: 2, per: 7d}", "  - {channel: fax, max: 2, per: weekly}")
    problems = refused(text)
    line = line_of(text, "channel: fax")
    assert [p.split(": ", 1)[0] for p in problems] == [f"pol.yaml:{line}"] * 2, problems
    assert "frequency per:" in problems[0] and "unknown channel 'fax'" in problems[1]
    text = SPEC_POLICIES.replace("  - {max: 5, per: 7d}", "  - {max: lots, per: weekly, channel: fax, burst: 2}")
    problems = refused(text)
    assert len(problems) == 4, problems
    for needle in ("unknown key 'burst'", "frequency max", "frequency per:", "unknown channel 'fax'"):
        assert any(needle in p for p in problems), (needle, problems)


def test_a_bad_per_or_max_is_reported_at_its_own_line_in_a_block_rule() -> None:
    text = SPEC_POLICIES.replace("  - {max: 5, per: 7d}", "  - channel: sms\n    max: many\n    per: 7x")
    problems = refused(text)
    assert [p.split(": ", 1)[0] for p in problems] == [f"pol.yaml:{line_of(text, 'max: many')}",
                                                       f"pol.yaml:{line_of(text, 'per: 7x')}"], problems


def test_problems_are_reported_in_line_order() -> None:
    # Unknown top-level keys are found first; one at the end of the file is reported last.
    text = SPEC_POLICIES.replace("global_holdout: 5%", "global_holdout: some") + "colour: red\n"
    problems = refused(text)
    assert [int(p.split(":")[1]) for p in problems] == [line_of(text, "global_holdout"), line_of(text, "colour")]


def test_yaml_errors_carry_file_and_line() -> None:
    text = SPEC_POLICIES.replace("global_holdout: 5%", "global_holdout: 5%: oops")
    assert_problem_at(text, "oops", "invalid YAML")
    text = SPEC_POLICIES + "max_event_age: 12h\n"
    assert_problem_at(text, "max_event_age: 12h", "duplicate")


def test_non_mapping_file_is_refused() -> None:
    assert refused("- a\n- b\n")[0].startswith("pol.yaml:1: ")


def test_load_policies_reports_the_path(tmp_path: Path) -> None:
    f = tmp_path / "policies.yaml"
    f.write_text("frequency: lots\n")
    with pytest.raises(DefinitionError) as info:
        load_policies(f)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{f}:1: ") and "frequency" in info.value.problems[0]


def test_quiet_hours_channels_that_are_not_a_list_say_so() -> None:
    # `channels: sms` used to be reported as "unknown channel(s) ['sms']", though sms is a channel.
    text = SPEC_POLICIES.replace("channels: [sms, push], from", "channels: sms, from")
    assert_problem_at(text, "quiet_hours", "quiet_hours.channels must be a list of channels, e.g. [sms], got 'sms'")
    assert not any("unknown channel" in p for p in refused(text))


@pytest.mark.parametrize("key", ["days", "timezone"])
def test_unknown_quiet_hours_keys_are_refused(key: str) -> None:
    text = SPEC_POLICIES.replace('to: "08:00"}', f'to: "08:00", {key}: x}}')
    assert_problem_at(text, key, "unknown key", key)


def test_a_missing_policies_file_given_on_purpose_is_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-policies.yaml"
    with pytest.raises(ConfigError) as info:
        load_policies(missing)
    message = str(info.value)
    assert str(missing) in message and "\n" not in message and message.count(". ") == 0
