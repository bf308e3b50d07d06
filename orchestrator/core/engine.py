"""The decision engine: one customer's state + one event (or timer) -> new state + effects.

Pure and synchronous: no I/O, no exceptions out of a decision. Time is event time
(docs/journeys.md#time): an event is decided at its ``ts`` (a late one at the customer's
time, see :func:`event_time`), a timer at its due time; a wait starts at the time of what
moved the instance. The decider's clock is passed in only to stamp ``decided_at`` and to
measure ``max_event_age``. So the Kafka worker, at any lag, and ``orchestrator simulate``
make the same decisions for the same input: they drive this same code.

Effects are returned as :class:`Output` records addressed by topic *suffix*
(``actions.email``, ``suppressions``, ``decisions``); the runtime adds the prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from orchestrator.core.catalog import JourneySet
from orchestrator.core.events import (FEEDBACK_TYPES, MAX_VALUE_DEPTH, MAX_VALUE_INT, MIN_VALUE_INT, PROFILE_ERASED,
                                      PROFILE_UPDATED, Event)
from orchestrator.core.expressions import is_mapping
from orchestrator.core.gate import Gate, customer_zone, known_zone
from orchestrator.core.ids import stable_hash
from orchestrator.core.journeys import (MAX_STEPS, REENTRY_ALWAYS, REENTRY_NEVER, BranchNode, ExitNode, Journey, SendNode,
                                        SplitNode, WaitForNode, WaitNode, WaitUntilNode)
from orchestrator.core.localtime import next_time_of_day
from orchestrator.core.namespaces import Namespaces
from orchestrator.core.policies import Policies
from orchestrator.core.activity import engagement_for, prune_stamps, record_activity
from orchestrator.core.state import (ACTION_REFS_MAX, ENGAGEMENT_WINDOW_MS, PROFILE_MAX_BYTES, ActionRef,
                                     CustomerState, Instance, encode_any)
from orchestrator.core.timeutil import format_ts
from orchestrator.core.vocabulary import Outcome, SuppressionReason, Topic, actions

MAX_FIRINGS = 10_000    # timers one call fires, at most (the rest fire at the next event or wake-up)


class Output(NamedTuple):
    topic: str          # suffix: "actions.<channel>", "suppressions", "decisions"
    key: str
    value: dict[str, Any]


class Lifecycle(NamedTuple):
    """A journey entry or exit, for statistics: kind is "entered", "goal" or "exited"."""

    kind: str
    journey: str
    version: int
    group: str          # "treatment" or "holdout"
    reason: str         # exit reason ("" for an entry)


class _Effects:
    """What one decision collects: its outputs, its Lifecycle records, and the decider's clock, for
    ``decided_at``. (A plain class, not a list subclass: the compiled build makes it a native class.)"""

    __slots__ = ("outputs", "lifecycle", "wall_ms")

    def __init__(self, wall_ms: int) -> None:
        self.outputs: list[Output] = []
        self.lifecycle: list[Lifecycle] = []
        self.wall_ms = wall_ms

    def append(self, output: Output) -> None:
        self.outputs.append(output)


def next_due_ms(state: CustomerState) -> int | None:
    """The earliest timer of any instance of the customer (its wait or deferral, its deadline), or ``None``."""
    due: int | None = None
    for inst in state.instances.values():
        t = inst.due_ms
        if t is not None and (due is None or t < due):
            due = t
        t = inst.deadline_ms
        if t is not None and (due is None or t < due):
            due = t
    return due


def event_time(ts_ms: int, customer_time_ms: int) -> int:
    """When an event of time ``ts_ms`` is decided: at its ``ts``, or, if something later was decided
    for the customer already (a late event), at the customer's time (``CustomerState.time_ms``). A
    customer's time never goes back."""
    return ts_ms if ts_ms > customer_time_ms else customer_time_ms


class Result:
    """What one decision returns (a plain class: one is made per event, and a dataclass's
    generated ``__init__`` with default factories cost a measurable share of the worker's time)."""

    __slots__ = ("state", "outputs", "lifecycle", "invalid_fields", "refused")

    def __init__(self, state: CustomerState | None, outputs: list[Output] | None = None,
                 lifecycle: list[Lifecycle] | None = None, invalid_fields: tuple[str, ...] = (),
                 refused: str | None = None) -> None:
        self.state = state                      # None: delete the customer's state (an erasure)
        self.outputs = [] if outputs is None else outputs
        self.lifecycle = [] if lifecycle is None else lifecycle
        # Known profile fields this event set to a value the engine cannot use (e.g. "timezone" that is
        # not an IANA name): kept in the profile, read as the default; the worker counts them.
        self.invalid_fields = invalid_fields
        # Why the event was refused without effect (the state as it was, no output): it is dead-lettered
        # ``too_large`` with this detail.
        self.refused = refused

    def __repr__(self) -> str:
        return (f"Result(state={self.state!r}, outputs={self.outputs!r}, lifecycle={self.lifecycle!r}, "
                f"invalid_fields={self.invalid_fields!r}, refused={self.refused!r})")


SHADOW_SUFFIX = "~shadow"     # journey ids are [a-z0-9-], so this never clashes


def instance_key(journey_id: str, shadow: bool) -> str:
    """Key of an instance in ``CustomerState.instances`` (and ``exits``)."""
    return journey_id + SHADOW_SUFFIX if shadow else journey_id


class Engine:
    """Decides what happens for one customer. Holds no per-customer data itself."""

    def __init__(self, journeys: JourneySet | Iterable[Journey], policies: Policies | None = None) -> None:
        self.journeys = journeys if isinstance(journeys, JourneySet) else JourneySet(journeys)
        self.policies = policies or Policies()
        self.gate = Gate(self.policies)
        self._wall: tuple[int, str] = (-1, "")      # the decider's clock, formatted (one value per batch)
        # How long a send is remembered for the frequency caps (their longest window; 0: no caps).
        self._caps_ms = max((r.per_ms for r in self.policies.frequency), default=0)
        # What each event asks of the policies, held natively (a Policies is a plain-Python dataclass:
        # each attribute read from compiled code is a generic lookup).
        self._channels: tuple[str, ...] = self.policies.channels
        self._max_age_ms: int = self.policies.max_event_age_ms
        self._action_topic = {ch: actions(ch) for ch in self._channels}

    # ------------------------------------------------------------------ entry points
    def on_event(self, state: CustomerState | None, event: Event, wall_ms: int) -> Result:
        """Apply one validated event at its time (see :func:`event_time`); the customer's timers
        due at or before it fire first, each at its own due time.

        ``wall_ms`` is the decider's clock: it stamps an action's ``decided_at`` and is what
        ``max_event_age`` is measured against (an older event updates state but enrols nobody).
        Nothing else depends on it, so the decision is the same at any lag.

        The caller asks the duplicate rule first (:mod:`orchestrator.core.dedup`): the engine decides
        every event it is given. An erasure deletes the state (``Result.state`` is ``None``); the
        duplicate window, kept apart, still knows the customer's earlier event ids.
        """
        state = state if state is not None else CustomerState()
        if state.erased_ms is not None:         # an erasure tombstone written before the window moved out
            state = CustomerState(time_ms=state.time_ms)
        # The event's fields, read once (each is a generic lookup from compiled code).
        cid, etype, ts_ms, eid = event.customer_id, event.type, event.ts_ms, event.event_id
        merged: dict[str, Any] | None = None
        invalid: tuple[str, ...] = ()
        if etype == PROFILE_UPDATED:
            # A profile larger than it may be is refused before anything changes (docs/events.md#limits):
            # a state must fit one changelog record.
            merged, invalid = self._merged_profile(state.profile, event.properties)
            size = len(encode_any(merged))
            if size > PROFILE_MAX_BYTES and size >= len(encode_any(state.profile)):     # (one that shrinks it may)
                return Result(state, [], refused=f"the customer's profile would be {size} bytes with this update; "
                                                 f"a profile is at most {PROFILE_MAX_BYTES} bytes")
        now_ms = event_time(ts_ms, state.time_ms)
        out = _Effects(wall_ms)
        self._fire_due(state, cid, now_ms, out)
        state.time_ms = now_ms
        if etype == PROFILE_ERASED:
            self._erase(state, event, now_ms, out)
            return Result(None, out.outputs, lifecycle=out.lifecycle)
        record_activity(state, etype, ts_ms, event.properties)
        if merged is not None:
            state.profile = merged
        elif etype in FEEDBACK_TYPES:
            self._feedback(state, event, now_ms, out)

        for jid in sorted(state.instances):
            inst = state.instances.get(jid)
            if inst is None:
                continue
            j = self._journey_of(inst)
            if j is None:
                self._drop(state, cid, inst, now_ms, out)
                continue
            if etype not in j.listens and j.exit_if is None:
                continue                        # nothing of this journey reacts to this event
            if etype in j.goal_on:
                self._finish(state, cid, inst, j, "goal", now_ms, out,
                             suppress_reason=SuppressionReason.GOAL, suppress_channels=j.goal_suppress, cause=eid)
            elif etype in j.exit_on:
                self._finish(state, cid, inst, j, "exit", now_ms, out,
                             suppress_reason=SuppressionReason.EXIT, suppress_channels=tuple(inst.channels), cause=eid)
            elif j.exit_if is not None and j.exit_if.truthy(
                    Namespaces(self._channels, state, event, inst, now_ms), now_ms):
                # exit.if (docs/journeys.md#exit): after this event's state update, the same ending as exit.on
                self._finish(state, cid, inst, j, "condition", now_ms, out,
                             suppress_reason=SuppressionReason.EXIT, suppress_channels=tuple(inst.channels), cause=eid)
            elif inst.waiting_for is not None and self._waits_for(j, inst, etype) \
                    and self._feedback_matches(state, inst, event):
                node = j.nodes[inst.node]
                assert isinstance(node, WaitForNode)
                inst.waiting_for, inst.due_ms = None, None
                inst.trigger_event_id, inst.trigger_ts_ms = eid, ts_ms
                self._run(state, cid, inst, j, node.on_event, event, now_ms, out)

        entering = self.journeys.by_entry.get(etype)
        if entering is not None and ts_ms >= wall_ms - self._max_age_ms:
            for j in entering:
                self._try_enter(state, j, event, now_ms, out)
        return Result(state, out.outputs, lifecycle=out.lifecycle, invalid_fields=invalid)

    def on_timer(self, state: CustomerState | None, customer_id: str, until_ms: int, wall_ms: int) -> Result:
        """Fire every timer of this customer due at or before ``until_ms``, each at its own due time
        and in due order (a timer it sets that is due by ``until_ms`` fires too). ``wall_ms`` stamps
        ``decided_at``, as in :meth:`on_event`."""
        if state is None:
            return Result(None, [])
        if state.erased_ms is not None:         # an erasure tombstone written before the window moved out
            return Result(None, [])
        out = _Effects(wall_ms)
        self._fire_due(state, customer_id, until_ms, out)
        return Result(state, out.outputs, lifecycle=out.lifecycle)

    def _decided_at(self, wall_ms: int) -> str:
        """``decided_at``: the decider's clock, formatted once per value (format_ts's own cache holds
        the event times that alternate with it)."""
        wall = self._wall
        if wall[0] != wall_ms:
            wall = self._wall = (wall_ms, format_ts(wall_ms))
        return wall[1]

    # ------------------------------------------------------------------ timers
    def _fire_due(self, state: CustomerState, cid: str, until_ms: int, out: _Effects) -> None:
        """Fire the due timers one at a time, earliest first (ties: the smallest key), each at its
        due time, which becomes the customer's time: what it starts is timed from there.

        Every timer is due later than the decision that set it (durations are positive), so the
        loop ends; ``MAX_FIRINGS`` only bounds one call's work: what is left stays due and fires
        at the next event or wake-up.
        """
        instances = state.instances
        if not instances:
            return
        for _ in range(MAX_FIRINGS):
            first: tuple[int, str] | None = None
            for jid, i in instances.items():
                t = i.due_ms
                d = i.deadline_ms
                if d is not None and (t is None or d < t):
                    t = d
                if t is not None and t <= until_ms and (first is None or (t, jid) < first):
                    first = (t, jid)
            if first is None:
                return
            now_ms, jid = first
            if now_ms > state.time_ms:
                state.time_ms = now_ms
            inst = state.instances[jid]
            j = self._journey_of(inst)
            if j is None:
                self._drop(state, cid, inst, now_ms, out)
                continue
            if inst.deadline_ms is not None and inst.deadline_ms <= now_ms and (
                    inst.due_ms is None or inst.deadline_ms <= inst.due_ms):
                self._finish(state, cid, inst, j, "max_duration", now_ms, out, suppress_reason=SuppressionReason.EXPIRED,
                             suppress_channels=(), cause=f"deadline:{inst.deadline_ms}")
                continue
            node = j.nodes.get(inst.node)
            # A timer keeps the instance's trigger: a send after a wait names the event that last
            # moved the instance (as the action example in docs/events.md#actions: the email after `wait_1h`).
            inst.due_ms = None
            if isinstance(node, WaitNode):
                self._run(state, cid, inst, j, node.next, None, now_ms, out)
            elif isinstance(node, WaitUntilNode):
                self._run(state, cid, inst, j, node.next, None, now_ms, out, released=(node.name,))
            elif isinstance(node, WaitForNode):
                inst.waiting_for = None
                self._run(state, cid, inst, j, node.on_timeout, None, now_ms, out)
            elif isinstance(node, SendNode) and inst.deferred:
                # A deferred send (quiet hours or its window): the whole gate runs again.
                inst.deferred, inst.deferred_action, inst.deferred_channel = False, None, None
                self._run(state, cid, inst, j, node.name, None, now_ms, out, revisit=True)
            else:
                self._finish(state, cid, inst, j, "invalid_node", now_ms, out)

    # ------------------------------------------------------------------ entry
    def _try_enter(self, state: CustomerState, j: Journey, event: Event, now_ms: int, out: _Effects) -> None:
        cid = event.customer_id
        key = instance_key(j.id, j.shadow)
        if not j.enabled or key in state.instances:
            return
        # An entry condition that is false is not a refusal: nothing is recorded.
        if j.entry_if is not None and not j.entry_if.truthy(Namespaces(self._channels, state, event, None, now_ms), now_ms):
            return
        if j.max_entries is not None and self._entries(state, key) >= j.max_entries:
            # Checked before re-entry: it is the refusal that stays true.
            out.append(self._decision(cid, j.id, j.version, None, None, Outcome.ENTRY_REFUSED, "max_entries", now_ms,
                                      shadow=j.shadow))
            return
        last_exit = state.exits.get(key)
        if last_exit is not None and (j.reentry_ms == REENTRY_NEVER or (
                j.reentry_ms != REENTRY_ALWAYS and now_ms - last_exit < j.reentry_ms)):
            out.append(self._decision(cid, j.id, j.version, None, None, Outcome.ENTRY_REFUSED, "reentry", now_ms,
                                      shadow=j.shadow))
            return
        if j.group is not None and not j.shadow:
            for other_id in sorted(state.instances):
                other = state.instances[other_id]
                oj = self._journey_of(other)
                if oj is None or oj.group != j.group or other.shadow:
                    continue
                if oj.priority >= j.priority:
                    # docs/events.md#decisions: the detail is exactly "group"; `explain` lists the journeys the customer is in.
                    out.append(self._decision(cid, j.id, j.version, None, None, Outcome.ENTRY_REFUSED, "group", now_ms))
                    return
                self._finish(state, cid, other, oj, "preempted", now_ms, out, suppress_reason=SuppressionReason.PREEMPTED,
                             suppress_channels=tuple(other.channels), cause=event.event_id,
                             detail=f"preempted by {j.id} (priority {j.priority} > {oj.priority})")
        inst = Instance(journey=j.id, version=j.version, instance_id=event.event_id, node=j.start,
                        entered_ms=now_ms, trigger_event_id=event.event_id, trigger_ts_ms=event.ts_ms,
                        holdout=self.gate.journey_held_out(j, cid) or self.gate.globally_held_out(cid), shadow=j.shadow,
                        deadline_ms=now_ms + j.max_duration_ms if j.max_duration_ms else None)
        ns = Namespaces(self._channels, state, event, inst, now_ms)
        inst.vars = {name: _plain(expr(ns, now_ms)) for name, expr in j.capture.items()}
        state.instances[key] = inst
        n = state.entries.get(key)                              # for entry.max_entries of any version
        state.entries[key] = n + 1 if n is not None else self._entries(state, key) + 1
        if not j.shadow:
            out.lifecycle.append(Lifecycle(Outcome.ENTERED, j.id, j.version, "holdout" if inst.holdout else "treatment", ""))
        out.append(self._decision(cid, j.id, j.version, j.start, None, Outcome.ENTERED,
                                  "holdout" if inst.holdout else "treatment", now_ms, shadow=j.shadow))
        if j.exit_if is not None and j.exit_if.truthy(
                Namespaces(self._channels, state, event, inst, now_ms), now_ms):
            # The entry event is the first event of the customer in the journey: exit.if holds
            # already, so the instance ends before its first node (nothing is sent).
            self._finish(state, cid, inst, j, "condition", now_ms, out, suppress_reason=SuppressionReason.EXIT, cause=event.event_id)
            return
        self._run(state, cid, inst, j, j.start, event, now_ms, out)

    @staticmethod
    def _entries(state: CustomerState, key: str) -> int:
        """Entries into a journey (all versions) so far. A state written before entries were
        counted has none for a journey it left: that was one entry at least."""
        n = state.entries.get(key)
        if n is None:
            return 1 if key in state.exits else 0
        return n

    # ------------------------------------------------------------------ walking nodes
    def _run(self, state: CustomerState, cid: str, inst: Instance, j: Journey, name: str | None,
             event: Event | None, now_ms: int, out: _Effects, revisit: bool = False,
             released: tuple[str, ...] = ()) -> None:
        """Walk from node ``name`` until the instance parks or ends.

        ``released``: the ``wait_until`` nodes this walk has left already (by their timer, or at
        once because it was that minute). Reached again in the same walk, such a node waits for
        its next day rather than releasing again, so a loop through it cannot spin.
        """
        for _ in range(MAX_STEPS):
            if name is None:
                self._finish(state, cid, inst, j, "completed", now_ms, out)
                return
            node = j.nodes[name]
            inst.node = name
            if not revisit:
                inst.visits[name] = inst.visits.get(name, 0) + 1
            revisit = False
            if isinstance(node, SendNode):
                parked = self._send(state, cid, inst, j, node, event, now_ms, out)
                if parked:
                    return
                if j.max_touches is not None and inst.touches >= j.max_touches:
                    self._finish(state, cid, inst, j, "max_touches", now_ms, out)
                    return
                name = node.next
            elif isinstance(node, BranchNode):
                ns = Namespaces(self._channels, state, event, inst, now_ms)
                name = None
                for cond, nxt in node.cases:
                    if cond is None or cond.truthy(ns, now_ms):
                        name = nxt
                        break
                if name is None:
                    self._finish(state, cid, inst, j, "no_branch_matched", now_ms, out)
                    return
            elif isinstance(node, SplitNode):
                name = node.arms[node.arm_of(j.id, cid)][1]
            elif isinstance(node, WaitNode):
                inst.due_ms = now_ms + node.ms
                return
            elif isinstance(node, WaitForNode):
                inst.waiting_for = " or ".join(node.event_types)     # for `explain`; matching reads the node
                inst.due_ms = now_ms + node.timeout_ms
                return
            elif isinstance(node, WaitUntilNode):
                due = next_time_of_day(now_ms, customer_zone(state), node.minute, node.days,
                                       allow_now=name not in released)
                if due > now_ms:
                    inst.due_ms = due
                    return
                released = (*released, name)          # exactly that minute: on at once
                name = node.next
            elif isinstance(node, ExitNode):
                self._finish(state, cid, inst, j, node.reason, now_ms, out)
                return
        self._finish(state, cid, inst, j, "step_limit", now_ms, out)

    # ------------------------------------------------------------------ the send gate
    def _send(self, state: CustomerState, cid: str, inst: Instance, j: Journey, node: SendNode,
              event: Event | None, now_ms: int, out: _Effects) -> bool:
        """Gate and send. Returns True if the instance is parked (a deferred send: its window or quiet hours)."""
        gate = self.gate
        # The params a deferred send was first decided with serve its own re-run only (the first send
        # its timer reaches); whatever that re-run decides, a later send evaluates its own.
        kept = inst.deferred_params if event is None else None
        inst.deferred_params = None
        visit = inst.visits.get(node.name, 1)
        action_id = "a-" + stable_hash(j.id, j.version, cid, inst.instance_id, node.name, visit)
        consented = [ch for ch in node.channels if gate.consents(state, ch)]
        if not consented:
            out.append(self._decision(cid, j.id, j.version, node.name, node.channel, Outcome.NO_CONSENT,
                                      f"no consent for {', '.join(node.channels)}", now_ms, shadow=inst.shadow))
            return False
        channel = consented[0] if len(consented) == 1 else gate.best_channel(state, consented, now_ms)
        if node.window is not None:
            opens = gate.window_opens(state, node.window, now_ms)
            if opens is not None:
                self._defer(cid, inst, j, node, channel, action_id,
                            kept if kept is not None else self._params(state, inst, node, event, now_ms),
                            opens, Outcome.WINDOW_DEFERRED, now_ms, out)
                return True
        if inst.holdout or gate.globally_held_out(cid):
            # (inst.holdout also covers the global holdout as decided at entry; say which one)
            detail = "journey holdout" if gate.journey_held_out(j, cid) else "global holdout"
            out.append(self._decision(cid, j.id, j.version, node.name, channel, Outcome.HOLDOUT, detail, now_ms,
                                      shadow=inst.shadow))
            return False
        exempt = node.exempt
        capped = gate.frequency_capped(state, channel, now_ms) if not exempt or "frequency" not in exempt else None
        if capped is not None:
            out.append(self._decision(cid, j.id, j.version, node.name, channel, Outcome.FREQUENCY_CAP, capped, now_ms,
                                      shadow=inst.shadow))
            return False
        if kept is not None:
            params = kept                        # evaluated when the send was first decided
        else:
            ns = Namespaces(self._channels, state, event, inst, now_ms)
            params = {k: _plain(expr(ns, now_ms)) for k, expr in node.params.items()}
        resume = gate.quiet_until(state, channel, now_ms) if not exempt or "quiet_hours" not in exempt else None
        if resume is not None:
            self._defer(cid, inst, j, node, channel, action_id, params, resume, Outcome.QUIET_HOURS_DEFERRED, now_ms, out)
            return True
        if inst.shadow:
            # Shadow: the decision is recorded; nothing is sent and nothing counts against caps.
            out.append(self._decision(cid, j.id, j.version, node.name, channel, Outcome.SENT, node.template, now_ms,
                                      action_id, shadow=True))
            inst.touches += 1
            if action_id not in inst.action_ids:
                inst.action_ids.append(action_id)
            if channel not in inst.channels:
                inst.channels.append(channel)
            return False
        action = {
            "action_id": action_id, "customer_id": cid, "channel": channel, "template": node.template,
            "params": params, "journey": j.id, "journey_version": j.version, "node": node.name,
            "trigger_event_id": inst.trigger_event_id if event is None else event.event_id,
            "event_ts": format_ts(inst.trigger_ts_ms if event is None else event.ts_ms),
            "decided_at": self._decided_at(out.wall_ms),
        }
        out.append(Output(self._action_topic.get(channel) or actions(channel), cid, action))
        out.append(self._decision(cid, j.id, j.version, node.name, channel, Outcome.SENT, node.template, now_ms, action_id))
        inst.touches += 1
        if action_id not in inst.action_ids:
            inst.action_ids.append(action_id)
        if channel not in inst.channels:
            inst.channels.append(channel)
        # Every send counts toward later sends' caps, an exempt one too.
        longest = self._caps_ms
        state.sends = [(t, ch) for t, ch in state.sends if t > now_ms - longest] if longest else []
        if longest:
            state.sends.append((now_ms, channel))
        eng = engagement_for(state, channel)
        eng.sent = prune_stamps(eng.sent, now_ms - ENGAGEMENT_WINDOW_MS) + [now_ms]
        state.actions[action_id] = ActionRef(j.id, inst.instance_id, channel, now_ms)
        if len(state.actions) > ACTION_REFS_MAX:
            del state.actions[next(iter(state.actions))]
        return False

    def _params(self, state: CustomerState, inst: Instance, node: SendNode, event: Event | None,
                now_ms: int) -> dict[str, Any]:
        """A send's params, evaluated now (the same as the inline evaluation in :meth:`_send`, which
        saves a call on every send)."""
        ns = Namespaces(self._channels, state, event, inst, now_ms)
        return {k: _plain(expr(ns, now_ms)) for k, expr in node.params.items()}

    def _defer(self, cid: str, inst: Instance, j: Journey, node: SendNode, channel: str, action_id: str,
               params: dict[str, Any], until_ms: int, outcome: str, now_ms: int, out: _Effects) -> None:
        """Park the instance at a send until ``until_ms`` (quiet hours, or the node's window).

        Both deferrals are one mechanism: the send's action id and channel join the instance's, so
        a goal, an exit, a preemption or an unsubscribe while it waits cancels it in its
        suppression; the timer re-runs the whole gate; the params and trigger event of this first
        attempt are kept for the send that follows.
        """
        inst.deferred, inst.deferred_action, inst.deferred_channel = True, action_id, channel
        inst.deferred_params = params
        inst.due_ms = until_ms
        if action_id not in inst.action_ids:
            inst.action_ids.append(action_id)
        if channel not in inst.channels:
            inst.channels.append(channel)
        out.append(self._decision(cid, j.id, j.version, node.name, channel, outcome,
                                  f"deferred to {format_ts(until_ms)}", now_ms, action_id, shadow=inst.shadow))

    # ------------------------------------------------------------------ leaving
    def _finish(self, state: CustomerState, cid: str, inst: Instance, j: Journey, reason: str, now_ms: int,
                out: _Effects, *, suppress_reason: str | None = None,
                suppress_channels: tuple[str, ...] = (), cause: str = "", detail: str | None = None) -> None:
        key = instance_key(j.id, inst.shadow)
        state.instances.pop(key, None)
        state.exits[key] = now_ms
        if suppress_reason is not None and not inst.shadow and (suppress_channels or inst.action_ids):
            # A goal suppresses exactly the channels it lists; other exits withdraw what was used.
            channels = list(suppress_channels) if suppress_channels else list(inst.channels)
            out.append(self._suppression(cid, channels, j.id, suppress_reason, list(inst.action_ids), cause, now_ms))
        outcome = Outcome.GOAL if reason == "goal" else Outcome.PREEMPTED if reason == "preempted" else Outcome.EXITED
        if not inst.shadow:
            out.lifecycle.append(Lifecycle(Outcome.GOAL if reason == "goal" else Outcome.EXITED, j.id, inst.version,
                                           "holdout" if inst.holdout else "treatment", reason))
        out.append(self._decision(cid, j.id, inst.version, inst.node, None, outcome, detail or reason, now_ms,
                                  shadow=inst.shadow))

    def _drop(self, state: CustomerState, cid: str, inst: Instance, now_ms: int, out: _Effects) -> None:
        """End an instance whose journey version is no longer loaded anywhere (it cannot go on)."""
        key = instance_key(inst.journey, inst.shadow)
        state.instances.pop(key, None)
        state.exits[key] = now_ms
        if not inst.shadow:
            out.lifecycle.append(Lifecycle(Outcome.EXITED, inst.journey, inst.version,
                                           "holdout" if inst.holdout else "treatment", "journey_unavailable"))
        out.append(self._decision(cid, inst.journey, inst.version, inst.node, None, Outcome.EXITED,
                                  "journey_unavailable", now_ms, shadow=inst.shadow))

    def _erase(self, state: CustomerState, event: Event, now_ms: int, out: _Effects) -> None:
        cancels: list[str] = []
        for jid in sorted(state.instances):
            inst = state.instances[jid]
            if not inst.shadow:
                cancels.extend(inst.action_ids)
            if not inst.shadow:
                out.lifecycle.append(Lifecycle(Outcome.EXITED, inst.journey, inst.version,
                                               "holdout" if inst.holdout else "treatment", "erased"))
            out.append(self._decision(event.customer_id, inst.journey, inst.version, inst.node, None, Outcome.EXITED,
                                      "erased", now_ms, shadow=inst.shadow))
        out.append(self._suppression(event.customer_id, list(self.policies.channels), None, SuppressionReason.ERASED, cancels,
                                     event.event_id, now_ms))

    # ------------------------------------------------------------------ inputs that change state
    @staticmethod
    def _merged_profile(old: dict[str, Any], props: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """``old`` with ``props`` merged shallowly (``null`` deletes a field), except ``consent``: merged per
        channel (docs/events.md#reserved-types); ``old`` is not changed.

        Also returns the known fields set to a value the engine cannot use: a ``timezone`` that is
        not an IANA name (kept, read as UTC), a ``consent`` that is not an object (``null`` included:
        an unsubscribe is never wiped wholesale) or a channel's consent that is not ``true``,
        ``false`` or ``null`` (those are not applied).
        """
        profile = dict(old)
        invalid: list[str] = []
        for key, value in props.items():
            if key == "consent":
                if not isinstance(value, dict):
                    invalid.append("consent")
                    continue
                given_before = profile.get("consent")
                consent = dict(given_before) if isinstance(given_before, dict) else {}
                for channel, given in value.items():
                    if given is None:
                        consent.pop(channel, None)
                    elif given is True or given is False:
                        consent[channel] = given
                    elif "consent" not in invalid:
                        invalid.append("consent")
                profile["consent"] = consent
            elif value is None:
                profile.pop(key, None)
            else:
                if key == "timezone" and known_zone(value) is None:
                    invalid.append("timezone")
                profile[key] = value
        return profile, tuple(invalid)

    def _feedback(self, state: CustomerState, event: Event, now_ms: int, out: _Effects) -> None:
        channel = event.properties["channel"]
        kind = event.type.split(".", 1)[1]
        if kind in ("opened", "clicked"):
            eng = engagement_for(state, channel)
            cutoff = now_ms - ENGAGEMENT_WINDOW_MS
            if kind == "opened":
                eng.opened = prune_stamps(eng.opened, cutoff) + [event.ts_ms]
                eng.last_opened_ms = max(eng.last_opened_ms or 0, event.ts_ms)
            else:
                eng.clicked = prune_stamps(eng.clicked, cutoff) + [event.ts_ms]
        elif kind == "unsubscribed":
            consent = dict(state.profile.get("consent") or {}) if isinstance(state.profile.get("consent"), dict) else {}
            consent[channel] = False
            state.profile = {**state.profile, "consent": consent}
            cancels = [a for inst in state.instances.values() if not inst.shadow for a in inst.action_ids
                       if (a in state.actions and state.actions[a].channel == channel)
                       or (inst.deferred and a == inst.deferred_action and inst.deferred_channel == channel)]
            out.append(self._suppression(event.customer_id, [channel], None, SuppressionReason.UNSUBSCRIBED,
                                         list(dict.fromkeys(cancels)), event.event_id, now_ms))

    @staticmethod
    def _waits_for(j: Journey, inst: Instance, etype: str) -> bool:
        """Is the instance parked at a wait_for node that an event of type ``etype`` ends?"""
        node = j.nodes.get(inst.node)
        return isinstance(node, WaitForNode) and etype in node.event_types

    @staticmethod
    def _feedback_matches(state: CustomerState, inst: Instance, event: Event) -> bool:
        if event.type not in FEEDBACK_TYPES:
            return True
        return event.properties.get("action_id") in inst.action_ids

    # ------------------------------------------------------------------ records
    def _journey_of(self, inst: Instance) -> Journey | None:
        j = self.journeys.by_version.get((inst.journey, inst.version))
        if j is None:
            cur = self.journeys.current.get(inst.journey)
            if cur is not None and inst.node in cur.nodes:
                return cur
        return j

    @staticmethod
    def _decision(cid: str, journey: str, version: int, node: str | None, channel: str | None, outcome: str,
                  detail: str, now_ms: int, action_id: str | None = None, *, shadow: bool = False) -> Output:
        value: dict[str, Any] = {"customer_id": cid, "journey": journey, "journey_version": version, "node": node,
                                 "channel": channel, "outcome": outcome, "detail": detail}
        if action_id is not None:
            value["action_id"] = action_id
        if shadow:
            value["shadow"] = True      # extension: only on decisions of shadow journey versions
        value["ts"] = format_ts(now_ms)
        return Output(Topic.DECISIONS, cid, value)

    @staticmethod
    def _suppression(cid: str, channels: list[str], journey: str | None, reason: str, cancels: list[str],
                     cause: str, now_ms: int) -> Output:
        sid = "s-" + stable_hash(cid, journey or "", reason, cause)
        return Output(Topic.SUPPRESSIONS, cid, {
            "suppression_id": sid, "customer_id": cid, "channels": channels, "journey": journey,
            "reason": reason, "cancels": cancels, "ts": format_ts(now_ms)})


def _plain(value: Any, depth: int = 0) -> Any:
    """An expression's result as a state or an output can hold it (docs/events.md#values): Mapping views
    become dicts, lists and tuples lists, at any depth; an integer out of the 64-bit range, and an object
    or list below ``MAX_VALUE_DEPTH`` others, are ``None`` (as an operation that cannot be made)."""
    t = type(value)
    if t is str or t is float or t is bool or value is None:
        return value
    if t is int:
        return value if MIN_VALUE_INT <= value <= MAX_VALUE_INT else None
    if depth >= MAX_VALUE_DEPTH:
        return None
    if t is list or t is tuple:
        return [_plain(v, depth + 1) for v in value]
    if t is dict or is_mapping(value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return value
