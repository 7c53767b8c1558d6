"""The pipeline's report: report.json (every step's summary), report.md (for people) and the plot of the
cluster-size distribution before and after balancing."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import write_text_atomic


def cluster_size_plot(before: list[int], after: list[int], path, title: str = "") -> Path:
    """Cluster sizes, largest first, before and after balancing (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for sizes, label in ((before, "before"), (after, "after")):
        ranked = sorted((n for n in sizes if n > 0), reverse=True)
        ax.plot(range(1, len(ranked) + 1), ranked, marker=".", label=f"{label} ({sum(sizes)} images)")
    ax.set_yscale("log")  # sizes are ≥ 1 after dropping empty clusters; log ticks at every decade, 2 and 5
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # cluster ranks are whole numbers
    ax.set_xlabel("cluster rank (largest first)")
    ax.set_ylabel("images")
    ax.set_title(title or "finest-level cluster sizes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_report(folder: Path, report: dict) -> None:
    folder = Path(folder)
    write_text_atomic(folder / "report.json", json.dumps(report, indent=2, default=str))
    lines = ["# Curation report", "", f"pool: {report['pool']} ({report['input']} images) → "
             f"{report['output_count']} images in {report['curated']}", "",
             "| step | in | kept | removed | seconds | details |", "|---|---|---|---|---|---|"]
    for s in report["steps"]:
        details = ", ".join(f"{k}={v}" for k, v in s.items() if k not in (
            "step", "input", "kept", "removed", "seconds", "cluster_sizes_before", "cluster_sizes_after", "resumed"))
        lines.append(f"| {s['step']} | {s['input']} | {s['kept']} | {s['removed']} | {s['seconds']} | {details} |")
    if report.get("duplicate_groups"):
        lines += ["", "## Duplicate groups (kept ← removed)", ""]
        lines += [f"- {kept} ← {', '.join(removed)}" for kept, removed in list(report["duplicate_groups"].items())[:50]]
    if report.get("plot"):
        lines += ["", f"![cluster sizes]({Path(report['plot']).name})"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
