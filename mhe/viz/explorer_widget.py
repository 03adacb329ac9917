"""The interactive explorer: ipywidgets controls around the plotly figures of a :class:`HypothesisExplorer`.

:class:`ExplorerWidget` (what :meth:`mhe.viz.explorer.HypothesisExplorer.widget` returns) holds the
controls (objective, item, temperature, number of hypotheses), the metrics line and the item figure,
and optionally the accuracy-vs-diversity scatter. Both figures are plain plotly figures rendered into
``ipywidgets.Output`` views (JupyterLab's plotly renderer draws them) and rendered again on each change,
so what a page shows, also after a reload, is the synced ``outputs`` of those views: the figure the
controls describe. With ``anywidget`` installed a small page helper (:func:`_page_helper`) adds what
only the page can do: it passes a click on a point of the scatter back to Python (plotly.js's
``plotly_click`` event), scrolls the item figure into view after such a click, and refits the figures
when the explorer's width changes. Nothing here touches plotly's private state.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pandas as pd

from mhe.viz.explorer_figures import SELECTED_TRACE, accuracy_diversity_figure, selected_point
from mhe.viz.hands import LABELS

__all__ = ["ExplorerWidget", "figure_widget_available"]

# The CSS class of the scatter's view: the page helper listens to clicks on the plot inside it.
SCATTER_CLASS = "mhe-explorer-scatter"


def figure_widget_available() -> bool:
    """Whether the explorer's scatter can take clicks here: the page helper that passes them to Python
    is an ``anywidget`` (the name is historical: the figures were plotly ``FigureWidget``\\ s)."""
    return importlib.util.find_spec("anywidget") is not None


def _mimebundle(fig: Any) -> dict[str, Any]:
    """A display_data output of a plotly figure (rendered by JupyterLab's plotly mime renderer)."""
    spec = json.loads(fig.to_json())
    spec["config"] = {"responsive": True}
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.plotly.v1+json": spec, "text/plain": ["<plotly figure>"]}}


def _copy_into(shown: Any, new: Any) -> None:
    """Replace the traces and layout of the figure ``shown`` by those of ``new``, so that ``shown`` stays
    the figure the widget holds."""
    shown.data = ()
    shown.add_traces(list(new.data))
    shown.layout = new.layout


def _view(fig: Any, widgets: Any) -> Any:
    """An ``Output`` showing ``fig``; it keeps the figure's height while the page draws it again, so
    nothing below it jumps."""
    height = fig.layout.height
    view = widgets.Output(layout=widgets.Layout(width="100%", min_height=f"{int(height)}px" if height else None))
    view.outputs = (_mimebundle(fig),)
    return view


_HELPER_ESM = """
function render({ model, el }) {
  let observer = null, mutations = null, last = 0, timer = null, hooking = null;
  // Bring the explored item's figure into view after a click on the scatter far below it (and whenever
  // Python asks, through ``requests``), once the explorer is quiet (no change for 300 ms; at most 3 s).
  let scrolling = null, deadline = 0;
  const scroll = () => { scrolling = null; el.scrollIntoView({ behavior: "smooth", block: "start" }); };
  const scrollWhenQuiet = () => {
    clearTimeout(scrolling);
    scrolling = setTimeout(scroll, Math.max(0, Math.min(300, deadline - Date.now())));
  };
  const scrollSoon = () => { deadline = Date.now() + 3000; scrollWhenQuiet(); };
  model.on("change:requests", scrollSoon);
  // Pass a click on a point of the scatter to Python: its item (customdata[0]) and objective (meta).
  // The scatter is drawn again on every change, so each new plot is hooked once.
  const hook = (box) => {
    for (const gd of box.querySelectorAll(".SCATTER_CLASS .js-plotly-plot")) {
      if (gd.mheClicks || typeof gd.on !== "function") continue;
      gd.mheClicks = true;
      gd.on("plotly_click", (event) => {
        const point = ((event && event.points) || []).find((p) => p.customdata && p.data && p.data.meta);
        if (!point) return;
        const serial = (model.get("clicked").serial || 0) + 1;
        model.set("clicked", { index: Number(point.customdata[0]), objective: String(point.data.meta), serial });
        model.save_changes();
        scrollSoon();
      });
    }
  };
  // Refit the figures whenever the explorer's width changes (a sidebar opened or closed, a cell shown
  // after being drawn while hidden): plotly's responsive figures listen to the window's resize event.
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
    mutations = new MutationObserver(() => {
      clearTimeout(hooking);
      hooking = setTimeout(() => hook(box), 50);
      if (scrolling !== null) scrollWhenQuiet();
    });
    mutations.observe(box, { childList: true, subtree: true });
    hook(box);
  };
  watch(50);
  return () => {
    if (observer) observer.disconnect();
    if (mutations) mutations.disconnect();
    clearTimeout(timer);
    clearTimeout(hooking);
    clearTimeout(scrolling);
  };
}
export default { render };
""".replace("SCATTER_CLASS", SCATTER_CLASS)


def _page_helper() -> Any:
    """A zero-height widget for what only the page can do: scroll to itself each time its ``requests``
    counter grows, refit the explorer's figures to the width of the explorer whenever it changes, and
    report a click on a point of the scatter in ``clicked`` (``{"index", "objective", "serial"}``)."""
    import anywidget
    import traitlets

    class ExplorerPageHelper(anywidget.AnyWidget):
        _esm = _HELPER_ESM
        requests = traitlets.Int(0).tag(sync=True)
        clicked = traitlets.Dict().tag(sync=True)

    return ExplorerPageHelper()


class ExplorerWidget:
    """Controls around the item figure (and optionally the dataset scatter) of a
    :class:`mhe.viz.explorer.HypothesisExplorer` (``explorer``).

    ``box`` (an ``ipywidgets.VBox``, what a notebook displays; the object itself displays as it) holds a
    Dropdown ``objective``, IntSliders ``item`` (with ``previous`` / ``next`` buttons) and ``hypotheses``
    (how many of the S are drawn), a FloatSlider ``temperature``, an HTML line ``metrics`` (the figure
    title's text, :meth:`~mhe.viz.explorer.HypothesisExplorer.describe`) and the item figure ``figure``
    (a plotly figure shown in the ``Output`` view ``_view``), drawn again whenever a control changes. The
    numbers are always those of all S hypotheses at the chosen temperature; the hypotheses slider only
    changes how many are drawn. With ``dataset_items > 0`` the accuracy-vs-diversity scatter of the first
    ``dataset_items`` items sits below (``scatter``, at the explorer's temperature, all S hypotheses); the
    explored item is ringed in it. With ``use_figure_widget`` (default: when
    :func:`figure_widget_available`) the page helper ``_anchor`` makes the scatter clickable: a click
    selects that item and objective and scrolls the item figure into view. Every part of the state lives
    in the widgets' synced state (the controls' values, the views' outputs), so a page reload shows the
    figure the controls describe.
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
        self.figure, self._view = first, _view(first, widgets)
        self.scatter: Any = None
        self._scatter_view: Any = None
        self._frame: pd.DataFrame | None = None
        if dataset_items > 0:
            self._frame = ex.dataset_metrics(dataset_items)
            self.scatter = accuracy_diversity_figure(self._frame, title=ex._dataset_title(self._frame, None, None),
                                                     selected=(objective, index), num_joints=len(ex.keypoint_names))
            self._scatter_view = _view(self.scatter, widgets)
            self._scatter_view.add_class(SCATTER_CLASS)
        self._anchor = _page_helper() if self.interactive else None
        if self._anchor is not None:
            self._anchor.observe(self._on_page_click, names="clicked")
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
        ring.update(point)
        self._scatter_view.outputs = (_mimebundle(self.scatter),)

    def refresh(self, change: Any = None) -> None:
        """Redraw the item figure, the metrics line and the scatter's ring from the controls' values."""
        if self._hold:
            return
        ex = self.explorer
        new = ex.item_figure(self.item.value, self.objective.value, self.temperature.value, self.hypotheses.value)
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
        """Select the clicked point's item and objective (plotly's ``on_click`` signature: the scatter's
        ``trace`` and its ``points``)."""
        inds = list(getattr(points, "point_inds", []) or [])
        if not inds or trace.customdata is None or trace.meta not in self.explorer.models:
            return
        self.select(int(round(float(trace.customdata[inds[0]][0]))), trace.meta)

    def _on_page_click(self, change: Any) -> None:
        """What the page helper reports of a click on the scatter: ``{"index", "objective", "serial"}``."""
        click = change["new"] or {}
        index, objective = click.get("index"), click.get("objective")
        if not isinstance(objective, str) or objective not in self.explorer.models or index is None:
            return
        self.select(int(round(float(index))), objective)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)
