"""Saved-route rules: a rider's own routes, stored as GeoJSON LineStrings with their length.

`routes` {user_id, name, waypoints (LineString, 2dsphere), distance_m, created_at,
updated_at}. Routes are private: someone else's route is 404 to everyone but its owner.
"""
from pymongo import ReturnDocument

from allynet import clock, geo
from allynet.errors import NotFound
from allynet.pagination import newest_first_page


def _route_geometry(waypoints):
    """The stored LineString and length of a list of {lat, lng} waypoints."""
    coordinates = [[point["lng"], point["lat"]] for point in waypoints]
    length = sum(geo.points_distance_m({"coordinates": a}, {"coordinates": b}) for a, b in zip(coordinates, coordinates[1:]))
    return {"waypoints": {"type": "LineString", "coordinates": coordinates}, "distance_m": round(length, 1)}


def create_route(*, db, user_id, name, waypoints):
    """Save a route as a GeoJSON LineString."""
    route = {"user_id": user_id, "name": name, **_route_geometry(waypoints), "created_at": clock.now()}
    db.routes.insert_one(route)
    return route


def list_routes(*, db, user_id, cursor=None, limit=50):
    """The caller's routes, newest first; returns (routes, next_cursor)."""
    return newest_first_page(db.routes, query={"user_id": user_id}, limit=limit, cursor=cursor)


def get_route(*, db, user_id, route_id):
    """One of the caller's routes (someone else's is 404: routes are private)."""
    route = db.routes.find_one({"_id": route_id, "user_id": user_id})
    if route is None:
        raise NotFound("Route not found")
    return route


def update_route(*, db, user_id, route_id, data):
    """Rename a route or replace its waypoints (owner only; someone else's is 404)."""
    changes = {"updated_at": clock.now()}
    if "name" in data:
        changes["name"] = data["name"]
    if "waypoints" in data:
        changes.update(_route_geometry(data["waypoints"]))
    route = db.routes.find_one_and_update({"_id": route_id, "user_id": user_id}, {"$set": changes},
                                          return_document=ReturnDocument.AFTER)
    if route is None:
        raise NotFound("Route not found")
    return route


def delete_route(*, db, user_id, route_id):
    """Delete one of the caller's routes (someone else's is 404: routes are private)."""
    route = db.routes.find_one_and_delete({"_id": route_id, "user_id": user_id})
    if route is None:
        raise NotFound("Route not found")
    return route
