"""Party rules: group rides, membership, live positions, presence, chat, alerts, history, routes.

Data model:
- `parties` {name, invite_code, leader_id, is_active, created_at, ended_at,
  members: [{user_id, joined_at}]} — `members` holds the CURRENT members only.
- `party_members` one doc per (party, user): `active` (true while a current
  member of an active party; unique per user while true: one active party per
  user), `joined_at`, `left_at`, `left_reason` ("left" | "ended"),
  `last_location` (GeoJSON, 2dsphere), `last_speed_kmh`, `heading`, `status`,
  `last_update_at`, episode flags for left-behind alerts.
- `trail_points` sampled positions (TTL on `ts`), `party_messages`,
  `party_events` (alerts) for history.
"""
from bson import ObjectId


def active_party_member_ids(*, db, user_id):
    """The other current members of the user's active party (empty when the user has none)."""
    mine = db.party_members.find_one({"user_id": user_id, "active": True}, projection={"party_id": 1})
    if mine is None:
        return []
    party = db.parties.find_one({"_id": mine["party_id"], "is_active": True},
                                projection={"members.user_id": 1})
    if party is None:
        return []
    return [member["user_id"] for member in party.get("members", []) if member["user_id"] != user_id]


def active_parties_near(*, db, location, radius_m):
    """Ids of active parties with a current member last seen within `radius_m` of a GeoJSON point."""
    cursor = db.party_members.find(
        {"last_location": {"$nearSphere": {"$geometry": location, "$maxDistance": float(radius_m)}},
         "active": True},
        projection={"party_id": 1},
    )
    seen = []
    for doc in cursor:
        party_id = doc["party_id"]
        if party_id not in seen:
            seen.append(party_id)
    return seen
