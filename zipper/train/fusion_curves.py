"""images/fusion.png of a fused model: the audio gain per task and every gate against updates.

The loss curves alone cannot tell a model that learned its task from a text LM that learned a bias: the gain
(zipper.models.audio_gain) says whether the other modality is used, the gates (tanh of each Flamingo gate, per
cross-attention layer and input projection) say how far the fusion has opened.  One picture, read at a glance.
"""

from __future__ import annotations

from pathlib import Path

from zipper.utils.atomic import atomic_path

TASKS = ("asr", "tts")


def gate_series(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """'<tower> x<layer> <gate>' -> [(update, tanh(gate))] over the epochs that recorded gates."""
    series: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        for tower, layers in h.get("gates", {}).items():
            for n, layer in enumerate(layers):
                for gate, value in layer.items():
                    name = f"{tower} {gate}" if tower.endswith("_input") else f"{tower} x{n + 1} {gate}"
                    series.setdefault(name, []).append((h["step"], value))
    return series


def gain_series(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """task -> [(update, validation gain in nats/token)]."""
    series: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        for task in TASKS:
            value = h.get("valid", {}).get(f"{task}_gain")
            if value is not None:
                series.setdefault(task, []).append((h["step"], value))
    return series


def plot_fusion_history(history: list[dict], image: Path) -> bool:
    """Write the two-panel plot; False (nothing written) when the history has neither gains nor gates."""
    gains, gates = gain_series(history), gate_series(history)
    if not gains and not gates:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    for task, points in sorted(gains.items()):
        left.plot(*zip(*points), marker="o", label=task.upper())
    left.axhline(0.0, color="gray", lw=0.8)
    left.set_title("audio gain: loss(mismatched) - loss(matched)", fontsize=9)
    left.set_xlabel("updates")
    left.set_ylabel("nats / token (dev)")
    if gains:
        left.legend(fontsize=8)
    for name, points in sorted(gates.items()):
        right.plot(*zip(*points), marker=".", lw=1, ls="--" if name.endswith(" ff") else "-", label=name)
    right.set_title("gates, tanh(a)", fontsize=9)
    right.set_xlabel("updates")
    if gates:  # beside the panel: with 4 layers x 2 towers x 2 gates it would hide the curves
        right.legend(fontsize=6, ncol=1 + len(gates) // 12, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(image, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return True
