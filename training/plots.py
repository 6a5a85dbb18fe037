"""The loss and metric curves of a run, as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganserve._files import atomic_path


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Losses, D outputs and FD against steps; None (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("loss_d", "loss_g"):
        axes[0].plot(steps, [r[key] for r in history], label=key)
    for key in ("d_real", "d_fake"):
        axes[1].plot(steps, [r[key] for r in history], label=key)
    evals = [r for r in history if "fd" in r]
    if evals:
        axes[2].plot([r["step"] for r in evals], [r["fd"] for r in evals], "o-", label="FD (eval-mode BN)")
        axes[2].plot([r["step"] for r in evals], [r["fd_train_mode"] for r in evals], "s--",
                     label="FD (train-mode BN)")
        axes[2].set_yscale("log")
    for ax, title in zip(axes, ("losses", "mean D output (sigmoid)", "Frechet distance (lower is better)")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path
