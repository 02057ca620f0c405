"""Playgrounds: turn one knob, rerun, look (introduced in notebooks/01_happy_path.ipynb).

A playground is an ipywidgets panel: a slider for the knob that matters, a
*Run* button, a progress bar while the run is under way, and the plot and
summary of the last run. The lab runs in the notebook's own event loop, so
the page stays responsive while it runs.

Headless (nbval, a script), build the panel and call :meth:`Playground.arun`
directly: it does what the button does and returns the Run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from . import plots
from .lab import arun
from .run import Run
from .scenarios import Scenario

PLOTS: dict[str, Callable[..., Any]] = {
    "timeline": plots.timeline,
    "queue": plots.queue_growth,
    "latency": plots.latency,
}


class Playground:
    """A panel that reruns ``design`` under ``make_scenario(knob.value)``."""

    def __init__(self, design: Any, make_scenario: Callable[[Any], Scenario],
                 knob: widgets.ValueWidget, *, plot: str = "timeline") -> None:
        if plot not in PLOTS:
            raise ValueError(f"plot must be one of {', '.join(PLOTS)}, got {plot!r}")
        self.design, self.make_scenario, self.knob, self.plot = design, make_scenario, knob, plot
        self.button = widgets.Button(description="Run", icon="play", button_style="primary")
        self.progress = widgets.FloatProgress(value=0, min=0, max=1, description="idle",
                                              layout=widgets.Layout(width="320px"))
        self.output = widgets.Output()
        self.last: Run | None = None
        self._task: asyncio.Task | None = None
        self.button.on_click(self._clicked)
        self.panel = widgets.VBox([widgets.HBox([knob, self.button, self.progress]), self.output])

    def _ipython_display_(self) -> None:
        display(self.panel)

    def _clicked(self, _button: Any) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.arun())

    async def arun(self) -> Run:
        """Run once with the knob's current value; draw the result in the panel."""
        self.button.disabled = True
        self.progress.description = "running"
        self.progress.bar_style = ""
        try:
            scenario = self.make_scenario(self.knob.value)
            run = await arun(self.design, scenario,
                             progress=lambda f: setattr(self.progress, "value", f))
        except Exception as exc:
            self.progress.description, self.progress.bar_style = "failed", "danger"
            with self.output:
                self.output.clear_output()
                print(f"The run failed: {exc}")
            raise
        finally:
            self.button.disabled = False
        self.last = run
        self.progress.description, self.progress.bar_style = "done", "success"
        with self.output:
            self.output.clear_output(wait=True)
            figure = PLOTS[self.plot](run)
            display(figure)
            plt.close(figure)
            display(run)
        return run
