"""Plots of a sweep table (matplotlib, Agg backend, PNG files).

- `plot_roofline`: each (point, workload) at its operational intensity (MACs per DRAM byte
  it actually moved) and achieved MACs per cycle, under the roofline of its config
  (peak ``rows * cols`` MACs/cycle, slope ``dram_bytes_per_cycle``): a panel per array
  shape, a roof per bandwidth.
- `plot_utilization`: array utilization against one parameter (DRAM bandwidth by default),
  one curve per workload and combination of the other swept parameters.
- `plot_heatmap`: utilization over two parameters, MAC-weighted over the workloads
  (total MACs / total peak MAC-cycles): a cell is the whole workload mix's utilization.

Rows with an error are left out; a heat-map cell with no valid row (an invalid config)
is grey and marked "x".
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

__all__ = ["plot_roofline", "plot_utilization", "plot_heatmap", "write_plots", "axis_value"]

_MARKERS = "osD^v<>pP*Xh"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plots need matplotlib: pip install 'gemmstone[sweep]'") from None
    matplotlib.use("Agg")  # files only: no display, safe in worker processes and CI
    import matplotlib.pyplot as plt

    return plt


def axis_value(row: dict, name: str):
    """A row's value of a grid axis (``array`` is ``"ROWSxCOLS"``)."""
    return f"{row['rows']}x{row['cols']}" if name == "array" else row[name]


def _order(value):
    if isinstance(value, str) and "x" in value and value.replace("x", "").isdigit():
        rows, cols = value.split("x")
        return (0, int(rows) * int(cols), int(rows), "")
    if isinstance(value, int | float):
        return (0, value, 0, "")
    return (1, 0, 0, str(value))


def _valid(rows: Sequence[dict]) -> list[dict]:
    return [row for row in rows if not row.get("error") and row.get("cycles")]


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_roofline(rows: Sequence[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Write the roofline plot of ``rows`` to ``path`` (PNG); returns the path.

    One panel per array shape (peak MACs/cycle), one roof per DRAM bandwidth in it;
    colours are bandwidths, markers are workloads."""
    plt = _pyplot()
    rows = [row for row in _valid(rows) if row["intensity"]]
    shapes = sorted({(row["rows"], row["cols"]) for row in rows}, key=lambda s: (s[0] * s[1], s))
    bandwidths = sorted({row["dram_bytes_per_cycle"] for row in rows})
    workloads = list(dict.fromkeys(row["workload"] for row in rows))
    palette = plt.get_cmap("tab10" if len(bandwidths) <= 10 else "viridis")

    def color(bw: int):
        index = bandwidths.index(bw)
        return palette(index if palette.N <= 10 else index / max(1, len(bandwidths) - 1))

    panels = max(1, len(shapes))
    columns = min(panels, 3)
    figure, grid = plt.subplots(-(-panels // columns), columns, squeeze=False, sharey=True,
                                figsize=(4.2 * columns + 2.5, 4.2 * -(-panels // columns)))
    low = min((row["intensity"] for row in rows), default=0.1) / 2
    high = max([row["intensity"] * 2 for row in rows]
               + [2 * r * c / bw for r, c in shapes for bw in bandwidths] + [100.0])
    for index, axes in enumerate(grid.flat):
        if index >= len(shapes):
            axes.set_visible(False)
            continue
        shape = shapes[index]
        peak = shape[0] * shape[1]
        mine = [row for row in rows if (row["rows"], row["cols"]) == shape]
        for bw in sorted({row["dram_bytes_per_cycle"] for row in mine}):
            xs = [low, peak / bw, high]
            axes.plot(xs, [min(peak, bw * x) for x in xs], color=color(bw), linewidth=1.5)
        for row in mine:
            marker = _MARKERS[workloads.index(row["workload"]) % len(_MARKERS)]
            axes.scatter(row["intensity"], row["macs"] / row["cycles"],
                         color=color(row["dram_bytes_per_cycle"]), marker=marker, s=40,
                         edgecolors="black", linewidths=0.5, zorder=3)
        if len(mine) <= 8:  # more labels than that overlap
            for row in mine:
                axes.annotate(row["workload"], (row["intensity"], row["macs"] / row["cycles"]),
                              fontsize=7, xytext=(4, -3), textcoords="offset points")
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_title(f"{shape[0]}x{shape[1]} array: {peak} MACs/cycle", fontsize=9)
        axes.set_xlabel("MACs per DRAM byte moved")
        axes.grid(True, which="both", alpha=0.3)
    grid.flat[0].set_ylabel("achieved MACs per cycle")
    handles = [plt.Line2D([], [], color=color(bw), label=f"roof at {bw} B/cycle")
               for bw in bandwidths]
    handles += [plt.Line2D([], [], color="grey", linestyle="", label=workload,
                           marker=_MARKERS[i % len(_MARKERS)])
                for i, workload in enumerate(workloads)]
    figure.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    figure.suptitle(title or "Roofline (performance model)")
    figure.tight_layout()
    return _save(figure, path)


def plot_utilization(rows: Sequence[dict], path: str | Path, *,
                     x: str = "dram_bytes_per_cycle", others: Sequence[str] = ()) -> Path:
    """Write utilization against parameter ``x`` to ``path`` (PNG): one curve per workload,
    batch and value of the ``others`` parameters; returns the path."""
    plt = _pyplot()
    rows = _valid(rows)
    batches = {row["batch"] for row in rows}
    curves: dict[tuple, list[tuple]] = {}
    for row in rows:
        key = (row["workload"], *(axis_value(row, name) for name in others),
               *((row["batch"],) if len(batches) > 1 else ()))
        curves.setdefault(key, []).append((axis_value(row, x), row["utilization"]))
    values = sorted({value for curve in curves.values() for value, _ in curve}, key=_order)
    numeric = all(isinstance(v, int | float) for v in values)
    figure, axes = plt.subplots(figsize=(8, 5))
    for i, (key, curve) in enumerate(curves.items()):
        curve.sort(key=lambda item: _order(item[0]))
        xs = [v if numeric else values.index(v) for v, _ in curve]
        label = ", ".join([key[0], *(f"{n}={v}" for n, v in zip(others, key[1:], strict=False))]
                          + ([f"batch {key[-1]}"] if len(batches) > 1 else []))
        axes.plot(xs, [100 * u for _, u in curve], marker=_MARKERS[i % len(_MARKERS)],
                  label=label)
    if numeric:
        if values and min(values) > 0 and max(values) / min(values) >= 8:
            axes.set_xscale("log", base=2)
        axes.set_xticks(values, [str(v) for v in values])
    else:
        axes.set_xticks(range(len(values)), [str(v) for v in values])
    axes.set_xlabel(x)
    axes.set_ylabel("array utilization (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"Utilization vs {x} (performance model)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


def plot_heatmap(rows: Sequence[dict], path: str | Path, *, x: str, y: str) -> Path:
    """Write the MAC-weighted utilization over parameters ``x`` and ``y`` to ``path`` (PNG);
    returns the path."""
    plt = _pyplot()
    xs = sorted({axis_value(row, x) for row in rows}, key=_order)
    ys = sorted({axis_value(row, y) for row in rows}, key=_order)
    macs = [[0] * len(xs) for _ in ys]
    peak_cycles = [[0] * len(xs) for _ in ys]
    for row in _valid(rows):
        i, j = ys.index(axis_value(row, y)), xs.index(axis_value(row, x))
        macs[i][j] += row["macs"]
        peak_cycles[i][j] += row["cycles"] * row["rows"] * row["cols"]
    nan = float("nan")
    grid = [[100 * m / p if p else nan for m, p in zip(mr, pr, strict=True)]
            for mr, pr in zip(macs, peak_cycles, strict=True)]
    figure, axes = plt.subplots(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2.5))
    colormap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = axes.imshow(grid, cmap=colormap, vmin=0, vmax=100, origin="lower", aspect="auto")
    for i, j in itertools.product(range(len(ys)), range(len(xs))):
        value = grid[i][j]
        text = "x" if value != value else f"{value:.0f}%"
        axes.text(j, i, text, ha="center", va="center", fontsize=8,
                  color="black" if value != value or value > 60 else "white")
    axes.set_xticks(range(len(xs)), [str(v) for v in xs])
    axes.set_yticks(range(len(ys)), [str(v) for v in ys])
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title("Utilization, MAC-weighted over workloads (%)")
    figure.colorbar(image, ax=axes, label="utilization (%)")
    return _save(figure, path)


def write_plots(rows: Sequence[dict], directory: str | Path, swept: Sequence[str], *,
                curve: str | None = None,
                heatmap: tuple[str, str] | None = None) -> list[Path]:
    """The standard plots of a sweep into ``directory``: ``roofline.png``,
    ``utilization_vs_X.png`` (when a parameter is swept) and ``heatmap_X_Y.png`` (when two
    are). ``swept`` lists the grid's axes with more than one value; ``curve`` and
    ``heatmap`` choose the parameters (default: DRAM bandwidth if swept, else the first
    swept axis; the first two swept axes)."""
    directory = Path(directory)
    paths = [plot_roofline(rows, directory / "roofline.png")]
    if curve is None and swept:
        curve = "dram_bytes_per_cycle" if "dram_bytes_per_cycle" in swept else swept[0]
    if curve is not None:
        others = [name for name in swept if name != curve]
        paths.append(plot_utilization(rows, directory / f"utilization_vs_{curve}.png",
                                      x=curve, others=others))
    if heatmap is None and len(swept) >= 2:
        heatmap = (swept[0], swept[1])
    if heatmap is not None:
        x, y = heatmap
        paths.append(plot_heatmap(rows, directory / f"heatmap_{x}_{y}.png", x=x, y=y))
    return paths
