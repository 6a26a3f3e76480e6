"""Customer lifetime value at read time: BG/NBD and Gamma-Gamma, closed form.

The models are fitted elsewhere (``tierstream.clv`` with the ``lifetimes`` library) and
published as a snapshot of their parameters. Given the parameters, a customer's
probability of being alive and expected purchases are closed-form in three numbers of
their state (Fader, Hardie and Lee 2005, equations 11 and 13), and the expected spend per
purchase day is a weighted mean (Fader, Hardie and Lee 2005b, equation 5). So the API,
``export`` and the KPIs compute them from the stored state when they read it, and the
worker's per-event path does nothing for them.

Time is counted in UTC days, and a "purchase" is a purchase day (several purchases on
one day are one transaction), as in ``lifetimes.utils.summary_data_from_transaction_data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from scipy.special import hyp2f1

from scoring.days import utc_day
from scoring.state import CustomerState

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ClvFeatures:
    """The model inputs of one customer as of a day (the "RFM summary" of lifetimes).

    ``repeat``: purchase days after the first (BG/NBD's x); ``recency``: days from the first
    to the last purchase day (t_x); ``age``: days from the first purchase day to the as-of
    day (T); ``purchase_days`` and ``mean_spend``: the count and mean net amount of all
    purchase days, the first included (what Gamma-Gamma averages).
    """

    repeat: int
    recency: int
    age: int
    purchase_days: int
    mean_spend: float


@dataclass(frozen=True, slots=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class GammaGamma:
    p: float
    q: float
    v: float


@dataclass(frozen=True, slots=True)
class ClvValues:
    p_alive: float
    expected_purchases: float  # purchase days expected in the horizon
    expected_spend: float  # per purchase day
    clv: float  # expected_purchases * expected_spend, undiscounted


def clv_features(state: CustomerState, day: int) -> ClvFeatures | None:
    """The inputs as of ``day`` from the stored state (None: no purchase by then).

    Purchase days are the days in the window with a purchase plus those the window has
    pruned (``state.archived``); days after ``day`` are not counted. A purchase that was
    already older than the window when it arrived moves the first and last purchase but
    is counted in no total (the same rule as the window's own totals).
    """
    if state.first_purchase_at is None or state.last_purchase_at is None:
        return None
    first = utc_day(state.first_purchase_at)
    if first > day:
        return None
    archived = state.archived
    days = archived.purchase_days if archived is not None else 0
    net = archived.net if archived is not None else _ZERO
    last = archived.last_day if archived is not None and archived.last_day is not None else first
    for d, totals in state.days.items():
        if d > day:
            continue
        net += totals.net
        if totals.purchases > 0:
            days += 1
            last = max(last, d)
    latest = utc_day(state.last_purchase_at)
    if latest <= day:  # the latest purchase of all, window or not, when it is not later
        last = max(latest, last)
    repeat = max(days - 1, 0)
    recency = last - first if repeat > 0 else 0
    mean = float(net) / days if days > 0 else 0.0
    return ClvFeatures(repeat, recency, day - first, days, mean)


def p_alive(model: BgNbd, x: int, t_x: float, t: float) -> float:
    """P(alive | x repeat purchases, the last at t_x, observed for t) (FHL 2005, eq. 13)."""
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + _odds_dead(model, x, t_x, t))


def expected_purchases(model: BgNbd, horizon: float, x: int, t_x: float, t: float) -> float:
    """E[purchases in the next ``horizon`` | x, t_x, T] (FHL 2005, eq. 10)."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    z = horizon / (alpha + t + horizon)
    hyp = float(hyp2f1(r + x, b + x, a + b + x - 1, z))
    ratio = math.exp((r + x) * (math.log(alpha + t) - math.log(alpha + t + horizon)))
    numerator = (a + b + x - 1) / (a - 1) * (1.0 - ratio * hyp)
    odds = _odds_dead(model, x, t_x, t) if x > 0 else 0.0
    return numerator / (1.0 + odds)


def expected_spend(model: GammaGamma, purchase_days: int, mean_spend: float) -> float:
    """E[spend per purchase day | n purchase days with mean m] (FHL 2005b, eq. 5)."""
    p, q, v, n = model.p, model.q, model.v, purchase_days
    population = p * v / (q - 1)
    if n <= 0:
        return population
    weight = (q - 1) / (p * n + q - 1)
    return weight * population + (1 - weight) * mean_spend


def clv_values(
    bgnbd: BgNbd, gamma: GammaGamma, features: ClvFeatures, horizon_days: int
) -> ClvValues:
    x, t_x, t = features.repeat, float(features.recency), float(features.age)
    alive = p_alive(bgnbd, x, t_x, t)
    purchases = expected_purchases(bgnbd, float(horizon_days), x, t_x, t)
    spend = expected_spend(gamma, features.purchase_days, features.mean_spend)
    return ClvValues(alive, purchases, spend, purchases * spend)


def _odds_dead(model: BgNbd, x: int, t_x: float, t: float) -> float:
    # a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x), in logs: the power overflows for large x.
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    log_odds = (
        math.log(a) - math.log(b + x - 1) + (r + x) * (math.log(alpha + t) - math.log(alpha + t_x))
    )
    return math.exp(min(log_odds, 700.0))
