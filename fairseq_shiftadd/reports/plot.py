"""The demo report's ``front.png``: the search's evaluated candidates (energy vs validation loss with inherited
supernet weights), their Pareto front, and the trained models marked with their test sacreBLEU."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from ..plotting import pyplot, save_png
from ..search.pareto import pareto_front
from .runs import CandidateRow

__all__ = ["plot_front"]


def plot_front(path: Path, candidates: Sequence[CandidateRow], marks: Dict[str, tuple],
               energy_label: str = "energy per sentence (mJ, 45 nm)") -> None:
    """Energy vs validation loss of the evaluated candidates, their Pareto front, and ``marks``, to ``path``
    (PNG, written atomically).

    Args:
        marks: model name -> ``(energy_mj, validation loss, test sacreBLEU)``, energies on the candidates' scale.
        energy_label: the x axis (profile and accounting of the candidates' energies).
    """
    plt = pyplot()
    evaluated = [c for c in candidates if c.fitness is not None]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([c.energy_mj for c in evaluated], [c.fitness for c in evaluated], s=12, color="0.6",
               label=f"evaluated candidates ({len(evaluated)})")
    points = [(c.fitness, c.energy_mj) for c in evaluated]
    front = sorted((evaluated[i] for i in pareto_front(points)), key=lambda c: c.energy_mj)
    ax.plot([c.energy_mj for c in front], [c.fitness for c in front], "k.-", label="Pareto front")
    for (name, (energy, loss, bleu)), marker in zip(marks.items(), ("r*", "bs", "g^", "mD")):
        ax.plot([energy], [loss], marker, markersize=13, label=f"{name}: sacreBLEU {bleu:.1f}, {energy:.2f} mJ")
    ax.set_xlabel(energy_label)
    ax.set_ylabel("validation loss with inherited supernet weights")
    ax.set_title("search front and the trained models")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
