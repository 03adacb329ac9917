"""The interactive explorer: ipywidgets controls around live plotly figures of a :class:`HypothesisExplorer`.

:class:`ExplorerWidget` (what :meth:`mhe.viz.explorer.HypothesisExplorer.widget` returns) holds the
controls (objective, item, temperature, number of hypotheses), the metrics line and the item figure,
and optionally the clickable accuracy-vs-diversity scatter. The live figures are
``plotly.graph_objects.FigureWidget``\\ s when ``anywidget`` is installed (plotly >= 6 needs it; clicking a
point of the scatter then selects that item), else plain figures re-rendered into an
``ipywidgets.Output``. A live figure holds plain lists (:func:`_plain`; plotly's handler of the browser's
reports fails on NumPy arrays) and each update shows a new ``FigureWidget`` built from the current
figure (:func:`_replace_live`), so a reloaded page shows the figure the controls describe. A small
page helper (:func:`_page_helper`) scrolls the item figure into view after a click on the scatter and
refits the figures when the explorer's width changes.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from mhe.viz.explorer_figures import SELECTED_TRACE, accuracy_diversity_figure, selected_point
from mhe.viz.hands import LABELS

__all__ = ["ExplorerWidget", "figure_widget_available"]


def figure_widget_available() -> bool:
    """Whether ``plotly.graph_objects.FigureWidget`` works here (plotly >= 6 needs ``anywidget``)."""
    import importlib.util

    import plotly

    return int(plotly.__version__.split(".")[0]) < 6 or importlib.util.find_spec("anywidget") is not None


def _mimebundle(fig: Any) -> dict[str, Any]:
    """A display_data output of a plotly figure (rendered by JupyterLab's plotly mime renderer)."""
    spec = json.loads(fig.to_json())
    spec["config"] = {"responsive": True}
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.plotly.v1+json": spec, "text/plain": ["<plotly figure>"]}}



def _plain(value: Any) -> Any:
    """``value`` with every NumPy array and scalar turned into plain Python (lists, floats), NaN into None.

    A ``FigureWidget`` must hold plain lists: the browser reports each redraw's trace defaults back with
    typed arrays encoded as ``{"0": ..., "1": ...}`` objects, and plotly's handler of that report
    (``_remove_overlapping_props``) fails on a NumPy array in the trace ("The truth value of an array ...
    is ambiguous"), a traceback in JupyterLab's log console on every redraw. None is plotly's gap (the
    NaN of a line that separates two bones) and, unlike NaN, valid JSON.
    """
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, dict) and {"dtype", "bdata"} <= set(value):  # plotly >= 6 encodes arrays so
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        if value.get("shape"):
            array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
        return _plain(array)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain_figure(fig: Any) -> dict[str, Any]:
    return _plain(fig.to_plotly_json())


def _copy_into(live: Any, new: Any) -> None:
    """Replace the data and layout of the plain figure ``live`` by those of ``new`` (same trace structure),
    in one update."""
    spec = _plain_figure(new)
    with live.batch_update():
        for trace, fresh in zip(live.data, spec["data"], strict=True):
            trace.update(fresh, overwrite=True)
        live.layout.update(spec["layout"], overwrite=True)


def _figure_widget(fig: Any) -> Any:
    """A ``FigureWidget`` of ``fig`` holding plain lists (:func:`_plain`)."""
    import plotly.graph_objects as go

    return go.FigureWidget(_plain_figure(fig))


def _live_view(live: Any) -> Any:
    """The box a live figure is shown in; :func:`_replace_live` swaps the figure inside it. It keeps the
    figure's height while the page draws a new one, so nothing below it jumps."""
    import ipywidgets as widgets

    height = live.layout.height
    layout = widgets.Layout(width="100%", min_height=f"{int(height)}px" if height else None)
    return widgets.VBox([live], layout=layout)


def _replace_live(view: Any, old: Any, fig: Any) -> Any:
    """Show ``fig`` in ``view`` as a new ``FigureWidget`` in place of ``old`` (which is closed); returns it.

    plotly sends the edits of a ``FigureWidget`` to the page as one-off messages, while a page that is
    reloaded rebuilds the figure from the one the widget was created with: an edited widget would show
    its first state after a reload while the controls show the current one. A widget created from the
    current figure (plotly's public constructor) is what every page shows, reloaded or not.
    """
    live = _figure_widget(fig)
    view.children = (live,)
    old.close()
    return live



_HELPER_ESM = """
function render({ model, el }) {
  // Bring the explored item's figure into view when asked (a click on the scatter far below it).
  model.on("change:requests", () => el.scrollIntoView({ behavior: "smooth", block: "start" }));
  // Refit the figures whenever the explorer's width changes (a sidebar opened or closed, a cell shown
  // after being drawn while hidden): plotly's responsive figures listen to the window's resize event.
  let observer = null, last = 0, timer = null;
  const watch = (tries) => {
    const box = el.closest(".widget-vbox");
    if (!box) { if (tries > 0) setTimeout(() => watch(tries - 1), 200); return; }
    observer = new ResizeObserver((entries) => {
      const width = Math.round(entries[0].contentRect.width);
      if (width === 0 || width === last) return;
      last = width;
      clearTimeout(timer);
      timer = setTimeout(() => window.dispatchEvent(new Event("resize")), 150);
    });
    observer.observe(box);
  };
  watch(50);
  return () => { if (observer) observer.disconnect(); clearTimeout(timer); };
}
export default { render };
"""


def _page_helper() -> Any:
    """A zero-height widget for what only the page can do: scroll to itself each time its ``requests``
    counter grows, and refit the explorer's figures to the width of the explorer whenever it changes."""
    import anywidget
    import traitlets

    class ExplorerPageHelper(anywidget.AnyWidget):
        _esm = _HELPER_ESM
        requests = traitlets.Int(0).tag(sync=True)

    return ExplorerPageHelper()


class ExplorerWidget:
    """Controls around a live item figure (and optionally the dataset scatter) of a
    :class:`mhe.viz.explorer.HypothesisExplorer` (``explorer``).

    ``box`` (an ``ipywidgets.VBox``, what a notebook displays; the object itself displays as it) holds a
    Dropdown ``objective``, IntSliders ``item`` (with ``previous`` / ``next`` buttons) and ``hypotheses``
    (how many of the S are drawn), a FloatSlider ``temperature``, an HTML line ``metrics`` (the figure
    title's text, :meth:`~mhe.viz.explorer.HypothesisExplorer.describe`) and the item figure ``figure``,
    redrawn whenever a control changes. The numbers are always those of all S hypotheses at the chosen temperature;
    the hypotheses slider only changes how many are drawn. With ``dataset_items > 0`` the
    accuracy-vs-diversity scatter of the first ``dataset_items`` items sits below (``scatter``, at the
    explorer's temperature, all S hypotheses); the explored item is ringed in it, and clicking a point
    selects that item and objective and scrolls the item figure into view. ``figure`` and ``scatter`` are
    ``FigureWidget``\\ s when ``use_figure_widget`` (default: when :func:`figure_widget_available`), else
    plain figures shown through ``ipywidgets.Output`` views that are re-rendered on each change (then
    clicking is not available). A live figure is replaced by a new ``FigureWidget`` on each change
    (:func:`_replace_live`), so every part of the state lives in the widgets' synced state and a page
    reload shows the figure the controls describe.
    """

    def __init__(self, explorer: Any, index: int = 0, objective: str | None = None,
                 num_hypotheses: int = 50, dataset_items: int = 0, use_figure_widget: bool | None = None) -> None:
        import ipywidgets as widgets

        self.explorer = ex = explorer
        objective = ex.objectives[0] if objective is None else ex._check_objective(objective)
        index = ex._check_index(index)
        if int(num_hypotheses) < 1:
            raise ValueError(f"num_hypotheses must be at least 1, got {num_hypotheses}")
        self.interactive = figure_widget_available() if use_figure_widget is None else bool(use_figure_widget)
        style = {"description_width": "initial"}
        wide = widgets.Layout(flex="1 1 auto", width="auto", min_width="260px")
        self.objective = widgets.Dropdown(options=[(LABELS.get(o, o), o) for o in ex.objectives], value=objective,
                                          description="objective", style=style, layout=widgets.Layout(width="auto"))
        self.item = widgets.IntSlider(value=index, min=0, max=len(ex.dataset) - 1, description="item",
                                      continuous_update=False, style=style, layout=wide)
        self.previous = widgets.Button(description="◀", tooltip="previous item", layout=widgets.Layout(width="36px"))
        self.next = widgets.Button(description="▶", tooltip="next item", layout=widgets.Layout(width="36px"))
        self.previous.on_click(lambda _: self.step(-1))
        self.next.on_click(lambda _: self.step(+1))
        self.temperature = widgets.FloatSlider(value=ex.temperature, min=0.05, max=2.0, step=0.05,
                                               description="temperature", continuous_update=False, style=style,
                                               layout=wide)
        self.hypotheses = widgets.IntSlider(value=min(int(num_hypotheses), ex.num_samples), min=1,
                                            max=ex.num_samples, description="hypotheses drawn",
                                            continuous_update=False, style=style, layout=wide)
        self.metrics = widgets.HTML()
        first = ex.item_figure(index, objective, self.temperature.value, self.hypotheses.value)
        self.figure, self._view = self._live(first, widgets)
        self.scatter: Any = None
        self._scatter_view: Any = None
        self._frame: pd.DataFrame | None = None
        if dataset_items > 0:
            self._frame = ex.dataset_metrics(dataset_items)
            scatter = accuracy_diversity_figure(self._frame, title=ex._dataset_title(self._frame, None, None),
                                                selected=(objective, index), num_joints=len(ex.keypoint_names))
            self.scatter, self._scatter_view = self._live(scatter, widgets)
            self._watch_clicks()
        self._anchor = _page_helper() if self.interactive else None
        self._hold = False
        for control in (self.objective, self.item, self.temperature, self.hypotheses):
            control.observe(self.refresh, names="value")
        self._show_metrics()
        full = widgets.Layout(width="100%")
        rows = [widgets.HBox([self.objective, self.item, self.previous, self.next], layout=full),
                widgets.HBox([self.temperature, self.hypotheses], layout=full)]
        rows += [self._anchor] if self._anchor is not None else []
        rows += [self.metrics, self._view]
        if self._scatter_view is not None:
            rows.append(self._scatter_view)
        self.box = widgets.VBox(rows, layout=full)

    def _live(self, fig: Any, widgets: Any) -> tuple[Any, Any]:
        """The figure to keep and the view that shows it: a ``FigureWidget`` in a box, or ``fig`` itself
        rendered into an ``Output``."""
        if self.interactive:
            live = _figure_widget(fig)
            return live, _live_view(live)
        view = widgets.Output()
        view.outputs = (_mimebundle(fig),)
        return fig, view

    def _watch_clicks(self) -> None:
        """Select the item of a clicked point of the live scatter."""
        if self.interactive and self.scatter is not None:
            for trace in self.scatter.data:
                trace.on_click(self.on_scatter_click)

    def _show_metrics(self) -> None:
        head, numbers = self.explorer.describe(self.item.value, self.objective.value, self.temperature.value,
                                               self.hypotheses.value)
        note = ""
        if self.scatter is not None and self.objective.value not in self.explorer.mode_only \
                and abs(self.temperature.value - self.explorer.temperature) > 1e-9:
            note = f" The scatter below stays at T = {self.explorer.temperature:g}."
        self.metrics.value = f"<b>{head}</b><br>{numbers}.{note}"

    def _mark_selected(self) -> None:
        """Ring the explored item in the scatter (redrawn only when the ring moves)."""
        if self.scatter is None or self._frame is None:
            return
        point = selected_point(self._frame, self.objective.value, self.item.value)
        ring = next(t for t in self.scatter.data if t.name == SELECTED_TRACE)
        if list(ring.x or []) == point["x"] and list(ring.y or []) == point["y"]:
            return
        if self.interactive:
            import plotly.graph_objects as go

            fig = go.Figure(self.scatter)  # a plain copy, the ring moved
            next(t for t in fig.data if t.name == SELECTED_TRACE).update(point)
            self.scatter = _replace_live(self._scatter_view, self.scatter, fig)
            self._watch_clicks()
        else:
            ring.update(point)
            self._scatter_view.outputs = (_mimebundle(self.scatter),)

    def refresh(self, change: Any = None) -> None:
        """Redraw the item figure, the metrics line and the scatter's ring from the controls' values."""
        if self._hold:
            return
        ex = self.explorer
        new = ex.item_figure(self.item.value, self.objective.value, self.temperature.value, self.hypotheses.value)
        if self.interactive:
            self.figure = _replace_live(self._view, self.figure, new)
        else:  # a plain figure: updated in place and rendered again
            _copy_into(self.figure, new)
            self._view.outputs = (_mimebundle(self.figure),)
        self._show_metrics()
        self._mark_selected()

    def step(self, delta: int) -> None:
        """Show the item ``delta`` places on (the previous / next buttons), staying within the dataset."""
        self.item.value = min(max(self.item.value + int(delta), self.item.min), self.item.max)

    def select(self, index: int, objective: str) -> None:
        """Show item ``index`` under ``objective`` (one redraw) and bring its figure into view."""
        index, objective = self.explorer._check_index(index), self.explorer._check_objective(objective)
        self._hold = True
        try:
            self.objective.value, self.item.value = objective, index
        finally:
            self._hold = False
        self.refresh()
        if self._anchor is not None and self.scatter is not None:
            self._anchor.requests += 1

    def on_scatter_click(self, trace: Any, points: Any, state: Any = None) -> None:
        """Callback of the dataset scatter: select the clicked point's item and objective."""
        inds = list(getattr(points, "point_inds", []) or [])
        if not inds or trace.customdata is None or trace.meta not in self.explorer.models:
            return
        self.select(int(round(float(trace.customdata[inds[0]][0]))), trace.meta)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)
