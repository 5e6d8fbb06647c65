"""Who reads the watched tables: the live readers, their roles (peers), the expected principals, and
the habits remembered for principals not seen lately.

A principal is (user, client address, application_name) on one table. A new one is admitted with
the reason its newness gives (first seen, a new client address for a known user), and forgotten
again after FORGET_US of silence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

from core.baselines import Baselines, Habit
from core.events import AccessEvent
from core.findings import PrincipalKey, Reason
from core.readers import Reader, Role
from core.settings import ExpectedPrincipal
from core.signals import first_seen, new_address
from core.windows import DAY_US, HOUR_US, MINUTE_US, Window

READER_IDLE_US = 2 * DAY_US
"""A reader idle this long (nothing active) leaves the live set; its habit stays."""
FORGET_US = 30 * DAY_US
"""A principal unseen this long is forgotten: seen again, it is new."""

Key: TypeAlias = tuple[str, str, str, str]
"""(user, client address, application_name, table)."""

__all__ = ["FORGET_US", "READER_IDLE_US", "Key", "Principals"]


class Principals:
    """The readers by principal and table, and the roles they belong to."""

    __slots__ = ("baselines", "readers", "roles", "marked", "_networks")

    def __init__(self, baselines: Baselines, expected: Iterable[ExpectedPrincipal]) -> None:
        self.baselines = baselines
        self.readers: dict[Key, Reader] = {}
        """The live set: readers seen lately or holding a reason."""
        self.roles: dict[tuple[str, str], Role] = {}
        """By (user, table)."""
        self.marked: dict[tuple[str, str, str], str] = {}
        """Principals an operator declared expected, with the note."""
        self._networks = [
            (ipaddress.ip_network(e.client_addr, strict=False) if e.client_addr else None, e)
            for e in expected
        ]
        for key, habit in baselines.habits.items():
            self.remember(key, habit)

    def admit(
        self, e: AccessEvent, table: str, t: int, learning: bool
    ) -> tuple[Reader, Reason | None]:
        """The reader of `table` by the event's principal, made live if it is not; with the
        reason to raise when the principal is new (never while `learning`, never if expected)."""
        key = (e.user, e.client_addr, e.application_name, table)
        r = self.readers.get(key)
        if r is not None:
            return r, None
        habit = self.baselines.habits.get(key)
        fresh = habit is None
        if habit is None:
            habit = self.baselines.habits[key] = Habit(t)
        role = self.role(e.user, table)
        r = self.readers[key] = Reader(
            PrincipalKey(e.user, e.client_addr, e.application_name, table),
            habit,
            role,
            Window(HOUR_US, 5 * MINUTE_US),
            t,
            self.expected(e),
        )
        reason = None
        if fresh and not learning and r.expected_note is None:
            r.new_since = t
            reason = _newcomer(e, table, role)
        if fresh:
            self.remember(key, habit)
        return r, reason

    def remember(self, key: Key, habit: Habit) -> None:
        """Count the principal among its role's peers, and its address among the role's."""
        role = self.role(key[0], key[3])
        role.habits[f"{key[1]}\x00{key[2]}"] = habit
        role.addresses.add(key[1])

    def role(self, user: str, table: str) -> Role:
        """The role of `user` on `table`, made on first use."""
        role = self.roles.get((user, table))
        if role is None:
            role = self.roles[(user, table)] = Role()
        return role

    def mark(self, user: str, client_addr: str, application_name: str, note: str) -> None:
        """Declare one principal expected (an operator's decision), on every table."""
        self.marked[(user, client_addr, application_name)] = note or "expected"

    def expected(self, e: AccessEvent) -> str | None:
        """The note of the operator's mark, or of the first `[[expected]]` rule that matches."""
        if self.marked:
            note = self.marked.get((e.user, e.client_addr, e.application_name))
            if note is not None:
                return note
        for network, rule in self._networks:
            if rule.user is not None and rule.user != e.user:
                continue
            if rule.application_name is not None and rule.application_name != e.application_name:
                continue
            if network is not None:
                try:
                    if ipaddress.ip_address(e.client_addr) not in network:
                        continue
                except ValueError:
                    continue
            return rule.note or "expected"
        return None

    def prune(self, now_us: int) -> None:
        """Drop readers idle for READER_IDLE_US with nothing active (their habit stays), and
        forget the habits unseen for FORGET_US: those principals are new again."""
        idle = now_us - READER_IDLE_US
        for key, r in list(self.readers.items()):
            if r.last_us < idle and not r.active:
                r.hand_over()
                del self.readers[key]
        forget = now_us - FORGET_US
        stale = [
            key
            for key, habit in self.baselines.habits.items()
            if habit.last_us < forget and key not in self.readers
        ]
        for key in stale:
            del self.baselines.habits[key]
            role = self.roles.get((key[0], key[3]))
            if role is not None:
                role.habits.pop(f"{key[1]}\x00{key[2]}", None)
                role.addresses = {k.split("\x00", 1)[0] for k in role.habits}


def _newcomer(e: AccessEvent, table: str, role: Role) -> Reason:
    """Why a principal never seen on `table` is notable, given what its role is known for."""
    if not role.addresses:
        return first_seen(f"first seen: user {e.user!r} never read {table}")
    if e.client_addr not in role.addresses:
        known = len(role.addresses)
        return new_address(
            f"user {e.user!r} from a new client address {e.client_addr or '?'} "
            f"(known from {known} other address{'es' if known > 1 else ''})"
        )
    return first_seen(
        f"first seen: a known user and address with a new application_name {e.application_name!r}"
    )
