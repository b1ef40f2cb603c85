"""The append-only audit log: who did what to which target, before and after."""
from allynet import clock


def record(*, db, actor_id, action, target_type, target_id, before=None, after=None, reason=None):
    """Append one audit entry (never updated, never deleted)."""
    entry = {
        "actor_id": actor_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "before": before,
        "after": after,
        "reason": reason,
        "at": clock.now(),
    }
    db.audit_log.insert_one(entry)
    return entry
