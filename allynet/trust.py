"""The one rule for trust scores, across features.

A score runs from 0 to 100 and starts at 50. It moves on events from the
user's contributions; `recompute` rebuilds it from those sources alone, so
an incremental update and a full rebuild always agree:

    score = clamp(50 + sum(TRUST_DELTAS[event] for each event), 0, 100)

Sources and their events:
- a report of theirs confirmed by the community (first time it reaches
  CONFIRM_UPVOTES net upvotes) or approved by a moderator: ``report_confirmed``
- a report of theirs rejected by a moderator: ``report_rejected``
- a help request they were assigned to and that its owner completed: ``help_completed``
"""
from allynet import clock

BASE_SCORE = 50.0
MIN_SCORE, MAX_SCORE = 0.0, 100.0
CONFIRM_UPVOTES = 3
TRUST_DELTAS = {
    "report_confirmed": 2.0,
    "report_rejected": -5.0,
    "help_completed": 3.0,
}


def clamp(score):
    """Keep a score inside 0..100."""
    return max(MIN_SCORE, min(MAX_SCORE, score))


def apply_event(*, db, user_id, event):
    """Count one event for a user and set the score its counts give; returns the new score.

    The counter moves with an atomic `$inc`; the score is then written only if
    the counts are still the ones it was computed from, so of two racing
    events the one that saw the latest counts writes the score.
    """
    if event not in TRUST_DELTAS:
        raise ValueError(f"unknown trust event {event!r}")
    user = db.users.find_one_and_update(
        {"_id": user_id}, {"$inc": {f"trust_events.{event}": 1}},
        projection={"trust_events": 1}, return_document=True,
    )
    if user is None:
        return None
    counts = user.get("trust_events", {})
    score = score_from_counts(counts)
    db.users.update_one({"_id": user_id, "trust_events": counts},
                        {"$set": {"trust_score": score, "trust_updated_at": clock.now()}})
    return score


def score_from_counts(counts):
    """The score that a user's event counts give: {event: n} -> 0..100."""
    return clamp(BASE_SCORE + sum(TRUST_DELTAS.get(event, 0.0) * n for event, n in counts.items()))
