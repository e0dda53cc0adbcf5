"""The demo's picture: measured site load against the effective limit over the run (PNG)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from smartcharge.demo.report import Sample


def plot_day(samples: list[Sample], path: Path, *, title: str, site_cap_w: float | None,
             dr_windows: list[tuple[datetime, datetime, str]], notes: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")      # no display: the demo runs on servers and in CI
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = [s.time for s in samples]
    load_kw = [s.site_load_w / 1000 for s in samples]
    limit_kw = [float("nan") if s.effective_limit_w is None else s.effective_limit_w / 1000
                for s in samples]

    fig, ax = plt.subplots(figsize=(11, 5.2), dpi=110)
    for start, end, label in dr_windows:
        ax.axvspan(start, end, color="#e0533d", alpha=0.08, lw=0)
        ax.text(start, 0.98, f" {label}", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8, color="#b3402e")
    ax.fill_between(times, load_kw, step="post", color="#2f7de1", alpha=0.18, lw=0)
    ax.step(times, load_kw, where="post", color="#2f7de1", lw=1.4, label="site load (measured)")
    ax.step(times, limit_kw, where="post", color="#e0533d", lw=1.8, ls="--",
            label="effective limit")
    if site_cap_w is not None:
        ax.axhline(site_cap_w / 1000, color="#8a96a6", lw=0.8, ls=":", label="grid cap")
    ax.set_ylabel("power [kW]")
    ax.set_xlabel("site time (UTC)")
    ax.set_ylim(bottom=0, top=max([*load_kw, *[v for v in limit_kw if v == v], 1.0]) * 1.12)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.grid(True, color="#e3e8ef", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    # Above the axes, so neither the curves nor the DR labels hide under it.
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9, ncols=3)
    if notes:
        ax.text(1.0, -0.16, "   ".join(notes), transform=ax.transAxes, ha="right", va="top",
                fontsize=8.5, color="#44505e")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
