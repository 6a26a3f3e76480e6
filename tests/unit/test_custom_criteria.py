"""Custom criteria: trait scoring, the tier plan's weights, engagement kind weights and
profile updates through the engine (pure: no Kafka or Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from scoring.config import load_config_text
from scoring.criteria import TraitCriterion, trait_scores
from scoring.engine import Outcome, Scorer
from scoring.events import EngagementEvent, PurchaseEvent
from scoring.profiles import ProfileUpdate
from scoring.rules import classify
from scoring.state import CustomerState, Scores
from tierstream.cli import app
from tierstream.settings import DEFAULT_CONFIG

B2B = Path(__file__).resolve().parents[2] / "configs" / "b2b-traits.yaml"
T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def b2b():  # type: ignore[no-untyped-def]
    return load_config_text(B2B.read_text())


def profile(traits: dict[str, object] | None, at: datetime | None = T0) -> ProfileUpdate:
    return ProfileUpdate.model_validate({"customer_id": "c1", "traits": traits, "updated_at": at})


def buy(event_id: str, at: datetime, amount: str = "6000") -> PurchaseEvent:
    return PurchaseEvent(
        event_id=event_id, customer_id="c1", occurred_at=at, amount=Decimal(amount), currency="USD"
    )


# ------------------------------------------------------------------ trait scoring
def test_numeric_trait_scores_by_cut_points() -> None:
    criterion = TraitCriterion(thresholds=(Decimal(3), Decimal(5), Decimal(7), Decimal(9)))
    assert [criterion.score(Decimal(v)) for v in (1, 3, 4, 5, 7, 9, 10)] == [1, 2, 2, 3, 4, 5, 5]
    assert criterion.score(None) == 1  # missing: the default
    assert criterion.score("high") == 1 and criterion.score(True) == 1  # other kind: default


def test_categorical_trait_scores_by_mapping_booleans_as_true_false() -> None:
    criterion = TraitCriterion.model_validate({"map": {True: 5, False: 1, "gold": 4}, "default": 3})
    assert criterion.score(True) == 5 and criterion.score(False) == 1
    assert criterion.score("gold") == 4 and criterion.score("tin") == 3
    assert criterion.score(None) == 3 and criterion.score(Decimal(2)) == 3


def test_trait_scores_follow_the_plan_order() -> None:
    plan = b2b().tiers
    scored = trait_scores(plan.traits, {"strategic_fit": Decimal(8), "pays_on_time": False})
    assert scored == (
        ("referrals", None, 1),
        ("pays_on_time", False, 1),
        ("fees", None, 1),
        ("strategic_fit", Decimal(8), 4),
    )


def test_weights_on_the_1_to_10_scale_are_normalised() -> None:
    config = b2b()
    scores = Scores(5, 5, 5, 5)
    best = trait_scores(
        config.tiers.traits,
        {
            "referrals": Decimal(9),
            "pays_on_time": True,
            "fees": Decimal(60000),
            "strategic_fit": Decimal(10),
        },
    )
    assert classify(config, scores, best)[0] == "Platinum"  # all fives: weighted score 5
    worst = trait_scores(config.tiers.traits, {"pays_on_time": False})
    # (4*5 + 5*5 + 6*5 + 3*5 + 7*1 + 9*1 + 8*1 + 6*1) / 48 = 120/48 = 2.5
    assert classify(config, scores, worst)[0] == "Silver"


def test_a_plan_of_fractions_scores_as_before() -> None:
    config = load_config_text(DEFAULT_CONFIG.read_text())
    assert config.tiers.scale == "fractions" and not config.tiers.traits
    # 0.35*5 + 0.25*3 + 0.30*4 + 0.10*1 = 3.8: tier A, and the reason as it always read
    scorer = Scorer(config)
    tier_rule, _ = scorer._explain(Scores(5, 3, 4, 1))
    assert tier_rule == "tier A: weighted score 3.80 = 0.35×R5 + 0.25×F3 + 0.30×M4 + 0.10×E1 ≥ 3.4"


# ------------------------------------------------------------------ config validation
def _bad(replace: tuple[str, str]) -> str:
    return B2B.read_text().replace(*replace)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("thresholds: [3, 5, 7, 9]", "thresholds: [3, 7, 5, 9]", "strictly ascending"),
        ("thresholds: [3, 5, 7, 9]", "map: {}", "map may not be empty"),
        (
            "thresholds: [3, 5, 7, 9]",
            "thresholds: [3, 5, 7, 9]\n      map: {high: 5}",
            "needs exactly one of thresholds",
        ),
        ("map: {true: 5, false: 1}", "map: {true: 7, false: 1}", "less than or equal to 5"),
        ("default: 3 ", "default: 0 ", "greater than or equal to 1"),
        ("strategic_fit: 6}", "strategic_fit: 11}", "between 0 and 10"),
        ("strategic_fit: 6}", "strategic_fit: 6, loyalty: 3}", "neither r, f, m, e nor a trait"),
        (", strategic_fit: 6}", "}", "without a tier weight: strategic_fit"),
        ("    strategic_fit:       #", "    Strategic-Fit:       #", "String should match pattern"),
        ('support_ticket: "-2"', 'support_ticket: "-500"', "greater than or equal to -100"),
    ],
)
def test_invalid_trait_criteria_exit_2_with_the_reason(
    tmp_path: Path, old: str, new: str, reason: str
) -> None:
    text = _bad((old, new))
    assert text != B2B.read_text(), old
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert reason in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_fractions_that_do_not_sum_to_one_are_still_refused() -> None:
    text = DEFAULT_CONFIG.read_text().replace('e: "0.10"', 'e: "0.20"')
    with pytest.raises(ValidationError, match="sum to 1"):
        load_config_text(text)


# ------------------------------------------------------------------ engagement kinds
def test_engagement_kinds_have_weights_and_a_kind_can_count_against() -> None:
    scorer = Scorer(b2b())
    state = CustomerState("c1")
    scorer.apply(state, buy("p1", T0), T0)
    for i in range(4):  # 4 meetings x 3 = 12: E3 (cuts 3, 10, 30, 100)
        event = EngagementEvent(event_id=f"m{i}", customer_id="c1", occurred_at=T0, kind="meeting")
        scorer.apply(state, event, T0)
    assert state.scores is not None and state.scores.e == 3
    for i in range(3):  # 3 tickets x -2 = -6: 12 - 6 = 6: E2
        ticket = EngagementEvent(
            event_id=f"t{i}", customer_id="c1", occurred_at=T0, kind="support_ticket"
        )
        scorer.apply(state, ticket, T0)
    assert state.scores.e == 2
    assert scorer.engagement_total(scorer.values(state, state.clock_day or 0)) == Decimal(6)


# ------------------------------------------------------------------ profile updates
def test_a_profile_update_moves_the_customer_with_an_explanation() -> None:
    scorer = Scorer(b2b())
    state = CustomerState("c1")
    (first,) = scorer.apply(state, buy("p1", T0), T0).changes
    # R5 F1 M3 E1 and the traits' defaults 1, 3, 1, 2: (20+5+18+3 + 7+27+8+12)/48 = 2.08
    assert first.new_tier == "Bronze"
    later = T0 + timedelta(hours=1)
    traits = {"referrals": 5, "pays_on_time": True, "fees": 25000.5, "strategic_fit": 9}
    result = scorer.apply_profile(state, profile(traits, later), later)
    assert result.outcome is Outcome.APPLIED
    (change,) = result.changes
    # traits scored 4, 5, 4, 5: (20+5+18+3 + 28+45+32+30)/48 = 3.771
    assert (change.cause, change.previous_tier, change.new_tier) == ("profile", "Bronze", "Gold")
    assert change.version == 2
    assert change.reason.startswith(
        "profile update of 2025-03-01: fees (none)→25000.5, pays_on_time (none)→true, "
        "referrals (none)→5, strategic_fit (none)→9;"
    )
    assert "×referrals 4" in change.reason and "traits: referrals 5→4" in change.reason
    assert "tier Gold: weighted score 3.771 = (4×R5 + 5×F1 + 6×M3 + 3×E1" in change.reason
    assert state.traits == {
        "referrals": Decimal(5),
        "pays_on_time": True,
        "fees": Decimal("25000.5"),
        "strategic_fit": Decimal(9),
    }
    record = scorer.record(state)
    assert record["traits"]["fees"] == "25000.5" and record["tier"] == "Gold"
    assert "traits: referrals 5→4" in scorer.explain(state)


def test_latest_updated_at_wins_and_redelivery_counts_once() -> None:
    scorer = Scorer(b2b())
    state = CustomerState("c1")
    scorer.apply(state, buy("p1", T0), T0)
    new, old = profile({"strategic_fit": 9}, T0), profile({"strategic_fit": 1}, T0 - timedelta(1))
    assert scorer.apply_profile(state, new, T0).outcome is Outcome.APPLIED
    assert scorer.apply_profile(state, new, T0) == scorer.apply_profile(state, new, T0)
    assert scorer.apply_profile(state, new, T0).outcome is Outcome.DUPLICATE
    assert scorer.apply_profile(state, old, T0).outcome is Outcome.STALE
    assert state.traits == {"strategic_fit": Decimal(9)}


def test_a_tie_in_updated_at_ends_the_same_in_either_order() -> None:
    scorer = Scorer(b2b())
    a, b = profile({"strategic_fit": 2}), profile({"strategic_fit": 8})
    ends = []
    for first, second in ((a, b), (b, a)):
        state = CustomerState("c1")
        scorer.apply(state, buy("p1", T0), T0)
        scorer.apply_profile(state, first, T0)
        scorer.apply_profile(state, second, T0)
        ends.append(state.to_dict())
    assert ends[0] == ends[1]


def test_a_tombstone_deletes_the_traits_and_older_updates_stay_out() -> None:
    scorer = Scorer(b2b())
    state = CustomerState("c1")
    scorer.apply(state, buy("p1", T0), T0)
    rich = {"referrals": 9, "pays_on_time": True, "fees": 60000, "strategic_fit": 10}
    scorer.apply_profile(state, profile(rich), T0)
    assert state.tier == "Platinum"  # (46 + 35+45+40+30)/48 = 4.08
    (change,) = scorer.apply_profile(state, profile(None, None), T0).changes
    assert change.cause == "profile" and change.new_tier == "Bronze"
    assert change.reason.startswith("profile deleted")
    assert state.traits is None and "tr" not in state.to_dict()
    assert scorer.apply_profile(state, profile(rich), T0).outcome is Outcome.STALE
    assert scorer.apply_profile(state, profile(None, None), T0).outcome is Outcome.DUPLICATE


def test_traits_survive_the_stored_form() -> None:
    state = CustomerState("c1")
    state.traits = {"fees": Decimal("0.10"), "tier_name": "gold", "flag": False, "n": Decimal(3)}
    state.traits_at = T0
    again = CustomerState.from_dict(state.to_dict())
    assert again.traits == state.traits and again.traits_at == T0
    assert isinstance(again.traits["flag"], bool) and isinstance(again.traits["fees"], Decimal)


def test_a_customer_without_a_purchase_keeps_traits_without_a_tier() -> None:
    scorer = Scorer(b2b())
    state = CustomerState("c1")
    result = scorer.apply_profile(state, profile({"referrals": 3}), T0)
    assert result.outcome is Outcome.APPLIED and result.changes == []
    assert state.tier is None and state.traits == {"referrals": Decimal(3)}


@pytest.mark.parametrize(
    ("traits", "reason"),
    [
        ({"a": {"nested": 1}}, "must be a number, a string or a boolean"),
        ({"a": [1, 2]}, "must be a number, a string or a boolean"),
        ({"a": "x" * 300}, "longer than 256"),
        ({f"t{i}": 1 for i in range(65)}, "at most 64"),
        ({"Bad-Name": 1}, "should match pattern"),
        ({"a": 1e300}, "within ±1e15"),
        ({"a": "line\nbreak"}, "control characters"),
        ("not an object", "must be an object"),
    ],
)
def test_hostile_traits_are_refused_with_one_reason(traits: object, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ProfileUpdate.model_validate({"customer_id": "c1", "traits": traits, "updated_at": T0})


# ------------------------------------------------------------------ any delivery order
_TRAITS = st.dictionaries(
    st.sampled_from(["referrals", "fees", "strategic_fit", "pays_on_time"]),
    st.one_of(st.booleans(), st.integers(0, 20), st.sampled_from(["gold", "tin"])),
    max_size=4,
)
_UPDATES = st.lists(st.tuples(st.integers(0, 3), _TRAITS), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(updates=_UPDATES, order=st.randoms(use_true_random=False))
def test_any_delivery_order_with_redeliveries_ends_the_same(updates, order) -> None:  # type: ignore[no-untyped-def]
    """Updates at a few times (so with ties) end in the same traits, tier and scores in any
    order and with any redelivery. (Tombstones have no time: Kafka keeps them in order with
    the updates of their key; they are tested above.)"""
    scorer = Scorer(b2b())
    messages = [profile(traits, T0 + timedelta(hours=hour)) for hour, traits in updates]

    def run(sequence: list[ProfileUpdate]) -> tuple[object, ...]:
        state = CustomerState("c1")
        scorer.apply(state, buy("p1", T0), T0)
        for update in sequence:
            scorer.apply_profile(state, update, T0 + timedelta(hours=5))
        return (state.traits, state.traits_at, state.tier, state.scores)

    shuffled = list(messages)
    order.shuffle(shuffled)
    shuffled += shuffled[: len(shuffled) // 2]  # redelivered
    assert run(messages) == run(shuffled)
