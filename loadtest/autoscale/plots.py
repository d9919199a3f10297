"""PNG plots of a replay: the offered load and each candidate's replicas over time, and each candidate's refusals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadtest.autoscale.replay import Outcome


def plot(outcomes: Sequence[Outcome], mu: float, out_dir: Path, utilisation: float = 0.7) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    minutes = [t / 60 for t in range(len(outcomes[0].offered))]
    needed = [max(1.0, o / (mu * utilisation)) for o in outcomes[0].offered]

    fig, axes = plt.subplots(len(outcomes), 1, figsize=(10, 2.1 * len(outcomes)), sharex=True)
    for ax, outcome in zip(axes, outcomes, strict=True):
        ax.plot(minutes, needed, color="0.75", lw=1, label=f"offered / ({utilisation:.0%} of one replica)")
        ax.plot(minutes, outcome.spec, color="tab:blue", lw=1.5, label="replicas (HPA)")
        ax.plot(minutes, outcome.ready, color="tab:green", lw=1, ls="--", label="ready")
        s = outcome.summary()
        ax.set_title(
            f"{outcome.candidate.name}: refused {s['refused_pct']}%, p99 {s['p99_ms']} ms, "
            f"{s['replica_changes']} changes, {s['replica_minutes']} replica-min",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel("pods")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    replicas = out_dir / "autoscale-replicas.png"
    fig.savefig(replicas, dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3))
    for outcome in outcomes:
        per_10s = [sum(outcome.refused[i : i + 10]) / 10 for i in range(0, len(outcome.refused), 10)]
        ax.plot([i * 10 / 60 for i in range(len(per_10s))], per_10s, lw=1.2, label=outcome.candidate.name)
    ax.set_ylabel("refused requests / s")
    ax.set_xlabel("minutes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    refusals = out_dir / "autoscale-refusals.png"
    fig.savefig(refusals, dpi=90)
    plt.close(fig)
    return [replicas, refusals]
