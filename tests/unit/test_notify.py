"""The Notifier's coroutine waits (what the server's long-polls await): the same answers as
the threads' ``wait``, no wake-up lost between the look and the wait, woken from any thread,
and nothing left registered once a wait is over, however it ended."""

from __future__ import annotations

import asyncio
import threading

import pytest

from legato.store.notify import Notifier


def test_a_version_that_moved_before_the_wait_answers_at_once() -> None:
    notifier = Notifier()
    seen = notifier.versions(["queue:gpu"])
    notifier.notify("queue:gpu")  # lands between the look and the wait
    assert asyncio.run(notifier.wait_async(seen, timeout=60)) is True
    assert notifier._futures == {}


def test_a_move_from_another_thread_wakes_the_waiting_coroutine() -> None:
    notifier = Notifier()
    seen = notifier.versions(["done:a", "done:b"])

    async def main() -> bool:
        waiting = asyncio.ensure_future(notifier.wait_async(seen, timeout=60))
        while "done:b" not in notifier._futures:  # registered: now it waits
            await asyncio.sleep(0)
        threading.Thread(target=notifier.notify, args=("done:b",)).start()
        return await waiting

    assert asyncio.run(main()) is True
    assert notifier._futures == {}


def test_other_keys_do_not_wake_it_and_the_timeout_answers_false() -> None:
    notifier = Notifier()
    seen = notifier.versions(["queue:gpu"])

    async def main() -> bool:
        waiting = asyncio.ensure_future(notifier.wait_async(seen, timeout=0.2))
        while "queue:gpu" not in notifier._futures:
            await asyncio.sleep(0)
        notifier.notify("queue:cpu")
        return await waiting

    assert asyncio.run(main()) is False
    assert notifier._futures == {}


def test_a_cancelled_wait_leaves_nothing_registered() -> None:
    notifier = Notifier()
    seen = notifier.versions(["queue:gpu"])

    async def main() -> None:
        waiting = asyncio.ensure_future(notifier.wait_async(seen, timeout=60))
        while "*" not in notifier._futures:
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    assert notifier._futures == {}
    notifier.notify("*")  # nobody left to wake: no error


def test_many_coroutines_are_woken_by_one_move() -> None:
    notifier = Notifier()
    seen = notifier.versions(["queue:gpu"])

    async def main() -> list[bool]:
        waits = [asyncio.ensure_future(notifier.wait_async(seen, timeout=60)) for _ in range(500)]
        while len(notifier._futures.get("queue:gpu", ())) < 500:
            await asyncio.sleep(0)
        notifier.notify("queue:gpu")
        return await asyncio.gather(*waits)

    assert asyncio.run(main()) == [True] * 500
    assert notifier._futures == {}
