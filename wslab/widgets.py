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
from .contract import Design
from .lab import arun
from .run import Run
from .scenarios import Scenario

PLOTS: dict[str, Callable[..., Any]] = {
    "timeline": plots.timeline,
    "queue": plots.queue_growth,
    "latency": plots.latency,
}


class Playground:
    """A panel that reruns ``design`` under ``make_scenario(knob.value)``.

    When the knob is a setting of the design rather than of the scenario (a
    ping interval, a queue bound), pass ``design`` as a function of the knob's
    value that returns the design, and ``make_scenario`` as a function that
    ignores it. ``plot`` is ``"timeline"``, ``"queue"``, ``"latency"`` or a
    function ``(run) -> Figure``.
    """

    def __init__(self, design: Any, make_scenario: Callable[[Any], Scenario],
                 knob: widgets.ValueWidget, *,
                 plot: "str | Callable[[Run], Any]" = "timeline") -> None:
        if not callable(plot) and plot not in PLOTS:
            raise ValueError(f"plot must be one of {', '.join(PLOTS)} or a function, got {plot!r}")
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
            design = self.design
            if callable(design) and not isinstance(design, Design) and not hasattr(design, "handler"):
                design = design(self.knob.value)
            run = await arun(design, scenario,
                             progress=lambda f: setattr(self.progress, "value", f))
        except Exception as exc:
            self.progress.description, self.progress.bar_style = "failed", "danger"
            self.output.outputs = ({"output_type": "stream", "name": "stderr",
                                    "text": f"The run failed: {exc}\n"},)
            raise
        finally:
            self.button.disabled = False
        self.last = run
        self.progress.description, self.progress.bar_style = "done", "success"
        figure = self.plot(run) if callable(self.plot) else PLOTS[self.plot](run)
        # Set, not captured with `with self.output:`: after a click this runs in a task,
        # when the button's message is over, and capture would send the plot to no cell.
        self.output.outputs = (_display_data(figure), _display_data(run))
        plt.close(figure)
        return run


def _display_data(obj: Any) -> dict:
    """``obj`` as a display_data output, formatted as a cell would show it."""
    from IPython.core.interactiveshell import InteractiveShell

    data, metadata = InteractiveShell.instance().display_formatter.format(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}
