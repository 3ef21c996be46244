"""Water-filling, compiled: the flow engine's split of demand over pools in order.

Each demand (a region's class) is taken in turn, classes then regions, and fills its pools in
order, each up to its room (slot-seconds a second left below the fill level); what finds no
room is spread over the demand's pools that are up, in proportion to their slots. The order
makes it sequential (a demand takes room from the ones after it), so it runs as a loop,
compiled with numba: a loop over the few thousand demands of a national grid costs
microseconds, where vectorised passes over groups of demands cost milliseconds an hour.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
LEFT_TINY = 1e-12  # a demand with less than this share left is placed


@numba.njit(cache=True, nogil=True, error_model="numpy")
def water_fill(  # pragma: no cover - compiled (numba); its Python body is tested through it
    demand_rps: FloatArray,
    pair_r: npt.NDArray[np.intp],
    pair_c: npt.NDArray[np.intp],
    cand: npt.NDArray[np.intp],
    usable: npt.NDArray[np.bool_],
    service_s: FloatArray,
    room0: FloatArray,
    slots: FloatArray,
    alive: npt.NDArray[np.bool_],
    shares: FloatArray,
) -> None:
    """Fill ``shares`` (U, demands, width), zero on entry, for each of the U demand rows
    ``demand_rps`` (U, regions, classes), each from the room ``room0`` (pools,): the share of
    demand d sent to its pool ``cand[d, j]`` is ``shares[u, d, j]``.

    Demand d (``pair_r``, ``pair_c``, in the order they are placed) may fill its pools
    ``cand[d]`` (in order; a value past the last pool pads the row) where ``usable[d]``."""
    n_u = demand_rps.shape[0]
    n_d, width = cand.shape
    n_p = room0.size
    room = np.empty(n_p)
    for u in range(n_u):
        room[:] = room0
        for d in range(n_d):
            r = pair_r[d]
            c = pair_c[d]
            dem = demand_rps[u, r, c]
            if not dem > 0.0:
                continue
            left = 1.0
            for j in range(width):
                p = cand[d, j]
                if p >= n_p:
                    break
                if not usable[d, j] or room[p] <= 0.0:
                    continue
                work = dem * service_s[c, p]
                take = min(left, room[p] / work)
                shares[u, d, j] += take
                room[p] -= take * work
                left -= take
                if left <= LEFT_TINY:
                    break
            if left > LEFT_TINY:
                total = 0.0
                for j in range(width):
                    p = cand[d, j]
                    if p >= n_p:
                        break
                    if alive[p]:
                        total += slots[p]
                total = max(total, 1e-12)
                for j in range(width):
                    p = cand[d, j]
                    if p >= n_p:
                        break
                    if alive[p]:
                        shares[u, d, j] += left * (slots[p] / total)
