"""Load a learner's file (or source text) as a design, with messages a person can act on.

:func:`load_design` accepts a Python file or source text that defines
``handler(websocket, app)`` and a ``client`` (``async def client(app)`` or a
client class: see :mod:`wslab.contract`), or a ``DESIGN``. Whatever
goes wrong is a :class:`~wslab.errors.DesignContractError` that says what was
expected and how to wrap the code (see :mod:`wslab.contract`), never a
traceback from the lab's insides:

- the file is not there, or is not Python (a syntax error, with its line);
- importing it raises (the exception and the line in *your* file);
- importing it does not return within ``import_timeout_s`` (a server started
  at import time, an input() call...): the module is left behind in a daemon
  thread, and the message says which line to put under ``if __name__ == "__main__":``;
- it is not a ``.py`` file (``notes.txt``);
- it defines no ``handler``/``client``, or defines them with another shape
  (a one-argument or ``handler(websocket, path)`` handler, a client class
  without ``send``...): one message names every fix, the handler's and the
  client's (a client class the file defines but does not name ``client`` is
  named, with the line to add).

The module is imported as ``wslab.submissions.<file name>_<n>``, so a
``main()`` guarded as scripts usually are does not run, and what it logs with
``logging.getLogger(__name__)`` is kept in ``run.logs``, not printed.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import sys
import threading
import traceback
import types
from pathlib import Path

from .contract import CLIENT_METHODS, Design, check_client, check_handler
from .errors import DesignContractError
from . import pyparse

IMPORT_TIMEOUT_S = 5.0

HOW_TO_WRAP = (
    "A design file defines a handler and a client:\n"
    "    async def handler(websocket, app): ...   # the server side, one call per connection\n"
    "    async def client(app): ...               # one client; connect with app.connect()\n"
    "or, for a client class with start(), send(message) and stop():\n"
    "    client = MyClient                        # constructed as MyClient(uri, on_message=callback)\n"
    "The server processes each message with `await app.process(message)` and pushes with "
    "`async for message in app.outgoing()`; a client function sends what `app.outgoing()` "
    "yields and hands what it receives to `await app.deliver(message)`. "
    "help(wslab.contract) shows a pasted server and client wrapped step by step."
)

_counter = itertools.count()
_BLOCKING_AT_IMPORT = {"run", "run_forever", "run_until_complete", "serve_forever", "input"}


def load_design(source: "str | Path", *, name: str | None = None,
                import_timeout_s: float = IMPORT_TIMEOUT_S) -> Design:
    """The design defined by a Python file (a path) or by source text.

    A string that contains a newline is read as source text; any other string
    or a :class:`~pathlib.Path` is a file name. See the module docstring for
    the errors, each a :class:`DesignContractError`.
    """
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
        path = Path(source)
        if path.suffix and path.suffix != ".py":
            raise DesignContractError(not_a_design_file(str(source)))
        if not path.is_file():
            raise DesignContractError(f"no such file: {str(path)!r} (give the path to a .py file)")
        text, label = path.read_text(encoding="utf-8", errors="replace"), path.name
        name = name or path.stem
    elif isinstance(source, str):
        text, label, path = source, "<your code>", None
        name = name or "pasted"
    else:
        raise DesignContractError(f"expected a file path or source text, got {type(source).__name__}")
    try:
        tree = pyparse.parse(text, filename=label)
    except SyntaxError as exc:
        raise DesignContractError(
            f"{label} is not valid Python: {exc.msg} at line {exc.lineno}"
            + (f": {exc.text.strip()!r}" if exc.text else "")) from None
    _refuse_blocking_top_level(tree, label)
    module = _import(text, label, path, import_timeout_s)
    return design_from_module(module, name, label)


def not_a_design_file(given: str) -> str:
    """The message for a file that is not Python (``notes.txt``)."""
    return (f"{given!r} is not a design: a design is a Python file (a name ending in .py) "
            "that defines handler(websocket, app) and a client, or the name of one of "
            "wslab's designs. Put your code in a .py file and grade that. (A server or client "
            "in another language runs as a process: python -m wslab grade --server 'node "
            "server.js' --client 'node client.js', or a .toml file naming the two commands; "
            "see help(wslab.external).)")


def design_from_module(module: types.ModuleType, name: str, label: str) -> Design:
    """The design a loaded module defines, or an error that names every fix it needs
    (the handler's and the client's, together)."""
    found = getattr(module, "DESIGN", None)
    if isinstance(found, Design):
        return found
    handler, client = getattr(module, "handler", None), getattr(module, "client", None)
    problems = [p for p in (_handler_problem(module, handler), _client_problem(module, client)) if p]
    if problems:
        raise DesignContractError(f"{label}: " + "\n".join(problems) + f"\n{HOW_TO_WRAP}")
    try:
        return Design(name, handler=handler, client=client,
                      serve_options=getattr(module, "SERVE_OPTIONS", None) or {},
                      description=(module.__doc__ or "").strip().split("\n\n")[0],
                      stop_grace_s=getattr(module, "STOP_GRACE_S", 0.0))
    except DesignContractError as exc:
        raise DesignContractError(f"{label}: {exc}.\n{HOW_TO_WRAP}") from None


def _refuse_blocking_top_level(tree: ast.Module, label: str) -> None:
    """A call at module level that would run forever (a server, an event loop) is
    refused before import: the lab could not stop it."""
    for statement in tree.body:
        if not isinstance(statement, (ast.Expr, ast.Assign, ast.AnnAssign)):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in _BLOCKING_AT_IMPORT:
                    raise DesignContractError(
                        f"{label} line {statement.lineno} calls {called}() when the file is "
                        "imported; the lab runs your handler and client itself. Put that line "
                        "under `if __name__ == \"__main__\":` (or delete it).")


def _import(text: str, label: str, path: Path | None, timeout_s: float) -> types.ModuleType:
    # Under wslab.submissions: what the file logs goes to run.logs (see wslab.lab).
    stem = "".join(c if c.isalnum() else "_" for c in (path.stem if path else "pasted"))
    module_name = f"wslab.submissions.{stem}_{next(_counter)}"
    filename = str(path) if path else f"<{module_name}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    outcome: dict[str, BaseException] = {}

    def execute() -> None:
        try:
            code = compile(text, filename, "exec")
            sys.modules[module_name] = module
            exec(code, module.__dict__)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            outcome["error"] = exc

    worker = threading.Thread(target=execute, name=f"import {label}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise DesignContractError(
            f"importing {label} did not finish within {timeout_s:g} s: something runs at import "
            "time (a server, a loop, a sleep). Keep only definitions at the top level and put "
            "the rest under `if __name__ == \"__main__\":`.")
    error = outcome.get("error")
    if error is not None:
        sys.modules.pop(module_name, None)
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
        where = f" at line {frames[-1].lineno}" if frames else ""
        extra = ""
        if isinstance(error, ModuleNotFoundError):
            extra = (f" The lab has websockets, asyncio and the standard library; "
                     f"{error.name!r} is not installed here.")
        raise DesignContractError(
            f"importing {label} raised {type(error).__name__}{where}: {error}.{extra}") from None
    return module


def _handler_problem(module: types.ModuleType, handler: object) -> str | None:
    """What is wrong with the module's handler, or None."""
    if handler is None:
        return f"It defines no handler. {_guess_handler(module)}".strip()
    try:
        check_handler(handler)
    except DesignContractError as exc:
        return _sentence(exc)
    return None


def _client_problem(module: types.ModuleType, client: object) -> str | None:
    """What is wrong with the module's client, or None."""
    if client is None:
        return ("It defines no client: " + (_guess_client(module) or
                "write `async def client(app)`, or name your client class with a line "
                "`client = YourClass`."))
    try:
        check_client(client)
    except DesignContractError as exc:
        return _sentence(exc)
    return None


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text if text.endswith(".") else f"{text}."


def _own(module: types.ModuleType, predicate) -> list[tuple[str, object]]:
    return [(n, f) for n, f in vars(module).items()
            if predicate(f) and getattr(f, "__module__", None) == module.__name__]


def _guess_handler(module: types.ModuleType) -> str:
    """A hint from what the module does define: functions that look like a handler."""
    functions = _own(module, inspect.isfunction)
    one_arg = [n for n, f in functions
               if inspect.iscoroutinefunction(f) and len(inspect.signature(f).parameters) in (1, 2)
               and next(iter(inspect.signature(f).parameters), "") in ("websocket", "ws", "connection")]
    if len(one_arg) == 1:
        return (f"It defines {one_arg[0]}: if that is your server handler, name it "
                "`handler` and give it a second parameter, `app`. ")
    if one_arg:
        return (f"It defines {', '.join(one_arg)}: if one of them is your server handler, name "
                "it `handler` and give it a second parameter, `app`. ")
    if functions:
        return f"It defines {', '.join(n for n, _ in functions)}. "
    return ""


def _guess_client(module: types.ModuleType) -> str:
    """A hint from what the module does define: a class that looks like a client."""
    classes = [(n, c) for n, c in _own(module, inspect.isclass)
               if any(callable(getattr(c, m, None)) for m in CLIENT_METHODS)
               or "client" in n.lower()]
    if not classes:
        return ""
    hints = []
    for n, c in classes:
        try:
            check_client(c)
        except DesignContractError as exc:
            hints.append(f"it defines class {n}; to grade it, add the line `client = {n}`, "
                         f"but first: {_sentence(exc)}")
        else:
            hints.append(f"it defines class {n}: to grade it as your client, add the line "
                         f"`client = {n}` (the lab constructs {n}(uri, on_message=callback), "
                         "calls start(), send(message) for each message, then stop()).")
    return " ".join(hints)
