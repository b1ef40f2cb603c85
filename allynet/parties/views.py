"""Party HTTP endpoints (saved routes: allynet/routes/).

Visibility: a party is invisible (404) to anyone who is not a member;
actions on an existing party by a non-member are 403 `forbidden`.
"""
from allynet.auth.decorators import auth_required, current_user_id
from allynet.db import get_db
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query
from allynet.parties import bp, history, service
from allynet.parties.schemas import (history_item_schema, history_query_schema, party_create_schema,
                                     party_join_result_schema, party_join_schema, party_list_query_schema,
                                     party_schema, party_summary_schema)


def _state(db, party):
    return party_schema.dump(service.party_state(db=db, party=party))


def _joined(db, party, left_party_id):
    """The party's state and the party the caller was moved out of (None when none)."""
    return party_join_result_schema.dump({**service.party_state(db=db, party=party),
                                          "left_party_id": left_party_id})


@bp.post("/parties")
@auth_required
@doc(summary="Create a party and lead it; you leave your current one (left_party_id, null when none)",
     response=party_join_result_schema, status=201, tags=["parties"], errors={409: "conflict"})
@use_body(party_create_schema)
def create_party(data):
    db = get_db()
    party, left_party_id = service.create_party(db=db, user_id=current_user_id(), name=data["name"])
    return ok(_joined(db, party, left_party_id), 201)


@bp.get("/parties")
@auth_required
@doc(summary="Your parties (now or before), the latest joined first; active=true: the one you ride in now",
     response=party_summary_schema, many=True, tags=["parties"])
@use_query(party_list_query_schema)
def list_parties(query):
    items, next_cursor = service.list_mine(db=get_db(), user_id=current_user_id(), active=query.get("active"),
                                           cursor=query.get("cursor"), limit=query["limit"])
    return ok_list(party_summary_schema.dump(items, many=True), next_cursor)


@bp.post("/parties/join")
@auth_required
@doc(summary="Join an active party by invite code (404 for a wrong code or ended party); you leave your "
             "current one (left_party_id, null when none)", response=party_join_result_schema, tags=["parties"],
     errors={404: "not_found (wrong code or ended party)", 409: "conflict"})
@use_body(party_join_schema)
def join_by_code(data):
    db = get_db()
    party, left_party_id = service.join_by_code(db=db, user_id=current_user_id(), invite_code=data["invite_code"])
    return ok(_joined(db, party, left_party_id))


@bp.post("/parties/<oid:party_id>/join")
@auth_required
@doc(summary="Join this party with its invite code (404 for a wrong code or ended party); you leave your "
             "current one (left_party_id, null when none)", response=party_join_result_schema, tags=["parties"],
     errors={409: "conflict"})
@use_body(party_join_schema)
def join_party(party_id, data):
    db = get_db()
    party, left_party_id = service.join_by_code(db=db, user_id=current_user_id(),
                                                invite_code=data["invite_code"], party_id=party_id)
    return ok(_joined(db, party, left_party_id))


@bp.get("/parties/<oid:party_id>")
@auth_required
@doc(summary="A party with its members' last positions and presence (members only; others 404)",
     response=party_schema, tags=["parties"])
def get_party(party_id):
    return ok(party_schema.dump(service.get_party(db=get_db(), user_id=current_user_id(), party_id=party_id)))


@bp.post("/parties/<oid:party_id>/leave")
@auth_required
@doc(summary="Leave the party (leader hands over; the last one out ends it; 403 if not a member)",
     response=party_schema, tags=["parties"], errors={403: "forbidden (not a member)"})
@no_body
def leave_party(party_id):
    db = get_db()
    return ok(_state(db, service.leave_party(db=db, user_id=current_user_id(), party_id=party_id)))


@bp.post("/parties/<oid:party_id>/end")
@auth_required
@doc(summary="End the party (leader only: 403 otherwise)", response=party_schema, tags=["parties"],
     errors={403: "forbidden (not the leader)"})
@no_body
def end_party(party_id):
    db = get_db()
    return ok(_state(db, service.end_party(db=db, user_id=current_user_id(), party_id=party_id)))


@bp.get("/parties/<oid:party_id>/history")
@auth_required
@doc(summary="Ride history: sampled trail, messages and alerts, oldest first (members; former members "
             "up to when they left; others 404)", response=history_item_schema, many=True, tags=["parties"])
@use_query(history_query_schema)
def party_history(party_id, query):
    items, next_cursor = history.history(db=get_db(), user_id=current_user_id(), party_id=party_id,
                                         cursor=query.get("cursor"), limit=query["limit"])
    return ok_list(history_item_schema.dump(items, many=True), next_cursor)
