"""wslab: real WebSocket servers and clients on loopback, through a fault-injecting
proxy, every message accounted for.

The flow (see the README)::

    Scenario ──► Lab ──► (server ◄── FaultProxy ◄── clients) ──► Ledger ──► Run ──► plots

Start with ``notebooks/00_start_here.ipynb``.
"""

from .claims import ClaimFailed, claim
from .contract import ClientApp, Design, ServerApp
from .designs import DESIGNS, get_design
from .errors import (AuthError, ConfigError, DesignContractError, DesignHangError, RunError,
                     RunTimeoutError, TokenExpired, TokenInvalid, TokenRevoked, UnknownNameError,
                     WslabError)
from .faults import (Bandwidth, BlackHole, Cut, Fault, FaultPlan, FrameFault, IdleTimeout,
                     Latency, Refuse, Revoke, ServerRestart, SlowConsumer)
from .frames import Frame, TextContaining
from .lab import arun, run
from .ledger import Ledger
from .proxy import FaultProxy
from .run import Run
from .scenarios import SCENARIOS, Scenario, get_scenario
from .workload import Workload

__version__ = "0.1.0"

__all__ = [
    "AuthError", "Bandwidth", "BlackHole", "ClaimFailed", "ClientApp", "ConfigError", "Cut", "DESIGNS", "Design",
    "DesignContractError", "DesignHangError", "Fault", "FaultPlan", "FaultProxy", "Frame",
    "FrameFault", "IdleTimeout", "Latency", "Ledger", "Refuse", "Revoke", "Run", "RunError", "RunTimeoutError",
    "SCENARIOS", "Scenario", "ServerApp", "ServerRestart", "SlowConsumer", "TextContaining", "TokenExpired", "TokenInvalid", "TokenRevoked",
    "UnknownNameError", "Workload", "WslabError", "arun", "claim", "get_design", "get_scenario", "run",
]

_LAZY = {"plots", "widgets", "exercises", "experiments", "prompts", "bench", "contract", "designs",
         "audit", "course", "loader", "grading", "causes", "checkers"}


def __getattr__(name: str):
    # Heavy modules (matplotlib, ipywidgets) load on first use: `wslab.plots.timeline(...)`.
    if name in ("grade", "agrade"):  # the grader's two entry points, from wslab.grading
        import importlib

        return getattr(importlib.import_module(f"{__name__}.grading"), name)
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'wslab' has no attribute {name!r}")
