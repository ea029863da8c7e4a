"""A response's first writes held in memory and sent as one (``server.HeldWrites``): in
order, nothing lost, nothing after the close, and straight through once released."""

from __future__ import annotations

from broadcaster.transport.wire import HeldWrites


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after the close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 7


def test_writes_wait_until_released_then_go_as_one() -> None:
    real = Transport()
    held = HeldWrites(real)
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.write(b"6\r\nretry:\r\n")
    assert real.writes == []
    assert held.get_write_buffer_size() == 7  # the rest is the real transport's
    held.release()
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\n6\r\nretry:\r\n"]
    held.write(b"later")
    held.release()  # twice: nothing more
    assert real.writes[1:] == [b"later"]


def test_a_close_sends_what_was_held_first() -> None:
    real = Transport()
    held = HeldWrites(real)
    held.write(b"head")
    held.write(b"0\r\n\r\n")
    held.close()
    assert real.writes == [b"head0\r\n\r\n"] and real.closed


def test_nothing_is_written_to_a_transport_already_closing() -> None:
    real = Transport()
    held = HeldWrites(real)
    held.write(b"head")
    real.closed = True  # the client went away meanwhile
    held.release()
    assert real.writes == []
