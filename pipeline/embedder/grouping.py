"""How the embedder cuts a batch: texts sorted by length, split into the groups that cost the least
padding plus per-call overhead (a leaf module: a pure function of token counts)."""

from __future__ import annotations

from collections.abc import Sequence


def length_groups(lengths: Sequence[int], max_rows: int, call_cost: int) -> list[tuple[int, int]]:
    """Split ascending ``lengths`` into contiguous groups of at most ``max_rows`` rows.

    A group costs ``rows * longest + call_cost`` padded tokens (``call_cost``: the fixed cost of
    one more inference call, in tokens).  The split with the least total cost is found by
    dynamic programming; it returns ``[(start, stop), ...]``.

    ``best[j] = j * L + call_cost + min(best[i] - i * L)`` over the window
    ``j - max_rows <= i < j``, where ``L = lengths[j - 1]``.  While ``L`` stays the same the
    window minimum is kept in a monotone deque (amortized O(1) per text); when ``L`` grows the
    deque is rebuilt from the window once.  Token counts take few distinct values (at most
    ``max_length``), so this is O(n * distinct lengths) instead of O(n * max_rows).  Among equal
    costs the earliest cut wins.
    """
    from collections import deque

    n = len(lengths)
    best = [0] * (n + 1)
    cut = [0] * (n + 1)
    window: deque[int] = deque()  # candidate cuts i, values best[i] - i*L nondecreasing front to back
    cur = None
    for j in range(1, n + 1):
        longest = int(lengths[j - 1])
        lo = max(0, j - max_rows)
        if longest != cur:  # rebuild: the earliest i whose value is <= every later one's, in order
            cur = longest
            window.clear()
            suffix_min = None
            for i in range(j - 2, lo - 1, -1):
                v = best[i] - i * cur
                if suffix_min is None or v <= suffix_min:
                    window.appendleft(i)
                    suffix_min = v
            # the newest cut j-1 joins below, as in the steady state
        new = j - 1
        v_new = best[new] - new * cur
        while window and best[window[-1]] - window[-1] * cur > v_new:
            window.pop()
        window.append(new)
        while window[0] < lo:
            window.popleft()
        i = window[0]
        best[j], cut[j] = best[i] + (j - i) * cur + call_cost, i
    groups = []
    j = n
    while j > 0:
        groups.append((cut[j], j))
        j = cut[j]
    return groups[::-1]


def padded_tokens(lengths: Sequence[int], max_rows: int, call_cost: int) -> tuple[int, int]:
    """(token positions the embedder computes for one ``embed`` call of texts of these token
    counts, the real tokens among them), cut as :meth:`pipeline.embedder.Embedder.embed` cuts them:
    one text alone is not padded; otherwise sorted and split by :func:`length_groups`, each group
    padded to its longest (one group: the whole call padded to the longest)."""
    real = int(sum(lengths))
    n = len(lengths)
    if n <= 1:
        return real, real
    ordered = sorted(int(x) for x in lengths)
    groups = length_groups(ordered, max_rows, call_cost)
    return sum((stop - start) * ordered[stop - 1] for start, stop in groups), real


def padding_share(batches: Sequence[Sequence[int]], max_rows: int, call_cost: int) -> float:
    """Padded positions over real tokens, over these calls (each a list of token counts)."""
    computed = real = 0
    for batch in batches:
        c, r = padded_tokens(batch, max_rows, call_cost)
        computed, real = computed + c, real + r
    return (computed - real) / real if real else 0.0


def token_figures(batches: Sequence[Sequence[int]] | None, pass_s: float, max_rows: int, call_cost: int) -> dict[str, float]:
    """``tokens_per_s`` (real tokens of one pass of these calls over its time) and ``padding_share``;
    empty without the calls' token counts."""
    if not batches:
        return {}
    return {"tokens_per_s": sum(sum(b) for b in batches) / pass_s, "padding_share": padding_share(batches, max_rows, call_cost)}
