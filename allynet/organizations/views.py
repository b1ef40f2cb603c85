"""Organization HTTP endpoints: thin views over `organizations.service`."""
from allynet.auth.decorators import auth_required, current_user_id
from allynet.db import get_db
from allynet.http import doc, no_body, ok, ok_list, use_body, use_query
from allynet.organizations import bp, service
from allynet.organizations.schemas import (assign_schema, create_schema, dispatch_emergency_schema,
                                           invitation_schema, join_schema, list_query_schema, member_schema,
                                           org_party_schema, organization_schema, page_query_schema,
                                           role_schema, update_schema)

TAGS = ["organizations"]


@bp.post("/organizations")
@auth_required
@doc(summary="Create an organization; you become its owner (free plan, not verified)",
     response=organization_schema, status=201, tags=TAGS)
@use_body(create_schema)
def create_organization(data):
    db, user_id = get_db(), current_user_id()
    org = service.create(db=db, user_id=user_id, data=data)
    return ok(organization_schema.dump(service.view(db=db, org=org, user_id=user_id)), 201)


@bp.get("/organizations")
@auth_required
@doc(summary="Organizations, newest first; near=lat,lng: those whose service area covers the point",
     response=organization_schema, many=True, tags=TAGS)
@use_query(list_query_schema)
def list_organizations(query):
    items, next_cursor = service.list_organizations(db=get_db(), near=query.get("near"), kind=query.get("kind"),
                                                    cursor=query.get("cursor"), limit=query["limit"])
    return ok_list(organization_schema.dump(items, many=True), next_cursor)


@bp.get("/organizations/<oid:organization_id>")
@auth_required
@doc(summary="An organization: the public view; members and my_role for its members",
     response=organization_schema, tags=TAGS)
def get_organization(organization_id):
    org = service.get_for_viewer(db=get_db(), organization_id=organization_id, user_id=current_user_id())
    return ok(organization_schema.dump(org))


@bp.patch("/organizations/<oid:organization_id>")
@auth_required
@doc(summary="Edit the profile (owner, org admins); verified (staff); plan (platform admins)",
     response=organization_schema, tags=TAGS)
@use_body(update_schema)
def update_organization(organization_id, data):
    db, user_id = get_db(), current_user_id()
    org = service.update(db=db, organization_id=organization_id, actor_id=user_id, data=data)
    return ok(organization_schema.dump(service.view(db=db, org=org, user_id=user_id)))


@bp.post("/organizations/<oid:organization_id>/invitations")
@auth_required
@doc(summary="A single-use invitation code that expires (owner, org admins)", response=invitation_schema,
     status=201, tags=TAGS)
@no_body
def invite(organization_id):
    invitation = service.invite(db=get_db(), organization_id=organization_id, actor_id=current_user_id())
    return ok(invitation_schema.dump(invitation), 201)


@bp.post("/organizations/join")
@auth_required
@doc(summary="Join an organization with an invitation code (404 for a used, expired or wrong code)",
     response=organization_schema, tags=TAGS, errors={404: "not_found (a used, expired or wrong code)"})
@use_body(join_schema)
def join_organization(data):
    org = service.join(db=get_db(), user_id=current_user_id(), code=data["code"])
    return ok(organization_schema.dump(org))


@bp.patch("/organizations/<oid:organization_id>/members/<oid:user_id>")
@auth_required
@doc(summary="Change a member's role (owner, org admins; owners by owners only)", response=member_schema,
     tags=TAGS)
@use_body(role_schema)
def change_role(organization_id, user_id, data):
    member = service.change_role(db=get_db(), organization_id=organization_id, actor_id=current_user_id(),
                                 user_id=user_id, role=data["role"])
    return ok(member_schema.dump(member))


@bp.delete("/organizations/<oid:organization_id>/members/<oid:user_id>")
@auth_required
@doc(summary="Remove a member (owner, org admins; owners by owners only)", tags=TAGS)
def remove_member(organization_id, user_id):
    service.remove(db=get_db(), organization_id=organization_id, actor_id=current_user_id(), user_id=user_id)
    return ok(None, message="Member removed")


@bp.post("/organizations/<oid:organization_id>/leave")
@auth_required
@doc(summary="Leave the organization (the last owner must hand over first: 409 last_owner)", tags=TAGS)
@no_body
def leave_organization(organization_id):
    service.leave(db=get_db(), organization_id=organization_id, user_id=current_user_id())
    return ok(None, message="Left the organization")


@bp.post("/organizations/<oid:organization_id>/members/<oid:user_id>/vouch")
@auth_required
@doc(summary="Vouch for a member as a verified helper (owner, org admins; verified pro organization)",
     response=member_schema, tags=TAGS)
@no_body
def vouch(organization_id, user_id):
    member = service.set_vouch(db=get_db(), organization_id=organization_id, actor_id=current_user_id(),
                               user_id=user_id, vouched=True)
    return ok(member_schema.dump(member))


@bp.delete("/organizations/<oid:organization_id>/members/<oid:user_id>/vouch")
@auth_required
@doc(summary="Withdraw the organization's vouch for a member (owner, org admins)", response=member_schema,
     tags=TAGS)
def unvouch(organization_id, user_id):
    member = service.set_vouch(db=get_db(), organization_id=organization_id, actor_id=current_user_id(),
                               user_id=user_id, vouched=False)
    return ok(member_schema.dump(member))


@bp.get("/organizations/<oid:organization_id>/emergencies")
@auth_required
@doc(summary="Open SOS inside the service area (owner, org admins, dispatchers; verified pro organization)",
     response=dispatch_emergency_schema, many=True, tags=TAGS)
def list_emergencies(organization_id):
    items = service.list_emergencies(db=get_db(), organization_id=organization_id, user_id=current_user_id())
    return ok_list(dispatch_emergency_schema.dump(items, many=True))


@bp.post("/organizations/<oid:organization_id>/emergencies/<oid:emergency_id>/assign")
@auth_required
@doc(summary="Alert a member who is a verified (or vouched) helper to an open SOS in the area",
     response=dispatch_emergency_schema, tags=TAGS)
@use_body(assign_schema)
def assign(organization_id, emergency_id, data):
    emergency = service.assign(db=get_db(), organization_id=organization_id, actor_id=current_user_id(),
                               emergency_id=emergency_id, user_id=data["user_id"])
    return ok(dispatch_emergency_schema.dump(emergency))


@bp.get("/organizations/<oid:organization_id>/parties")
@auth_required
@doc(summary="The organization's club rides, active and past, newest first (members only)",
     response=org_party_schema, many=True, tags=TAGS)
@use_query(page_query_schema)
def list_parties(organization_id, query):
    items, next_cursor = service.list_parties(db=get_db(), organization_id=organization_id,
                                              user_id=current_user_id(), cursor=query.get("cursor"),
                                              limit=query["limit"])
    return ok_list(org_party_schema.dump(items, many=True), next_cursor)
