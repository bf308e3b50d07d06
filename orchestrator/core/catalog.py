"""The journey catalog: every loaded version of every journey, which one takes new entries, the
shadow versions running beside the live ones, and which journeys an event type can enrol into."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from orchestrator.core.journeys import Journey


class JourneySet:
    """Every loaded journey version; the newest version of each id takes new entries."""

    def __init__(self, journeys: Iterable[Journey] = ()) -> None:
        self.versions: dict[str, dict[int, Journey]] = {}
        self.current: dict[str, Journey] = {}
        self.shadow: dict[str, Journey] = {}
        self.by_entry: dict[str, list[Journey]] = {}
        self.by_version: dict[tuple[str, int], Journey] = {}     # (id, version) -> journey: one lookup
        for j in journeys:
            self.add(j)

    def add(self, j: Journey) -> str:
        """Load a version. Returns what happened: "added", "replaced" or "ignored: <why>"."""
        known = self.versions.setdefault(j.id, {})
        cur = self.current.get(j.id)
        if j.shadow:
            if cur is not None and cur.version == j.version:
                return f"ignored: version {j.version} of {j.id} is live; a shadow needs its own version"
            sh = self.shadow.get(j.id)
            if sh is not None and j.version < sh.version:
                known.setdefault(j.version, j)
                self._index()
                return "added"
            self.shadow[j.id] = j
        else:
            if cur is None or j.version >= cur.version:
                self.current[j.id] = j
            sh = self.shadow.get(j.id)
            if sh is not None and sh.version <= j.version:
                del self.shadow[j.id]          # promoted (or superseded) by a live version
        what = "replaced" if j.version in known else "added"
        known[j.version] = j
        self._index()
        return what

    def _index(self) -> None:
        by_entry: dict[str, list[Journey]] = {}
        for j in [*self.current.values(), *self.shadow.values()]:
            for etype in j.entry_on:            # any of these types enrols
                by_entry.setdefault(etype, []).append(j)
        for lst in by_entry.values():
            # Shadows first: they then see the customer as the live version did, before its sends.
            lst.sort(key=lambda j: (not j.shadow, -j.priority, j.id))
        self.by_entry = by_entry
        self.by_version = {(jid, v): j for jid, versions in self.versions.items() for v, j in versions.items()}

    def get(self, jid: str, version: int) -> Journey | None:
        return self.by_version.get((jid, version))

    def __iter__(self) -> Iterator[Journey]:
        return iter(self.current.values())

    def __len__(self) -> int:
        return len(self.current)
