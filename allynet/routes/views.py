"""Saved-route HTTP endpoints: each rider's own routes (someone else's is 404)."""
from allynet.auth.decorators import auth_required, current_user_id
from allynet.db import get_db
from allynet.http import doc, ok, ok_list, use_body, use_query
from allynet.routes import bp, service
from allynet.routes.schemas import route_create_schema, route_list_query_schema, route_schema, route_update_schema


@bp.post("/routes")
@auth_required
@doc(summary="Save a route (2..500 waypoints, stored as a GeoJSON LineString)", response=route_schema,
     status=201, tags=["routes"])
@use_body(route_create_schema)
def create_route(data):
    route = service.create_route(db=get_db(), user_id=current_user_id(), name=data["name"],
                                 waypoints=data["waypoints"])
    return ok(route_schema.dump(route), 201)


@bp.get("/routes")
@auth_required
@doc(summary="Own saved routes, newest first", response=route_schema, many=True, tags=["routes"])
@use_query(route_list_query_schema)
def list_routes(query):
    routes, next_cursor = service.list_routes(db=get_db(), user_id=current_user_id(),
                                              cursor=query.get("cursor"), limit=query["limit"])
    return ok_list(route_schema.dump(routes, many=True), next_cursor)


@bp.get("/routes/<oid:route_id>")
@auth_required
@doc(summary="One of your routes (someone else's is 404: routes are private)", response=route_schema,
     tags=["routes"])
def get_route(route_id):
    return ok(route_schema.dump(service.get_route(db=get_db(), user_id=current_user_id(), route_id=route_id)))


@bp.patch("/routes/<oid:route_id>")
@auth_required
@doc(summary="Rename one of your routes or replace its waypoints (2..500, as on create; someone else's is 404)",
     response=route_schema, tags=["routes"])
@use_body(route_update_schema)
def update_route(route_id, data):
    route = service.update_route(db=get_db(), user_id=current_user_id(), route_id=route_id, data=data)
    return ok(route_schema.dump(route))


@bp.delete("/routes/<oid:route_id>")
@auth_required
@doc(summary="Delete one of your routes (someone else's is 404: routes are private)",
     response=route_schema, tags=["routes"])
def delete_route(route_id):
    route = service.delete_route(db=get_db(), user_id=current_user_id(), route_id=route_id)
    return ok(route_schema.dump(route))
