"""Authorization matrix: who may do what, for every REST route and every Socket.IO room event.

REST: one row per (method, rule) the app serves, one column per actor, the status that actor gets.
A route the app serves without a row here fails `test_every_served_route_has_a_row` (so does a row
naming a route that is not served): adding a route means adding its row. Each row acts on a real
target (an SOS, a party...) with a valid body, so the status is about authorization, not
validation. GET rows share one read-only world; every other row gets a fresh world per cell.

Actors (the columns, in this order):
  anon    no token at all
  user    an ordinary user with no tie to the target
  other   the other party of the target: the alerted helper of an SOS (not responding), a member
          of the party, the offer maker of a help request (who was accepted on `help_assigned`)
  helper  a verified helper with no tie to the target (too far away to be alerted)
  mod     a moderator
  admin   an admin
  owner   who made the target: the SOS requester, the party leader, the reporter, the user itself
`-` marks an actor the target does not have (no owner of /healthz, no other party of a skill).
Statuses follow docs/API.md: 401 without a token, 404 for what the caller may not know exists,
403 for what it may see but not do. Cells known to be wrong today are in KNOWN_GAPS (strict xfail:
they fail the suite the day they get fixed, so the entry is removed with the fix).

Socket.IO: the same actors (anon cannot connect at all), the ack each gets (`ok` or the error
code's status), and what follows from it: `hears` (the actor then receives the room's traffic
exactly when allowed), `reaches` (the event reaches a room member exactly when allowed) or
`deaf` (the actor receives nothing from the room afterwards).
"""
import re
import uuid
from datetime import timedelta

import pytest
from bson import ObjectId

from allynet import clock, create_app
from allynet.auth import service as auth_service
from allynet.sockets import HANDLERS
from allynet.users import service as users_service

API = "/api/v1"
ACTORS = ("anon", "user", "other", "helper", "mod", "admin", "owner")
SOCKET_ACTORS = ACTORS[1:]

PARIS = {"lat": 48.8566, "lng": 2.3522}
NEAR_PARIS = {"lat": 48.8611, "lng": 2.3522}  # 500 m north: alerted by an SOS in Paris
LYON = {"lat": 45.764, "lng": 4.8357}  # 390 km away: never alerted

# Bodies: valid for their route, so a refusal can only be about who asks. Functions build theirs from the world.
SOS = {"type": "medical", "location": PARIS}
HELP = {"title": "Need a jump start", "description": "Flat battery", "category": "repairs", "location": PARIS}
SKILL = {"name": "Bike repair", "category": "repairs", "location": PARIS}
REPORT = {"type": "hazard", "location": PARIS}
ROUTE = {"name": "Loop", "waypoints": [PARIS, NEAR_PARIS]}
RENAME_ROUTE = {"name": "Evening loop"}
PARTY = {"name": "Sunday ride"}
RENAME = {"display_name": "Renamed"}
VERIFY = {"verified": True}
RETITLE = {"title": "Edited title"}
OFFER = {"message": "On my way"}
RESKILL = {"name": "Wheel truing"}
UPVOTE = {"value": "up"}
HIDE = {"action": "hide"}
PARIS_AREA = {"type": "Polygon", "coordinates": [[[2.30, 48.82], [2.40, 48.82], [2.40, 48.90], [2.30, 48.90],
                                                  [2.30, 48.82]]]}
ORG = {"name": "Paris Rescue", "kind": "volunteer_group", "service_area": PARIS_AREA}
REDESCRIBE = {"description": "Night patrols"}
DISPATCHER_ROLE = {"role": "dispatcher"}
BUSINESS = {"name": "Corner cafe", "category": "cafe", "location": PARIS}
RENAME_BUSINESS = {"name": "Corner bistro"}
RETITLE_PROMOTION = {"title": "Two for one"}
SUSPEND = {"reason": "spam"}
RETEXT = {"description": "Checkpoint moved"}
PAY = {"payment_method": "pm_card_visa"}
REFUND = {"reason": "Helper did not come"}


def register(w):
    return {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": "password123", "display_name": "New"}


def login(w):
    return {"email": w.actors["user"]["email"], "password": w.actors["user"]["password"]}


def alert(w):
    return {"type": "police", "location": PARIS, "description": "Checkpoint",
            "expires_at": (clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def promotion(w):
    return {"title": "Happy hour", "starts_at": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ends_at": (clock.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def accept(w):
    return {"offer_id": w.offer_id}


def invite(w):
    return {"invite_code": w.party_code}


def org_code(w):
    return {"code": w.org_code}


def paid(w):
    return {"type": "invoice.paid", "data": {"object": {"subscription": w.subscription_id}}}


def payment_failed(w):
    return {"type": "invoice.payment_failed", "data": {"object": {"subscription": w.subscription_id}}}


def assign_other(w):
    return {"user_id": w.id("other")}


# Called with the actor's refresh token instead of its access token.
REFRESH_TOKEN_RULES = {"/api/v1/auth/refresh"}


class R:
    """One REST row: `rule` may end in `?query`; `expect` holds one status (or `-`) per actor."""

    def __init__(self, method, rule, target, body, expect):
        self.method, self.url_template, self.target, self.body = method, rule, target, body
        self.token = "refresh" if self.url_template in REFRESH_TOKEN_RULES else "access"
        self.rule = rule.split("?")[0]
        statuses = expect.split()
        assert len(statuses) == len(ACTORS), f"{method} {rule}: {len(statuses)} columns"
        self.expect = {actor: int(s) for actor, s in zip(ACTORS, statuses) if s != "-"}

    def __repr__(self):
        return f"{self.method} {self.url_template}" + (f" @{self.target}" if self.target else "")


# Targets: sos, help (open, with other's offer), help_assigned (other's offer accepted), party (owner
# leads, other rides), skill, report (visible), report_pending (a speed camera awaiting a moderator),
# route, owner (the owner's user id), file (a static file name), business (the owner's), business_hidden (hidden
# by an admin), promotion (a promotion of `business`: two path values), payment (of a help request: the owner
# accepted other's priced offer), payment_captured (the same, confirmed and completed).
REST = [
    # method    rule (+ query)                                      target            body       anon user othr hlpr mod  admn ownr
    R("POST",   "/api/v1/auth/register",                            None,             register, "201  201  -    201  201  201  -  "),
    R("POST",   "/api/v1/auth/login",                               None,             login,    "200  200  -    200  200  200  -  "),
    R("POST",   "/api/v1/auth/refresh",                             None,             None,     "401  200  -    200  200  200  -  "),
    R("POST",   "/api/v1/auth/logout",                              None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/profile",                                  None,             None,     "401  200  -    200  200  200  -  "),
    R("PUT",    "/api/v1/profile",                                  None,             RENAME,   "401  200  -    200  200  200  -  "),
    R("PATCH",  "/api/v1/profile",                                  None,             RENAME,   "401  200  -    200  200  200  -  "),
    R("PUT",    "/api/v1/profile/location",                         None,             PARIS,    "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/users/<oid:user_id>",                      "owner",          None,     "401  200  -    200  200  200  200"),
    R("PATCH",  "/api/v1/users/<oid:user_id>",                      "owner",          VERIFY,   "401  403  -    403  403  200  403"),
    R("GET",    "/api/v1/users/<oid:user_id>/skills",               "owner",          None,     "401  200  -    200  200  200  200"),
    R("GET",    "/api/v1/users",                                    None,             None,     "401  403  -    403  200  200  -  "),
    R("GET",    "/api/v1/users/<oid:user_id>/admin",                "owner",          None,     "401  403  -    403  200  200  403"),
    R("POST",   "/api/v1/users/<oid:user_id>/suspend",              "owner",          SUSPEND,  "401  403  -    403  403  200  403"),
    # 409 for the admin: the owner is not suspended (authorized, then refused by the rule)
    R("POST",   "/api/v1/users/<oid:user_id>/unsuspend",            "owner",          None,     "401  403  -    403  403  409  403"),
    R("POST",   "/api/v1/emergencies",                              None,             SOS,      "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/emergencies?near=48.8566,2.3522",          None,             None,     "401  403  -    200  403  403  -  "),
    R("GET",    "/api/v1/emergencies/mine",                         None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/emergencies/<oid:emergency_id>",           "sos",            None,     "401  404  200  404  200  200  200"),
    R("GET",    "/api/v1/emergencies/<oid:emergency_id>/messages",  "sos",            None,     "401  404  404  404  200  200  200"),
    R("POST",   "/api/v1/emergencies/<oid:emergency_id>/respond",   "sos",            None,     "401  403  200  200  403  403  403"),
    R("POST",   "/api/v1/emergencies/<oid:emergency_id>/decline",   "sos",            None,     "401  404  200  404  403  403  403"),
    R("POST",   "/api/v1/emergencies/<oid:emergency_id>/resolve",   "sos",            None,     "401  404  403  404  403  200  200"),
    R("POST",   "/api/v1/emergencies/<oid:emergency_id>/cancel",    "sos",            None,     "401  404  403  404  403  403  200"),
    R("POST",   "/api/v1/help-requests",                            None,             HELP,     "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/help-requests?near=48.8566,2.3522",        None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/help-requests/mine",                       None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/help-requests/mine?role=helper",           None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/help-requests/<oid:request_id>",           "help",           None,     "401  200  200  200  200  200  200"),
    R("PATCH",  "/api/v1/help-requests/<oid:request_id>",           "help",           RETITLE,  "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/help-requests/<oid:request_id>/offers",    "help",           OFFER,    "401  201  409  201  201  201  403"),
    R("POST",   "/api/v1/help-requests/<oid:request_id>/accept",    "help",           accept,   "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/help-requests/<oid:request_id>/complete",  "help_assigned",  None,     "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/help-requests/<oid:request_id>/cancel",    "help",           None,     "401  403  403  403  403  403  200"),
    R("GET",    "/api/v1/payments",                                 None,             None,     "401  200  -    200  200  200  -  "),
    R("POST",   "/api/v1/payments/connect/onboarding",              None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/payments/<oid:payment_id>",                "payment",        None,     "401  404  200  404  200  200  200"),
    R("POST",   "/api/v1/payments/<oid:payment_id>/confirm",        "payment",        PAY,      "401  404  403  404  403  403  200"),
    R("POST",   "/api/v1/payments/<oid:payment_id>/refund",         "payment_captured", REFUND, "401  404  403  404  200  200  403"),
    R("POST",   "/api/v1/skills",                                   None,             SKILL,    "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/skills",                                   None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/skills/<oid:skill_id>",                    "skill",          None,     "401  200  -    200  200  200  200"),
    R("PATCH",  "/api/v1/skills/<oid:skill_id>",                    "skill",          RESKILL,  "401  403  -    403  403  403  200"),
    R("DELETE", "/api/v1/skills/<oid:skill_id>",                    "skill",          None,     "401  403  -    403  403  403  200"),
    R("POST",   "/api/v1/parties",                                  None,             PARTY,    "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/parties",                                  None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/parties?active=true",                      None,             None,     "401  200  -    200  200  200  -  "),
    R("POST",   "/api/v1/parties/join",                             "party",          invite,   "401  200  200  200  200  200  200"),
    R("GET",    "/api/v1/parties/<oid:party_id>",                   "party",          None,     "401  404  200  404  404  404  200"),
    R("POST",   "/api/v1/parties/<oid:party_id>/join",              "party",          invite,   "401  200  200  200  200  200  200"),
    R("POST",   "/api/v1/parties/<oid:party_id>/leave",             "party",          None,     "401  403  200  403  403  403  200"),
    R("POST",   "/api/v1/parties/<oid:party_id>/end",               "party",          None,     "401  403  403  403  403  403  200"),
    R("GET",    "/api/v1/parties/<oid:party_id>/history",           "party",          None,     "401  404  200  404  404  404  200"),
    R("POST",   "/api/v1/routes",                                   None,             ROUTE,    "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/routes",                                   None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/routes/<oid:route_id>",                    "route",          None,     "401  404  -    404  404  404  200"),
    R("PATCH",  "/api/v1/routes/<oid:route_id>",                    "route",          RENAME_ROUTE, "401  404  -    404  404  404  200"),
    R("DELETE", "/api/v1/routes/<oid:route_id>",                    "route",          None,     "401  404  -    404  404  404  200"),
    R("POST",   "/api/v1/reports",                                  None,             REPORT,   "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/reports",                                  None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/reports?status=flagged",                   None,             None,     "401  403  -    403  200  200  -  "),
    R("GET",    "/api/v1/reports/<oid:report_id>",                  "report",         None,     "401  200  -    200  200  200  200"),
    R("GET",    "/api/v1/reports/<oid:report_id>",                  "report_pending", None,     "401  404  -    404  200  200  200"),
    R("POST",   "/api/v1/reports/<oid:report_id>/vote",             "report",         UPVOTE,   "401  200  -    200  200  200  403"),
    R("POST",   "/api/v1/reports/<oid:report_id>/vote",             "report_pending", UPVOTE,   "401  404  -    404  409  409  403"),
    R("POST",   "/api/v1/reports/<oid:report_id>/moderate",         "report",         HIDE,     "401  403  -    403  200  200  403"),
    R("GET",    "/api/v1/alerts?lat=48.8566&lng=2.3522",            None,             None,     "401  200  -    200  200  200  -  "),
    R("POST",   "/api/v1/alerts",                                   None,             alert,    "401  403  -    403  201  201  -  "),
    R("POST",   "/api/v1/organizations",                            None,             ORG,      "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/organizations?near=48.86,2.35",            None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/organizations/<oid:organization_id>",      "org",            None,     "401  200  200  200  200  200  200"),
    R("PATCH",  "/api/v1/organizations/<oid:organization_id>",      "org",            REDESCRIBE, "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/organizations/<oid:organization_id>/invitations", "org",     None,     "401  403  403  403  403  403  201"),
    R("POST",   "/api/v1/organizations/join",                       "org",            org_code, "401  200  409  200  200  200  409"),
    R("POST",   "/api/v1/organizations/<oid:organization_id>/leave", "org",           None,     "401  403  200  403  403  403  409"),
    R("PATCH",  "/api/v1/organizations/<oid:organization_id>/members/<oid:user_id>", "org_member", DISPATCHER_ROLE,
                                                                                                "401  403  403  403  403  403  200"),
    R("DELETE", "/api/v1/organizations/<oid:organization_id>/members/<oid:user_id>", "org_member", None,
                                                                                                "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/organizations/<oid:organization_id>/members/<oid:user_id>/vouch", "org_member", None,
                                                                                                "401  403  403  403  403  403  200"),
    R("DELETE", "/api/v1/organizations/<oid:organization_id>/members/<oid:user_id>/vouch", "org_member", None,
                                                                                                "401  403  403  403  403  403  200"),
    R("GET",    "/api/v1/organizations/<oid:organization_id>/emergencies", "org",     None,     "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/organizations/<oid:organization_id>/emergencies/<oid:emergency_id>/assign", "org_sos",
                                                                                      assign_other, "401  403  403  403  403  403  200"),
    R("GET",    "/api/v1/organizations/<oid:organization_id>/parties", "org",         None,     "401  403  200  403  403  403  200"),
    R("POST",   "/api/v1/organizations/<oid:organization_id>/subscription", "org_unpaid", None, "401  403  403  403  403  403  201"),
    R("GET",    "/api/v1/organizations/<oid:organization_id>/payments", "org",        None,     "401  403  403  403  403  403  200"),
    R("POST",   "/api/v1/payments/offline/events",                  "org",            payment_failed, "401  403  403  403  403  200  403"),
    R("POST",   "/api/v1/businesses",                               None,             BUSINESS, "401  201  -    201  201  201  -  "),
    R("GET",    "/api/v1/businesses?near=48.8566,2.3522",           None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/businesses/<oid:business_id>",             "business",       None,     "401  200  -    200  200  200  200"),
    R("GET",    "/api/v1/businesses/<oid:business_id>",             "business_hidden", None,    "401  404  -    404  200  200  200"),
    R("PATCH",  "/api/v1/businesses/<oid:business_id>",             "business",       RENAME_BUSINESS, "401  403  -    403  200  200  200"),
    R("PATCH",  "/api/v1/businesses/<oid:business_id>",             "business_hidden", VERIFY,  "401  404  -    404  200  200  403"),
    R("DELETE", "/api/v1/businesses/<oid:business_id>",             "business",       None,     "401  403  -    403  200  200  200"),
    R("POST",   "/api/v1/businesses/<oid:business_id>/promotions",  "business",       promotion, "401  403  -    403  201  201  201"),
    R("PATCH",  "/api/v1/businesses/<oid:business_id>/promotions/<oid:promotion_id>", "promotion", RETITLE_PROMOTION,
      "401  403  -    403  200  200  200"),
    R("DELETE", "/api/v1/businesses/<oid:business_id>/promotions/<oid:promotion_id>", "promotion", None,
      "401  403  -    403  200  200  200"),
    R("POST",   "/api/v1/businesses/<oid:business_id>/promotions/<oid:promotion_id>/feature", "promotion", None,
                                                                                                "401  403  -    403  403  403  201"),
    R("GET",    "/api/v1/promotions?near=48.8566,2.3522",           None,             None,     "401  200  -    200  200  200  -  "),
    R("PATCH",  "/api/v1/alerts/<oid:alert_id>",                    "alert",          RETEXT,   "401  403  -    403  200  200  -  "),
    R("DELETE", "/api/v1/alerts/<oid:alert_id>",                    "alert",          None,     "401  403  -    403  200  200  -  "),
    R("GET",    "/api/v1/audit-log",                                None,             None,     "401  403  -    403  200  200  -  "),
    R("GET",    "/api/v1/audit-log/export",                         None,             None,     "401  403  -    403  403  200  -  "),
    R("GET",    "/api/v1/traffic?bbox=2.3,48.8,2.4,48.9",           None,             None,     "401  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/overlays?bbox=2.3,48.8,2.4,48.9",          None,             None,     "401  200  -    200  200  200  -  "),
    # WEATHER_PROVIDER is off in tests: whoever may ask gets the 503, the others their 401.
    R("GET",    "/api/v1/weather?lat=48.8566&lng=2.3522",           None,             None,     "401  503  -    503  503  503  -  "),
    R("GET",    "/api/v1/tiles/<layer>.json",                       "tilejson",       None,     "200  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/tiles/<layer>/<z>/<x>/<y>.mvt",            "tile",           None,     "204  204  -    204  204  204  -  "),
    # Stripe's webhook takes no token: without Stripe's signature of the body, everyone gets 400.
    R("POST",   "/api/v1/payments/webhooks/stripe",                 None,             None,     "400  400  -    400  400  400  -  "),
    R("GET",    "/healthz",                                         None,             None,     "200  200  -    200  200  200  -  "),
    R("GET",    "/readyz",                                          None,             None,     "200  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/openapi.json",                             None,             None,     "200  200  -    200  200  200  -  "),
    R("GET",    "/api/v1/asyncapi.json",                            None,             None,     "200  200  -    200  200  200  -  "),
    R("GET",    "/static/<path:filename>",                          "file",           None,     "404  404  -    404  404  404  -  "),
    # The console reads only its own session cookie, never a bearer token: to every actor here it is
    # the sign-in page (303 to it) or a failed sign-in (401). Who gets in with the cookie, CSRF and
    # roles (staff everywhere; organization dispatchers on the queue, the map, its data and the socket
    # token, for their service area): tests/test_console_pages.py and tests/test_console_browser.py.
    R("GET",    "/console/login",                                   None,             None,     "200  200  -    200  200  200  -  "),
    R("POST",   "/console/login",                                   None,             None,     "401  401  -    401  401  401  -  "),
    R("POST",   "/console/logout",                                  None,             None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/",                                        None,             None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/reports",                                 None,             None,     "303  303  -    303  303  303  -  "),
    R("POST",   "/console/reports/<oid:report_id>/moderate",        "report",         None,     "303  303  -    303  303  303  303"),
    R("GET",    "/console/users",                                   None,             None,     "303  303  -    303  303  303  -  "),
    R("POST",   "/console/users/<oid:user_id>/suspend",             "owner",          None,     "303  303  -    303  303  303  303"),
    R("POST",   "/console/users/<oid:user_id>/unsuspend",           "owner",          None,     "303  303  -    303  303  303  303"),
    R("POST",   "/console/users/<oid:user_id>/update",              "owner",          None,     "303  303  -    303  303  303  303"),
    R("GET",    "/console/alerts",                                  None,             None,     "303  303  -    303  303  303  -  "),
    R("POST",   "/console/alerts",                                  None,             None,     "303  303  -    303  303  303  -  "),
    R("POST",   "/console/alerts/<oid:alert_id>/update",            "alert",          None,     "303  303  -    303  303  303  -  "),
    R("POST",   "/console/alerts/<oid:alert_id>/delete",            "alert",          None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/audit",                                   None,             None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/audit/export",                            None,             None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/map",                                     None,             None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/map/data",                                None,             None,     "303  303  -    303  303  303  -  "),
    R("POST",   "/console/socket-token",                            None,             None,     "303  303  -    303  303  303  -  "),
    R("GET",    "/console/static/<path:filename>",                  "file",           None,     "404  404  -    404  404  404  -  "),
]

# "<row> <actor>" (the test id) -> why the cell is wrong today. Strict xfail: the entry goes with the fix.
KNOWN_GAPS = {}

# Targets that are not a document: the URL to call (every placeholder of the rule filled in).
FIXED_URLS = {"tilejson": "/api/v1/tiles/reports.json", "tile": "/api/v1/tiles/reports/12/2073/1409.mvt"}

# Which of `other` and `owner` each target has (a check on the table itself).
TARGET_PARTIES = {
    None: set(), "file": set(), "tilejson": set(), "tile": set(), "owner": {"owner"}, "skill": {"owner"}, "route": {"owner"},
    "report": {"owner"}, "report_pending": {"owner"}, "alert": set(),
    "sos": {"owner", "other"}, "sos_responding": {"owner", "other"},
    "help": {"owner", "other"}, "help_assigned": {"owner", "other"}, "party": {"owner", "other"},
    "org": {"owner", "other"}, "org_member": {"owner", "other"}, "org_sos": {"owner", "other"},
    "org_unpaid": {"owner", "other"},
    "business": {"owner"}, "business_hidden": {"owner"}, "promotion": {"owner"},
    "payment": {"owner", "other"}, "payment_captured": {"owner", "other"},
}


class S:
    """One Socket.IO row: the ack per actor (`ok`, or the error's status) and what it must lead to."""

    def __init__(self, event, target, payload, expect, effect=None):
        self.event, self.target, self.payload, self.effect = event, target, payload, effect
        acks = expect.split()
        assert len(acks) == len(SOCKET_ACTORS), f"{event} {target}: {len(acks)} columns"
        self.expect = {actor: ack for actor, ack in zip(SOCKET_ACTORS, acks) if ack != "-"}

    def __repr__(self):
        return f"{self.event}{f' @{self.target}' if self.target else ''} {self.payload.__name__}"


def new_party(w):
    return PARTY


def batching_on(w):
    return {"enabled": True}


def party_id(w):
    return {"party_id": w.party_id}


def party_code(w):
    return {"invite_code": w.party_code}


def party_update(w):
    return {"party_id": w.party_id, "location": PARIS, "speed_kmh": 30}


def party_message(w):
    return {"party_id": w.party_id, "text": "regroup at the bakery"}


def party_alert(w):
    return {"party_id": w.party_id, "type": "hazard", "location": PARIS}


def org_id(w):
    return {"organization_id": w.target("org")}


def sos_id(w):
    return {"emergency_id": w.sos_id}


def sos_message(w):
    return {"emergency_id": w.sos_id, "text": "two minutes away"}


# Targets as in REST, plus sos_responding: the same SOS once `other` has responded. The effect is
# checked against a witness in the room all along (a responder of the SOS, a third rider), never an actor.
SOCKETS = [
    # event               target            payload         user othr hlpr mod  admn ownr  effect
    S("party:create",      None,             new_party,      "ok   -    ok   ok   ok   -  "),
    S("party:batch",       None,             batching_on,    "ok   -    ok   ok   ok   -  "),
    S("party:join",        "party",          party_id,       "403  ok   403  403  403  ok ", "hears"),
    S("party:join",        "party",          party_code,     "ok   ok   ok   ok   ok   ok ", "hears"),
    S("party:update",      "party",          party_update,   "403  ok   403  403  403  ok ", "reaches"),
    S("party:message",     "party",          party_message,  "403  ok   403  403  403  ok ", "reaches"),
    S("party:alert",       "party",          party_alert,    "403  ok   403  403  403  ok ", "reaches"),
    S("party:leave",       "party",          party_id,       "403  ok   403  403  403  ok ", "deaf"),
    S("org:join",          "org",            org_id,         "403  403  403  403  403  ok "),
    S("emergency:join",    "sos",            sos_id,         "403  403  403  ok   ok   ok ", "hears"),
    S("emergency:join",    "sos_responding", sos_id,         "403  ok   403  ok   ok   ok ", "hears"),
    S("emergency:respond", "sos",            sos_id,         "403  ok   ok   403  403  403"),
    S("emergency:message", "sos",            sos_message,    "404  403  404  403  403  ok ", "reaches"),
    S("emergency:message", "sos_responding", sos_message,    "404  ok   404  403  403  ok ", "reaches"),
]

# "<row> <actor>" (the test id) -> why the cell is wrong today (strict xfail, as KNOWN_GAPS).
SOCKET_GAPS = {}
# Events about the connection itself, not a room: who may do them is tested where they live.
NO_ROOM_EVENTS = {"auth:renew"}  # tests/test_socket_sessions.py: only the socket's own user's tokens

ACK_CODES = {"403": "forbidden", "404": "not_found", "409": "conflict"}
ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}
# Codes more precise than ERROR_CODES' for the same status (docs/API.md's error table).
DOMAIN_CODES = {409: ("last_owner",)}
ROOM_EVENT = {"party": "party:message", "sos": "emergency:message", "sos_responding": "emergency:message"}


# ---- the world: actors and targets -------------------------------------------------------------

class World:
    """The actors of the matrix and, built on first use, each target through the API."""

    SPECS = {
        "user": {},
        "other": {"is_helper": True, "verified": True, "location": (NEAR_PARIS["lat"], NEAR_PARIS["lng"])},
        "helper": {"is_helper": True, "verified": True, "location": (LYON["lat"], LYON["lng"])},
        "mod": {"role": "moderator"},
        "admin": {"role": "admin"},
        "owner": {},
        "witness": {"is_helper": True, "verified": True},  # not an actor: a room member the socket tests watch
    }

    def __init__(self, app):
        self.app, self.client, self.db = app, app.test_client(), app.extensions["allynet_db"]
        self.actors, self._cache, self.sockets = {}, {}, []
        with app.app_context():
            for name, spec in self.SPECS.items():
                location = spec.get("location")
                point = {"type": "Point", "coordinates": [location[1], location[0]]} if location else None
                user = users_service.create_user(
                    db=self.db, email=f"{name}-{uuid.uuid4().hex[:8]}@example.com", password="password123",
                    display_name=name, role=spec.get("role", "user"), is_helper=spec.get("is_helper", False),
                    verified=spec.get("verified", False), location=point)
                user.update(auth_service.issue_tokens(user), password="password123")
                self.actors[name] = user

    def id(self, actor):
        return str(self.actors[actor]["_id"])

    def headers(self, actor, token="access"):
        if actor == "anon":
            return {}
        return {"Authorization": f"Bearer {self.actors[actor][f'{token}_token']}"}

    def call(self, method, url, actor, body=None, status=None):
        response = self.client.open(url, method=method, headers=self.headers(actor), json=body)
        if status is not None:
            assert response.status_code == status, (method, url, actor, response.get_json())
        return response.get_json()

    def target(self, name):
        """The id (or path value) of target `name`, built once."""
        if name not in self._cache:
            self._cache[name] = getattr(self, f"_build_{name}")()
        return self._cache[name]

    def _build_owner(self):
        return self.id("owner")

    def _build_file(self):
        return "no-such-file.txt"

    def _build_tilejson(self):
        return FIXED_URLS["tilejson"]

    def _build_tile(self):
        return FIXED_URLS["tile"]

    def _build_sos(self):
        data = self.call("POST", f"{API}/emergencies", "owner", SOS, 201)["data"]
        emergency_id = data["emergency"]["id"]
        alerted = self.db.emergencies.find_one({"_id": ObjectId(emergency_id)})["notified_helper_ids"]
        assert alerted == [self.actors["other"]["_id"]], "only `other` is alerted"
        return emergency_id

    def _build_sos_responding(self):
        emergency_id = self.target("sos")
        self.call("POST", f"{API}/emergencies/{emergency_id}/respond", "other", None, 200)
        return emergency_id

    def _build_help(self):
        request_id = self.call("POST", f"{API}/help-requests", "owner", HELP, 201)["data"]["id"]
        self.offer_id = self.call("POST", f"{API}/help-requests/{request_id}/offers", "other",
                                  {"message": "I can help"}, 201)["data"]["id"]
        return request_id

    def _build_help_assigned(self):
        request_id = self._build_help()
        self.call("POST", f"{API}/help-requests/{request_id}/accept", "owner", {"offer_id": self.offer_id}, 200)
        return request_id

    def _build_payment(self):
        """The payment of a help request: `owner` accepted `other`'s priced offer (owner pays, other is paid)."""
        request_id = self.call("POST", f"{API}/help-requests", "owner",
                               dict(HELP, budget={"amount": 30, "currency": "EUR"}), 201)["data"]["id"]
        offer_id = self.call("POST", f"{API}/help-requests/{request_id}/offers", "other",
                             {"message": "I can help", "price": {"amount": 25, "currency": "EUR"}}, 201)["data"]["id"]
        self.paid_request_id = request_id
        return self.call("POST", f"{API}/help-requests/{request_id}/accept", "owner", {"offer_id": offer_id},
                         200)["data"]["payment"]["id"]

    def _build_payment_captured(self):
        payment_id = self._build_payment()
        self.call("POST", f"{API}/payments/{payment_id}/confirm", "owner", PAY, 200)
        self.call("POST", f"{API}/help-requests/{self.paid_request_id}/complete", "owner", None, 200)
        return payment_id

    def _build_party(self):
        party = self.call("POST", f"{API}/parties", "owner", PARTY, 201)["data"]
        self.call("POST", f"{API}/parties/join", "other", {"invite_code": party["invite_code"]}, 200)
        self.party_code = party["invite_code"]
        return party["id"]

    def _build_skill(self):
        return self.call("POST", f"{API}/skills", "owner", SKILL, 201)["data"]["id"]

    def _build_report(self):
        return self.call("POST", f"{API}/reports", "owner", REPORT, 201)["data"]["id"]

    def _build_report_pending(self):
        report = self.call("POST", f"{API}/reports", "owner", dict(REPORT, type="speed_camera"), 201)["data"]
        assert report["status"] == "pending"
        return report["id"]

    def _build_org(self):
        """A verified pro organization in Paris: `owner` owns it, `other` is a member."""
        org_id = self.call("POST", f"{API}/organizations", "owner", ORG, 201)["data"]["id"]
        self.call("PATCH", f"{API}/organizations/{org_id}", "admin", {"verified": True}, 200)
        self.subscription_id = self.call("POST", f"{API}/organizations/{org_id}/subscription", "owner", None,
                                         201)["data"]["id"]
        self.call("POST", f"{API}/payments/offline/events", "admin", paid(self), 200)
        code = self.call("POST", f"{API}/organizations/{org_id}/invitations", "owner", None, 201)["data"]["code"]
        self.call("POST", f"{API}/organizations/join", "other", {"code": code}, 200)
        self.org_code = self.call("POST", f"{API}/organizations/{org_id}/invitations", "owner", None,
                                  201)["data"]["code"]
        return org_id

    def _build_org_unpaid(self):
        """An organization on the free plan: `owner` owns it, `other` is a member."""
        org_id = self.call("POST", f"{API}/organizations", "owner", dict(ORG, name="Free club"), 201)["data"]["id"]
        code = self.call("POST", f"{API}/organizations/{org_id}/invitations", "owner", None, 201)["data"]["code"]
        self.call("POST", f"{API}/organizations/join", "other", {"code": code}, 200)
        return org_id

    def _build_org_member(self):
        return self.target("org"), self.id("other")

    def _build_org_sos(self):
        return self.target("org"), self.target("sos")

    def _build_business(self):
        return self.call("POST", f"{API}/businesses", "owner", BUSINESS, 201)["data"]["id"]

    def _build_business_hidden(self):
        business_id = self._build_business()
        self.call("PATCH", f"{API}/businesses/{business_id}", "admin", {"hidden": True}, 200)
        return business_id

    def _build_promotion(self):
        business_id = self.target("business")
        promotion_id = self.call("POST", f"{API}/businesses/{business_id}/promotions", "owner", promotion(self),
                                 201)["data"]["id"]
        return business_id, promotion_id

    def _build_alert(self):
        return self.call("POST", f"{API}/alerts", "admin", alert(self), 201)["data"]["id"]

    def _build_route(self):
        return self.call("POST", f"{API}/routes", "owner", ROUTE, 201)["data"]["id"]

    @property
    def party_id(self):
        return self.target("party")

    @property
    def sos_id(self):
        return self.target("sos")  # sos_responding is the same SOS

    def url(self, row):
        if row.target is None:
            return row.url_template
        if row.target in FIXED_URLS:
            return self.target(row.target)
        value = self.target(row.target)
        values = list(value) if isinstance(value, tuple) else None  # one id per path placeholder, in order
        return re.sub(r"<[^>]+>", lambda _: values.pop(0) if values is not None else value, row.url_template)

    def connect(self, actor):
        """A Socket.IO test client of `actor`, its queue drained."""
        sio = self.app.extensions["socketio"].test_client(self.app, auth={"token": self.actors[actor]["access_token"]})
        assert sio.is_connected()
        self.sockets.append(sio)
        sio.get_received()
        return sio

    def close(self):
        for sio in self.sockets:
            if sio.is_connected():
                sio.disconnect()


@pytest.fixture(scope="module")
def shared_world(mongo_session):
    """One world for the GET rows (they change nothing), every target built up front."""
    overrides = {"RATELIMIT_ENABLED": False}
    if mongo_session is not None:  # a database of its own: the per-test cleanup empties the session's
        overrides.update(MONGO_CLIENT=mongo_session[0], MONGO_DB=f"{mongo_session[1]}_authz")
    world = World(create_app("testing", **overrides))
    for name in {row.target for row in REST if row.method == "GET" and row.target}:
        world.target(name)
    yield world
    if mongo_session is not None:
        mongo_session[0].drop_database(overrides["MONGO_DB"])


@pytest.fixture
def fresh_world(app_factory):
    """A world of its own (a fresh store) for one cell that may change state."""
    world = World(app_factory(RATELIMIT_ENABLED=False))
    yield world
    world.close()


# ---- the table is complete and consistent ------------------------------------------------------

def _served():
    app = create_app("testing")
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_served_route_has_a_row():
    missing = sorted(_served() - {(row.method, row.rule) for row in REST})
    assert not missing, f"add a row to REST in tests/test_authz_matrix.py for: {missing}"


def test_every_row_names_a_served_route():
    unknown = sorted({(row.method, row.rule) for row in REST} - _served())
    assert not unknown, f"REST rows for routes the app does not serve: {unknown}"


def test_every_socket_event_has_a_row():
    create_app("testing")  # every feature's events registered
    events = {name for name, _ in HANDLERS if not name.startswith("test:")} - NO_ROOM_EVENTS
    missing = sorted(events - {row.event for row in SOCKETS})
    assert not missing, f"add a row to SOCKETS in tests/test_authz_matrix.py for: {missing}"
    assert not {row.event for row in SOCKETS} - events


def test_rows_only_name_actors_their_target_has():
    for row in [*REST, *SOCKETS]:
        parties = TARGET_PARTIES[row.target]
        for actor in ("other", "owner"):
            assert (actor in row.expect) == (actor in parties), f"{row}: `{actor}` column"
    cells = {f"{row} {actor}" for row in [*REST, *SOCKETS] for actor in row.expect}
    assert len(cells) == sum(len(row.expect) for row in [*REST, *SOCKETS]), "two rows with one name"
    assert not (set(KNOWN_GAPS) | set(SOCKET_GAPS)) - cells, "a gap names no cell of the tables"


# ---- REST --------------------------------------------------------------------------------------

def _rest_cells():
    for row in REST:
        for actor, status in row.expect.items():
            reason = KNOWN_GAPS.get(f"{row} {actor}")
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(row, actor, status, marks=marks, id=f"{row} {actor}")


@pytest.mark.parametrize("row, actor, status", _rest_cells())
def test_rest(request, row, actor, status):
    world = request.getfixturevalue("shared_world" if row.method == "GET" else "fresh_world")
    url = world.url(row)  # builds the target (as its owner) before the actor's call
    body = row.body(world) if callable(row.body) else row.body
    headers = world.headers(actor, row.token)
    response = world.client.open(url, method=row.method, headers=headers, json=body)
    answer = response.get_json(silent=True)
    assert response.status_code == status, f"{row} as {actor}: {response.status_code} {answer}"
    if status in ERROR_CODES and row.rule.startswith(API):
        assert answer["error"]["code"] in (ERROR_CODES[status], *DOMAIN_CODES.get(status, ())), answer


# ---- Socket.IO ---------------------------------------------------------------------------------

def _socket_cells():
    for row in SOCKETS:
        for actor, ack in row.expect.items():
            reason = SOCKET_GAPS.get(f"{row} {actor}")
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(row, actor, ack, marks=marks, id=f"{row} {actor}")


def _witness(world, target):
    """A socket that is in the target's room all along: a responder of the SOS, a third rider."""
    if target == "party":
        world.call("POST", f"{API}/parties/join", "witness", {"invite_code": world.party_code}, 200)
        return world.connect("witness")  # a member's socket joins the party room on connect
    world.call("POST", f"{API}/emergencies/{world.sos_id}/respond", "witness", None, 200)
    sio = world.connect("witness")
    assert sio.emit("emergency:join", {"emergency_id": world.sos_id}, callback=True)["ok"]
    return sio


def _room_traffic(world, target, witness):
    """The witness says something in the room; returns the event name it goes out as."""
    if target == "party":
        ack = witness.emit("party:message", {"party_id": world.party_id, "text": "anyone there?"}, callback=True)
    else:
        ack = witness.emit("emergency:message", {"emergency_id": world.sos_id, "text": "anyone there?"},
                           callback=True)
    assert ack["ok"], ack
    return ROOM_EVENT[target]


def _named(sio, name):
    return [event for event in sio.get_received() if event["name"] == name]


@pytest.mark.parametrize("row, actor, ack", _socket_cells())
def test_socket(fresh_world, row, actor, ack):
    world = fresh_world
    if row.target is not None:
        world.target(row.target)
    witness = _witness(world, row.target) if row.effect else None
    sio = world.connect(actor)
    if witness is not None:
        witness.get_received()
    answer = sio.emit(row.event, row.payload(world), callback=True)
    if ack == "ok":
        assert answer["ok"] is True, answer
    else:
        assert answer["ok"] is False and answer["error"]["code"] == ACK_CODES[ack], answer
    if row.effect is None:
        return
    if row.effect == "reaches":
        heard = _named(witness, row.event)
        assert len(heard) == (1 if ack == "ok" else 0), heard
    else:
        witness.get_received()
        sio.get_received()
        name = _room_traffic(world, row.target, witness)
        heard = _named(sio, name)
        should_hear = ack == "ok" and row.effect == "hears"
        assert len(heard) == (1 if should_hear else 0), heard


def test_socket_without_a_token_is_refused(app):
    assert not app.extensions["socketio"].test_client(app).is_connected()


# ---- after leaving and after logging out -------------------------------------------------------

def _rider_and_room(world):
    """`other`'s socket in the party room, and a witness rider who talks in it."""
    world.target("party")
    witness = _witness(world, "party")
    rider = world.connect("other")
    return rider, witness


def _hears_room(world, rider, witness):
    witness.get_received()
    if rider.is_connected():
        rider.get_received()
    _room_traffic(world, "party", witness)
    assert len(_named(witness, "party:message")) == 1  # the message did go out
    return bool(rider.is_connected() and _named(rider, "party:message"))


def test_rider_hears_the_room_before_leaving(fresh_world):
    rider, witness = _rider_and_room(fresh_world)
    assert _hears_room(fresh_world, rider, witness)


def test_rider_hears_nothing_after_leaving_over_rest(fresh_world):
    rider, witness = _rider_and_room(fresh_world)
    fresh_world.call("POST", f"{API}/parties/{fresh_world.party_id}/leave", "other", None, 200)
    assert not _hears_room(fresh_world, rider, witness)


@pytest.mark.parametrize("event, payload", [("party:update", party_update), ("party:message", party_message)])
def test_rider_cannot_speak_after_leaving_over_rest(fresh_world, event, payload):
    rider, witness = _rider_and_room(fresh_world)
    assert rider.emit(event, payload(fresh_world), callback=True)["ok"]  # the socket knows it is a member
    fresh_world.call("POST", f"{API}/parties/{fresh_world.party_id}/leave", "other", None, 200)
    witness.get_received()
    ack = rider.emit(event, payload(fresh_world), callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden", ack
    assert _named(witness, event) == []


def test_rider_hears_nothing_after_logout(fresh_world):
    rider, witness = _rider_and_room(fresh_world)
    fresh_world.call("POST", f"{API}/auth/logout", "other", None, 200)
    assert not _hears_room(fresh_world, rider, witness)


def test_rider_cannot_speak_after_logout(fresh_world):
    rider, witness = _rider_and_room(fresh_world)
    fresh_world.call("POST", f"{API}/auth/logout", "other", None, 200)
    witness.get_received()
    if rider.is_connected():
        rider.emit("party:message", {"party_id": fresh_world.party_id, "text": "still here"}, callback=True)
    assert _named(witness, "party:message") == []
