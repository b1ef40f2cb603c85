"""Helpers for the emergencies tests: people placed at known distances, SOS shortcuts."""
import math
from datetime import timedelta

from allynet import clock
from allynet.geo import EARTH_RADIUS_M

CENTER = (48.8566, 2.3522)  # Paris
SOS_BODY = {"type": "medical", "location": {"lat": CENTER[0], "lng": CENTER[1]}}


def north_of(distance_m, origin=CENTER):
    """(lat, lng) exactly `distance_m` north of `origin` on MongoDB's sphere."""
    lat, lng = origin
    return lat + math.degrees(distance_m / EARTH_RADIUS_M), lng


def east_of(distance_m, origin=CENTER):
    """(lat, lng) `distance_m` east of `origin` along its parallel (close to the great-circle distance)."""
    lat, lng = origin
    return lat, lng + math.degrees(distance_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))


def place_helper(make_user, distance_m, *, trust_score=50.0, verified=True, is_helper=True,
                 stale=False, **fields):
    """A helper `distance_m` north of the centre (stale: location last updated 25 h ago)."""
    if stale:
        fields["location_updated_at"] = clock.now() - timedelta(hours=25)
    return make_user(is_helper=is_helper, verified=verified, location=north_of(distance_m),
                     trust_score=trust_score, **fields)


def sos(client, user, body=None, headers=None, **fields):
    """POST /emergencies as `user`; returns the response."""
    payload = dict(SOS_BODY if body is None else body, **fields)
    return client.post("/api/v1/emergencies", json=payload, headers={**user.headers, **(headers or {})})


def act(client, user, emergency_id, action, body=None):
    """POST /emergencies/<id>/<action> as `user`."""
    return client.post(f"/api/v1/emergencies/{emergency_id}/{action}", json=body if body is not None else {},
                       headers=user.headers)


def names(sio_client):
    """Names of the events a Socket.IO test client received (drains its queue)."""
    return [event["name"] for event in sio_client.get_received()]
