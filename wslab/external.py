"""Designs in any language: a server and a client run as real processes.

A design's server, its client, or both may be a command (``node server.js``,
``./client``, ``python3 other.py``): the lab starts each as a real process on
this machine and talks to it through a small line protocol on its standard
input and output, in the spirit of Maelstrom's nodes. Everything else is what
a Python design gets: the :class:`~wslab.proxy.FaultProxy` between the two,
the faults, the ledger, the checkers, the plots and the grader. Either side
may stay a Python design (a mixed pair)::

    design = external_design(server="node node/production_server.js",
                             client="node node/production_client.js")
    wslab.grade(design)            # or: python -m wslab grade --server CMD --client CMD
    external_design(server="node node/production_server.js", client="production")

A side given as a design name (``"production"``) or a ``.py`` design file is
that Python design's side, run in the lab's process; anything else is a
command, split like a shell's words (no shell runs it). A design file of
commands, ``*.toml``, names the pair (:func:`load_design_file`)::

    name = "node_production"
    server = "node production_server.js"   # run in the file's folder
    client = "node production_client.js"
    stop_grace_s = 1.0                     # optional

The line protocol
-----------------
Every line, both ways, is one JSON object with an ``"op"`` field, UTF-8,
ending in ``\\n``. Messages are opaque text, carried as JSON strings
(``"msg"``): a process hands the other side's application exactly the text it
was given. ``"ref"`` is a number or string the process chooses, unique among
its requests not yet answered; the lab's ``done`` answer carries it back. A
line outside the protocol (not JSON, an unknown op, a missing, misspelt or
wrongly typed field) stops the run with an error that quotes the line: a
process writes its logs to **stderr** (the lab keeps the last lines, and
shows them when the process fails). A client process::

    environment  WSLAB_URL     ws://127.0.0.1:<proxy port>/c/<id>: connect there
                 WSLAB_CLIENT  <id>, the lab client it is
                 WSLAB_STORE   a directory of its own;  WSLAB_SEED  the run's seed
    lab → client (stdin)
      {"op": "send", "msg": M}            the application produced M: send it (only
                                          after a pull, one per message pulled)
      {"op": "done", "ref": R}            the application has processed deliver R
      {"op": "stop"}                      the run is over: no more sends; finish
                                          (close 1000, reject what you hold), exit
    client → lab (stdout)
      {"op": "pull"}                      send me every message, as produced
      {"op": "pull", "n": N}              send me N more messages (N >= 1)
      {"op": "deliver", "ref": R, "msg": M}   M came from the server: the
                                          application processes it (delivered when
                                          the lab answers done R; wait for it to
                                          apply backpressure)
      {"op": "reject", "msg": M, "reason": TEXT}   M, pulled, will not be
                                          delivered: refused explicitly, not lost
      {"op": "open"}, {"op": "close"}     a WebSocket connection of this client
                                          opened (handshake done) / closed

A server process::

    environment  WSLAB_HOST    127.0.0.1;  WSLAB_PORT  the port to listen on
                 WSLAB_STORE   a directory that survives restarts (a database)
                 WSLAB_SEED    the run's seed
    lab → server (stdin)
      {"op": "push", "client": C, "msg": M}   the application produced M for
                                          client C: push it (after a pull for C)
      {"op": "done", "ref": R, "reply": M or null}   the application processed
                                          process R; a reply (echo workloads) is to
                                          be sent back on that connection
    server → lab (stdout)
      {"op": "open", "client": C}         a WebSocket connection from client C (the
                                          path /c/C) opened
      {"op": "pull", "client": C}         push me every message for C, as produced
      {"op": "pull", "client": C, "n": N} push me N more messages for C
      {"op": "process", "ref": R, "msg": M}   M came from a client: the
                                          application processes it (delivered when
                                          the lab answers done R)
      {"op": "reject", "msg": M, "reason": TEXT}   M, pulled, will not be delivered

A message counts as *accepted* by the design when the lab writes its ``send``
or ``push`` line (so a process that pulls only what it has room for keeps the
backlog in the lab: backpressure), and as *delivered* when the lab answers
``done`` (after any :class:`~wslab.faults.SlowConsumer` delay on that side).
A process that never pulls takes no part in that stream, as a Python design
that never reads ``app.outgoing()``: its checks are not applicable.

What the lab guarantees a process
---------------------------------
- **Time is real.** A process keeps the machine's clock, so a run with a
  process runs in real time (``clock="real"``, chosen for it; asking for
  virtual or CPU-charged time raises :class:`~wslab.errors.ConfigError`).
  Lab time 0 is the moment the server's port first accepts connections and
  every client process has written its first line (its first pull, or its
  connection open), so that a process's start-up (a third of a second for
  Node.js on a busy machine) is not part of the scenario.
- **Loopback only.** The server listens on 127.0.0.1 at a port the lab chose;
  the client connects to the proxy, on 127.0.0.1.
- **Real restarts.** A :class:`~wslab.faults.ServerRestart` sends SIGTERM to
  the server's process group, then SIGKILL after the grace period the downtime
  leaves, and starts the command again (a new pid, memory really lost) on the
  same port, with the same ``WSLAB_STORE``. The fault's close code is not sent:
  the process chooses its own (``1001`` going away, ``1012`` restart).
- **Real cleanup.** Every process starts in a process group of its own; when a
  run ends, even by an error, a timeout or Ctrl-C, each gets ``stop`` (clients)
  or SIGTERM, then SIGKILL after :data:`TERM_GRACE_S`, its whole group with it,
  and the lab waits until no process of the group is left and its stores are
  removed. A process that had to be killed at the end counts as left running
  (``run.tasks_left``, the "nothing left running" check).
- **Bad input stops the run at once**, with an
  :class:`~wslab.errors.ExternalProcessError` that names the process, what it
  did and the last lines of its stderr, and leaves nothing running: a command
  that cannot start, a server that exits or does not accept connections on
  its port within :data:`SERVER_START_TIMEOUT_S`, a client that exits or
  writes nothing within :data:`CLIENT_START_TIMEOUT_S`, a line outside the
  protocol. A process that exits later, mid-run, is the design's failure
  (``run.errors``): a crashed server stays down until the next restart the
  scenario schedules.
- At most :data:`MAX_CLIENT_PROCESSES` client processes run at once: a
  scenario with more clients (the 200-client reconnect storm) is not
  applicable to an external client, and the grader says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import tomllib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import RunContext, current_party
from .contract import ClientApp, Design, ServerApp, _Outbox
from .errors import ConfigError, DesignContractError, ExternalProcessError, RunError
from .proxy import HOST
from .workload import message_id, split_id

__all__ = ["Command", "ExternalDesign", "ProtocolError", "ProcessExited", "external_design",
           "is_external", "load_design_file", "parse_line", "MAX_CLIENT_PROCESSES"]

SERVER_START_TIMEOUT_S = 3.0  # real seconds for a new server process to accept connections
CLIENT_START_TIMEOUT_S = 3.0  # real seconds for a new client process to write its first line
TERM_GRACE_S = 1.0  # SIGTERM (or a client's stop) to SIGKILL, at the end of a run
KILL_WAIT_S = 2.0  # after SIGKILL, for the kernel to take the whole group down
STOP_GRACE_S = 1.0  # Design.stop_grace_s of an external client: from "stop" to SIGTERM
MAX_CLIENT_PROCESSES = 16
MAX_LINE_BYTES = 64 * 2**20  # a 16 MiB message, escaped as JSON, fits
STDERR_LINES_KEPT = 20
STDERR_LINES_LOGGED = 2_000  # per run, into run.logs
_PORT_POLL_S = 0.02


class ProtocolError(ExternalProcessError):
    """A line outside the line protocol; the message quotes it and says why."""


class ProcessExited(RuntimeError):
    """A design's process exited in the middle of a run (the design's failure)."""


# The protocol: pure parsing --------------------------------------------------------

_REF = (int, str)
# role -> op -> field -> (types, required)
_OPS: dict[str, dict[str, dict[str, tuple[tuple[type, ...], bool]]]] = {
    "client": {
        "pull": {"n": ((int,), False)},
        "deliver": {"ref": (_REF, True), "msg": ((str,), True)},
        "reject": {"msg": ((str,), True), "reason": ((str,), True)},
        "open": {},
        "close": {},
    },
    "server": {
        "open": {"client": ((int,), True)},
        "pull": {"client": ((int,), True), "n": ((int,), False)},
        "process": {"ref": (_REF, True), "msg": ((str,), True)},
        "reject": {"msg": ((str,), True), "reason": ((str,), True)},
    },
}
_EXAMPLE = {"client": '{"op": "deliver", "ref": 1, "msg": "..."}',
            "server": '{"op": "process", "ref": 1, "msg": "..."}'}


@dataclass(frozen=True)
class Line:
    """One line a process wrote, validated: its ``op`` and its fields."""

    op: str
    fields: Mapping[str, Any]


def parse_line(raw: bytes | str, *, role: str, who: str = "the process", number: int = 0) -> Line:
    """Parse one line a ``role`` ("client" or "server") process wrote, or raise
    :class:`ProtocolError` naming ``who``, the line's ``number`` and the line."""
    def refuse(problem: str) -> ProtocolError:
        shown = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        shown = shown.rstrip("\r\n")
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        return ProtocolError(
            f"{who} wrote a line outside the protocol (line {number} of its stdout): "
            f"{shown!r}: {problem}. Each line on stdout is one JSON object, such as "
            f"{_EXAMPLE[role]}; write logs to stderr (help(wslab.external) has the protocol)")

    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise refuse("not UTF-8") from None
    else:
        text = raw
    text = text.removesuffix("\n").removesuffix("\r")
    if not text.strip():
        raise refuse("a blank line")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise refuse("not JSON") from None
    if not isinstance(value, dict):
        raise refuse("not a JSON object")
    op = value.get("op")
    ops = _OPS[role]
    if op not in ops:
        raise refuse(f"unknown op {op!r}; a {role} writes one of {', '.join(ops)}")
    spec = ops[op]
    extra = sorted(set(value) - {"op", *spec})
    if extra:
        raise refuse(f"{op} has no field {extra[0]!r} (its fields: "
                     f"{', '.join(spec) if spec else 'none'})")
    fields: dict[str, Any] = {}
    for name, (types, required) in spec.items():
        if name not in value:
            if required:
                raise refuse(f"{op} needs the field {name!r}")
            continue
        field = value[name]
        ok = isinstance(field, types) and not isinstance(field, bool)
        if ok and name in ("n", "client"):
            ok = field >= (1 if name == "n" else 0)
        if not ok:
            kind = {"n": "an integer >= 1", "client": "an integer >= 0",
                    "ref": "a number or a string"}.get(name, "a string")
            raise refuse(f"{op}.{name} must be {kind}, got {field!r}")
        fields[name] = field
    return Line(op, fields)


def encode(op: str, **fields: Any) -> bytes:
    """One line from the lab to a process."""
    return json.dumps({"op": op, **fields}).encode() + b"\n"


# Commands and designs ---------------------------------------------------------------

NODE_HINT = "install Node.js 18 or later (https://nodejs.org, or your system's nodejs package)"
NODE_DIR = Path(__file__).resolve().parent.parent / "node"  # the course's Node.js designs


def node_version() -> int | None:
    """The major version of the ``node`` on this machine's PATH, or None."""
    if shutil.which("node") is None:
        return None
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=20)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def why_no_node() -> str | None:
    """None when the course's Node.js designs can run here; else what is missing
    and what to install, in one sentence."""
    version = node_version()
    if version is None or version < 18:
        found = f" (found Node.js {version})" if version else ""
        return (f"Node.js 18 or later is not installed{found}: {NODE_HINT}, then run `make lab` "
                "or `make test`, which install the Node designs' dependencies (npm ci in node/)")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        return "node/node_modules is missing: run `make lab` or `make test` (or `cd node && npm ci`)"
    return None


def node_pair(kind: str, **options: Any) -> "ExternalDesign":
    """The course's Node.js pair ``kind`` (``"naive"`` or ``"production"``) as a design."""
    return external_design(f"node {kind}_server.js", f"node {kind}_client.js", cwd=NODE_DIR,
                           name=f"node_{kind}", **options)


@dataclass(frozen=True)
class Command:
    """A command line to run a design's side: its words, the folder it runs in, as given."""

    argv: tuple[str, ...]
    cwd: str
    text: str

    @classmethod
    def parse(cls, text: str, *, role: str, cwd: "str | Path | None" = None) -> "Command":
        """The command ``text`` (split like a shell's words), run in ``cwd`` (the
        current folder by default); raises :class:`DesignContractError` when it
        is empty or its program cannot be found."""
        if not isinstance(text, str) or not text.strip():
            raise DesignContractError(f"the {role} command is empty: give a command line, "
                                      f"such as 'node {role}.js'")
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            raise DesignContractError(f"the {role} command {text!r} cannot be split into "
                                      f"words: {exc}") from None
        folder = Path(cwd).resolve() if cwd is not None else Path.cwd()
        program = argv[0]
        if "/" in program:
            found = folder / program
            if not found.is_file() or not os.access(found, os.X_OK):
                raise DesignContractError(
                    f"the {role} command {text!r}: no executable file {program!r} in {folder}")
        elif shutil.which(program) is None:
            hint = f" ({NODE_HINT})" if program in ("node", "nodejs", "npm") else ""
            raise DesignContractError(
                f"the {role} command {text!r}: no program {program!r} on this machine's "
                f"PATH{hint}")
        return cls(argv, str(folder), text)

    def __str__(self) -> str:
        return self.text


async def _process_server(websocket: Any, app: ServerApp) -> None:  # pragma: no cover
    """Stands for a server that is a process: the lab runs the command instead."""
    raise RunError("this design's server is a process; the lab runs its command")


class ExternalClient:
    """A client that is a process: the design contract's ``client(app)``, which runs
    the command for one lab client and bridges the line protocol to ``app``."""

    def __init__(self, command: Command) -> None:
        self.command = command

    def __repr__(self) -> str:
        return f"ExternalClient({self.command.text!r})"

    async def __call__(self, app: ClientApp) -> None:
        processes = _current.get()
        if processes is None:
            raise RunError("a client process runs only inside a lab run (wslab.run, wslab.grade)")
        await processes.run_client(self.command, app)


@dataclass(frozen=True)
class ExternalDesign(Design):
    """A :class:`~wslab.contract.Design` one side or both of which are commands
    (:func:`external_design` makes one). ``server_command`` / ``client_command``
    are None for a side that is a Python design's."""

    server_command: Command | None = None
    client_command: Command | None = None


def is_external(design: Any) -> bool:
    """Whether ``design`` runs a process (and so runs in real time)."""
    return isinstance(design, ExternalDesign)


def _side(given: Any, role: str, cwd: "str | Path | None") -> "Command | Design":
    """A side as given: a design name, a ``.py`` design file or a Design is that
    Python design; any other string is a command."""
    from .designs import DESIGNS, get_design  # (lazily: designs import the loader)

    if isinstance(given, Command):
        return given
    if isinstance(given, Design):
        return given
    if isinstance(given, (str, Path)):
        text = str(given).strip()
        if text in DESIGNS:
            return DESIGNS[text]
        if text.endswith(".py") and " " not in text:
            return get_design(Path(cwd or ".") / text)
        return Command.parse(text, role=role, cwd=cwd)
    raise DesignContractError(f"the {role} must be a command line, a design name or a Design, "
                              f"got {given!r}")


def _short(side: "Command | Design") -> str:
    if isinstance(side, Design):
        return side.name
    named = [w for w in side.argv[1:] if not w.startswith("-")]
    return Path(named[-1] if named else side.argv[0]).stem


def external_design(server: Any, client: Any, *, name: str | None = None,
                    cwd: "str | Path | None" = None, description: str = "",
                    stop_grace_s: float | None = None) -> ExternalDesign:
    """A design whose ``server`` and/or ``client`` is a command (see the module
    docstring): each a command line (run in ``cwd``, the current folder by
    default), or a design name, ``.py`` design file or :class:`Design`, whose
    side runs in the lab's process. At least one must be a command."""
    server_side, client_side = _side(server, "server", cwd), _side(client, "client", cwd)
    if isinstance(server_side, Design) and isinstance(client_side, Design):
        raise DesignContractError("neither the server nor the client is a command: grade the "
                                  "Python design itself")
    name = name or f"{_short(server_side)}+{_short(client_side)}"
    handler = server_side.handler if isinstance(server_side, Design) else _process_server
    client_fn = (client_side.client if isinstance(client_side, Design)
                 else ExternalClient(client_side))
    if stop_grace_s is None:
        stop_grace_s = client_side.stop_grace_s if isinstance(client_side, Design) else STOP_GRACE_S
    runs = [f"server `{server_side}`" if isinstance(server_side, Command) else None,
            f"client `{client_side}`" if isinstance(client_side, Command) else None]
    return ExternalDesign(
        name, handler=handler, client=client_fn,
        serve_options=server_side.serve_options if isinstance(server_side, Design) else {},
        description=description or ("Runs " + " and ".join(r for r in runs if r)
                                    + " as processes, in real time."),
        stop_grace_s=stop_grace_s,
        server_command=server_side if isinstance(server_side, Command) else None,
        client_command=client_side if isinstance(client_side, Command) else None)


def load_design_file(path: "str | Path") -> ExternalDesign:
    """The design a ``.toml`` file of commands names (see the module docstring):
    ``server`` and ``client`` (commands run in the file's folder, or design
    names), and optionally ``name``, ``description``, ``stop_grace_s``."""
    path = Path(path)
    if not path.is_file():
        raise DesignContractError(f"no such file: {str(path)!r} (a design file of commands "
                                  "is a .toml file naming server and client)")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DesignContractError(f"{path.name} is not valid TOML: {exc}") from None
    known = {"name", "description", "server", "client", "stop_grace_s"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise DesignContractError(f"{path.name}: unknown key {unknown[0]!r} (a design file of "
                                  f"commands has {', '.join(sorted(known))})")
    missing = [k for k in ("server", "client") if not isinstance(table.get(k), str)]
    if missing:
        raise DesignContractError(f"{path.name} must name the {' and the '.join(missing)}: "
                                  f'{missing[0]} = "node {missing[0]}.js" (a command, run in '
                                  "the file's folder) or a design name such as \"production\"")
    return external_design(table["server"], table["client"], name=table.get("name", path.stem),
                           cwd=path.parent, description=table.get("description", ""),
                           stop_grace_s=table.get("stop_grace_s"))


# What the lab asks of a run with processes -----------------------------------------------


def clock_for(design: Any, asked: str | None) -> str | None:
    """The clock a run of ``design`` keeps: ``asked`` for a Python design; real time
    for a design with a process, which refuses any other clock asked for."""
    if not is_external(design):
        return asked
    if asked not in (None, "real"):
        raise ConfigError(
            f"design {design.name!r} runs processes, which keep the machine's clock: lab "
            f"time ({asked!r}) cannot apply to them. Leave the clock out (a design with a "
            "process runs in real time) or pass clock='real'")
    return "real"


def not_applicable(design: Any, scenario: Any) -> str | None:
    """Why ``scenario`` cannot run ``design``'s processes, or None when it can."""
    if is_external(design) and design.client_command is not None \
            and scenario.clients > MAX_CLIENT_PROCESSES:
        return (f"{scenario.clients} clients would be {scenario.clients} processes of "
                f"`{design.client_command}`; the lab runs at most {MAX_CLIENT_PROCESSES} "
                "client processes")
    return None


def check_scenario(design: Any, scenario: Any) -> None:
    """Raise :class:`ConfigError` when ``scenario`` cannot run ``design``'s processes."""
    why = not_applicable(design, scenario)
    if why is not None:
        raise ConfigError(f"design {design.name!r} × scenario {scenario.name!r}: {why}")


# Processes ------------------------------------------------------------------------------


def _free_port() -> int:
    """A port free on 127.0.0.1 now (the server process binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """The live processes (zombies aside) of process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether the group has anybody
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class _Child:
    """One process of a design: started in a process group of its own, its stdout
    read line by line, its stderr kept (the last lines) and logged, and stopped
    with SIGTERM, then SIGKILL, its whole group with it."""

    def __init__(self, command: Command, *, env: dict[str, str], who: str,
                 ctx: RunContext) -> None:
        self.command, self.env, self.who, self.ctx = command, env, who, ctx
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self.lines_read = 0
        self.killed = False  # SIGKILL was needed
        self.stopping = False  # the lab asked it to stop (stop line, SIGTERM)
        self.final = False  # stopped at the run's end (not a restart): if killed, left running
        self._stderr_task: asyncio.Task | None = None
        self.stdout: Any = None  # lines(), once started: read by whoever reads it first
        self.first_line: bytes | None = None  # read before its bridge ran (a client's readiness)
        self.exit_logged = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        env = {**os.environ, **self.env}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command.argv, cwd=self.command.cwd, env=env, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, limit=MAX_LINE_BYTES)
        except OSError as exc:
            raise ExternalProcessError(
                f"cannot start the {self.who} `{self.command}` in {self.command.cwd}: "
                f"{exc.strerror or exc}") from None
        self._stderr_task = asyncio.get_running_loop().create_task(
            self._read_stderr(), name=f"wslab stderr of {self.who}", context=_lab_context())
        self.stdout = self._lines()
        self.log("started", command=self.command.text, **{
            k.removeprefix("WSLAB_").lower(): v for k, v in self.env.items()
            if k in ("WSLAB_PORT", "WSLAB_URL")})

    def log(self, event: str, **fields: Any) -> None:
        """A moment of its life in ``run.logs``: ``{"process": "server", "pid": ...,
        "event": "started" | "exited", ...}``."""
        self.ctx.logs.append({"t": round(self.ctx.now(), 4), "process": self.who,
                              "pid": self.pid, "event": event, **fields})

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # a very long line: its end is read as the next one
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip()
            self.stderr.append(text)
            logs = self.ctx.logs
            if len(logs) < STDERR_LINES_LOGGED:
                logs.append({"t": round(self.ctx.now(), 4), "process": self.who,
                             "pid": self.pid, "stderr": text})

    async def lines(self):
        """The lines of its stdout, until it closes it (the first line, if it was read
        ahead, included); a line too long is refused."""
        if self.first_line is not None:
            first, self.first_line = self.first_line, None
            yield first
        async for raw in self.stdout:
            yield raw

    async def _lines(self):
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            try:
                raw = await self.proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raise ProtocolError(f"{self.who} wrote a line longer than {MAX_LINE_BYTES} "
                                    "bytes on its stdout") from None
            if not raw:
                return
            self.lines_read += 1
            yield raw

    async def write(self, data: bytes) -> bool:
        """Write a line to its stdin; False when it is gone (nobody reads any more)."""
        if self.proc is None or self.proc.stdin is None or not self.alive:
            return False
        try:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False
        return True

    def describe_exit(self, before: str = "") -> str:
        """"exited with code 1" / "was killed by signal 9" (and ``before``: "before
        it ..."), with its last stderr lines."""
        code = self.proc.returncode if self.proc is not None else None
        text = (f"was killed by signal {-code}" if code is not None and code < 0
                else f"exited with code {code}") + (f" {before}" if before else "")
        if self.stderr:
            text += "; the last lines of its stderr:\n    " + "\n    ".join(self.stderr)
        else:
            text += " (its stderr was empty)"
        return text

    async def wait_exit(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for it to exit; whether it has."""
        if self.proc is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout_s)
        except TimeoutError:
            return False
        return True

    def signal(self, sig: int) -> None:
        """Send ``sig`` to its whole process group (nothing if there is none left)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def terminate(self, grace_s: float) -> bool:
        """SIGTERM to its group, SIGKILL after ``grace_s`` if it is still running (or
        any process of its group is); returns whether SIGKILL was needed. Returns
        when no process of the group is left, or raises :class:`RunError`."""
        if self.proc is None:
            return False
        self.stopping = True
        if self.alive:
            self.signal(signal.SIGTERM)
            await self.wait_exit(grace_s)
        needed = await self.kill_group()
        if self._stderr_task is not None:
            await asyncio.wait([self._stderr_task], timeout=0.5)
            self._stderr_task.cancel()
        return needed

    async def kill_group(self) -> bool:
        """SIGKILL whatever is left of its group and wait until nothing is;
        whether anything was left."""
        if self.proc is None:
            return False
        loop = asyncio.get_running_loop()
        needed = self.alive or bool(group_members(self.proc.pid))
        if needed:
            self.killed = True
            self.signal(signal.SIGKILL)
            await self.wait_exit(KILL_WAIT_S)
            deadline = loop.time() + KILL_WAIT_S
            while group_members(self.proc.pid) and loop.time() < deadline:
                self.signal(signal.SIGKILL)
                await asyncio.sleep(0.01)
        transport = getattr(self.proc, "_transport", None)
        if transport is not None:
            transport.close()  # its pipes: nothing of it stays open in the lab
        if not self.exit_logged and not self.alive:
            self.exit_logged = True
            self.log("exited", code=self.proc.returncode, killed=self.killed)
        left = group_members(self.proc.pid)
        if left or self.alive:
            raise RunError(f"the {self.who} `{self.command}` (pid {self.proc.pid}) could not be "
                           f"stopped: processes {left or [self.proc.pid]} of its group are still "
                           "running after SIGKILL")
        return needed


_current: contextvars.ContextVar["Processes | None"] = contextvars.ContextVar(
    "wslab_processes", default=None)


class Processes:
    """The processes of one run (none for a Python design): the server's (an
    :class:`ExternalServer`) and the clients' (each run by its lab client's
    task, :meth:`run_client`).

    The lab creates it as the run begins (it becomes the run's, for the client
    tasks started after), awaits :meth:`watch` in the run's task group (it
    raises the first :class:`~wslab.errors.ExternalProcessError`, which stops
    the run), and :meth:`close` when the run ends, however it ends."""

    def __init__(self, design: Design, ctx: RunContext) -> None:
        self.design, self.ctx = design, ctx
        self.children: list[_Child] = []
        self.clients: dict[int, _Child] = {}  # lab client -> its process
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.external = is_external(design)
        self.store = tempfile.mkdtemp(prefix="wslab-store-") if self.external else None
        _current.set(self)

    def server(self, down: dict[int, _Outbox]) -> "ExternalServer | None":
        """The server process of the design, if its server is a command."""
        if not self.external or self.design.server_command is None:
            return None
        return ExternalServer(self, self.design.server_command, down)

    def child(self, command: Command, env: dict[str, str], who: str) -> _Child:
        child = _Child(command, env={**env, "WSLAB_SEED": str(self.ctx.seed)}, who=who,
                       ctx=self.ctx)
        self.children.append(child)
        return child

    def store_of(self, name: str) -> str:
        assert self.store is not None
        folder = Path(self.store) / name
        folder.mkdir(exist_ok=True)
        return str(folder)

    def fatal(self, exc: BaseException) -> None:
        """Stop the run with ``exc`` (the first one only)."""
        if not self.failed.done():
            self.failed.set_exception(exc)

    async def watch(self) -> None:
        """Raise the first fatal error of a process; wait until cancelled otherwise."""
        await asyncio.shield(self.failed)

    async def close(self) -> int:
        """Kill whatever is left, wait until every process group is empty, remove the
        stores; how many processes had to be killed at the end (left running)."""
        left = 0
        try:
            for child in self.children:
                if child.alive:
                    child.signal(signal.SIGKILL)  # at once, before any await can be cancelled
            for child in self.children:
                await child.kill_group()
            left = sum(child.killed for child in self.children if child.final)
        finally:
            if self.failed.done() and not self.failed.cancelled():
                self.failed.exception()  # retrieved: reported through the run already
            if self.store is not None:
                shutil.rmtree(self.store, ignore_errors=True)
        return left

    # The client processes ------------------------------------------------------------

    async def start_clients(self, apps: list[ClientApp], proxy: Any, server: Any) -> None:
        """Start a process for each lab client (when the design's client is a command)
        and wait until each has written its first line; then lab time starts again
        from 0 (what the proxy and the server recorded meanwhile moves with it).

        Raises :class:`~wslab.errors.ExternalProcessError` for a client that does
        not start, exits, or writes nothing within :data:`CLIENT_START_TIMEOUT_S`."""
        command = self.design.client_command if self.external else None
        if command is None:
            return
        try:
            async with asyncio.TaskGroup() as tasks:
                for app in apps:
                    tasks.create_task(self._start_client(command, app),
                                      name=f"wslab start client {app.client_id}")
        except BaseExceptionGroup as group:
            raise _first(group) from None
        loop = asyncio.get_running_loop()
        shift = loop.time() - self.ctx.t0
        self.ctx.t0 += shift
        proxy.t0 += shift
        proxy.events[:] = [(round(t - shift, 6), c, e) for t, c, e in proxy.events]
        server.opens[:] = [(round(t - shift, 6), c) for t, c in server.opens]
        self.ctx.client_events[:] = [(round(t - shift, 6), c, e)
                                     for t, c, e in self.ctx.client_events]

    async def _start_client(self, command: Command, app: ClientApp) -> None:
        child = self.child(command, {"WSLAB_URL": app.uri, "WSLAB_CLIENT": str(app.client_id),
                                     "WSLAB_STORE": self.store_of(f"client-{app.client_id}")},
                           who=f"client {app.client_id}")
        self.clients[app.client_id] = child
        await child.start()
        try:
            child.first_line = await asyncio.wait_for(anext(child.stdout),
                                                      CLIENT_START_TIMEOUT_S)
        except StopAsyncIteration:
            await child.wait_exit(TERM_GRACE_S)
            raise ExternalProcessError(
                f"the client process `{command}` (client {app.client_id}) "
                f"{child.describe_exit('before it wrote a line of the protocol')}") from None
        except TimeoutError:
            raise ExternalProcessError(
                f"the client process `{command}` (client {app.client_id}) wrote nothing within "
                f"{CLIENT_START_TIMEOUT_S:g} s of starting: a client writes a line as it "
                'starts, its first pull ({"op": "pull"}) or its connection ({"op": "open"})'
                + (f"; the last lines of its stderr:\n    " + "\n    ".join(child.stderr)
                   if child.stderr else "")) from None

    async def run_client(self, command: Command, app: ClientApp) -> None:
        """Bridge the process of lab client ``app.client_id`` (:meth:`start_clients`
        started it) to ``app`` until the run stops it."""
        try:
            if app.client_id not in self.clients:  # not started ahead: start it now
                await self._start_client(command, app)
            await _ClientBridge(app, self.clients[app.client_id]).run()
        except ExternalProcessError as exc:
            self.fatal(exc)
        finally:
            child = self.clients.get(app.client_id)
            if child is not None:
                child.final = app.stopping.is_set() or self.ctx.stopping
                await child.terminate(TERM_GRACE_S)


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first exception in ``group`` (nested groups opened) that is not a
    cancellation; the first cancellation when there is nothing else."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        e = pending.pop(0)
        if isinstance(e, BaseExceptionGroup):
            pending[:0] = e.exceptions
        else:
            leaves.append(e)
    real = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    return (real or leaves or [group])[0]


def _lab_context() -> contextvars.Context:
    """A copy of the current context in which the code running is the lab's, not
    a party's: the bridges' tasks are not the design's work."""
    context = contextvars.copy_context()
    context.run(current_party.set, None)
    return context


class _ClientBridge:
    """The line protocol between one client process and its :class:`ClientApp`."""

    def __init__(self, app: ClientApp, child: _Child) -> None:
        self.app, self.child, self.ctx = app, child, app._run  # noqa: SLF001 - the lab's own
        self.credit: float = 0
        self.more = asyncio.Event()
        self.deliveries: asyncio.Queue[tuple[Any, str]] = asyncio.Queue()
        self.open = False

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                context = _lab_context()
                n = self.app.client_id
                self.feeder = tasks.create_task(self._feed(), name=f"wslab feeder {n}",
                                                context=context)
                helpers = [self.feeder,
                           tasks.create_task(self._deliver(), name=f"wslab deliveries {n}",
                                             context=context),
                           tasks.create_task(self._stop_when_asked(), name=f"wslab stop {n}",
                                             context=context)]
                try:
                    await self._read()
                finally:
                    for helper in helpers:
                        helper.cancel()
        except BaseExceptionGroup as group:
            raise _first(group) from None
        await self.child.wait_exit(TERM_GRACE_S)
        if self.child.stopping or self.app.stopping.is_set() or self.ctx.stopping:
            return
        if self.child.lines_read == 0:
            raise ExternalProcessError(
                f"the client process `{self.child.command}` (client {self.app.client_id}) "
                f"{self.child.describe_exit('before it wrote a line of the protocol')}")
        raise ProcessExited(f"the client process (pid {self.child.pid}) "
                            f"{self.child.describe_exit()}")

    async def _read(self) -> None:
        who = f"client {self.app.client_id}'s process `{self.child.command}`"
        async for raw in self.child.lines():
            line = parse_line(raw, role="client", who=who, number=self.child.lines_read)
            op, fields = line.op, line.fields
            if op == "pull":
                self.credit = fields.get("n", math.inf) + self.credit
                self.more.set()
            elif op == "deliver":
                self.deliveries.put_nowait((fields["ref"], fields["msg"]))
            elif op == "reject":
                self.app.reject(fields["msg"], fields["reason"])
            elif op == "open":
                self.open = True
                self.ctx.record_client_event(self.app.client_id, "open")
            elif op == "close":
                self.ctx.record_client_event(self.app.client_id, "close")

    async def _feed(self) -> None:
        """Hand the process a message for each one it pulled, as produced (until
        the run stops: then the stopper cancels this task, never while it holds a
        message it took)."""
        while True:
            while self.credit < 1:
                self.more.clear()
                await self.more.wait()
            message = await self.app.next_message()
            if message is None:
                return
            self.credit -= 1
            if not await self.child.write(encode("send", msg=message)):
                return

    async def _deliver(self) -> None:
        """The client application: each delivery in turn, answered done."""
        while True:
            ref, message = await self.deliveries.get()
            await self.app.deliver(message)
            await self.child.write(encode("done", ref=ref))

    async def _stop_when_asked(self) -> None:
        await self.app.stopping.wait()
        self.child.stopping = True
        self.feeder.cancel()  # no send after the stop
        await asyncio.wait([self.feeder])
        await self.child.write(encode("stop"))


# The server process ---------------------------------------------------------------------


class ExternalServer:
    """A server that is a process, in the place of :class:`wslab.lab.LabServer`.

    ``async with ExternalServer(...) as port:`` starts the command with
    ``WSLAB_PORT`` (a free port on 127.0.0.1), waits until the port accepts
    connections (then sets lab time 0), and gives the port; leaving the block
    stops the process (SIGTERM, then SIGKILL). :meth:`stop` and :meth:`start`
    are a real restart: a new process, on the same port and store. ``pids``
    lists every process it started, in order.
    """

    def __init__(self, processes: Processes, command: Command, down: dict[int, _Outbox]) -> None:
        self.processes, self.command, self.down = processes, command, down
        self.ctx = processes.ctx
        self.port = _free_port()
        self.store = processes.store_of("server")
        self.opens: list[tuple[float, int | None]] = []
        self.pids: list[int] = []
        self.life: _ServerLife | None = None

    async def __aenter__(self) -> int:
        await self.start()
        # Lab time 0: the moment the server is ready, as an in-process server is at once.
        self.ctx.t0 = asyncio.get_running_loop().time()
        return self.port

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop(1001, grace_s=TERM_GRACE_S, final=True)

    def connections(self) -> list[Any]:
        return []  # in another process: the lab sees them at the proxy

    async def start(self) -> int:
        """Start the command (a no-op while it runs); the port, once it accepts connections."""
        if self.life is not None:
            return self.port
        first = not self.pids
        child = self.processes.child(self.command, {
            "WSLAB_HOST": HOST, "WSLAB_PORT": str(self.port), "WSLAB_STORE": self.store},
            who="server")
        try:
            await child.start()
            assert child.pid is not None
            self.pids.append(child.pid)
            self.life = life = _ServerLife(self, child)
            life.task = asyncio.get_running_loop().create_task(
                life.run(), name=f"wslab server process {child.pid}", context=_lab_context())
            await self._until_listening(child)
        except BaseException as exc:  # cancelled too: nothing of a failed start stays running
            await self.stop(grace_s=0.0)
            if first or not isinstance(exc, ExternalProcessError):
                raise
            raise RunError(f"the server did not come back after a restart at "
                           f"{self.ctx.now():.2f} s: {exc}") from None
        return self.port

    async def _until_listening(self, child: _Child) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SERVER_START_TIMEOUT_S
        while True:
            if self.processes.failed.done():
                await self.processes.failed  # raises the process's fatal error
            if not child.alive:
                raise ExternalProcessError(
                    f"the server `{self.command}` "
                    + child.describe_exit(f"before it listened on port {self.port} (it must "
                                          "listen on $WSLAB_HOST:$WSLAB_PORT)"))
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 0.5)
            except (OSError, TimeoutError):
                if loop.time() >= deadline:
                    raise ExternalProcessError(
                        f"the server `{self.command}` never opened port {self.port} within "
                        f"{SERVER_START_TIMEOUT_S:g} s: it must listen on $WSLAB_HOST:$WSLAB_PORT "
                        f"(127.0.0.1:{self.port})"
                        + (f"; the last lines of its stderr:\n    " + "\n    ".join(child.stderr)
                           if child.stderr else "")) from None
                await asyncio.sleep(_PORT_POLL_S)
                continue
            writer.close()
            return

    async def stop(self, code: int = 1001, *, grace_s: float = TERM_GRACE_S,
                   final: bool = False) -> None:
        """SIGTERM, SIGKILL after ``grace_s``; returns when no process of its group is
        left. (``code`` is the process's to choose: a signal carries none.)"""
        life, self.life = self.life, None
        if life is None:
            return
        life.child.final = final
        try:
            await life.child.terminate(max(0.0, grace_s))
        finally:
            if life.task is not None:
                await asyncio.wait([life.task], timeout=1.0)
                life.task.cancel()


class _ServerLife:
    """The line protocol between one server process (one life of the server:
    a restart starts another) and the server application."""

    def __init__(self, server: ExternalServer, child: _Child) -> None:
        self.server, self.child, self.ctx = server, child, server.ctx
        self.task: asyncio.Task | None = None
        self.apps: dict[int | None, ServerApp] = {}
        self.credit: dict[int, float] = {}
        self.more: dict[int, asyncio.Event] = {}
        self.queues: dict[int | None, asyncio.Queue[tuple[Any, str]]] = {}
        self.tasks: asyncio.TaskGroup | None = None
        self.helpers: list[asyncio.Task] = []

    def app(self, client: int | None) -> ServerApp:
        if client not in self.apps:
            outbox = self.server.down.get(client) if client is not None else None
            self.apps[client] = ServerApp(self.ctx, client, outbox, {}, {})
        return self.apps[client]

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self.tasks = tasks
                try:
                    await self._read()
                finally:
                    for helper in self.helpers:
                        helper.cancel()
        except BaseExceptionGroup as group:
            error = _first(group)
            if isinstance(error, asyncio.CancelledError):
                raise
            if not isinstance(error, ExternalProcessError):  # a bug of the lab's: the run says so
                error = RunError(f"the lab failed serving the server process: {error!r}")
            self.server.processes.fatal(error)
            return
        await self.child.wait_exit(TERM_GRACE_S)
        if not self.child.stopping and not self.ctx.stopping and self.child.lines_read:
            self.ctx.fail("server process", ProcessExited(
                f"the server process (pid {self.child.pid}) {self.child.describe_exit()}"),
                work="server")

    async def _read(self) -> None:
        who = f"the server process `{self.child.command}`"
        async for raw in self.child.lines():
            line = parse_line(raw, role="server", who=who, number=self.child.lines_read)
            op, fields = line.op, line.fields
            if op == "open":
                self.server.opens.append((round(self.ctx.now(), 6), fields["client"]))
            elif op == "pull":
                self._pull(fields["client"], fields.get("n", math.inf))
            elif op == "process":
                self._process(fields["ref"], fields["msg"])
            elif op == "reject":
                self.app(None).reject(fields["msg"], fields["reason"])

    def _pull(self, client: int, n: float) -> None:
        assert self.tasks is not None
        if client not in self.credit:
            self.credit[client], self.more[client] = 0, asyncio.Event()
            self.helpers.append(self.tasks.create_task(self._push(client),
                                                       name=f"wslab pusher {client}"))
        self.credit[client] += n
        self.more[client].set()

    async def _push(self, client: int) -> None:
        """Push the process a message for client ``client`` for each one it pulled."""
        app, more = self.app(client), self.more[client]
        while True:
            while self.credit[client] < 1:
                more.clear()
                await more.wait()
            message = await app.next_message()
            if message is None:
                return
            self.credit[client] -= 1
            if not await self.child.write(encode("push", client=client, msg=message)):
                return

    def _process(self, ref: Any, message: str) -> None:
        """Queue a message for the application, in order per client (each client
        has its own consumer, as the SlowConsumer fault has)."""
        assert self.tasks is not None
        msg_id = message_id(message)
        source = split_id(msg_id) if msg_id is not None else None
        client = int(source[0][1:]) if source is not None and source[0][1:].isdigit() else None
        if client not in self.queues:
            self.queues[client] = asyncio.Queue()
            self.helpers.append(self.tasks.create_task(
                self._work(client), name=f"wslab server application {client}"))
        self.queues[client].put_nowait((ref, message))

    async def _work(self, client: int | None) -> None:
        app, queue = self.app(client), self.queues[client]
        while True:
            ref, message = await queue.get()
            reply = await app.process(message)
            await self.child.write(encode("done", ref=ref, reply=reply))
