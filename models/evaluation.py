"""Measure online clusterers against batch k-means on the CDNOW history.

Run ``PYTHONHASHSEED=0 python -m models.evaluation --seeds 5 --plot PNG`` (needs the dev
extras plus scikit-learn, and matplotlib for ``--plot``). The fixed hash seed matters for
river's KMeans, STREAMKMeans and CluStream only: they draw their random initial centres
in the iteration order of a set of feature names, which changes with string hashing, so
their seeded runs differ between processes otherwise. It prints the markdown tables of
docs/behaviours.md and draws the ARI-vs-events plot. Nothing in the serving path imports
this module; its heavy imports (pandas, scikit-learn, matplotlib) are local to the
functions that use them.

Protocol (see docs/behaviours.md for the results):

1. Per-customer features as of 1998-07-01 with a 365-day window, computed with pandas
   straight from ``CDNOW_master.txt`` (a purchase on UTC day D counts iff
   ``day(T) - 365 < D <= day(T)``; recency counts from the last purchase ever).
2. Reference: scikit-learn ``KMeans(k, n_init=10)`` on the same features standardized
   by ``StandardScaler``.
3. Each online model sees every customer once, in a seeded shuffled order, as a worker
   would: ``predict_one`` then ``learn_one``. The time of that loop over the number of
   customers is the per-event cost. Afterwards every customer is assigned with
   ``predict_one`` and compared with the reference by adjusted Rand index (ARI), over
   all customers and over the active ones (a purchase in the window) alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.clustering import BehaviourClusterer
from models.features import DEFAULT_FEATURE_SPEC, CustomerFeaturesInput, FeatureSpec, build_features

__all__ = [
    "CdnowFeatures",
    "RunResult",
    "cdnow_features",
    "cdnow_path",
    "main",
    "reference_labels",
    "run_online",
]

AS_OF = date(1998, 7, 1)
WINDOW_DAYS = 365
CHECKPOINTS = (250, 500, 1000, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000)


def cdnow_path() -> Path:
    """``CDNOW_master.txt`` as shipped by the ``lifetimes`` package.

    Located without importing ``lifetimes``, whose import pulls in its whole modelling stack
    and warns under pandas 3.
    """
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lifetimes package (which ships CDNOW) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "CDNOW_master.txt"


@dataclass(frozen=True)
class CdnowFeatures:
    customer_ids: list[str]
    inputs: list[CustomerFeaturesInput]
    features: list[dict[str, float]]

    @property
    def matrix(self) -> NDArray[np.float64]:
        names = list(self.features[0])
        return np.array([[x[n] for n in names] for x in self.features], dtype=np.float64)

    @property
    def active(self) -> NDArray[np.bool_]:
        return np.array([i.frequency > 0 for i in self.inputs])


def cdnow_features(
    as_of: date = AS_OF, window_days: int = WINDOW_DAYS, spec: FeatureSpec = DEFAULT_FEATURE_SPEC
) -> CdnowFeatures:
    """Per-customer RFM as of ``as_of`` (pandas, independent of the scoring core)."""
    import pandas as pd

    frame = pd.read_csv(
        cdnow_path(), sep=r"\s+", dtype={"customer_id": str, "date": str, "dollar_value": str}
    )
    epoch = pd.Timestamp("1970-01-01")
    frame["day"] = (pd.to_datetime(frame["date"], format="%Y%m%d") - epoch).dt.days
    frame["amount"] = frame["dollar_value"].map(Decimal)
    today = (pd.Timestamp(as_of) - epoch).days
    frame = frame[frame["day"] <= today]
    last = frame.groupby("customer_id")["day"].max()
    window = frame[frame["day"] > today - window_days]
    frequency = window.groupby("customer_id").size()
    monetary = window.groupby("customer_id")["amount"].agg(lambda s: sum(s, Decimal(0)))

    ids = sorted(last.index)
    inputs = [
        CustomerFeaturesInput(
            recency_days=int(today - last[c]),
            frequency=int(frequency.get(c, 0)),
            monetary=monetary.get(c, Decimal(0)),
            engagement={},
        )
        for c in ids
    ]
    return CdnowFeatures(ids, inputs, [build_features(i, spec) for i in inputs])


def reference_labels(matrix: NDArray[np.float64], k: int, seed: int = 0) -> NDArray[np.intp]:
    """Batch k-means labels (scikit-learn, 10 k-means++ restarts) on standardized features."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    standardized = StandardScaler().fit_transform(matrix)
    labels: NDArray[np.intp] = KMeans(k, n_init=10, random_state=seed).fit_predict(standardized)
    return labels


def ari(a: Sequence[int] | NDArray[Any], b: Sequence[int] | NDArray[Any]) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


@dataclass(frozen=True)
class RunResult:
    name: str
    seed: int
    us_per_event: float
    ari: float
    ari_active: float
    clusters_used: int
    # (customers learned, ARI on the probe sample, ARI on its active customers)
    curve: tuple[tuple[int, float, float], ...]
    model: Any


def run_online(
    name: str,
    make: Callable[[int], Any],
    data: CdnowFeatures,
    reference: NDArray[np.intp],
    seed: int,
    *,
    checkpoints: Iterable[int] = (),
    probe_size: int = 4000,
) -> RunResult:
    """Stream every customer once through ``make(seed)`` and score it against ``reference``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.features))
    probe = np.sort(rng.choice(len(data.features), size=probe_size, replace=False))
    marks = set(checkpoints)
    model = make(seed)
    xs = data.features
    curve: list[tuple[int, float, float]] = []
    probe_active = data.active[probe]
    elapsed = 0
    started = time.perf_counter_ns()
    for n, index in enumerate(order, start=1):
        x = xs[index]
        try:
            model.predict_one(x)
        except ValueError:
            # river's STREAMKMeans cannot predict before its first chunk is processed.
            pass
        model.learn_one(x)
        if n in marks:
            elapsed += time.perf_counter_ns() - started
            labels = np.array([model.predict_one(xs[i]) for i in probe])
            curve.append(
                (
                    n,
                    ari(reference[probe], labels),
                    ari(reference[probe][probe_active], labels[probe_active]),
                )
            )
            started = time.perf_counter_ns()
    elapsed += time.perf_counter_ns() - started

    labels_all = np.array([model.predict_one(x) for x in xs])
    active = data.active
    total = ari(reference, labels_all)
    curve.append(
        (
            len(xs),
            ari(reference[probe], labels_all[probe]),
            ari(reference[probe][probe_active], labels_all[probe][probe_active]),
        )
    )
    return RunResult(
        name=name,
        seed=seed,
        us_per_event=elapsed / len(xs) / 1000,
        ari=total,
        ari_active=ari(reference[active], labels_all[active]),
        clusters_used=len(set(labels_all.tolist())),
        curve=tuple(curve),
        model=model,
    )


def river_candidates(k: int) -> dict[str, tuple[str, Callable[[int], Any]]]:
    """Every contender: display name -> (parameters shown in the table, factory(seed))."""
    from river import cluster, preprocessing

    def scaled(model: Any) -> Any:
        return preprocessing.StandardScaler() | model

    # Parameters: the best of a small sweep on seed 0 (docs/behaviours.md, "Sweep"), ranked by
    # the mean of ARI over all customers and ARI over active ones; river's defaults where
    # they did as well. KMeans is also shown with its default parameters.
    def kmeans(seed: int) -> Any:
        return scaled(cluster.KMeans(n_clusters=k, halflife=0.05, sigma=0.1, seed=seed))

    def kmeans_default(seed: int) -> Any:
        return scaled(cluster.KMeans(n_clusters=k, halflife=0.5, sigma=1.0, seed=seed))

    def streamkmeans(seed: int) -> Any:
        return scaled(
            cluster.STREAMKMeans(  # type: ignore[no-untyped-call]
                chunk_size=100, n_clusters=k, halflife=0.5, sigma=1.0, seed=seed
            )
        )

    def dbstream(seed: int) -> Any:
        return scaled(
            cluster.DBSTREAM(
                clustering_threshold=1.0,
                fading_factor=0.001,
                cleanup_interval=1000,
                intersection_factor=0.1,
                minimum_weight=1.0,
            )
        )

    def clustream(seed: int) -> Any:
        return scaled(
            cluster.CluStream(
                n_macro_clusters=k,
                max_micro_clusters=100,
                time_gap=1000,
                seed=seed,
                halflife=0.1,
                sigma=0.5,
            )
        )

    def denstream(seed: int) -> Any:
        return scaled(
            cluster.DenStream(
                decaying_factor=0.01, beta=0.5, mu=2.5, epsilon=2.0, n_samples_init=500
            )
        )

    def clusterer(seed: int) -> BehaviourClusterer:
        return BehaviourClusterer(n_clusters=k, seed=seed)

    def sequential(seed: int) -> BehaviourClusterer:
        return BehaviourClusterer(n_clusters=k, seed=seed, refresh_every=0)

    return {
        "river KMeans, defaults": ("halflife=0.5, sigma=1", kmeans_default),
        "river KMeans, tuned": ("halflife=0.05, sigma=0.1", kmeans),
        "river STREAMKMeans": ("chunk_size=100, halflife=0.5, sigma=1", streamkmeans),
        "river DBSTREAM": (
            "clustering_threshold=1, intersection_factor=0.1, fading_factor=0.001",
            dbstream,
        ),
        "river CluStream": (
            "max_micro_clusters=100, time_gap=1000, halflife=0.1, sigma=0.5",
            clustream,
        ),
        "river DenStream": ("epsilon=2, beta=0.5, mu=2.5, decaying_factor=0.01", denstream),
        "BehaviourClusterer, no refresh": ("warmup=1000, refresh_every=0", sequential),
        "BehaviourClusterer": ("warmup=1000, reservoir_size=10000, refresh_every=10000", clusterer),
    }


def _mean_sd(values: Sequence[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only these contenders")
    parser.add_argument("--plot", type=Path, help="write the ARI-vs-events PNG here")
    parser.add_argument(
        "--drift", action="store_true", help="only print the 1998-01-01 -> 1998-07-01 drift example"
    )
    args = parser.parse_args(argv)
    if args.drift:
        drift_example(args.k)
        return

    data = cdnow_features()
    reference = reference_labels(data.matrix, args.k)
    print(f"{len(data.features)} customers, {int(data.active.sum())} active; k={args.k}")

    results: dict[str, list[RunResult]] = {}
    for name, (params, make) in river_candidates(args.k).items():
        if args.only and name not in args.only:
            continue
        runs = [
            run_online(name, make, data, reference, seed, checkpoints=CHECKPOINTS)
            for seed in range(args.seeds)
        ]
        results[name] = runs
        print(
            f"| {name} | {params} | {_mean_sd([r.ari for r in runs])} "
            f"| {_mean_sd([r.ari_active for r in runs])} "
            f"| {'/'.join(str(r.clusters_used) for r in runs)} "
            f"| {np.mean([r.us_per_event for r in runs]):.0f} |",
            flush=True,
        )

    if "BehaviourClusterer" in results:
        _assign_cost(results["BehaviourClusterer"][0].model, data)
    if args.plot:
        _plot(results, args.plot)


def _assign_cost(model: BehaviourClusterer, data: CdnowFeatures) -> None:
    from datetime import UTC, datetime

    from models.snapshot import assign, snapshot_from_model

    snapshot = snapshot_from_model(model, created_at=datetime(1998, 7, 1, tzinfo=UTC))
    ids = [s.behaviour_id for s in snapshot.behaviours]
    agree = sum(
        assign(snapshot, x).behaviour_id == ids[model.predict_one(x)] for x in data.features
    )
    best = min(_time_calls(lambda x: assign(snapshot, x), data.features) for _ in range(3))
    predict = min(_time_calls(model.predict_one, data.features) for _ in range(3))
    print(f"assign(): {best:.2f} us/call; predict_one: {predict:.2f} us/call; ", end="")
    print(f"agreement with predict_one {agree}/{len(data.features)}")
    for behaviour in snapshot.behaviours:
        print(f"  behaviour {behaviour.behaviour_id}: {behaviour.share:6.1%}  {behaviour.label}")


def drift_example(k: int = 5, seed: int = 0) -> None:
    """Snapshot a model as of 1998-01-01, let it keep learning on 1998-07-01, compare."""
    from datetime import UTC, datetime

    from models.snapshot import BehaviourSnapshot, drift_report, snapshot_from_model

    model = BehaviourClusterer(n_clusters=k, seed=seed)
    snapshots: list[BehaviourSnapshot] = []
    for as_of in (date(1998, 1, 1), AS_OF):
        data = cdnow_features(as_of=as_of)
        for index in np.random.default_rng(seed).permutation(len(data.features)):
            model.learn_one(data.features[index])
        # Shares of the population as of that day, not of the learning stream (which
        # mixes both days): the way a worker that counts its customers would call it.
        counts = np.bincount([model.predict_one(x) for x in data.features], minlength=k)
        snapshots.append(
            snapshot_from_model(
                model,
                created_at=datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),
                previous=snapshots[-1] if snapshots else None,
                shares=counts.tolist(),
            )
        )
    report = drift_report(snapshots[0], snapshots[1])
    print(f"drift v{report.previous_version} -> v{report.version}")
    print("| id | label (v2) | share v1 | share v2 | change | centroid shift | flags |")
    print("|---|---|---|---|---|---|---|")
    for s in report.behaviours:
        print(
            f"| {s.behaviour_id} | {s.label} | {s.previous_share or 0:.1%} | {s.share or 0:.1%} "
            f"| {s.share_change:+.1%} | {s.centroid_shift or 0:.2f} | {', '.join(s.flags)} |"
        )
    for old in snapshots[0].behaviours:
        print(f"  v1 behaviour {old.behaviour_id}: {old.label}")


def _time_calls(call: Callable[[dict[str, float]], object], xs: list[dict[str, float]]) -> float:
    started = time.perf_counter_ns()
    for x in xs:
        call(x)
    return (time.perf_counter_ns() - started) / len(xs) / 1000


def _plot(results: dict[str, list[RunResult]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110, sharey=True)
    titles = ("all customers", "active customers (a purchase in the window)")
    for column, (axis, title) in enumerate(zip(axes, titles, strict=True), start=1):
        for name, runs in results.items():
            xs = [point[0] for point in runs[0].curve]
            ys = np.mean([[point[column] for point in r.curve] for r in runs], axis=0)
            style = "-" if name.startswith("BehaviourClusterer") else "--"
            axis.plot(xs, ys, style, marker="o", markersize=3, label=name)
        axis.set_xscale("log")
        axis.set_xlabel("customers learned (one pass over CDNOW, seeded shuffle)")
        axis.set_title(f"ARI vs scikit-learn KMeans: {title}", fontsize=10)
        axis.set_ylim(-0.1, 1.02)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"adjusted Rand index, mean of {len(next(iter(results.values())))} seeds")
    axes[0].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
