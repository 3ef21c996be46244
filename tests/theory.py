"""Independent queueing references for the admission tests: plain numpy/scipy, nothing from gridsim.

Notation: ``c`` servers (slots), offered load ``a = lambda / mu`` Erlangs, ``rho = a / c``, mean
service ``1 / mu`` (``mean_s``), FCFS, Poisson arrivals, exponential service. Every reference
returns a ``Ref``: what becomes of an arrival (served, dropped by the admission rules, abandoned
when its patience runs out; the three add up to 1) and its waits.

What is here, and where it comes from:

- ``erlang_b`` / ``erlang_c``: Erlang B as the Poisson ratio ``P(X = c) / P(X <= c)``, X ~
  Poisson(a) (log space, any c), checked against the recursion ``B(k) = a B(k-1) / (k + a
  B(k-1))``; Erlang C = ``c B / (c - a (1 - B))``. Textbook (e.g. Kleinrock, Queueing Systems I,
  3.5; Gross & Harris, Fundamentals of Queueing Theory, 2.3).
- ``mmck``: M/M/c/K with ``k`` waiting places (``c + k`` in all), the closed form (Gross &
  Harris 2.5): ``p_n ~ a^n / n!`` up to ``c``, ``p_c rho^j`` for ``j`` waiting. Written relative
  to ``p_c`` with Erlang B, ``sum_{n<c} p_n / p_c = 1/B - 1``, so it stays finite for any c.
- ``birth_death``: the birth-death chain of M/M/c+M (Erlang-A, Palm 1943; Garnett, Mandelbaum &
  Reiman 2002) and M/M/c/K+M: birth ``lambda`` (none at the limit), death ``min(n, c) mu +
  (n - c)^+ theta``, ``theta = 1 / mean patience``; the unbounded chain is truncated where its
  tail falls below e^-80 of its peak. The waits of an arrival come from first-step analysis on
  its position in the queue (derivation in the function's docstring).
- ``mmc_max_wait``: M/M/c+D (deterministic patience ``d``, i.e. ``admission.max_wait``) in closed
  form, from the offered-wait density below; for rho < 1 its loss equals Boots & Tijms (1999),
  ``boots_tijms_loss``.
- ``mmc_patience``: M/M/c+G for any patience law, several classes sharing one pool (their
  patience laws mixed by share), with an optional maximum wait: the offered-wait density of
  Baccelli & Hebuterne (1981) and Zeltyn & Mandelbaum (2005), integrated with scipy's ``quad``.
- ``simulate``: a direct event-by-event simulation (heapq, Kiefer-Wolfowitz slot free-times) of
  all the rules together, used by the tests to check the references themselves.

The offered-wait density (M/M/c+G; Baccelli & Hebuterne 1981, Zeltyn & Mandelbaum 2005, "Call
centers with impatient customers: many-server asymptotics of the M/M/n+G queue", Queueing
Systems 51). The offered wait V is what an infinitely patient arrival would wait. With fewer than
c busy (V = 0) the system is the Erlang loss chain: ``p_j = p_0 a^j / j!``. With all c busy V > 0
falls at rate 1 and an arrival that will be served (prob. ``1 - G(V)``, G the patience cdf; one
that abandons never takes a slot) adds an Exp(c mu) (one more departure of c busy slots). Level
crossing at x > 0: ``v(x) = lambda p_{c-1} e^{-c mu x} + lambda int_0^x (1 - G(y)) v(y)
e^{-c mu (x - y)} dy``, solved by ``v(x) = lambda p_{c-1} exp(lambda H(x) - c mu x)``, ``H(x) =
int_0^x (1 - G(u)) du = E[min(patience, x)]``. Relative to ``p_0 a^c / c!`` (so ``lambda p_{c-1}
= c mu``): no wait ``1/B - 1``, density ``c mu exp(lambda H(x) - c mu x)``. By PASTA an arrival
sees V; with patience tau it is served after V if tau > V, abandons after tau if tau < V. A
maximum wait d turns away (drops) every arrival that sees V >= d, and those add nothing to V: H
stops growing at d, and the dropped mass is ``int_d^inf c mu exp(lambda H(d) - c mu x) dx =
exp(lambda H(d) - c mu d)``. Under FCFS a customer who abandons never delays anyone, so dropping
on arrival those whose wait would pass d ("the request engine knows the wait") is the same
process for everyone served as letting them wait d and leave.

For deterministic patience d (no other): ``H(x) = min(x, d)``, so with ``delta = c mu -
lambda``: no wait ``1/B - 1``, served after waiting ``c mu (1 - e^{-delta d}) / delta``,
dropped ``e^{-delta d}``, and ``E[W; served] = c mu (1 - e^{-delta d} (1 + delta d)) /
delta^2``. Dividing out, for rho < 1 the loss is ``(1 - rho) pi / (1 - rho pi)`` with ``pi =
C e^{-delta d} = P(W > d)`` in M/M/c without impatience: Boots & Tijms (1999), "A multiserver
queueing system with impatient customers", Management Science 45(3) 444-448.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import integrate, optimize, special, stats

FloatArray = npt.NDArray[np.float64]
TAIL = 80.0  # log-probability below the peak where a chain or an integral is cut (e^-80)


@dataclass(frozen=True)
class Ref:
    """What becomes of an arrival at a pool, in steady state."""

    served: float  # share of arrivals served
    dropped: float  # turned away by the admission rules (queue limit, maximum wait)
    abandoned: float  # left when their patience ran out
    mean_wait_served: float  # E[wait | served], seconds
    mean_wait_all: float  # E[time in queue], all arrivals (abandoners: patience; dropped: 0)
    no_wait: float  # share of arrivals served at once (they find a free slot)


# --- Erlang B and C -------------------------------------------------------------------------------


def log_erlang_b(c: int, a: float) -> float:
    """log Erlang B: ``P(X = c) / P(X <= c)`` for X ~ Poisson(a), in log space (any c)."""
    return float(stats.poisson.logpmf(c, a) - stats.poisson.logcdf(c, a))


def erlang_b(c: int, a: float) -> float:
    return math.exp(log_erlang_b(c, a))


def erlang_b_recursion(c: int, a: float) -> float:
    """Erlang B by its recursion (stable in floats for any c), a second computation."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c (a < c): ``c B / (c - a (1 - B))``."""
    if a >= c:
        raise ValueError("no stationary law at or above full load")
    b = erlang_b(c, a)
    return c * b / (c - a * (1 - b))


def mmc(c: int, a: float, mean_s: float = 1.0) -> Ref:
    """M/M/c: everyone is served; mean wait ``C / (c mu - lambda)``."""
    p_wait = erlang_c(c, a)
    wait = p_wait * mean_s / (c - a)
    return Ref(1.0, 0.0, 0.0, wait, wait, 1.0 - p_wait)


def _log_below(c: int, a: float) -> float:
    """log of ``sum_{n<c} p_n / p_c = 1/B - 1`` (Erlang B): the no-wait states relative to c
    busy."""
    log_b = log_erlang_b(c, a)
    return float(np.log(-np.expm1(log_b)) - log_b) if log_b < 0 else -np.inf


# --- M/M/c/K --------------------------------------------------------------------------------------


def mmck(c: int, a: float, k: int, mean_s: float = 1.0) -> Ref:
    """M/M/c/K with ``k`` waiting places: an arrival finding c + k present is dropped.

    Relative to ``p_c``: the states below c weigh ``1/B - 1`` together, ``c + j`` weighs
    ``rho^j`` (j = 0..k). Dropped: ``p_{c+k}`` (PASTA). The queue ``L_q = sum_j j p_{c+j}``;
    by Little, the mean wait over all arrivals is ``L_q / lambda`` and over the served ``L_q /
    (lambda (1 - p_{c+k}))``.
    """
    rho = a / c
    j = np.arange(k + 1, dtype=np.float64)
    log_w = np.concatenate([[_log_below(c, a)], j * math.log(rho)])
    log_z = special.logsumexp(log_w)
    p = np.exp(log_w - log_z)
    no_wait, queue = float(p[0]), p[1:]  # queue[j] = p_{c+j}
    dropped = float(queue[-1])
    lam = a / mean_s
    lq = float((j * queue).sum())
    return Ref(1 - dropped, dropped, 0.0, lq / (lam * (1 - dropped)), lq / lam, no_wait)


# --- birth-death chains: Erlang-A, M/M/c/K+M ------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """The stationary law of a birth-death chain at and above c busy, with what an arrival sees."""

    ref: Ref
    lq: float  # mean number waiting (time average)
    lam: float  # arrival rate (1/s)


def birth_death(
    c: int,
    a: float,
    mean_s: float = 1.0,
    patience_mean: float | None = None,
    k: int | None = None,
) -> Chain:
    """M/M/c+M (Erlang-A), M/M/c/K+M (``k`` waiting places) or M/M/c/K (no patience).

    States ``n`` present (in service and waiting, impatient ones included until they leave).
    Birth ``lambda`` below the limit ``c + k``; death ``min(n, c) mu + (n - c)^+ theta``. With
    ``q_j = p_{c+j} / p_c``: ``log q_j = sum_{i=1..j} log(lambda / (c mu + i theta))``; the
    states below c weigh ``1/B - 1`` (Erlang B) relative to ``p_c`` as in M/M/c/K.

    The waits, by first-step analysis on the arrival's position. An arrival finding ``j``
    waiting (``c + j`` present, PASTA) joins at position ``m = j + 1``. At position ``i`` it
    moves up at rate ``c mu + (i - 1) theta`` (a departure from service, or one of the ``i - 1``
    ahead abandoning; those behind do not matter under FCFS) and leaves at its own rate
    ``theta``: the holding time there is Exp(``c mu + i theta``) whatever happens next. So

    - P(served | m) = ``prod_{i=1..m} (c mu + (i-1) theta) / (c mu + i theta) = c mu / (c mu +
      m theta)`` (the product telescopes);
    - E[W; served | m] = P(served | m) x ``sum_{i=1..m} 1 / (c mu + i theta)`` (the holding times
      are independent of the path taken);
    - E[time in queue | m] = ``sum_{i=1..m} P(reach position i) / (c mu + i theta)`` with
      P(reach i) = ``(c mu + i theta) / (c mu + m theta)``, i.e. ``m / (c mu + m theta)``.

    The returned ``lq`` lets the tests check two consequences: P(abandon) = ``theta L_q /
    lambda`` (abandonments at rate theta per waiting customer) and E[time in queue] over all
    arrivals = ``L_q / lambda`` (Little).
    """
    mu = 1.0 / mean_s
    lam = a * mu
    theta = 0.0 if patience_mean is None else 1.0 / patience_mean
    cmu = c * mu
    if k is None:
        if theta == 0.0:
            raise ValueError("an unbounded chain without patience is M/M/c: use mmc")
        size = 1024
        while True:
            i = np.arange(1, size + 1, dtype=np.float64)
            log_q = np.concatenate([[0.0], np.cumsum(np.log(lam) - np.log(cmu + i * theta))])
            if log_q[-1] < log_q.max() - TAIL and np.diff(log_q)[-1] < 0:
                break
            size *= 2
    else:
        i = np.arange(1, k + 1, dtype=np.float64)
        log_q = np.concatenate([[0.0], np.cumsum(np.log(lam) - np.log(cmu + i * theta))])
    log_below = _log_below(c, a)
    log_z = np.logaddexp(log_below, special.logsumexp(log_q))
    p_queue = np.exp(log_q - log_z)  # p_{c+j}, j = 0..J
    no_wait = math.exp(log_below - log_z)
    j = np.arange(p_queue.size, dtype=np.float64)
    lq = float((j * p_queue).sum())
    # arrivals that join: all states but the limit (with no limit, the truncated tail is e^-80)
    joins = p_queue[:-1] if k is not None else p_queue
    dropped = float(p_queue[-1]) if k is not None else 0.0
    m = np.arange(1, joins.size + 1, dtype=np.float64)  # position on joining
    p_served = cmu / (cmu + m * theta)
    held = np.cumsum(1.0 / (cmu + m * theta))  # sum_{i<=m} 1/(c mu + i theta)
    served_waiting = float((joins * p_served).sum())
    wait_served = float((joins * p_served * held).sum())
    in_queue = float((joins * m / (cmu + m * theta)).sum())
    served = no_wait + served_waiting
    abandoned = float((joins * (1 - p_served)).sum())
    ref = Ref(served, dropped, abandoned, wait_served / served, in_queue, no_wait)
    return Chain(ref, lq, lam)


# --- M/M/c+D: a maximum wait ----------------------------------------------------------------------


def _log_f(z: float) -> float:
    """log of ``int_0^1 e^{-z u} du = (1 - e^{-z}) / z`` (1 at z = 0), any sign of z."""
    if abs(z) < 1e-8:
        return -z / 2
    if z > 0:
        return math.log(-math.expm1(-z)) - math.log(z)
    w = -z
    return w + math.log(-math.expm1(-w)) - math.log(w)


def _log_g(z: float) -> float:
    """log of ``int_0^1 u e^{-z u} du = (1 - e^{-z} (1 + z)) / z^2`` (1/2 at z = 0)."""
    if abs(z) < 1e-4:
        return math.log(0.5 - z / 3 + z * z / 8)
    if z > 0:
        return math.log(-math.expm1(-z) - z * math.exp(-z)) - 2 * math.log(z)
    w = -z  # (e^w (w - 1) + 1) / w^2
    return w + math.log(w - 1 + math.exp(-w)) - 2 * math.log(w)


def mmc_max_wait(c: int, a: float, d: float, mean_s: float = 1.0) -> Ref:
    """M/M/c+D: an arrival whose wait would exceed ``d`` seconds is dropped (closed form, see
    the module docstring). Masses relative to ``p_0 a^c / c!``: no wait ``1/B - 1``; served
    after a wait ``c mu d f(delta d)``; dropped ``e^{-delta d}``; ``E[W; served] = c mu d^2
    g(delta d)``, with ``f(z) = int_0^1 e^{-zu} du``, ``g(z) = int_0^1 u e^{-zu} du``,
    ``delta = c mu - lambda`` (any sign: a stationary law exists at any load)."""
    mu = 1.0 / mean_s
    cmu = c * mu
    z = (cmu - a * mu) * d
    log_none = _log_below(c, a)
    log_wait = math.log(cmu * d) + _log_f(z)
    log_drop = -z
    log_z = special.logsumexp([log_none, log_wait, log_drop])
    no_wait = math.exp(log_none - log_z)
    served = no_wait + math.exp(log_wait - log_z)
    dropped = math.exp(log_drop - log_z)
    wait_mass = math.exp(math.log(cmu * d * d) + _log_g(z) - log_z)  # E[W; served]
    return Ref(served, dropped, 0.0, wait_mass / served, wait_mass, no_wait)


def boots_tijms_loss(c: int, a: float, d: float, mean_s: float = 1.0) -> float:
    """Boots & Tijms (1999): M/M/c with deterministic patience d, rho < 1: P(loss) = ``(1 - rho)
    pi / (1 - rho pi)``, ``pi = P(W > d) = C e^{-(c mu - lambda) d}`` without impatience."""
    rho = a / c
    pi = erlang_c(c, a) * math.exp(-(c - a) / mean_s * d)
    return (1 - rho) * pi / (1 - rho * pi)


# --- M/M/c+G: any patience, several classes -------------------------------------------------------


@dataclass(frozen=True)
class Patience:
    """A patience law: survival ``1 - G``, ``H(x) = E[min(tau, x)]`` and ``E[tau; tau <= x]``."""

    sf: Callable[[float], float]
    h: Callable[[float], float]
    partial: Callable[[float], float]  # E[tau; tau <= x]
    cdf: Callable[[FloatArray], FloatArray]
    sample: Callable[[np.random.Generator, int], FloatArray]
    kinks: tuple[float, ...] = ()


def exponential(mean: float) -> Patience:
    def sf(x: float) -> float:
        return math.exp(-x / mean)

    def h(x: float) -> float:
        return -mean * math.expm1(-x / mean)

    return Patience(
        sf,
        h,
        lambda x: h(x) - x * sf(x),
        lambda x: -np.expm1(-np.maximum(np.asarray(x, np.float64), 0.0) / mean),
        lambda rng, n: rng.exponential(mean, n),
    )


def constant(value: float) -> Patience:
    return Patience(
        lambda x: 1.0 if x < value else 0.0,
        lambda x: min(x, value),
        lambda x: value if x >= value else 0.0,
        lambda x: (np.asarray(x, np.float64) >= value).astype(np.float64),
        lambda rng, n: np.full(n, value),
        (value,),
    )


def lognormal(mean: float, sigma: float) -> Patience:
    """Given by its mean and the std of log(tau), as gridsim's scenarios give lengths."""
    mu = math.log(mean) - sigma**2 / 2
    law = stats.lognorm(sigma, scale=math.exp(mu))

    def partial(x: float) -> float:  # E[tau; tau <= x] = mean Phi((ln x - mu - s^2) / s)
        return 0.0 if x <= 0 else mean * float(stats.norm.cdf((math.log(x) - mu) / sigma - sigma))

    def sf(x: float) -> float:
        return float(law.sf(x))

    return Patience(
        sf,
        lambda x: partial(x) + x * sf(x),
        partial,
        lambda x: law.cdf(np.asarray(x, np.float64)),
        lambda rng, n: rng.lognormal(mu, sigma, n),
    )


def mmc_patience(
    c: int,
    a: float,
    laws: Sequence[Patience | None],
    shares: Sequence[float],
    mean_s: float = 1.0,
    max_wait: float | None = None,
) -> list[Ref]:
    """M/M/c+G with classes sharing the pool (one service law), each with its own patience law
    (None: waits as long as it must), and an optional maximum wait. Per class, from the
    offered-wait density ``v(x) = c mu exp(phi(x))``, ``phi(x) = lambda H(x) - c mu x``, ``H``
    the share-weighted mixture of the classes' ``E[min(tau, x)]`` (module docstring):

    - served: ``1/B - 1 + int_0^d v(x) (1 - G_c(x)) dx``, abandoned ``int_0^d v G_c``, dropped
      ``exp(phi(d))`` (d: the maximum wait, else infinite), all over their total;
    - E[W; served] ``= int_0^d x v (1 - G_c)``, E[tau; abandoned] ``= int_0^d v E[tau_c; tau_c
      <= x]``.

    Stable iff ``lambda x (share that never abandons) < c mu`` when there is no maximum wait.
    The integrals are taken around the peak of the concave phi, shifted by its maximum.
    """
    mu = 1.0 / mean_s
    cmu = c * mu
    lam = a * mu
    w = np.asarray(shares, np.float64) / float(np.sum(shares))
    patient = float(sum(s for s, law in zip(w, laws, strict=True) if law is None))
    if max_wait is None and lam * patient >= cmu:
        raise ValueError("no stationary law: the patient classes alone overload the pool")

    def sf_mix(x: float) -> float:
        return float(sum(s * (1.0 if g is None else g.sf(x)) for s, g in zip(w, laws, strict=True)))

    def h_mix(x: float) -> float:
        return float(sum(s * (x if g is None else g.h(x)) for s, g in zip(w, laws, strict=True)))

    def phi(x: float) -> float:
        return lam * h_mix(x) - cmu * x

    end = math.inf if max_wait is None else max_wait
    # phi' = lambda (1 - G_mix) - c mu is decreasing: phi is concave, its peak where it is 0
    if lam * sf_mix(0.0) <= cmu:
        peak = 0.0
    elif lam * sf_mix(end) >= cmu:  # still rising at the maximum wait (patience never binds)
        peak = end
    else:
        hi = mean_s
        while lam * sf_mix(hi) > cmu:
            hi *= 2
        peak = optimize.brentq(lambda x: lam * sf_mix(x) - cmu, 0.0, hi, xtol=1e-14, rtol=1e-14)
    top = phi(peak)
    hi = 2 * peak + mean_s / c
    while phi(hi) > top - TAIL and hi < end:
        hi *= 2
    upper = min(hi, end)
    kinks = [k for g in laws if g is not None for k in g.kinks]
    edges = [0.0]
    for x in sorted(x for x in (peak, *kinks) if 0 < x < upper):
        if x > edges[-1] * (1 + 1e-9) + 1e-15:  # a peak found at a kink is that kink
            edges.append(x)
    edges.append(upper)

    def log_mass(f: Callable[[float], float]) -> float:
        """log of ``int_0^upper c mu exp(phi(x)) f(x) dx`` (the offered-wait density's mass)."""
        total = 0.0
        for lo, hi_ in itertools.pairwise(edges):
            part, _ = integrate.quad(
                lambda x: math.exp(phi(x) - top) * f(x),
                lo,
                hi_,
                epsabs=0.0,
                epsrel=1e-11,
                limit=400,
            )
            total += part
        return math.log(cmu * total) + top if total > 0 else -math.inf

    log_none = _log_below(c, a)
    log_drop = phi(end) if max_wait is not None else -math.inf
    log_z = special.logsumexp([log_none, log_mass(lambda x: 1.0), log_drop])

    def share(log_m: float) -> float:
        return math.exp(log_m - log_z)

    out = []
    for g in laws:
        if g is None:
            served = share(log_none) + share(log_mass(lambda x: 1.0))
            wait_served = share(log_mass(lambda x: x))
            abandoned = spent = 0.0
        else:
            served = share(log_none) + share(log_mass(g.sf))
            wait_served = share(log_mass(lambda x, g=g: x * g.sf(x)))
            abandoned = share(log_mass(lambda x, g=g: 1.0 - g.sf(x)))
            spent = share(log_mass(g.partial))
        out.append(
            Ref(
                served,
                share(log_drop),
                abandoned,
                wait_served / served,
                wait_served + spent,
                share(log_none),
            )
        )
    return out


# --- a direct simulation --------------------------------------------------------------------------


@dataclass(frozen=True)
class SimResult:
    arrived: int
    served: int
    dropped: int
    abandoned: int
    no_wait: int
    wait_served_sum: float  # summed waits of the served
    queue_time_sum: float  # summed time in queue of all (abandoners: their patience)

    def ref(self) -> Ref:
        n = self.arrived
        return Ref(
            self.served / n,
            self.dropped / n,
            self.abandoned / n,
            self.wait_served_sum / self.served,
            self.queue_time_sum / n,
            self.no_wait / n,
        )


def simulate(
    c: int,
    a: float,
    customers: int,
    seed: int,
    mean_s: float = 1.0,
    max_wait: float | None = None,
    queue_limit: int | None = None,
    patience: Patience | None = None,
    warmup: int = 0,
    classes: Sequence[tuple[float, Patience | None]] | None = None,
) -> list[SimResult]:
    """M/M/c FCFS with the admission rules, customer by customer (heapq); one result per class
    (``classes``: (share, patience law) pairs; default one class with ``patience``).

    A customer's start is fixed when it arrives: the earliest slot free-time (Kiefer-Wolfowitz),
    as service times are drawn on arrival. In order: one that would have to wait while
    ``queue_limit`` already wait is dropped; one whose wait would exceed ``max_wait`` is dropped;
    one whose patience is shorter than its wait abandons after its patience (it waits in the
    queue until then, counted by the queue limit, and never takes a slot); the rest are served.
    The first ``warmup`` customers are simulated but not counted.
    """
    mix = list(classes) if classes is not None else [(1.0, patience)]
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(mean_s / a, customers)).tolist()
    service = rng.exponential(mean_s, customers).tolist()
    shares = np.array([s for s, _ in mix], np.float64)
    cls = rng.choice(len(mix), size=customers, p=shares / shares.sum())
    tau_arr = np.full(customers, math.inf)
    for i, (_, law) in enumerate(mix):
        if law is not None:
            mine = cls == i
            tau_arr[mine] = law.sample(rng, int(mine.sum()))
    taus = tau_arr.tolist()
    kinds = cls.tolist()
    limit = math.inf if max_wait is None else max_wait
    free = [0.0] * c  # slot free-times (a heap)
    starts: list[float] = []  # future starts of waiting customers who will be served
    leaves: list[float] = []  # times when waiting customers who abandon leave
    # per class: arrived, served, dropped, abandoned, no wait, summed waits, summed queue times
    tally = [[0, 0, 0, 0, 0, 0.0, 0.0] for _ in mix]
    push, pop = heapq.heappush, heapq.heappop
    for n in range(customers):
        t = times[n]
        wait = free[0] - t
        row = tally[kinds[n]] if n >= warmup else [0, 0, 0, 0, 0, 0.0, 0.0]
        row[0] += 1
        if wait <= 0.0:
            heapq.heapreplace(free, t + service[n])
            row[1] += 1
            row[4] += 1
            continue
        if queue_limit is not None:
            while starts and starts[0] <= t:
                pop(starts)
            while leaves and leaves[0] <= t:
                pop(leaves)
            if len(starts) + len(leaves) >= queue_limit:
                row[2] += 1
                continue
        if wait > limit:
            row[2] += 1
            continue
        tau = taus[n]
        if tau < wait:
            if queue_limit is not None:
                push(leaves, t + tau)
            row[3] += 1
            row[6] += tau
            continue
        start = free[0]
        heapq.heapreplace(free, start + service[n])
        if queue_limit is not None:
            push(starts, start)
        row[1] += 1
        row[5] += wait
        row[6] += wait
    return [SimResult(*row) for row in tally]


# --- non-preemptive priorities ----------------------------------------------------------------


def cobham_waits(c: int, loads: Sequence[float], mean_s: float = 1.0) -> list[float]:
    """Mean wait (time in queue) per priority class in M/M/c with non-preemptive priorities and
    one exponential service law for all classes; ``loads`` in Erlangs, highest priority first.

    Cobham (1954), "Priority assignment in waiting line problems", Operations Research 2(1)
    70-76, for c servers (e.g. Gross & Harris, Fundamentals of Queueing Theory, 3.4.2; Kleinrock,
    Queueing Systems II, 3.6): ``W_k = C(c, a) / (c mu (1 - s_{k-1}) (1 - s_k))``, ``s_k`` the
    summed load of classes 0..k over c (``s_{-1} = 0``), ``C`` Erlang C at the total load ``a``.
    (A waiting arrival waits for the first of c busy slots to free, Exp(c mu), then for every
    class at or above its priority ahead of it and arriving before it starts: the busy-period
    argument of the one-server case with c mu as the service rate.) The load-weighted mean of
    the W_k is FCFS's ``C / (c mu - lambda)``: the order of service moves waits between
    classes, not their total (Kleinrock's conservation law).
    """
    total = float(sum(loads))
    if not loads or min(loads) < 0 or total >= c:
        raise ValueError("need non-negative loads whose sum is below the server count")
    p_wait = erlang_c(c, total)
    c_mu = c / mean_s
    out, above = [], 0.0
    for a_k in loads:
        below = above + a_k / c
        out.append(p_wait / (c_mu * (1.0 - above) * (1.0 - below)))
        above = below
    return out
