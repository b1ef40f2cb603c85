"""Skills HTTP endpoints: publish, search, read, edit, delete, and a user's skills."""
from allynet.auth.decorators import auth_required, current_user_id
from allynet.db import get_db
from allynet.http import doc, ok, ok_list, use_body, use_query
from allynet.skills import bp, service
from allynet.skills.schemas import (skill_create_schema, skill_list_query_schema, skill_schema,
                                    skill_update_schema, user_skills_query_schema)

TAGS = ["skills"]


@bp.post("/skills")
@auth_required
@doc(summary="Publish a skill (location defaults to your profile location; 400 when neither is set)",
     response=skill_schema, status=201, tags=TAGS)
@use_body(skill_create_schema)
def create_skill(data):
    return ok(skill_schema.dump(service.create(db=get_db(), user_id=current_user_id(), data=data)), 201)


@bp.get("/skills")
@auth_required
@doc(summary="Search skills: near=lat,lng (+radius_m 100..50000, default 10000) ranks nearest first with "
             "distance_m, else best match first when q is given, else newest first; category; q = plain-text search of name and description "
             "(words, \"phrases\", -negation); format=geojson (with near only) answers a bare GeoJSON "
             "FeatureCollection (application/geo+json)",
     response=skill_schema, many=True, geojson=True, tags=TAGS)
@use_query(skill_list_query_schema)
def search_skills(query):
    fmt = query.pop("format")
    items, next_cursor = service.search(db=get_db(), **query)
    return ok_list(skill_schema.dump(items, many=True), next_cursor, fmt=fmt)


@bp.get("/skills/<oid:skill_id>")
@auth_required
@doc(summary="One skill", response=skill_schema, tags=TAGS)
def get_skill(skill_id):
    return ok(skill_schema.dump(service.get_or_raise(db=get_db(), skill_id=skill_id)))


@bp.patch("/skills/<oid:skill_id>")
@auth_required
@doc(summary="Edit your skill (403 for anyone else's)", response=skill_schema, tags=TAGS,
     errors={403: "forbidden (not yours)"})
@use_body(skill_update_schema)
def update_skill(skill_id, data):
    document = service.update(db=get_db(), user_id=current_user_id(), skill_id=skill_id, data=data)
    return ok(skill_schema.dump(document))


@bp.delete("/skills/<oid:skill_id>")
@auth_required
@doc(summary="Delete your skill (403 for anyone else's); data is null", tags=TAGS,
     errors={403: "forbidden (not yours)"})
def delete_skill(skill_id):
    service.delete(db=get_db(), user_id=current_user_id(), skill_id=skill_id)
    return ok(None, message="Skill deleted")


@bp.get("/users/<oid:user_id>/skills")
@auth_required
@doc(summary="A user's skills, newest first", response=skill_schema, many=True, tags=TAGS)
@use_query(user_skills_query_schema)
def list_user_skills(user_id, query):
    items, next_cursor = service.list_for_user(db=get_db(), user_id=user_id, **query)
    return ok_list(skill_schema.dump(items, many=True), next_cursor)
