#!/usr/bin/env python3
"""Chart of the storm: requests per second that reach the upstream, direct vs through Breakwater.

    python3 bench/storm/plot.py bench/storm/results/storm.csv bench/storm/results/storm.png

Reads the per-second CSV written by `storm.py report`. The y axis is logarithmic above 1 req/s
and linear below (symlog), so the seconds in which nothing reached the upstream show as 0.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def column(rows, name):
    values = []
    for r in rows:
        v = r.get(name, "")
        values.append(float(v) if v not in ("", None) else None)
    return values


def present(values):
    return any(v is not None for v in values)


def centred_mean(values, width):
    """Mean over `width` seconds centred on each second (shorter at the edges)."""
    out = []
    half = width // 2
    for i in range(len(values)):
        window = [v for v in values[max(0, i - half) : i + width - half] if v is not None]
        out.append(sum(window) / len(window) if window else None)
    return out


def mean_last(values, count):
    tail = [v for v in values if v is not None][-count:]
    return sum(tail) / len(tail) if tail else None


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py STORM_CSV OUT_PNG")
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = [int(r["second"]) for r in rows]
    direct = column(rows, "direct_upstream_rps")
    bw = column(rows, "breakwater_upstream_rps")
    offered = column(rows, "offered_rps")
    honour = column(rows, "honour_upstream_rps")
    n = len(seconds)

    fig, ax = plt.subplots(figsize=(11, 6.6), dpi=110)
    steady = min(60, n)
    if n > steady:
        ax.axvspan(n - steady, n, color="#f0f0f0", zorder=0)
        ax.text(n - steady + 1, 3500, "last 60 s: the steady state, every client at the 30 s cap",
                fontsize=9, color="#555555", va="center")
    if present(direct):
        ax.step(seconds, direct, where="post", color="#d62728", lw=2.2,
                label="direct, no Breakwater: every request reaches the API")
    if present(offered):
        ax.step(seconds, offered, where="post", color="black", lw=1, ls=(0, (2, 4)),
                label="offered to Breakwater by the clients (dashes on the red line)")
    d_mean = mean_last(direct, steady) if present(direct) else None
    if d_mean:
        target = d_mean / 180.0
        ax.axhline(target, color="#2ca02c", lw=1.2, ls=":",
                   label="180x less than direct (Fleet's reduction): %.1f req/s" % target)
    if present(bw):
        ax.step(seconds, bw, where="post", color="#1f77b4", lw=0.9, alpha=0.5,
                label="through Breakwater, clients ignoring Retry-After, each second")
        ax.plot(seconds, centred_mean(bw, 10), color="#1f77b4", lw=2.4,
                label="through Breakwater, clients ignoring Retry-After, 10 s mean")
        b_mean = mean_last(bw, steady)
        if d_mean and b_mean:
            ax.text(n - steady + 1, 450,
                    "mean of the last %d s: direct %.0f req/s,\nthrough Breakwater %.2f req/s (%.0fx less)"
                    % (steady, d_mean, b_mean, d_mean / b_mean),
                    fontsize=9, color="#1f4e79", va="center", ha="left",
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=2))
    if present(honour):
        ax.plot(seconds, centred_mean(honour, 10), color="#9467bd", lw=1.6, ls="-.",
                label="through Breakwater, clients honouring Retry-After, 10 s mean")

    ax.set_yscale("symlog", linthresh=1, linscale=0.5)
    ax.set_ylim(0, 8000)
    ax.set_xlim(0, n)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "%g" % v))
    ax.set_yticks([0, 1, 10, 100, 1000])
    ax.grid(True, which="major", axis="y", color="#dddddd", lw=0.8)
    ax.set_xlabel("seconds since the storm started")
    ax.set_ylabel("requests per second reaching the API (log scale above 1)")
    ax.set_title("250 clients with expired tokens, each polling every 100 ms:\n"
                 "requests per second reaching the API, direct vs through Breakwater (backoff 1 s doubling to 30 s)",
                 fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8.5, frameon=False)
    fig.tight_layout()
    fig.savefig(dst)
    print("wrote %s" % dst)


if __name__ == "__main__":
    main()
