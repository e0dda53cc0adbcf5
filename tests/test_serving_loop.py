"""The serving loop's bound on socket work per turn (smartcharge/serving_loop.py): every ready
socket is still served, at most `events_per_turn` of them in one turn of the loop, a socket
that stays readable cannot keep the others out, and the listening socket accepts at most
`accepts_per_turn` connections a turn. Turns are counted by a callback that runs once in every
turn of the loop (it re-schedules itself with call_soon): no timing."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from smartcharge.serving_loop import ServingLoop, serving_loop_factory


class TurnCounter:
    """`turn`: the number of the loop's turn running now (a call_soon chain, once a turn)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.turn, self.running = loop, 0, True
        loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if self.running:
            self.loop.call_soon(self._tick)


def run_turns(loop: asyncio.AbstractEventLoop, done, most_turns: int = 1000) -> int:
    """Run the loop until `done()` (checked once a turn), at most `most_turns` turns."""
    counter = TurnCounter(loop)

    async def until_done() -> None:
        while not done():
            if counter.turn > most_turns:
                raise AssertionError(f"not done in {most_turns} turns")
            await asyncio.sleep(0)
    loop.run_until_complete(until_done())
    counter.running = False
    return counter.turn


@pytest.fixture
def loop():
    loop = ServingLoop(events_per_turn=4, accepts_per_turn=3)
    yield loop
    loop.close()


def test_ready_sockets_are_served_at_most_so_many_a_turn(loop):
    """20 sockets readable at the same poll: all served, at most 4 in a turn (asyncio's own
    loop serves all 20 in one)."""
    pairs = [socket.socketpair() for _ in range(20)]
    served: dict[int, int] = {}   # pair index -> the turn it was read in
    counter_box: list[TurnCounter] = []
    try:
        for ours, theirs in pairs:
            ours.setblocking(False)
            theirs.send(b"x")   # ready before the loop polls at all

        def on_readable(index: int) -> None:
            pairs[index][0].recv(16)
            loop.remove_reader(pairs[index][0].fileno())
            served[index] = counter_box[0].turn
        counter_box.append(TurnCounter(loop))
        for index, (ours, _) in enumerate(pairs):
            loop.add_reader(ours.fileno(), on_readable, index)
        run_turns(loop, lambda: len(served) == 20)
        per_turn: dict[int, int] = {}
        for turn in served.values():
            per_turn[turn] = per_turn.get(turn, 0) + 1
        assert sorted(served) == list(range(20))
        assert max(per_turn.values()) <= 4, per_turn
        assert loop.turns_cut >= 4 and loop.events_left > 0
        counter_box[0].running = False
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_a_socket_that_stays_readable_cannot_keep_the_others_out(loop):
    """8 sockets with much more to read than one callback reads (each stays ready) and one
    with a single byte: the single one is served within the first three turns, not after the
    8 run dry."""
    floods = [socket.socketpair() for _ in range(8)]
    quiet = socket.socketpair()
    reads = {"flood": 0, "quiet": None}
    counter_box: list[TurnCounter] = []
    try:
        for ours, theirs in floods:
            ours.setblocking(False)
            theirs.send(b"x" * 4000)
        quiet[0].setblocking(False)

        def on_flood(sock: socket.socket) -> None:
            sock.recv(1)   # one byte a turn: readable for 4 000 turns
            reads["flood"] += 1

        def on_quiet() -> None:
            quiet[0].recv(16)
            loop.remove_reader(quiet[0].fileno())
            reads["quiet"] = counter_box[0].turn
        for ours, _ in floods:   # readable, and registered, first
            loop.add_reader(ours.fileno(), on_flood, ours)
        counter_box.append(TurnCounter(loop))
        run_turns(loop, lambda: reads["flood"] >= 8)   # the floods are being served
        first_turn = counter_box[0].turn
        quiet[1].send(b"y")
        loop.add_reader(quiet[0].fileno(), on_quiet)
        run_turns(loop, lambda: reads["quiet"] is not None, most_turns=200)
        assert reads["quiet"] - first_turn <= 3
        counter_box[0].running = False
    finally:
        for ours, theirs in [*floods, quiet]:
            ours.close()
            theirs.close()


def test_the_listening_socket_accepts_so_many_a_turn(loop):
    """10 connections waiting in the backlog: all accepted, at most 3 in a turn."""
    made: list[int] = []
    counter_box: list[TurnCounter] = []

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            made.append(counter_box[0].turn)

    server = loop.run_until_complete(
        loop.create_server(Protocol, "127.0.0.1", 0, backlog=100))
    port = server.sockets[0].getsockname()[1]
    clients = []
    try:
        for _ in range(10):   # connected by the kernel, waiting to be accepted
            clients.append(socket.create_connection(("127.0.0.1", port)))
        counter_box.append(TurnCounter(loop))
        run_turns(loop, lambda: len(made) == 10)
        per_turn: dict[int, int] = {}
        for turn in made:
            per_turn[turn] = per_turn.get(turn, 0) + 1
        assert max(per_turn.values()) <= 3, per_turn
        counter_box[0].running = False
    finally:
        for client in clients:
            client.close()
        server.close()
        loop.run_until_complete(server.wait_closed())


def test_the_factory_gives_the_serving_loop_on_this_python():
    """The two methods it bounds are there (a later Python without them falls back)."""
    assert serving_loop_factory() is ServingLoop


def test_a_young_generation_grown_under_the_count_is_collected_at_a_turns_edge():
    """Old objects dying as new ones are made keep the collector's count (net allocations)
    under its threshold while the young generation grows - at 5 000 stations 15 000-55 000
    objects collected at once, 6-22 ms of the loop (s34-stall). The serving loop collects the
    young generation at the start of a turn once `young_every_s` of its clock has passed since
    the last collection: here 100 objects replaced a turn and 0.25 s a turn (a stepped clock),
    so the young generation never holds more than ~4 turns' worth (3 000 without)."""
    old = [[] for _ in range(3000)]
    gc.collect()   # the old objects in the oldest generation, the count at 0
    now_s = [0.0]
    loop = ServingLoop(young_every_s=1.0, clock=lambda: now_s[0])
    sizes: list[int] = []
    replaced = [0]

    def turn() -> None:
        sizes.append(len(gc.get_objects(0)))
        for _ in range(100):   # each new list is counted +1, the old one dying -1: net 0
            old[replaced[0] % len(old)] = []
            replaced[0] += 1
        now_s[0] += 0.25
        if replaced[0] < len(old):
            loop.call_soon(turn)
        else:
            loop.stop()
    try:
        loop.call_soon(turn)
        loop.run_forever()
    finally:
        loop.close()
        del old
        gc.collect()
    assert len(sizes) == 30
    assert max(sizes) <= 500, str(sizes)
    assert loop.young_collections.collected >= 5
