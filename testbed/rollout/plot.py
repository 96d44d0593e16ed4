"""Draws the rollout simulator's picture (issue 13): for one scenario, per mode, the listener's targets able to
serve (fewest in each 0.5 s bucket) and the requests that failed in that bucket, over time from the change.

Usage: plot.py OUTCOMES_JSON OUT_PNG SCENARIO MODE [MODE...]   (run by testbed/rollout-matrix.sh)
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    outcomes_path, out, scenario, *modes = sys.argv[1:]
    with open(outcomes_path) as f:
        outcomes = json.load(f)
    chosen = [next(o for o in outcomes if o["scenario"] == scenario and o["mode"] == m) for m in modes]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(9, 2.8 * len(chosen)), sharex=True, squeeze=False)
    for ax, o in zip(axes[:, 0], chosen):
        series = o["series"]
        t = [s["t_ms"] / 1000 for s in series]
        able = [s["able_min"] for s in series]
        failed = [s["failed"] for s in series]
        ax.step(t, able, where="post", color="tab:green", label="targets able to serve (fewest in 0.5 s)")
        ax.set_ylabel("targets")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.bar(t, failed, width=0.45, align="edge", color="tab:red", alpha=0.6, label="failed requests per 0.5 s")
        ax2.set_ylabel("failed / 0.5 s")
        ax2.set_ylim(bottom=0, top=max(10, max(failed) * 1.1))
        ax.set_title(
            f"{o['mode']}: {o['failed']} of {o['sent']} requests failed, rollout {o['rollout_ms'] / 1000:.1f} s "
            f"(all delays / {o['factor']})",
            fontsize=10,
        )
        lines = ax.get_legend_handles_labels()
        bars = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + bars[0], lines[1] + bars[1], loc="lower right", fontsize=8)
    axes[-1, 0].set_xlabel(f"seconds since the change (every delay divided by {chosen[0]['factor']})")
    fig.suptitle(f"Rollout simulator: {scenario}, 200 requests/s", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
