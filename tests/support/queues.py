"""Reading a test queue to the end: every message body now in it, each received once with a long lease
and then deleted, so assertions can count keys (duplicates included)."""

from __future__ import annotations

from batchq.sqs import delete_messages, receive_messages


def take_all_bodies(client, url: str, *, lease_s: int = 300) -> list[str]:
    """Receive and delete until two empty polls in a row; return the bodies in receipt order."""
    bodies: list[str] = []
    empty_polls = 0
    while empty_polls < 2:
        msgs = receive_messages(client, url, wait_seconds=0, visibility_timeout=lease_s)
        if not msgs:
            empty_polls += 1
            continue
        empty_polls = 0
        bodies += [m["Body"] for m in msgs]
        assert not delete_messages(client, url, msgs)
    return bodies
