"""wslab's own designs, by name."""

from __future__ import annotations

from pathlib import Path

from ..contract import Design
from ..errors import DesignContractError, UnknownNameError
from ..loader import load_design, not_a_design_file
from . import library_reconnect, naive, production

DESIGNS: dict[str, Design] = {
    d.name: d for d in [naive.DESIGN, library_reconnect.DESIGN, *production.STEPS]
}


def get_design(design: "str | Path | Design | object") -> Design:
    """A design by name (see :data:`DESIGNS`), a :class:`Design`, a Python file
    (a :class:`~pathlib.Path` or a name ending in ``.py``; see
    :func:`wslab.loader.load_design`), a ``.toml`` file naming a server and a
    client command (:func:`wslab.external.load_design_file`), or any object (a module, say) with
    ``handler`` and ``client`` attributes."""
    if isinstance(design, Design):
        return design
    if isinstance(design, (str, Path)) and str(design).endswith(".toml"):  # commands: processes
        from ..external import load_design_file

        return load_design_file(design)
    if isinstance(design, Path) or (isinstance(design, str) and design.endswith(".py")):
        return load_design(design)
    if isinstance(design, str):
        if design in DESIGNS:
            return DESIGNS[design]
        if Path(design).suffix or Path(design).is_file():  # notes.txt, a file without .py
            raise DesignContractError(not_a_design_file(design))
        raise UnknownNameError("design", design, list(DESIGNS))
    handler, client = getattr(design, "handler", None), getattr(design, "client", None)
    if handler is None or client is None:
        raise DesignContractError(
            f"{design!r} is not a design: expected a wslab.Design, a design name "
            f"({', '.join(sorted(DESIGNS))}), or an object with async 'handler(websocket, app)' "
            "and 'client(app)' attributes"
        )
    name = getattr(design, "__name__", type(design).__name__)
    return Design(name, handler=handler, client=client,
                  serve_options=getattr(design, "SERVE_OPTIONS", {}) or {})
