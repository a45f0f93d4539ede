"""What a verdict must say alongside it: ties, a winner that does not hold under the noise or
moved weights, and configurations measured on a busy machine that looked faster than the winner.

Pure functions over the ranked frame and the robustness figures; :func:`pipeline.decision.core.decide`
puts them into the recommendation, so the report, the parent's description, the terminal and the
notebook say the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.vocab import Metric
from pipeline.decision.types import Robustness, Winner

# the winner is "firm" when it stays the winner in at least this share of the redraws / weight moves
FIRM = 0.8
# a runner-up within this many points of the winner's total is named, even outside a tie
CLOSE_POINTS = 2.0


def _pct(v: float) -> str:
    return f"{v:.0%}"


def robustness_caveats(rob: Robustness) -> list[str]:
    out = []
    if rob.noise_stability is not None and rob.noise_stability < FIRM:
        out.append(
            f"Not firm: the winner stays the winner in only {_pct(rob.noise_stability)} of {rob.noise_draws} p95 redraws "
            f"from the raw samples (firm at {_pct(FIRM)} or more); on this machine and sample the leaders are too close to call."
        )
    if rob.winner_stability is not None and rob.winner_stability < FIRM:
        out.append(
            f"The choice depends on the weights: the winner stays the winner in only {_pct(rob.winner_stability)} "
            f"of the weight moves (firm at {_pct(FIRM)} or more)."
        )
    return out


def runner_up_caveat(ranked: pd.DataFrame, winner: Winner) -> list[str]:
    """The next eligible configuration outside the winner's tie, when its total is close."""
    if len(ranked) < 2:
        return []
    rest = ranked.iloc[1:]
    rest = rest[rest["eligible"].astype(bool) & ~rest["label"].isin(winner.tied_with)]
    if rest.empty:
        return []
    r = rest.iloc[0]
    gap = winner.score_pct - float(r["total_pct"])
    if not np.isfinite(gap) or gap >= CLOSE_POINTS:
        return []
    return [f"Close behind: {r['label']} scores {float(r['total_pct']):.1f}%, {gap:.1f} points less."]


def contended_caveat(ranked: pd.DataFrame, winner: Winner) -> list[str]:
    """Configurations measured on a busy machine whose p95 looked lower than the winner's."""
    if "contended" not in ranked or Metric.P95_MS not in ranked or Metric.P95_MS not in winner.metrics:
        return []
    busy = ranked[ranked["contended"].fillna("").astype(str) != ""]
    p95 = pd.to_numeric(busy[Metric.P95_MS], errors="coerce")
    faster = busy[p95 < winner.metrics[Metric.P95_MS]]
    if faster.empty:
        return []
    best = faster.loc[pd.to_numeric(faster[Metric.P95_MS]).idxmin()]
    return [
        f"{len(faster)} configuration(s) measured on a busy machine looked faster ({best['label']}: p95 "
        f"{float(best[Metric.P95_MS]):.2f} ms against the winner's {winner.metrics[Metric.P95_MS]:.2f} ms) and were ranked "
        f"after the quiet ones; measure them again on a quiet machine before ruling them out."
    ]


def caveats(ranked: pd.DataFrame, winner: Winner | None, rob: Robustness) -> list[str]:
    """Every caveat of a decision, in the order a reader needs them."""
    if winner is None:
        return []
    contended_winner = bool(str(ranked.iloc[0].get("contended", "") or ""))
    out = robustness_caveats(rob) + runner_up_caveat(ranked, winner)
    if not contended_winner:
        out += contended_caveat(ranked, winner)
    return out
