"""Open responses per client: every SSE response (every route's) and every Durable Streams
long-poll holds a ``Slot`` from the moment it is admitted until it ends, on every path
(its last event, the client gone, a slow viewer cut off, a drain), counted per token
subject and per client address, in this process (``Slots``)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from broadcaster.viewers.refusals import Refusal, too_many


class Slot:
    """One open response's place in the counts; ``release`` once it ends (again is a
    no-op). Calling it releases it too: a viewer answered from the parser holds the slot
    as its response's ``on_end``, with no bound method of its own."""

    __slots__ = ("_slots", "address", "subject")

    def __init__(self, slots: Slots | None, subject: str | None, address: str | None) -> None:
        self._slots = slots
        self.subject = subject
        self.address = address

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.put_back(self)

    __call__ = release

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Released if the block raises: the response it was taken for will not be."""
        try:
            yield
        except BaseException:
            self.release()
            raise


class Slots:
    """Open responses of this process: in all, per token subject and per client
    address."""

    def __init__(self, per_subject: int, per_address: int) -> None:
        self.per_subject = per_subject
        self.per_address = per_address
        self.open = 0
        self.subjects: Counter[str] = Counter()
        self.addresses: Counter[str] = Counter()

    def refusal(self, subject: str | None, address: str | None) -> Refusal | None:
        """429 if one more response would pass either client's limit; else None."""
        # (``get``, not ``[]``: a Counter's missing key is a Python call, ``__missing__``,
        # and most viewers' address holds nothing here yet.)
        per_subject, per_address = self.per_subject, self.per_address
        if subject is not None and per_subject and self.subjects.get(subject, 0) >= per_subject:
            return too_many(f"{per_subject} open responses of this token's subject")
        if address is not None and per_address and self.addresses.get(address, 0) >= per_address:
            return too_many(f"{per_address} open responses from this address")
        return None

    def take(self, subject: str | None, address: str | None) -> Slot:
        """A slot for one more response (refused past a limit: ``refusal`` first)."""
        refused = self.refusal(subject, address)
        if refused is not None:
            raise refused
        self.open += 1
        if subject is not None:
            self.subjects[subject] = self.subjects.get(subject, 0) + 1
        if address is not None:
            self.addresses[address] = self.addresses.get(address, 0) + 1
        return Slot(self, subject, address)

    def put_back(self, slot: Slot) -> None:
        self.open -= 1
        for counts, name in ((self.subjects, slot.subject), (self.addresses, slot.address)):
            if name is not None:
                counts[name] -= 1
                if counts[name] <= 0:
                    del counts[name]
