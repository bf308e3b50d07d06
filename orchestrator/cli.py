"""The ``orchestrator`` command (README.md#command-line): parses the arguments and calls the worker
(:mod:`orchestrator.runtime`), the adapter (:mod:`orchestrator.adapters`), the tools
(:mod:`orchestrator.admin`) or the local broker (:mod:`orchestrator.localkafka`)."""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from orchestrator import __version__, compiled
from orchestrator.errors import ConfigError, DefinitionError, OrchestratorError


def _settings():
    from orchestrator.config import Settings
    return Settings.from_env()


def _setup_logging(level: str, fmt: str) -> None:
    from orchestrator.observability.logs import setup_logging
    setup_logging(level, fmt)


# ---------------------------------------------------------------------------- worker, adapter
def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings()
    _setup_logging(args.loglevel, settings.log_format)
    from orchestrator.runtime.worker import run_worker
    run_worker(settings)
    return 0


def cmd_adapter(args: argparse.Namespace) -> int:
    settings = _settings()
    from orchestrator.adapters.options import webhook_options
    options = webhook_options(args, topic_prefix=settings.topic_prefix, env=os.environ)   # --loglevel too
    _setup_logging(args.loglevel.lower(), settings.log_format)
    from orchestrator.adapters.webhook import run_webhook
    run_webhook(settings, options)
    return 0


# ---------------------------------------------------------------------------- the tools (orchestrator.admin)
def cmd_produce(args: argparse.Namespace) -> int:
    from orchestrator.admin.produce import run
    return run(args)


def cmd_journeys_validate(args: argparse.Namespace) -> int:
    from orchestrator.admin.journeys import validate
    return validate(args)


def cmd_journeys_list(args: argparse.Namespace) -> int:
    from orchestrator.admin.journeys import list_journeys
    return list_journeys(args)


def cmd_journeys_publish(args: argparse.Namespace) -> int:
    from orchestrator.admin.journeys import publish_journeys
    return publish_journeys(args)


def cmd_journeys_diff(args: argparse.Namespace) -> int:
    from orchestrator.admin.journeys import diff
    args.error_exit = 2 if args.exit_code else 1         # diff(1): 1 means "differs", trouble is 2
    return diff(args)


def cmd_journeys_graph(args: argparse.Namespace) -> int:
    from orchestrator.admin.graph import draw
    return draw(args)


def cmd_journeys_winner(args: argparse.Namespace) -> int:
    from orchestrator.admin.winner import run
    return run(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.admin.simulate import simulate
    return simulate(args)


def cmd_explain(args: argparse.Namespace) -> int:
    from orchestrator.admin import explain
    return explain.run(args)


def cmd_tail(args: argparse.Namespace) -> int:
    from orchestrator.admin import tail
    return tail.run(args)


def cmd_stats(args: argparse.Namespace) -> int:
    from orchestrator.admin import stats
    return stats.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.admin.demo import run_demo
    return run_demo(rate=args.rate, duration_s=args.duration)


def cmd_backtest(args: argparse.Namespace) -> int:
    from orchestrator.admin.backtest import run
    return run(args)


# ---------------------------------------------------------------------------- kafka
def cmd_kafka(args: argparse.Namespace) -> int:
    from orchestrator import localkafka
    from orchestrator.config import external_bootstrap
    try:
        if args.action == "up":
            if external_bootstrap():
                print(f"ORCH_BOOTSTRAP is set ({external_bootstrap()}); not starting a local broker")
                return 0
            bootstrap = localkafka.up()
            print(f"kafka is up at {bootstrap}")
        elif args.action == "down":
            stopped = localkafka.down()
            print("kafka stopped" if stopped else "kafka was not running")
        else:
            info = localkafka.status()
            print(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
            return 0 if localkafka.is_up(info) else 1
    except localkafka.LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def at_least_1(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrator", description="Real-time journey orchestration on Kafka.")
    p.add_argument("--version", action="version", version=f"orchestrator {__version__}, hot path {compiled.describe()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    w = sub.add_parser("worker", help="run a worker (consumes events, produces actions)")
    w.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    w.set_defaults(fn=cmd_worker)

    pr = sub.add_parser("produce", help="send JSON-lines events (FILE or stdin) to <prefix>.events, each line as "
                        "it is read", epilog="exit codes: 0 every line read was sent (also after Ctrl-C or SIGTERM, "
                        "which stop the reading, send every whole line read and print the count); 1 a line was refused (each "
                        "reported as `line N: reason`, the others are sent) or an error stopped the command; 2 a "
                        "usage error")
    pr.add_argument("file", nargs="?", metavar="FILE")
    pr.add_argument("--topic", default="events", help="topic suffix (default: events)")
    pr.set_defaults(fn=cmd_produce)

    j = sub.add_parser("journeys", help="validate, list, publish, diff or draw journey definitions; compare split arms")
    jsub = j.add_subparsers(dest="action", required=True, metavar="ACTION")
    jv = jsub.add_parser("validate", help="check journey files; prints file:line: message for each problem")
    jv.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: $ORCH_JOURNEYS)")
    jv.add_argument("--policies", help="policies file (channels); default $ORCH_POLICIES")
    jv.set_defaults(fn=cmd_journeys_validate)
    jl = jsub.add_parser("list", help="list the journeys in a folder, or the published ones")
    jl.add_argument("dir", nargs="?", help="folder (default: $ORCH_JOURNEYS)")
    jl.add_argument("--published", action="store_true", help="list what is published on <prefix>.journeys")
    jl.add_argument("--policies")
    jl.set_defaults(fn=cmd_journeys_list)
    jp = jsub.add_parser("publish", help="validate, then publish to <prefix>.journeys (workers reload live)")
    jp.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: $ORCH_JOURNEYS)")
    jp.add_argument("--policies")
    jp.add_argument("--force", action="store_true", help="publish even if a higher version is published")
    jp.set_defaults(fn=cmd_journeys_publish)
    jd = jsub.add_parser("diff", help="local definitions against the published ones; or --shadow JOURNEY")
    jd.add_argument("paths", nargs="*", metavar="PATH")
    jd.add_argument("--policies")
    jd.add_argument("--shadow", metavar="JOURNEY", help="compare a shadow version's decisions with the live one's")
    jd.add_argument("--json", action="store_true", help="with --shadow: print the comparison as JSON")
    jd.add_argument("--exit-code", action="store_true", help="exit codes as diff(1) and git diff --exit-code "
                    "give them, for CI: 0 nothing differs, 1 something does, 2 trouble (a definition that does not "
                    "load, Kafka unreachable)")
    jd.set_defaults(fn=cmd_journeys_diff)

    jg = jsub.add_parser("graph", help="draw a journey (Mermaid, Graphviz DOT, SVG, PNG), with --stats its counts")
    jg.add_argument("journey", metavar="JOURNEY", help="a journey id in the journeys folder, or a file")
    jg.add_argument("--journeys", metavar="DIR", help="journeys folder (default: $ORCH_JOURNEYS, else journeys)")
    jg.add_argument("--policies", help="policies file (channels); default $ORCH_POLICIES")
    jg.add_argument("--format", choices=["mermaid", "dot", "svg", "png"], default="mermaid",
                    help="mermaid (default) and dot are text; svg and png need Graphviz's dot")
    jg.add_argument("--stats", action="store_true", help="counts per node and arrow from <prefix>.decisions")
    jg.add_argument("--from", dest="since", metavar="T", help="with --stats: from this time (RFC 3339, date, "
                    "epoch ms, or a duration ago like 24h)")
    jg.add_argument("--to", dest="until", metavar="T", help="with --stats: until this time, now or earlier "
                    "(default: now)")
    jg.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    jg.set_defaults(fn=cmd_journeys_graph)

    jw = jsub.add_parser("winner", help="compare the arms of a split (from <prefix>.decisions); when one wins, "
                         "print the next version with the split replaced by it")
    jw.add_argument("journey", metavar="JOURNEY", help="a journey id in the journeys folder, or a file")
    jw.add_argument("--metric", choices=["goal"], default="goal", help="what counts as a conversion (default goal)")
    jw.add_argument("--confidence", type=float, default=95.0, metavar="PCT",
                    help="confidence of the two-sided test, in percent (default 95)")
    jw.add_argument("--split", metavar="NODE", help="the split node (default: the journey's only reachable split)")
    jw.add_argument("--journeys", metavar="DIR", help="journeys folder (default: $ORCH_JOURNEYS, else journeys)")
    jw.add_argument("--policies", help="policies file (channels); default $ORCH_POLICIES")
    jw.add_argument("-o", "--output", metavar="FILE", help="write the next version to FILE")
    jw.add_argument("--json", action="store_true", help="print the report (and the next version) as JSON")
    jw.set_defaults(fn=cmd_journeys_winner)

    s = sub.add_parser("simulate", help="offline dry run over a JSON-lines file, virtual clock")
    s.add_argument("--journeys", required=True, metavar="DIR", help="the folder of journey files to run")
    s.add_argument("--policies", metavar="F", help="policies file (default $ORCH_POLICIES, else policies.yaml)")
    s.add_argument("events", metavar="EVENTS.jsonl", help="one event per line, in the order to decide them; "
                   "prints one JSON line per output record")
    s.set_defaults(fn=cmd_simulate)

    bt = sub.add_parser("backtest", help="replay the events <prefix>.events retains in a span through the "
                        "journeys in DIR; compare with the live decisions of that span (writes no topic)")
    bt.add_argument("--journeys", required=True, metavar="DIR", help="the journeys to try (e.g. a changed copy)")
    bt.add_argument("--policies", metavar="F", help="policies file (default $ORCH_POLICIES, else policies.yaml)")
    bt.add_argument("--from", dest="since", required=True, metavar="T",
                    help="RFC 3339 time, date (UTC midnight), epoch ms, or a duration ago (7d)")
    bt.add_argument("--to", dest="until", required=True, metavar="T",
                    help="end of the span, now or earlier (same forms)")
    bt.add_argument("--json", action="store_true", help="print the comparison as JSON")
    bt.set_defaults(fn=cmd_backtest)

    e = sub.add_parser("explain", help="a customer's state and recent decisions (why did / didn't they get it?)")
    e.add_argument("customer_id", metavar="CUSTOMER_ID")
    e.add_argument("--limit", type=at_least_1, default=20, help="recent decisions to show (default 20)")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.set_defaults(fn=cmd_explain)

    tl = sub.add_parser("tail", help="print an output topic's committed records as JSON lines; --follow waits for more")
    tl.add_argument("topic", metavar="TOPIC", help="dlq, decisions, suppressions or actions.<channel> (after "
                    "ORCH_TOPIC_PREFIX), or the full name, such as orch.dlq")
    tl.add_argument("--customer", metavar="C", help="only the records keyed by this customer id")
    tl.add_argument("--from", dest="since", metavar="T", help="only records from this time on (Kafka timestamp): "
                    "RFC 3339, date, epoch ms, or a duration ago like 1h")
    tl.add_argument("--follow", action="store_true", help="after the records there are, wait for new ones until "
                    "Ctrl-C (exit 0)")
    tl.set_defaults(fn=cmd_tail)

    st = sub.add_parser("stats", help="per journey and version: active, entries, exits, goals, conversion, lift")
    st.add_argument("--journey", help="only this journey id")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(fn=cmd_stats)

    k = sub.add_parser("kafka", help="local single-node Kafka (KRaft) for development and tests")
    k.add_argument("action", choices=["up", "down", "status"], help="status prints JSON and exits 1 when the broker "
                   "is down (the cluster of ORCH_BOOTSTRAP when it is set)")
    k.set_defaults(fn=cmd_kafka)

    ad = sub.add_parser("adapter", help="reference channel adapter: `adapter webhook` POSTs each action to a URL once")
    adsub = ad.add_subparsers(dest="adapter", required=True, metavar="KIND")
    aw = adsub.add_parser("webhook", help="actions of some channels -> HTTP POST; de-duplicated, suppressions "
                          "honoured, rate-limited, retried, dead-lettered, feedback to <prefix>.events")
    from orchestrator.adapters.options import add_webhook_arguments
    add_webhook_arguments(aw)
    aw.set_defaults(fn=cmd_adapter)

    d = sub.add_parser("demo", help="worker + demo traffic + live progress line (what `make run` runs)")
    d.add_argument("--rate", type=float, default=200.0, help="demo events per second")
    d.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()          # here, so a closed pipe is caught below and not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`orchestrator simulate ... | head`): stop quietly, as Unix tools
        # do when SIGPIPE ends them (the shell shows 128 + 13). Point stdout at /dev/null so the
        # interpreter's final flush does not complain about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    except DefinitionError as exc:
        # Every problem on its own line as `file:line: message` (as `journeys validate` prints
        # them), so an editor or CI can parse each one; no prefix on the first.
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return getattr(args, "error_exit", 1)       # `journeys diff --exit-code`: 2, as diff(1)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(args, "error_exit", 1)
    except OrchestratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(args, "error_exit", 1)
    except OSError as exc:
        # A file the user named cannot be read or written (`journeys graph -o /no/such/dir/x.svg`):
        # one sentence, no traceback. Kafka connection failures are OrchestratorErrors already.
        if exc.filename is None:
            raise
        print(f"error: cannot use {str(exc.filename)!r}: {exc.strerror or exc}", file=sys.stderr)
        return getattr(args, "error_exit", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
