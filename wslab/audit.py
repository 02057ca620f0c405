"""A static audit of WebSocket code, for the bugs assistants write most often.

``audit(path_or_source)`` parses Python source with :mod:`ast` (the code is
never imported or run) and applies a registry of small rules. Each rule is a
heuristic: its docstring says what it looks for and what it cannot see. A
finding names the line, what is wrong, why it matters in production and the
lesson that teaches the fix::

    >>> report = audit("data/submissions/tutorial_echo.py")
    >>> print(report.text())

A clean report means none of these patterns was found, not that the code is
correct: the lab's runs (``wslab.run``) are what measure it. The audit reads
Python only: a ``.js`` (or any other non-Python) file is refused with a message
that says so; code in another language is measured as a process
(:mod:`wslab.external`).
"""

from __future__ import annotations

import ast
import html
import os
import re
import sys
import tokenize
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .course import lesson
from .errors import ConfigError
from . import pyparse

__all__ = ["AuditReport", "Finding", "LESSONS", "RULES", "audit"]

_LESSON_OF_RULE = {
    "fire-and-forget-send": "04", "task-never-awaited": "07", "receive-loop-no-shutdown": "08",
    "unbounded-queue": "05", "no-keepalive-settings": "06", "keepalive-disabled": "06",
    "no-reconnection": "03", "reconnect-without-backoff": "03", "reconnect-without-jitter": "03",
    "outdated-handler-signature": "01", "gather-without-cancel": "07",
    "asyncio-run-in-notebook": "00", "shared-mutable-state": "07",
    "print-instead-of-logging": "11",
}
# rule id -> the notebook that teaches the fix
LESSONS: dict[str, str] = {rule_id: lesson(number).notebook
                           for rule_id, number in _LESSON_OF_RULE.items()}


@dataclass(frozen=True)
class Finding:
    """One problem at one line: ``rule`` (its id), what is wrong, why it matters, where to learn the fix."""

    rule: str
    line: int
    message: str
    why: str
    lesson: str

    def to_json(self) -> dict:
        return {"rule": self.rule, "line": self.line, "message": self.message,
                "why": self.why, "lesson": self.lesson}


@dataclass
class AuditReport:
    """The findings of one audit, sorted by line."""

    findings: list[Finding]
    source_name: str

    @property
    def passed(self) -> bool:
        return not self.findings

    @property
    def rules(self) -> list[str]:
        """The rule ids found, sorted, each once."""
        return sorted({f.rule for f in self.findings})

    def text(self) -> str:
        """A plain-text table for a terminal."""
        if self.passed:
            return f"{self.source_name}: no finding ({len(RULES)} checks)"
        head = f"{self.source_name}: {len(self.findings)} finding(s)"
        width = max(len(f.rule) for f in self.findings)
        lines = [head, f"{'line':>5}  {'rule':<{width}}  message"]
        for f in self.findings:
            lines.append(f"{f.line:>5}  {f.rule:<{width}}  {f.message}")
            lines.append(f"{'':>5}  {'':<{width}}  why: {f.why}")
            lines.append(f"{'':>5}  {'':<{width}}  lesson: {f.lesson}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        name = html.escape(self.source_name)
        if self.passed:
            return f"<p><b>{name}</b>: no finding ({len(RULES)} checks)</p>"
        rows = "".join(
            f"<tr><td>{f.line}</td><td><code>{html.escape(f.rule)}</code></td>"
            f"<td>{html.escape(f.message)}</td><td>{html.escape(f.why)}</td>"
            f"<td><code>{html.escape(f.lesson)}</code></td></tr>"
            for f in self.findings)
        return (f"<p><b>{name}</b>: {len(self.findings)} finding(s)</p>"
                "<table><thead><tr><th>line</th><th>rule</th><th>what is wrong</th>"
                f"<th>why it matters</th><th>lesson</th></tr></thead><tbody>{rows}</tbody></table>")

    def to_json(self) -> dict:
        return {"source": self.source_name, "passed": self.passed,
                "findings": [f.to_json() for f in self.findings]}


# --------------------------------------------------------------------------
# The module being audited, with what several rules need.


class _Module:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.imports_websockets = any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "websockets" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "websockets")
            for n in ast.walk(tree))

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        while node in self.parents:
            node = self.parents[node]
            yield node

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        for parent in self.ancestors(node):
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return parent if not isinstance(parent, ast.Lambda) else None
        return None

    def ancestors_in_function(self, node: ast.AST) -> Iterator[ast.AST]:
        """Ancestors up to (not including) the enclosing function or class."""
        for parent in self.ancestors(node):
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                return
            yield parent

    def calls(self) -> Iterator[ast.Call]:
        return (n for n in ast.walk(self.tree) if isinstance(n, ast.Call))


def _walk_local(node: ast.AST) -> Iterator[ast.AST]:
    """Like ast.walk, without descending into nested functions, lambdas or classes."""
    todo = list(ast.iter_child_nodes(node))
    while todo:
        child = todo.pop()
        yield child
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(child))


def _name(node: ast.AST) -> str:
    """The last identifier of a name or attribute (``self.ws`` -> ``ws``), else ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _dotted(node: ast.AST) -> str:
    """``asyncio.create_task`` for that expression, "" when it is not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _is_websocket(node: ast.AST) -> bool:
    """A name that reads as a WebSocket connection: ws, websocket, conn, self.websocket..."""
    name = _name(node).lower()
    return name in {"ws", "websocket", "conn", "connection"} or name.endswith(("websocket", "_ws"))


def _is_asyncio(call: ast.Call, *names: str) -> bool:
    """``asyncio.<name>(...)`` for one of ``names``."""
    return _dotted(call.func) in {f"asyncio.{n}" for n in names}


def _keyword(call: ast.Call, name: str) -> ast.keyword | None:
    return next((k for k in call.keywords if k.arg == name), None)


def _has_double_star(call: ast.Call) -> bool:
    return any(k.arg is None for k in call.keywords)


def _is_none(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _is_connect(call: ast.Call) -> bool:
    return _name(call.func) == "connect"


def _is_serve(call: ast.Call) -> bool:
    return _name(call.func) == "serve"


def _handles_close(handlers: list[ast.ExceptHandler]) -> bool:
    """An except clause that catches a closed connection or a cancellation."""
    for handler in handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        for t in types:
            name = _name(t)
            if name == "BaseException" or name.startswith("ConnectionClosed") or name == "CancelledError":
                return True
    return False


def _names_called_in(node: ast.AST) -> set[str]:
    return {_name(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)} - {""}


# --------------------------------------------------------------------------
# The rules: one registry, one function per check.

Check = Callable[[_Module], Iterable[Finding]]
RULES: dict[str, Check] = {}


def rule(*ids: str) -> Callable[[Check], Check]:
    """Register a check under the rule ids it may report."""

    def register(check: Check) -> Check:
        for rule_id in ids:
            assert rule_id in LESSONS, rule_id
        RULES[check.__name__] = check
        check.rule_ids = ids  # type: ignore[attr-defined]
        return check

    return register


def _finding(rule_id: str, where: ast.AST | int, message: str, why: str) -> Finding:
    line = where if isinstance(where, int) else getattr(where, "lineno", 0)
    return Finding(rule_id, line, message, why, LESSONS[rule_id])


_ACK_WORD = re.compile(r"^(ack|acks|acked|acking|acknowledg\w*)$", re.IGNORECASE)


def _mentions_ack(text: str) -> bool:
    """Split an identifier or a space-free string on ``_``, punctuation and camelCase."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+", text)
    return any(_ACK_WORD.match(w) for w in words)


@rule("fire-and-forget-send")
def check_fire_and_forget_send(module: _Module) -> Iterator[Finding]:
    """``await websocket.send(...)`` in a module that never handles an acknowledgement.

    Heuristic: the module mentions no ``ack`` word in any identifier (``ack``,
    ``acked``, ``acknowledge``, ``on_ack``...) nor in any space-free string
    (a protocol tag such as ``"ack"``); prose strings and comments do not count.
    Blind spot: acknowledgements handled in another module, or under another
    name (``receipt``, ``confirm``), pass as missing; an ``ack`` variable that
    is never used passes as handling.
    """
    sends = [n for n in ast.walk(module.tree)
             if isinstance(n, ast.Await) and isinstance(n.value, ast.Call)
             and isinstance(n.value.func, ast.Attribute) and n.value.func.attr == "send"
             and _is_websocket(n.value.func.value)]
    if not sends:
        return
    for node in ast.walk(module.tree):
        texts: list[str] = []
        if isinstance(node, ast.Name):
            texts = [node.id]
        elif isinstance(node, ast.Attribute):
            texts = [node.attr]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            texts = [node.name]
        elif isinstance(node, ast.arg):
            texts = [node.arg]
        elif isinstance(node, ast.keyword) and node.arg:
            texts = [node.arg]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not any(
                c.isspace() for c in node.value):
            texts = [node.value]
        if any(_mentions_ack(t) for t in texts):
            return
    yield _finding(
        "fire-and-forget-send", min(sends, key=lambda n: n.lineno),
        f"websocket.send() is awaited ({len(sends)} place(s), first here) but nothing in the "
        "module handles an acknowledgement.",
        "send() returns once the frame is buffered, not when the peer has it: every message "
        "in flight when a connection drops is lost without a trace.")


@rule("task-never-awaited")
def check_task_never_awaited(module: _Module) -> Iterator[Finding]:
    """``asyncio.create_task(...)`` or ``asyncio.ensure_future(...)`` as a bare statement.

    Heuristic: the call is an expression statement, so its task is neither kept,
    awaited nor cancelled. ``TaskGroup.create_task`` is not flagged (the group
    keeps and awaits it). Blind spot: a task assigned to a name that is then
    never used passes; ``loop.create_task(...)`` is not checked.
    """
    for node in ast.walk(module.tree):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and _is_asyncio(node.value, "create_task", "ensure_future")):
            yield _finding(
                "task-never-awaited", node,
                f"The task from {_dotted(node.value.func)}() is neither kept, awaited nor cancelled.",
                "The event loop keeps only a weak reference: the task may be garbage-collected "
                "mid-run, its exception is never seen, and it outlives the connection it serves.")


@rule("receive-loop-no-shutdown")
def check_receive_loop_no_shutdown(module: _Module) -> Iterator[Finding]:
    """A receive loop with no path for a closed connection or a cancellation.

    Looks at ``async for ... in websocket`` and at ``while`` loops whose body
    awaits ``....recv()``. Fine when the loop has a ``break`` or ``return``, or
    when a ``try`` inside or around it (in the same function) catches
    ``ConnectionClosed*``, ``CancelledError``, ``BaseException`` (or everything)
    or has a ``finally``, or when a call of the enclosing function elsewhere
    in the same module sits in such a ``try``. Blind spot: a ``try``
    in another module's caller is not seen; ``except Exception`` does not count.
    """
    loops = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.AsyncFor) and _is_websocket(node.iter):
            loops.append(node)
        elif isinstance(node, ast.While) and any(
                isinstance(n, ast.Await) and isinstance(n.value, ast.Call)
                and _name(n.value.func) == "recv" for n in _walk_local(node)):
            loops.append(node)
    if not loops:
        return
    guarded_calls: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Try) and (_handles_close(node.handlers) or node.finalbody):
            for stmt in node.body:
                guarded_calls |= _names_called_in(stmt)
    for loop in loops:
        if any(isinstance(n, (ast.Break, ast.Return)) for n in _walk_local(loop)):
            continue
        inside = any(isinstance(n, ast.Try) and (_handles_close(n.handlers) or n.finalbody)
                     for n in _walk_local(loop))
        around = any(isinstance(a, ast.Try) and (_handles_close(a.handlers) or a.finalbody)
                     and any(loop is s or loop in ast.walk(s) for s in a.body)
                     for a in module.ancestors_in_function(loop))
        function = module.function_of(loop)
        by_caller = function is not None and function.name in guarded_calls
        if not (inside or around or by_caller):
            yield _finding(
                "receive-loop-no-shutdown", loop,
                "This receive loop has no break or return, and no try handles ConnectionClosed "
                "or CancelledError around it.",
                "An abnormal close or a shutdown raises straight out of the loop: the cleanup "
                "after it never runs and the tasks started for this connection leak.")


@rule("unbounded-queue")
def check_unbounded_queue(module: _Module) -> Iterator[Finding]:
    """``asyncio.Queue()`` (or ``LifoQueue``/``PriorityQueue``) with no maxsize, or ``maxsize=0``.

    Heuristic: no positional argument and no ``maxsize`` keyword, or a literal
    0 or negative. Blind spot: a maxsize that is 0 only at run time, a bare
    ``Queue()`` imported with ``from asyncio import Queue``, other unbounded
    buffers (``collections.deque()``, lists).
    """
    for call in module.calls():
        if not _is_asyncio(call, "Queue", "LifoQueue", "PriorityQueue"):
            continue
        size = call.args[0] if call.args else getattr(_keyword(call, "maxsize"), "value", None)
        if size is None and _has_double_star(call):
            continue
        unbounded = size is None or (
            isinstance(size, ast.Constant) and isinstance(size.value, int) and size.value <= 0) or (
            isinstance(size, ast.UnaryOp) and isinstance(size.op, ast.USub))
        if unbounded:
            yield _finding(
                "unbounded-queue", call,
                f"{_dotted(call.func)}() has no maxsize: it grows without limit.",
                "A producer faster than its consumer (or a slow peer) fills memory until the "
                "process dies, instead of slowing the producer down.")


@rule("no-keepalive-settings", "keepalive-disabled")
def check_keepalive(module: _Module) -> Iterator[Finding]:
    """``connect(...)``/``serve(...)`` with keepalive left to defaults, or switched off.

    Only in a module that imports websockets; any call named ``connect`` or
    ``serve`` (``websockets.connect``, ``app.connect``...). No ``ping_interval``
    nor ``ping_timeout`` keyword: ``no-keepalive-settings``. ``ping_interval=None``
    or ``ping_timeout=None``: ``keepalive-disabled``. A call with ``**options``
    is trusted. Blind spot: a ``connect`` of another library (a database) in
    the same module is flagged; a ``None`` held in a variable is not seen.
    """
    if not module.imports_websockets:
        return
    for call in module.calls():
        if not (_is_connect(call) or _is_serve(call)):
            continue
        what = _name(call.func)
        disabled = [k.arg for k in call.keywords
                    if k.arg in ("ping_interval", "ping_timeout") and _is_none(k.value)]
        if disabled:
            yield _finding(
                "keepalive-disabled", call,
                f"{what}() sets {' and '.join(f'{d}=None' for d in disabled)}: keepalive is off.",
                "With no ping, or no deadline for the pong, a peer that vanished (a closed laptop, "
                "a dropped NAT entry) holds its connection open forever and nothing notices.")
        elif not (_keyword(call, "ping_interval") or _keyword(call, "ping_timeout")
                  or _has_double_star(call)):
            yield _finding(
                "no-keepalive-settings", call,
                f"{what}() leaves keepalive at the library's defaults (ping every 20 s, 20 s timeout).",
                "A dead peer is noticed only after up to 40 s, and proxies or load balancers "
                "with shorter idle timeouts cut quiet connections: choose both values for your network.")


@rule("no-reconnection")
def check_no_reconnection(module: _Module) -> Iterator[Finding]:
    """A ``connect(...)`` that is attempted once: no loop around it.

    A reconnection loop is ``async for ... in connect(...)`` (the library's
    own), or any ``while``/``for`` loop around the call in the same function,
    or around a call of that function in the same module. Only in a module
    that imports websockets. Blind spot: a retry decorator or a supervisor in
    another module passes as missing; a loop that does not actually retry
    (``for url in urls``) passes as reconnection.
    """
    if not module.imports_websockets:
        return
    looped_calls: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.While, ast.For, ast.AsyncFor)):
            looped_calls |= _names_called_in(node)
    for call in module.calls():
        if not _is_connect(call):
            continue
        in_loop = any(isinstance(a, (ast.While, ast.For, ast.AsyncFor))
                      for a in module.ancestors_in_function(call))
        function = module.function_of(call)
        if in_loop or (function is not None and function.name in looped_calls):
            continue
        yield _finding(
            "no-reconnection", call,
            "connect() is called once, with no loop to connect again when the connection drops.",
            "Connections drop (deploys, network changes, idle timeouts): without reconnection "
            "the client stays silently offline until someone restarts it.")


_RANDOM_FUNCS = {"random", "uniform", "randint", "randrange", "choice", "gauss", "triangular",
                 "expovariate", "betavariate"}
_PLAIN_FUNCS = {"min", "max", "float", "int", "abs", "round"}


def _is_random_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    base = _name(node.func.value) if isinstance(node.func, ast.Attribute) else ""
    return _name(node.func) in _RANDOM_FUNCS or base in {"random", "rng", "secrets"}


@rule("reconnect-without-backoff", "reconnect-without-jitter")
def check_reconnect_delay(module: _Module) -> Iterator[Finding]:
    """The delay a ``while``/``for`` reconnection loop sleeps between attempts.

    A reconnection loop holds a ``connect(...)`` call and an
    ``await asyncio.sleep(delay)``. A literal delay, or one built only from
    names never reassigned in the loop: ``reconnect-without-backoff``. A
    growing delay and no random draw in the function (``random.*``,
    ``uniform``, ``rng.*``...): ``reconnect-without-jitter``. A delay computed
    by a call to a helper (``backoff.next_delay()``) is trusted. Blind spot:
    that helper is not read; a delay reassigned to the same value passes as growing.
    """
    for loop in ast.walk(module.tree):
        if not isinstance(loop, (ast.While, ast.For)):
            continue
        local = list(_walk_local(loop))
        if not any(isinstance(n, ast.Call) and _is_connect(n) for n in local):
            continue
        for sleep in local:
            if not (isinstance(sleep, ast.Call) and _is_asyncio(sleep, "sleep") and sleep.args):
                continue
            delay = sleep.args[0]
            if any(isinstance(n, ast.Call) and _name(n.func) not in _PLAIN_FUNCS
                   for n in ast.walk(delay)):
                continue  # computed by a helper: trusted
            used = {n.id for n in ast.walk(delay) if isinstance(n, ast.Name)}
            assigned = {t.id for n in local if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))
                        for target in (n.targets if isinstance(n, ast.Assign) else [n.target])
                        for t in ast.walk(target) if isinstance(t, ast.Name)}
            if not used & assigned:
                yield _finding(
                    "reconnect-without-backoff", sleep,
                    "The reconnection loop waits the same delay before every attempt.",
                    "When the server is down or overloaded, every client retries at full rate "
                    "for as long as the outage lasts, which keeps it down.")
                continue
            scope = module.function_of(loop) or module.tree
            if not any(_is_random_call(n) for n in ast.walk(scope)):
                yield _finding(
                    "reconnect-without-jitter", sleep,
                    "The reconnection delay grows but has no random part (no jitter).",
                    "Clients disconnected together (a server restart) back off in step and "
                    "reconnect in synchronised waves: a thundering herd at every attempt.")


@rule("outdated-handler-signature")
def check_outdated_handler_signature(module: _Module) -> Iterator[Finding]:
    """``async def handler(websocket, path)``: the pre-13 websockets handler signature.

    Heuristic: an ``async def`` (a leading ``self``/``cls`` set aside) with
    exactly two positional parameters, the second named ``path``, in a module
    that imports websockets. Blind spot: a handler that is not ``async def``
    (a ``functools.partial``), or the path under another name.
    """
    if not module.imports_websockets:
        return
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.AsyncFunctionDef):
            continue
        params = [a.arg for a in node.args.posonlyargs + node.args.args]
        if params and params[0] in ("self", "cls"):
            params = params[1:]
        if len(params) == 2 and params[1] == "path":
            yield _finding(
                "outdated-handler-signature", node,
                f"{node.name}({', '.join(params)}) uses the old two-argument handler signature.",
                "websockets' current server calls handler(connection) alone, so every connection "
                "fails with a TypeError; the path is now connection.request.path.")


def _is_connection_handler(function: ast.AST) -> bool:
    if not isinstance(function, ast.AsyncFunctionDef):
        return False
    params = [a.arg for a in function.args.posonlyargs + function.args.args]
    if params and params[0] in ("self", "cls"):
        params = params[1:]
    if params and _is_websocket(ast.Name(params[0])):
        return True
    return any(isinstance(n, ast.Call) and _is_connect(n) for n in _walk_local(function))


@rule("gather-without-cancel")
def check_gather_without_cancel(module: _Module) -> Iterator[Finding]:
    """``asyncio.gather(a, b)`` inside a connection handler, without ``return_exceptions``.

    A connection handler is an ``async def`` whose first parameter is a
    websocket-like name, or that calls ``connect(...)`` itself. Flags a gather
    of two or more awaitables (or a starred list). Blind spot:
    ``return_exceptions=True`` silences it although the survivor can still wait
    forever; a gather in a helper called by the handler is not seen.
    """
    for call in module.calls():
        if not _is_asyncio(call, "gather") or _keyword(call, "return_exceptions"):
            continue
        if len(call.args) < 2 and not any(isinstance(a, ast.Starred) for a in call.args):
            continue
        if _is_connection_handler(module.function_of(call)):
            yield _finding(
                "gather-without-cancel", call,
                "asyncio.gather() runs this connection's tasks, but nothing cancels the others "
                "when one ends or fails.",
                "When the reader stops on a closed connection, the writer keeps waiting (or "
                "fails unseen) and the handler never returns: use a TaskGroup, or "
                "asyncio.wait(return_when=FIRST_COMPLETED) and cancel the rest.")


def _is_main_guard(node: ast.AST) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


@rule("asyncio-run-in-notebook")
def check_asyncio_run_at_module_level(module: _Module) -> Iterator[Finding]:
    """``asyncio.run(...)`` that runs on import: at module level, not under ``if __name__ == "__main__":``.

    Blind spot: a ``run`` imported with ``from asyncio import run``; a call
    inside a function that is itself called at module level.
    """
    todo = [s for s in module.tree.body if not _is_main_guard(s)]
    for stmt in todo:
        for node in [stmt, *_walk_local(stmt)]:
            if isinstance(node, ast.Call) and _is_asyncio(node, "run"):
                yield _finding(
                    "asyncio-run-in-notebook", node,
                    "asyncio.run() runs at module level, on import.",
                    "In Jupyter (and any running event loop) it raises 'cannot be called from a "
                    "running event loop'; importing the module starts the program: await the "
                    "coroutine instead, or guard it with if __name__ == '__main__'.")


_MUTATORS = {"add", "append", "discard", "remove", "pop", "clear", "update", "extend",
             "insert", "setdefault", "popitem"}


def _is_empty_container(node: ast.AST) -> bool:
    if isinstance(node, (ast.List, ast.Dict, ast.Set)):
        return True
    return isinstance(node, ast.Call) and _dotted(node.func) in {
        "set", "dict", "list", "collections.defaultdict", "defaultdict", "WeakSet", "weakref.WeakSet"}


@rule("shared-mutable-state")
def check_shared_mutable_state(module: _Module) -> Iterator[Finding]:
    """A module-level set/dict/list that an ``async def`` mutates.

    Looks for ``NAME = set()`` (or ``{}``, ``[]``, ``dict()``...) at module
    level, then ``NAME.add/append/discard/remove/...``, ``NAME[k] = ...`` or
    ``del NAME[k]`` inside an ``async def``. Blind spot: state on a class or
    an object's attribute, or mutated through an alias, is not seen; a
    deliberately shared registry guarded by ``try/finally`` is still flagged.
    """
    candidates: dict[str, ast.AST] = {}
    for stmt in module.tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None \
                and _is_empty_container(stmt.value):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    candidates[target.id] = stmt
    if not candidates:
        return
    mutated_in: dict[str, list[str]] = {}
    for function in ast.walk(module.tree):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for node in _walk_local(function):
            name = ""
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _MUTATORS and isinstance(node.func.value, ast.Name)):
                name = node.func.value.id
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)) \
                    and isinstance(node.value, ast.Name):
                name = node.value.id
            if name in candidates and function.name not in mutated_in.get(name, []):
                mutated_in.setdefault(name, []).append(function.name)
    for name, functions in mutated_in.items():
        yield _finding(
            "shared-mutable-state", candidates[name],
            f"Module-level {name} is mutated by {', '.join(f + '()' for f in functions)}, "
            "shared by every connection.",
            "It lives in one process only (lost on restart, wrong behind a second worker), and a "
            "connection that ends by an exception before its cleanup stays in it forever.")


@rule("print-instead-of-logging")
def check_print_instead_of_logging(module: _Module) -> Iterator[Finding]:
    """``print(...)`` in a module that imports websockets.

    Reported once, at the first call. Blind spot: ``sys.stdout.write`` and
    prints in helper modules are not seen.
    """
    if not module.imports_websockets:
        return
    prints = [n for n in module.calls() if isinstance(n.func, ast.Name) and n.func.id == "print"]
    if prints:
        first = min(prints, key=lambda n: n.lineno)
        yield _finding(
            "print-instead-of-logging", first,
            f"print() is used for diagnostics ({len(prints)} call(s), first here) instead of logging.",
            "print has no level, no timestamp, no connection id and cannot be routed or silenced: "
            "in production the one line that explains an outage is missing or lost in noise.")


# --------------------------------------------------------------------------


def _read(path_or_source: str | os.PathLike) -> tuple[str, str]:
    """(source text, name) from a path or from source text."""
    if isinstance(path_or_source, os.PathLike):
        path = Path(path_or_source)
    elif not isinstance(path_or_source, str):
        raise ConfigError(f"audit() takes a path or source text, got {type(path_or_source).__name__}")
    else:
        text = path_or_source
        single_line = "\n" not in text and len(text) < 4096
        if single_line and os.path.isfile(text):
            path = Path(text)
        elif single_line and text.strip().endswith((".py", ".pyw")) and " " not in text.strip():
            raise ConfigError(f"no such file: {text!r}")
        else:
            return text, "<source>"
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a directory: audit one .py file at a time")
    if path.suffix.lower() not in ("", ".py", ".pyw", ".ipy"):
        raise ConfigError(
            f"{str(path)!r} is not Python: the audit reads Python only (its rules read "
            f"Python's syntax tree), so it cannot read a {path.suffix} file. Measure the code "
            "instead: run it as a process, python -m wslab grade --server 'node server.js' "
            "--client 'node client.js' (help(wslab.external))")
    if not path.is_file():
        raise ConfigError(f"no such file: {str(path)!r}")
    try:
        with tokenize.open(path) as file:  # honours a coding cookie and a BOM
            return file.read(), str(path)
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise ConfigError(f"could not read {str(path)!r}: {exc}") from exc


def audit(path_or_source: str | os.PathLike) -> AuditReport:
    """Audit one module: a path to a ``.py`` file, or its source text.

    A string is a path when such a file exists; otherwise it is source text
    (a single line ending in ``.py`` is taken for a missing file). Raises
    :class:`~wslab.errors.ConfigError` when the file is missing or the source
    does not parse.
    """
    source, name = _read(path_or_source)
    try:
        tree = pyparse.parse(source, filename=name)
    except SyntaxError as exc:
        raise ConfigError(f"could not parse {name}: line {exc.lineno}: {exc.msg}") from exc
    except ValueError as exc:  # a null byte in the source
        raise ConfigError(f"could not parse {name}: {exc}") from exc
    module = _Module(tree)
    findings = [f for check in RULES.values() for f in check(module)]
    findings.sort(key=lambda f: (f.line, f.rule))
    return AuditReport(findings, name)


class _CallableModule(types.ModuleType):
    """The module is callable: ``wslab.audit(path)`` is ``wslab.audit.audit(path)``."""

    def __call__(self, path_or_source: str | os.PathLike) -> AuditReport:
        return audit(path_or_source)


sys.modules[__name__].__class__ = _CallableModule
