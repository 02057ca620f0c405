"""Lab time: the clock a run measures with, and the event loop each run gets.

Every run names its clock (``run.clock``, ``run.summary()["clock"]``):

``"virtual"`` (the default: lessons, the grader, tests, the CLI)
    Sockets are real, but when the event loop has nothing to do except wait
    for a timer, lab time jumps to that timer. Waiting costs nothing and the
    machine's load does not show: a run's result is a function of (design,
    scenario, seed, clients, clock). A minute of lab time costs milliseconds,
    so lessons can use real-world values (20 s pings, 10 s close timeouts).
    Computing is free in this clock, with one exception, counted rather than
    measured so that it is the same on every machine: a loop that turns
    :data:`BUSY_TURNS` times without lab time moving is busy, not waiting (a
    reconnect loop with no pause), and from then on each turn costs
    :data:`BUSY_TURN_COST_S` until it waits again. So such code still moves
    lab time, and still ends at its time limit.

``"cpu"`` (CPU-charged virtual time)
    Virtual time plus the CPU time the loop's thread spends. CPU work costs
    lab time as on a real machine (a storm of handshakes, a worker that
    blocks the loop: lessons 03 and 07), but waiting for a CPU does not: two
    other busy processes do not slow this clock down. Results move a little
    from run to run (CPU time is measured), so assertions on them are
    relations with a margin.

``"real"`` (the machine's monotonic clock)
    For the bench, and for lesson 00 to show that lab time and real time agree.

Code under test often reads the clock itself (``time.monotonic()`` for an
ack timeout, ``time.time()`` in a token) or blocks (``time.sleep``). In a
virtual or CPU-charged lab loop's thread, and only there, ``time.monotonic``
and ``time.time`` read lab time (``time.time`` from the machine's time at the start,
in whole seconds; ``time.monotonic`` from a fixed origin, so that rounding is the same
on every machine),
and ``time.sleep(s)`` costs ``s`` of lab time without waiting (a blocking
call stalls the loop for as long as it says, the same on every machine).
``time.perf_counter`` stays the machine's clock. Other threads (the Jupyter
kernel's, a real-time loop's) see the real functions.

Virtual time comes from `looptime <https://pypi.org/project/looptime/>`_
(maintained, MIT), which replaces the loop's clock and its selector: it polls
the sockets first and moves time only when no I/O is ready and the loop has
run some no-op cycles, so loopback I/O is never skipped over. wslab adds on
top: the CPU charge; the kernel's own real-time behaviour taken out of the
result (before time jumps, a connect in progress gets its answer and every
delayed TCP ACK is sent, or waited for; socket buffers have a fixed size instead of
growing with measured round trips); and a floor of one tick (1 µs) under
every timer, so that a timer due "now" because of float rounding (an ack
timeout minus the time waited, 1.4e-15 s) moves lab time instead of firing
forever at the same instant.

Guarantees:

- A lab loop is never the caller's loop. :func:`run_in_lab_loop` (``await`` it)
  and :func:`run_in_lab_loop_sync` run a coroutine on a fresh loop, in a thread
  of its own; the caller's loop (a Jupyter kernel's) keeps serving widgets
  and progress bars meanwhile. Called from inside a lab loop of the same
  clock, the coroutine simply runs there.
- Lab loops take turns: at most one virtual or CPU-charged loop runs at a time
  in a process, so runs started together (``asyncio.gather`` of runs) give the
  results each gives alone, one after the other. The wall limit counts from a
  run's turn.
- Every call has a limit in real seconds (``wall_limit_s``; None only for a
  caller whose every run has its own limit): a design that
  blocks the thread, or never lets lab time advance, ends with
  :class:`~wslab.errors.RunTimeoutError` instead of a hang of the caller.
  What was left running is cancelled; a thread blocked in a non-asyncio call
  cannot be, and is left behind as a daemon (the message says so).
- Before the caller gets the result, every task left on the loop has been
  cancelled and awaited (for at most a grace period), async generators and
  the loop closed, and the thread ends: nothing of a run outlives it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import selectors
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import looptime

from .errors import ConfigError, RunTimeoutError

T = TypeVar("T")

CLOCKS: dict[str, str] = {
    "virtual": "lab time: real sockets, timers jump; independent of the machine's load",
    "cpu": "lab time plus the CPU time the loop spends: computing costs time, waiting for a CPU does not",
    "real": "the machine's monotonic clock (the bench)",
}
DEFAULT_CLOCK = "virtual"
TICK_S = 1e-6  # looptime's resolution: the smallest step of lab time
CONNECT_WAIT_S = 1.0  # real seconds lab time waits for the kernel to answer a loopback connect
BUSY_TURNS = 10_000  # loop turns at one instant before the virtual clock calls the loop busy
BUSY_TURN_COST_S = 100e-6  # lab time each further busy turn costs (a handshake's CPU, roughly)
TEARDOWN_GRACE_S = 2.0  # lab seconds the leftovers of a loop get to finish when cancelled
# Loop cycles with nothing ready before lab time jumps. looptime's default is 42,
# to give I/O from outside the loop time to show; here the kernel is settled
# before every jump instead (settle_the_kernel_before_jumps), and 2 gave the
# same results as 42, quiet and under two CPU hogs (the README's grid, the
# package's tests), 40 % faster.
NOOP_CYCLES = 2


def check_clock(clock: Any) -> str:
    """``clock`` if it names a clock, else a :class:`~wslab.errors.ConfigError`."""
    if clock not in CLOCKS:
        raise ConfigError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, got {clock!r}")
    return clock


# Buffer sizes of a lab loop's TCP sockets, as set with SO_RCVBUF / SO_SNDBUF
# (Linux doubles both for its bookkeeping): the receive buffer at Linux's
# initial size (128 KiB), the send buffer at the largest size an unprivileged
# program may ask for on a default system (net.core.wmem_max: 416 KiB).
RECEIVE_BUFFER_BYTES = 65_536
SEND_BUFFER_BYTES = 212_992
# A paused reader's delayed ACK, in real microseconds: the lowest Linux (6.15 and
# later) accepts is two clock ticks, so the first of these the kernel takes.
DELAYED_ACK_MAX_US = (2_000, 8_000, 20_000)
ACK_WAIT_S = 0.5  # real seconds a jump waits at most for delayed ACKs
_TCP_DELACK_MAX_US = 46  # Linux's socket option number (Python's socket module lacks it)
_SIOCINQ, _SIOCOUTQ, _SIOCOUTQNSD = 0x541B, 0x5411, 0x894B  # bytes unread; unacknowledged; unsent


def _fix_socket_buffers(sock: Any) -> None:
    """Give a TCP socket fixed buffer sizes. Linux otherwise grows them while the
    connection runs, from round trips and rates it measures in real time
    (buffer autotuning, up to megabytes), so how much a slow reader's kernel
    buffers hold would depend on the machine's load. Also shorten the socket's
    delayed ACK where the kernel lets a program do so: the loop waits for those
    ACKs (see :meth:`_LabTimeLoop.settle_the_kernel_before_jumps`)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        for delay_us in DELAYED_ACK_MAX_US:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_DELACK_MAX_US, delay_us)
                break
            except OSError:  # below two clock ticks, or a kernel before Linux 6.15
                continue


def _queued(fd: int, request: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0]


def _acks_held(loop: Any, paused: set[int]) -> bool:
    """Whether a socket of ``loop`` paused for reading holds data whose ACK its
    peer, a socket of the same loop, still waits for (a delayed ACK)."""
    names: dict[Any, int] | None = None
    for fd in paused:
        sock = getattr(loop._transports.get(fd), "_sock", None)  # noqa: SLF001
        if sock is None or sock.fileno() < 0:
            continue
        try:
            if not _queued(fd, _SIOCINQ):
                continue
            peer_name = sock.getpeername()
        except OSError:
            continue
        if names is None:  # sockname -> fd of the loop's TCP sockets, built once per call
            names = {}
            for other_fd, transport in list(loop._transports.items()):  # noqa: SLF001
                other = getattr(transport, "_sock", None)
                if other is not None and other.fileno() >= 0 and other.family in (socket.AF_INET, socket.AF_INET6):
                    with contextlib.suppress(OSError):
                        names[other.getsockname()] = other_fd
        peer = names.get(peer_name)
        if peer is None:  # a process of its own, or another loop: not ours to wait for
            continue
        try:
            if _queued(peer, _SIOCOUTQ) > _queued(peer, _SIOCOUTQNSD):  # sent, not yet acknowledged
                return True
        except OSError:
            continue
    return False


def _send_delayed_acks(loop: Any, fds: set[int]) -> set[int]:
    """Make each TCP socket of ``loop`` in ``fds`` send the ACK it may be delaying
    (``TCP_QUICKACK`` sends a pending ACK at once). Returns those paused for
    reading: data may reach them without the loop hearing of it, so they are
    asked again before every jump until they read again."""
    paused = set()
    for fd in fds:
        transport = loop._transports.get(fd)  # noqa: SLF001 - the loop's own sockets
        sock = getattr(transport, "_sock", None)
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:  # closed meanwhile, or not TCP
            continue
        if not transport.is_reading():
            paused.add(fd)
    return paused


class _LabTimeLoop:
    """Mixin for virtual loops: no timer is ever due less than one tick ahead,
    and a busy loop pays for its turns (see the module docstring)."""

    wslab_clock = "virtual"
    charge_busy_turns = True
    blocked_s = 0.0  # lab time spent in time.sleep() on this loop's thread
    busy_s = 0.0  # lab time charged for busy turns
    _turns_at_instant = 0

    def time(self) -> float:
        return super().time() + self.busy_s + self.blocked_s  # type: ignore[misc]

    _connecting = 0  # connects in progress on this loop

    async def sock_connect(self, sock: Any, address: Any) -> None:
        self._connecting += 1
        _fix_socket_buffers(sock)
        try:
            return await super().sock_connect(sock, address)  # type: ignore[misc]
        finally:
            self._connecting -= 1

    def _start_serving(self, protocol_factory: Any, sock: Any, *args: Any, **kwargs: Any) -> None:
        _fix_socket_buffers(sock)  # the connections it accepts inherit the sizes
        return super()._start_serving(protocol_factory, sock, *args, **kwargs)  # type: ignore[misc]

    def settle_the_kernel_before_jumps(self) -> None:
        """Before lab time jumps, let the kernel finish what it would finish later in
        real time: so a run depends on lab time only, never on the machine's load.

        - **A connect in progress:** on loopback its answer (accepted, or
          refused by a closed port) normally comes within the connect call; on
          a loaded machine the kernel may defer it for a moment. The loop waits
          up to :data:`CONNECT_WAIT_S` of real time for I/O first.
        - **Delayed ACKs:** a socket that received data may hold its ACK for
          up to 40 ms of *real* time (TCP delayed ACK), and the sender's full
          buffer, or its window, waits for that ACK. Lab time, jumping, would
          see the ACK arrive after a lab delay that depends on how fast the
          machine ran the loop (measured: a slow server lost 69 or 77 of a
          client's messages, depending on the load; with delayed ACKs switched
          off on loopback, 77 every time). So every socket that received data
          since the last jump, or that is paused for reading, sends its pending
          ACK now (``TCP_QUICKACK``), and the loop polls again: an ACK takes no
          lab time.
        - **A paused reader's delayed ACK:** ``TCP_QUICKACK`` cannot make a
          socket that holds unread data acknowledge it; its ACK comes when
          its delayed-ACK timer fires, in real time. So, when a paused socket
          holds data its peer in this loop has not seen acknowledged, the
          loop waits (at most :data:`ACK_WAIT_S` of real time) for that ACK
          before lab time jumps: to the program, the ACK came at once.
          Measured on a slow client: without the wait it lost 78 or 79 of 500
          messages depending on the load (55 of 240 runs under three CPU
          hogs); with it, the same count in 40 of 40 runs under that load.
          The wait is one delayed-ACK timer, shortened to two clock ticks
          where the kernel allows it (:data:`DELAYED_ACK_MAX_US`).
        """
        selector = self._selector  # type: ignore[attr-defined]
        jumping = selector.select  # looptime's
        kernels = functools.partial(type(selector).select, selector)
        received: set[int] = set()  # sockets that read since the last jump
        paused: set[int] = set()  # sockets paused for reading (see _send_delayed_acks)

        def select(timeout: float | None = None) -> Any:
            if self._connecting and timeout != 0:
                ready = kernels(CONNECT_WAIT_S)
                if ready:
                    return _noted(ready)
            if timeout != 0 and (received or paused):
                still_paused = _send_delayed_acks(self, received | paused)
                received.clear()
                paused.clear()
                paused.update(still_paused)
                ready = kernels(0)
                if ready:
                    return _noted(ready)
            if timeout != 0 and paused and _acks_held(self, paused):
                give_up = time.perf_counter() + ACK_WAIT_S
                while time.perf_counter() < give_up:
                    ready = kernels(0.001)
                    if ready:
                        return _noted(ready)
                    if not _acks_held(self, paused):
                        break
            return _noted(jumping(timeout))

        def _noted(ready: list) -> list:
            for key, events in ready:
                if events & selectors.EVENT_READ:
                    received.add(key.fd)
            return ready

        selector.select = select

    def _run_once(self) -> None:
        before = looptime.LoopTimeEventLoop.time(self)  # type: ignore[arg-type]
        super()._run_once()  # type: ignore[misc]
        if looptime.LoopTimeEventLoop.time(self) != before:  # type: ignore[arg-type]
            self._turns_at_instant = 0
            return
        self._turns_at_instant += 1
        if self.charge_busy_turns and self._turns_at_instant > BUSY_TURNS:
            self.busy_s += BUSY_TURN_COST_S

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        floor = self.time() + TICK_S
        return super().call_at(max(when, floor), callback, *args, context=context)  # type: ignore[misc]


class _CpuChargedLoop(_LabTimeLoop):
    """Virtual time plus the CPU time the loop's own thread has spent since it started."""

    wslab_clock = "cpu"
    charge_busy_turns = False  # the CPU time is charged instead

    def start_cpu_clock(self) -> None:
        self._cpu_thread = threading.get_ident()
        self._cpu_start = time.thread_time()
        self._cpu_spent = 0.0

    def time(self) -> float:
        if threading.get_ident() == getattr(self, "_cpu_thread", None):
            self._cpu_spent = time.thread_time() - self._cpu_start
        return super().time() + getattr(self, "_cpu_spent", 0.0)  # type: ignore[misc]


_classes: dict[tuple[type, str], type] = {}


def new_loop(clock: str = DEFAULT_CLOCK) -> asyncio.AbstractEventLoop:
    """A new event loop that keeps ``clock`` (see the module docstring).

    A virtual or CPU-charged loop starts at lab time 0. Create it in the
    thread that will run it (the CPU charge counts that thread's time).
    """
    check_clock(clock)
    loop = asyncio.new_event_loop()
    if clock == "real":
        loop.wslab_clock = "real"  # type: ignore[attr-defined]
        return loop
    key = (type(loop), clock)
    if key not in _classes:
        mixin = _CpuChargedLoop if clock == "cpu" else _LabTimeLoop
        base = looptime.make_event_loop_class(type(loop))
        _classes[key] = type(f"Lab{clock.title()}{type(loop).__name__}", (mixin, base), {})
    loop.__class__ = _classes[key]
    loop.setup_looptime(start=0.0, noop_cycles=NOOP_CYCLES)  # type: ignore[attr-defined]
    loop.settle_the_kernel_before_jumps()  # type: ignore[attr-defined]
    if clock == "cpu":
        loop.start_cpu_clock()  # type: ignore[attr-defined]
    return loop


# time.monotonic / time.time / time.sleep, as seen from a lab loop's thread.

_REAL = {name: getattr(time, name) for name in ("monotonic", "time", "sleep")}
_lab_threads: dict[int, tuple[Any, float, float]] = {}  # thread -> (loop, monotonic, time) at start
# What time.monotonic() reads when a lab loop starts. A fixed value, not the machine's:
# code under test subtracts two readings (``now - sent > ACK_TIMEOUT``), and the float
# rounding of ``origin + lab time`` depends on the origin's magnitude, so an origin
# taken from the machine's uptime decided ties differently on each machine (measured:
# a resend-on-timeout design counted 30, 34 or 139, 150 duplicates by machine).
LAB_MONOTONIC_ORIGIN_S = 100_000.0


def _lab_monotonic() -> float:
    here = _lab_threads.get(threading.get_ident())
    return _REAL["monotonic"]() if here is None else here[1] + here[0].time()


def _lab_time() -> float:
    here = _lab_threads.get(threading.get_ident())
    return _REAL["time"]() if here is None else here[2] + here[0].time()


def _lab_sleep(seconds: float) -> None:
    here = _lab_threads.get(threading.get_ident())
    if here is None:
        return _REAL["sleep"](seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    here[0].blocked_s += seconds


def _enter_lab_time(loop: asyncio.AbstractEventLoop) -> None:
    """From now on, this thread's time.monotonic/time/sleep follow ``loop``."""
    # time.time() starts at the machine's time in whole seconds: every date now is in one
    # binade of floats, where an integer origin adds no rounding of its own.
    _lab_threads[threading.get_ident()] = (loop, LAB_MONOTONIC_ORIGIN_S, float(int(_REAL["time"]())))
    if time.monotonic is not _lab_monotonic:  # installed once, for good: other threads see no change
        time.monotonic, time.time, time.sleep = _lab_monotonic, _lab_time, _lab_sleep


def _leave_lab_time() -> None:
    _lab_threads.pop(threading.get_ident(), None)


def clock_of(loop: asyncio.AbstractEventLoop | None = None) -> str | None:
    """The clock of a lab loop (the running one by default); None for any other loop."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
    return getattr(loop, "wslab_clock", None)


class _Cancelled(Exception):
    """The lab loop's main task was cancelled (by the caller or the wall limit)."""


# Lab loops (virtual and CPU-charged) take turns: one runs at a time in a
# process. Runs in threads share one interpreter lock, so runs at once are no
# faster; they were measured 2.5 times slower (12 designs x 10 scenarios, 4 at
# once: 144 s against 59 s one at a time). They also changed results then:
# each run made less real progress per lab second, so the kernel's real-time
# behaviour (delayed ACKs, buffer autotuning) fell at other lab times (a slow
# consumer lost 70 messages 4 at once, 119 alone); lab loops now take that
# behaviour out (_LabTimeLoop.settle_the_kernel_before_jumps). Real-clock loops
# (the grader's coordinator, the bench) do not take turns: they only wait, or
# measure the machine itself.
_TURN = threading.Lock()
_turn_holders: set[int | None] = set()  # threads running a lab loop in its turn


class _LabThread(threading.Thread):
    """One coroutine on one fresh lab loop, in a daemon thread of its own."""

    def __init__(self, make: Callable[[], Awaitable[T]], clock: str, name: str) -> None:
        super().__init__(name=f"wslab {name}", daemon=True)
        self.make, self.clock = make, clock
        self.result: concurrent.futures.Future = concurrent.futures.Future()
        self.began: concurrent.futures.Future = concurrent.futures.Future()  # it has its turn
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self._started = threading.Event()
        self._cancel_requested = False
        # Lab loops take turns (see _TURN); a lab loop's thread that starts
        # another run lends it its own turn, or the two would wait for each other.
        self._in_turn = clock != "real"
        self._takes_turn = self._in_turn and threading.get_ident() not in _turn_holders

    def run(self) -> None:
        self.result.set_running_or_notify_cancel()
        if self._takes_turn:
            _TURN.acquire()
        try:
            if self._in_turn:
                _turn_holders.add(self.ident)
            self.began.set_result(None)
            if self._cancel_requested:  # cancelled while it waited for its turn
                self._started.set()
                self.result.set_exception(_Cancelled())
                return
            self._run_loop()
        finally:
            _turn_holders.discard(self.ident)
            if self._takes_turn:
                _TURN.release()

    def _run_loop(self) -> None:
        loop = self.loop = new_loop(self.clock)
        asyncio.set_event_loop(loop)
        if self.clock != "real":
            _enter_lab_time(loop)
        outcome: tuple[bool, Any] = (False, _Cancelled())
        try:
            self.task = loop.create_task(self._main())
            self._started.set()
            try:
                outcome = (True, loop.run_until_complete(self.task))
            except asyncio.CancelledError:
                outcome = (False, _Cancelled())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
                outcome = (False, exc)
        finally:
            self._started.set()
            try:
                _close_loop(loop)
            finally:
                _leave_lab_time()
                asyncio.set_event_loop(None)
                # Only now: when the caller has the result, the loop and its sockets are gone.
                ok, value = outcome
                if ok:
                    self.result.set_result(value)
                else:
                    self.result.set_exception(value)

    async def _main(self) -> Any:
        return await self.make()

    def cancel(self) -> None:
        """Cancel the coroutine from another thread (a no-op once it is done)."""
        self._cancel_requested = True
        if not self.began.done():
            return  # it will not start when its turn comes
        self._started.wait(5)
        loop, task = self.loop, self.task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # closed meanwhile: it is over


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on ``loop`` (waiting at most the grace period), then close it."""
    try:
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=TEARDOWN_GRACE_S))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _too_long(name: str, wall_limit_s: float, stopped: bool) -> RunTimeoutError:
    return RunTimeoutError(
        f"{name} was still running after {wall_limit_s:g} real seconds: the code under test "
        "blocks the event loop (a busy loop, time.sleep, blocking I/O) or keeps it busy without "
        "ever waiting, so lab time cannot advance; "
        + ("everything it started was cancelled" if stopped else
           "its thread could not be stopped and is left behind (restart the kernel to free it)")
    )


async def _wait_real(done: asyncio.Future, timeout_s: float | None) -> bool:
    """Wait for ``done`` at most ``timeout_s`` real seconds; whether it is done.

    Real seconds even when the caller's loop keeps lab time: a virtual loop
    that waits for another thread has nothing ready, and its clock would jump
    over any timeout it set. Never cancels ``done`` (a TimeoutError of the
    run itself is a result)."""
    if timeout_s is None or clock_of() in (None, "real"):
        finished, _ = await asyncio.wait([done], timeout=timeout_s)
        return bool(finished)
    loop = asyncio.get_running_loop()
    expired = loop.create_future()

    def expire() -> None:
        if not expired.done():
            expired.set_result(None)

    timer = threading.Timer(timeout_s, lambda: loop.call_soon_threadsafe(expire))
    timer.daemon = True
    timer.start()
    try:
        await asyncio.wait([done, expired], return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        expired.cancel()
    return done.done()


async def run_in_lab_loop(make: Callable[[], Awaitable[T]], *, clock: str = DEFAULT_CLOCK,
                          wall_limit_s: float | None = 120.0, name: str = "run") -> T:
    """Await ``make()`` run on a fresh loop that keeps ``clock``, in a thread of its own.

    From inside a lab loop that already keeps ``clock``, ``make()`` runs there.
    """
    check_clock(clock)
    if clock_of() == clock:
        return await make()
    worker = _LabThread(make, clock, name)
    worker.start()
    done = asyncio.wrap_future(worker.result)
    try:
        # The wall limit counts from its turn (shielded: the thread owns that future).
        await asyncio.shield(asyncio.wrap_future(worker.began))
    except asyncio.CancelledError:
        worker.cancel()
        raise
    try:
        finished = await _wait_real(done, wall_limit_s)
    except asyncio.CancelledError:
        worker.cancel()
        await _wait_real(done, TEARDOWN_GRACE_S * 2)
        raise
    if not finished:
        worker.cancel()
        raise _too_long(name, wall_limit_s, await _wait_real(done, TEARDOWN_GRACE_S * 2))
    worker.join(1.0)  # it has handed over its result: the thread is returning
    try:
        return done.result()
    except _Cancelled:  # cancelled from inside the lab loop: the caller's own cancellation
        raise asyncio.CancelledError() from None


def in_lab_loop(clock: str = DEFAULT_CLOCK, *, wall_limit_s: float | None = 120.0) -> Callable:
    """Decorator: the coroutine function always runs on a lab loop that keeps
    ``clock`` (a fresh one, unless its caller already runs on one). For
    experiments that open sockets themselves, or reach into a run's tasks."""
    check_clock(clock)

    def decorate(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            return await run_in_lab_loop(lambda: fn(*args, **kwargs), clock=clock,
                                         wall_limit_s=wall_limit_s, name=fn.__name__)
        wrapper.wslab_clock = clock  # type: ignore[attr-defined]
        return wrapper

    return decorate


def run_in_lab_loop_sync(make: Callable[[], Awaitable[T]], *, clock: str = DEFAULT_CLOCK,
                         wall_limit_s: float | None = 120.0, name: str = "run") -> T:
    """:func:`run_in_lab_loop` for synchronous callers: blocks until ``make()`` is done.

    Safe from a thread whose loop is running (a notebook cell without ``await``):
    the run does not need that loop, so nothing has to nest.
    """
    check_clock(clock)
    worker = _LabThread(make, clock, name)
    worker.start()
    try:
        concurrent.futures.wait([worker.began])  # the wall limit counts from its turn
        concurrent.futures.wait([worker.result], timeout=wall_limit_s)
    except BaseException:  # KeyboardInterrupt: stop the run too
        worker.cancel()
        worker.join(TEARDOWN_GRACE_S * 2)
        raise
    if not worker.result.done():
        worker.cancel()
        worker.join(TEARDOWN_GRACE_S * 2)
        raise _too_long(name, wall_limit_s, not worker.is_alive())
    worker.join(1.0)  # it has handed over its result: the thread is returning
    return worker.result.result()
