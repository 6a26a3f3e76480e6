"""Lifetime value: fit BG/NBD and Gamma-Gamma on every customer, publish a snapshot.

``tierstream clv fit`` reads every customer's state (Redis, or a replayed file), fits the
two models with the ``lifetimes`` library and publishes their parameters as a versioned
snapshot in the store's metadata, the way ``tierstream behaviours`` publishes the behaviour
model. Readers (the API, ``customer``, ``export``, the KPIs and the report) compute each
customer's ``p_alive`` and ``clv_12m`` from their state and that snapshot when they read
them (``scoring.clv``, closed form): the worker does nothing for lifetime value.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scoring.clv import BgNbd, ClvFeatures, ClvValues, GammaGamma, clv_features, clv_values
from scoring.config import ClvSettings
from scoring.state import CustomerState
from tierstream.published import CLV_META as CLV_META  # where the snapshot is published

FORMAT = 1


class NotEnoughDataError(ValueError):
    """Too few customers (or repeat customers) to fit: nothing is published."""


class ClvSnapshotError(ValueError):
    """Bytes that are not a lifetime value snapshot."""


@dataclass(frozen=True)
class ClvSnapshot:
    version: int
    fitted_at: datetime
    as_of: datetime  # the day the customers' histories were cut at for the fit
    horizon_days: int
    bgnbd: BgNbd
    gamma_gamma: GammaGamma
    customers: int
    repeat_customers: int
    library: str

    def values(self, state: CustomerState, day: int) -> ClvValues | None:
        """The customer's lifetime value figures as of ``day`` (None: no purchase by then)."""
        features = clv_features(state, day)
        if features is None:
            return None
        return clv_values(self.bgnbd, self.gamma_gamma, features, self.horizon_days)

    def to_dict(self) -> dict[str, Any]:
        b, g = self.bgnbd, self.gamma_gamma
        return {
            "format": FORMAT,
            "version": self.version,
            "fitted_at": self.fitted_at.isoformat(),
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "time_unit": "day",
            "bgnbd": {"r": b.r, "alpha": b.alpha, "a": b.a, "b": b.b},
            "gamma_gamma": {"p": g.p, "q": g.q, "v": g.v},
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
            "library": self.library,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClvSnapshot:
        """Parse a snapshot; anything else is one ``ClvSnapshotError`` saying what."""
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ClvSnapshotError(f"unknown snapshot format {raw.get('format')!r}")
            b, g = raw["bgnbd"], raw["gamma_gamma"]
            bgnbd = BgNbd(*(_positive(b[k], k) for k in ("r", "alpha", "a", "b")))
            gamma = GammaGamma(*(_positive(g[k], k) for k in ("p", "q", "v")))
            if gamma.q <= 1:
                raise ClvSnapshotError("gamma_gamma.q must exceed 1 (the mean spend is finite)")
            return cls(
                version=int(raw["version"]),
                fitted_at=datetime.fromisoformat(raw["fitted_at"]),
                as_of=datetime.fromisoformat(raw["as_of"]),
                horizon_days=int(raw["horizon_days"]),
                bgnbd=bgnbd,
                gamma_gamma=gamma,
                customers=int(raw["customers"]),
                repeat_customers=int(raw["repeat_customers"]),
                library=str(raw["library"]),
            )
        except ClvSnapshotError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ClvSnapshotError(
                f"not a lifetime value snapshot: {type(exc).__name__}: {exc}"
            ) from None


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ClvSnapshotError(f"parameter {name} must be a number, got {value!r}")
    number = float(value)  # a bad string raises ValueError: the caller's one line
    if not math.isfinite(number) or number <= 0:
        raise ClvSnapshotError(f"parameter {name} must be a positive number, got {value!r}")
    return number


def features_of(states: Iterable[CustomerState], day: int) -> list[ClvFeatures]:
    """Every customer with a purchase by ``day``, as model inputs."""
    out = []
    for state in states:
        features = clv_features(state, day)
        if features is not None:
            out.append(features)
    return out


def fit(
    features: list[ClvFeatures],
    settings: ClvSettings,
    as_of: datetime,
    *,
    previous_version: int = 0,
) -> ClvSnapshot:
    """Fit both models; ``NotEnoughDataError`` when the data cannot support a fit."""
    import lifetimes  # noqa: PLC0415 - pandas and autograd: only the fit needs them
    import pandas as pd  # noqa: PLC0415

    repeaters = [f for f in features if f.repeat > 0 and f.mean_spend > 0]
    if len(features) < settings.min_customers:
        raise NotEnoughDataError(
            f"{len(features)} customers with a purchase; a fit needs at least "
            f"{settings.min_customers} (clv.min_customers)"
        )
    if len(repeaters) < settings.min_repeat_customers:
        raise NotEnoughDataError(
            f"{len(repeaters)} customers with a second purchase day and a positive spend; "
            f"a fit needs at least {settings.min_repeat_customers} (clv.min_repeat_customers)"
        )
    frame = pd.DataFrame(
        {
            "frequency": [f.repeat for f in features],
            "recency": [f.recency for f in features],
            "T": [f.age for f in features],
        }
    )
    penalizer = float(settings.penalizer)
    try:
        # lifetimes prints the optimizer's whole report to stdout when a fit fails: the
        # failure is said here, in one line
        with contextlib.redirect_stdout(io.StringIO()):
            bgf = lifetimes.BetaGeoFitter(penalizer_coef=penalizer)
            bgf.fit(frame["frequency"], frame["recency"], frame["T"])
            ggf = lifetimes.GammaGammaFitter(penalizer_coef=penalizer)
            ggf.fit(
                pd.Series([f.purchase_days for f in repeaters]),
                pd.Series([f.mean_spend for f in repeaters]),
            )
    except (ValueError, ArithmeticError) as exc:  # lifetimes' ConvergenceError is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotEnoughDataError(f"the models did not converge on this data ({first})") from exc
    bp, gp = bgf.params_, ggf.params_
    bgnbd = BgNbd(float(bp["r"]), float(bp["alpha"]), float(bp["a"]), float(bp["b"]))
    gamma = GammaGamma(float(gp["p"]), float(gp["q"]), float(gp["v"]))
    if gamma.q <= 1 or abs(bgnbd.a - 1) < 1e-9:
        raise NotEnoughDataError(
            f"the fitted models have no finite expectation (BG/NBD a={bgnbd.a:.3g}, "
            f"Gamma-Gamma q={gamma.q:.3g}); more data is needed"
        )
    return ClvSnapshot(
        version=previous_version + 1,
        fitted_at=datetime.now(UTC),
        as_of=as_of,
        horizon_days=settings.horizon_days,
        bgnbd=bgnbd,
        gamma_gamma=gamma,
        customers=len(features),
        repeat_customers=len(repeaters),
        library=f"lifetimes {lifetimes.__version__}",
    )


def record_fields(snapshot: ClvSnapshot | None, state: CustomerState, day: int) -> dict[str, Any]:
    """``p_alive``, ``clv_12m`` and the model version for a state record (nulls: no model,
    or no purchase yet)."""
    values = snapshot.values(state, day) if snapshot is not None else None
    return {
        "p_alive": None if values is None else round(values.p_alive, 6),
        "clv_12m": None if values is None else round(values.clv, 2),
        "clv_model_version": None if snapshot is None else snapshot.version,
    }
