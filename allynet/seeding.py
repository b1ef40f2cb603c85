"""The demo city: a realistic, reproducible data set for MongoDB and for the embedded store.

One module serves `scripts/seed.py` (and `flask seed`) and the `ALLYNET_DEMO=1`
start-up loader (`allynet.demo`). The same `--seed` gives the same city: every
random choice comes from one `random.Random(seed)`, and every time is an
offset from `allynet.clock.now()`, so the data always looks current.

People live like a real population: most around the centre (an exponential
radial distribution), the rest in a few districts (Gaussian clusters), none
beyond `--radius-km`. Helpers have fresh locations so an SOS finds them.

Passwords: every demo account shares one password, hashed ONCE with bcrypt
and reused; that is what makes 10,000 users take seconds. `--fast-hashes`
lowers the bcrypt cost to 4 (demo and test data only).
"""
import argparse
import calendar
import logging
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from datetime import timedelta

from bson import ObjectId
from pymongo.errors import PyMongoError

from allynet import clock, geo, scripting, trust
from allynet.auth.passwords import hash_password
from allynet.db import INDEXES, ensure_indexes
from allynet.errors import MONGO_DOWN_ERRORS
from allynet.users import service as users_service
from allynet.users.schemas import VEHICLE_TYPES

log = logging.getLogger("allynet.seeding")

# Real city centres: name -> (lat, lng).
CITIES = {
    "lyon": (45.7640, 4.8357),
    "berlin": (52.5200, 13.4050),
    "paris": (48.8566, 2.3522),
    "london": (51.5074, -0.1278),
    "madrid": (40.4168, -3.7038),
    "new-york": (40.7128, -74.0060),
}
DEFAULT_CITY = "lyon"
DEMO_DOMAIN = "allynet.example"  # RFC 2606: reserved, never a real mailbox
DEMO_PASSWORD = "allynet-demo"
FAST_BCRYPT_ROUNDS = 4

# (email local part, role, what the account is for); all share the demo password.
DEMO_ACCOUNTS = (
    ("admin", "admin", "administrator: PATCH /users, moderation, official alerts"),
    ("moderator", "moderator", "moderator: report moderation, official alerts"),
    ("helper", "user", "verified helper at the city centre: receives SOS alerts"),
    ("rider", "user", "leads an active party (group ride) with live members"),
    ("user", "user", "an ordinary member near the centre"),
)

FIRST_NAMES = (
    "Adele", "Bruno", "Camille", "Dario", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Karim",
    "Lea", "Malik", "Nora", "Oscar", "Paula", "Quentin", "Rosa", "Samir", "Tessa", "Ugo", "Vera",
    "Wim", "Xenia", "Yann", "Zoe", "Amir", "Beatriz", "Chloe", "Daniel", "Emma", "Farid", "Lina",
    "Louis", "Maya", "Noah", "Olga", "Pierre", "Sofia", "Tom",
)
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "Roux",
    "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Garcia", "Rossi", "Novak", "Kowalski", "Haddad", "Nguyen", "Silva", "Costa", "Petit", "Fontaine",
    "Girard",
)
# How riders actually get around, roughly.
VEHICLE_WEIGHTS = {"car": 40, "motorcycle": 25, "bicycle": 15, "scooter": 8, "truck": 4, "walking": 6,
                   "other": 2}
assert set(VEHICLE_WEIGHTS) <= set(VEHICLE_TYPES)

CITY_CURRENCY = {"london": "GBP", "new-york": "USD"}  # others: EUR
CITY_TIMEZONE = {"berlin": "Europe/Berlin", "london": "Europe/London", "madrid": "Europe/Madrid",
                 "new-york": "America/New_York"}  # others: Europe/Paris
WEEK, WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), ("mon", "tue", "wed", "thu", "fri")


def _hours(days, *spans):
    """Intervals for `days`, each open during every (open, close) span."""
    return [{"day": day, "open": opens, "close": closes} for day in days for opens, closes in spans]


# Weekly hours per category (local time): a late bar shift crossing midnight, round-the-clock services.
BUSINESS_HOURS = {
    "cafe": _hours(WEEK[:6], ("07:00", "19:00")) + _hours(("sun",), ("08:00", "14:00")),
    "restaurant": _hours(WEEK[1:], ("12:00", "14:30"), ("19:00", "23:30")) + _hours(("fri", "sat"), ("23:30", "02:00")),
    "fuel": _hours(WEEK, ("00:00", "00:00")),
    "garage": _hours(WEEKDAYS, ("08:00", "18:00")) + _hours(("sat",), ("09:00", "12:00")),
    "pharmacy": _hours(WEEK[:6], ("08:30", "20:00")),
    "hospital": _hours(WEEK, ("00:00", "00:00")),
    "shop": _hours(WEEK[:6], ("09:00", "19:30")),
    "lodging": _hours(WEEK, ("00:00", "00:00")),
    "other": _hours(WEEKDAYS, ("09:00", "17:00")),
}
BUSINESS_NAMES = {
    "cafe": ("Café du Coin", "Bean There", "Le Petit Noir", "Kickstand Coffee"),
    "restaurant": ("Chez Louise", "The Gravel Grill", "Trattoria Roma", "Le Relais"),
    "fuel": ("Station Centrale", "Fuel & Go", "Relais Énergie"),
    "garage": ("Garage Martin", "Moto Fix", "Pit Stop Repairs"),
    "pharmacy": ("Pharmacie de la Gare", "Pharmacie Centrale", "Night Pharmacy"),
    "hospital": ("Hôpital Saint-Luc", "City Clinic"),
    "shop": ("Bike Parts Store", "Corner Shop", "Outdoor Gear"),
    "lodging": ("Hôtel du Parc", "Riders' Inn", "Auberge de la Place"),
    "other": ("Community Centre", "Library", "Post Office"),
}
# Safe places are staffed round the clock or late: where someone in trouble can walk in.
SAFE_PLACE_CATEGORIES = ("pharmacy", "hospital", "fuel", "lodging")
PROMOTION_TITLES = ("10% off for riders", "Free coffee with a full tank", "Happy hour 17-19h",
                    "Free tyre check", "Two for one", "Loyalty week")

# Marketplace vocabulary, per help-request/skill category.
SKILLS = {
    "transport": ("Airport rides", "Van with driver", "Motorbike towing", "School run"),
    "groceries": ("Grocery runs", "Pharmacy pick-up", "Market shopping"),
    "repairs": ("Bike repair", "Puncture and tyre change", "Jump start", "Plumbing fixes", "Scooter servicing"),
    "childcare": ("Babysitting", "Homework help"),
    "elderly_care": ("Visits and company", "Help with paperwork"),
    "pets": ("Dog walking", "Cat sitting"),
    "tech": ("Phone and laptop help", "Wi-Fi setup", "Dashcam installation"),
    "moving": ("Moving help", "Furniture assembly", "Van and two arms"),
    "other": ("Translation", "Gardening"),
}
HELP_TITLES = {
    "transport": ("Lift to the hospital on Monday", "Need a ride to the station", "Tow my scooter home"),
    "groceries": ("Groceries for my grandmother", "Pharmacy pick-up this evening"),
    "repairs": ("Flat tyre, no spare", "Bike chain keeps slipping", "Leaking kitchen tap", "Battery is dead"),
    "childcare": ("Babysitter for Friday night", "Pick up my son from school"),
    "elderly_care": ("Company for my neighbour", "Help filling in forms"),
    "pets": ("Walk my dog this week", "Feed my cats over the weekend"),
    "tech": ("Set up my new phone", "Router keeps dropping"),
    "moving": ("Carry a sofa to the 3rd floor", "Help moving boxes on Saturday"),
    "other": ("Translate a letter", "Trim the hedge"),
}
OFFER_MESSAGES = ("I can do it today.", "Happy to help, I live nearby.", "Available this evening.",
                  "I have the tools, send me the details.", "I can come by in an hour.")
REPORT_TYPE_WEIGHTS = {"traffic": 25, "police": 18, "hazard": 18, "accident": 10, "speed_camera": 12,
                       "road_closure": 9, "weather": 8}
REPORT_DESCRIPTIONS = {
    "speed_camera": ("Fixed camera, 50 zone", "Mobile camera behind the bridge", "Average speed check"),
    "police": ("Checkpoint on the right lane", "Patrol car parked at the exit", "Breathalyser control"),
    "hazard": ("Oil on the road", "Pothole in the cycle lane", "Debris after the roundabout", "Broken glass"),
    "accident": ("Two cars, one lane blocked", "Scooter down, ambulance on site", "Minor crash, slow down"),
    "road_closure": ("Roadworks, closed until tonight", "Closed for a street market", "Bridge closed"),
    "traffic": ("Queue to the ring road", "Stop and go for 2 km", "Heavy traffic at the junction"),
    "weather": ("Black ice on the hill", "Fog, visibility 50 m", "Flooded underpass"),
}
ALERT_TEXTS = (
    ("road_closure", "Marathon: city-centre roads closed from 7:00 to 14:00"),
    ("weather", "Storm warning: strong winds expected this afternoon"),
    ("hazard", "Gas leak: avoid the area, firefighters on site"),
    ("other", "Public demonstration: expect diversions"),
    ("traffic", "Major roadworks on the ring road, one lane open"),
)
PARTY_NAMES = ("Sunday loop", "Lakeside cruise", "Night ride", "Coffee run", "Hill climbers", "Commute crew",
               "Riverside tour", "Vineyard ride", "Old town spin", "Morning club")
PARTY_MESSAGES = ("Fuel stop in 10 min?", "Slow down, gravel ahead", "Waiting at the lights", "All good at the back",
                  "Left at the next roundabout", "Nice pace today!", "Photo stop at the bridge")
ROUTE_NAMES = ("Home to work", "Weekend loop", "Scenic detour", "Airport run", "Hill route")
SOS_TEXTS = {
    "medical": "Rider fell, conscious but can't stand", "breakdown": "Engine died on the ring road, no lights",
    "accident": "Hit by a car door, bike damaged", "crime": "Someone is following me",
    "fire": "Smoke from my scooter battery", "other": "Stuck, need help quickly",
}


@dataclass
class SeedPlan:
    """How big a city to build, and where. None sizes are derived from `users`."""

    seed: int = 42
    city_lat: float = CITIES[DEFAULT_CITY][0]
    city_lng: float = CITIES[DEFAULT_CITY][1]
    radius_km: float = 12.0
    users: int = 2000
    helper_ratio: float = 0.25
    verified_ratio: float = 0.6
    skills: int = None
    help_requests: int = None
    parties: int = None
    party_size: int = 6
    trail_points: int = 40
    reports: int = None
    alerts: int = None
    sos: int = None
    businesses: int = None
    currency: str = "EUR"
    timezone: str = "Europe/Paris"
    password: str = DEMO_PASSWORD
    fast_hashes: bool = False
    batch_size: int = 1000

    def size(self, name):
        """The planned count of `name`: the flag when given, else a share of the users."""
        value = getattr(self, name)
        if value is not None:
            return value
        derived = {
            "skills": self.users // 4,
            "help_requests": self.users // 10,
            "parties": max(2, self.users // 100),
            "reports": max(7, self.users // 5),
            "alerts": max(2, self.users // 500),
            "sos": max(1, self.users // 1000),
            "businesses": max(8, self.users // 50),
        }
        return derived[name]


@dataclass
class SeedResult:
    """What a seed run created (documents per collection) and the logins to try it with."""

    created: Counter = field(default_factory=Counter)
    logins: list = field(default_factory=list)
    seconds: float = 0.0


class AlreadySeeded(RuntimeError):
    """The demo accounts are already there: seeding again would duplicate the city."""


# --- geography -------------------------------------------------------------------------------


def destination(lat, lng, distance_m, bearing):
    """The point `distance_m` from (lat, lng) along `bearing` (radians) on MongoDB's sphere."""
    angular = distance_m / geo.EARTH_RADIUS_M
    phi1, lambda1 = math.radians(lat), math.radians(lng)
    phi2 = math.asin(math.sin(phi1) * math.cos(angular)
                     + math.cos(phi1) * math.sin(angular) * math.cos(bearing))
    lambda2 = lambda1 + math.atan2(math.sin(bearing) * math.sin(angular) * math.cos(phi1),
                                   math.cos(angular) - math.sin(phi1) * math.sin(phi2))
    lat2 = max(-90.0, min(90.0, math.degrees(phi2)))
    lng2 = (math.degrees(lambda2) + 540.0) % 360.0 - 180.0
    return lat2, lng2


def point(lat, lng):
    """A valid GeoJSON Point (6 decimals, about 10 cm), always inside 2dsphere's ranges."""
    lat = max(-90.0, min(90.0, round(lat, 6)))
    lng = max(-180.0, min(180.0, round(lng, 6)))
    return geo.to_point(lat, lng)


class Population:
    """Where people are: dense centre, a few districts, sparse edge, nobody past the radius."""

    CENTRE_SHARE = 0.65

    def __init__(self, rng, lat, lng, radius_m, districts=6):
        self.rng, self.lat, self.lng, self.radius_m = rng, lat, lng, radius_m
        self.districts = [destination(lat, lng, rng.uniform(0.25, 0.7) * radius_m, rng.uniform(0, 2 * math.pi))
                          for _ in range(districts)]

    def latlng(self):
        """One (lat, lng) drawn from the population."""
        rng = self.rng
        for _ in range(10):
            if rng.random() < self.CENTRE_SHARE:
                origin, distance = (self.lat, self.lng), rng.expovariate(4.0 / self.radius_m)
            else:
                origin, distance = rng.choice(self.districts), abs(rng.gauss(0.0, self.radius_m / 10.0))
            lat, lng = destination(origin[0], origin[1], distance, rng.uniform(0, 2 * math.pi))
            if geo.haversine_m(self.lng, self.lat, lng, lat) <= self.radius_m:
                return lat, lng
        return destination(self.lat, self.lng, rng.uniform(0, self.radius_m / 4), rng.uniform(0, 2 * math.pi))

    def near(self, lat, lng, max_m):
        """(lat, lng) within `max_m` of a point (uniform over the disc)."""
        distance = max_m * math.sqrt(self.rng.random())
        return destination(lat, lng, distance, self.rng.uniform(0, 2 * math.pi))


def make_id(rng, when):
    """An ObjectId whose timestamp is `when` (so _id order follows created_at), the rest from `rng`."""
    return ObjectId(calendar.timegm(when.timetuple()).to_bytes(4, "big") + rng.randbytes(8))


# --- the seeder ------------------------------------------------------------------------------


class CitySeeder:
    """Builds one city into `db`, feature by feature, in batches."""

    def __init__(self, *, db, config, plan, show_progress=None):
        self.db, self.config, self.plan = db, config, plan
        self.show_progress = show_progress
        self.rng = random.Random(plan.seed)
        self.now = clock.now()
        self.population = Population(self.rng, plan.city_lat, plan.city_lng, plan.radius_km * 1000.0)
        self.result = SeedResult()
        self._hashes = {}
        # What later steps pick from: ids and where people are.
        self.users = []  # (id, lat, lng) of every seeded user
        self.helpers = []  # (id, lat, lng) of helpers
        self.verified_helpers = []
        self.accounts = {}  # demo account local part -> user document
        self.user_docs = []  # built first, inserted once their trust events are known
        self.trust_counts = defaultdict(Counter)  # user id -> {trust event: n}

    # helpers ----------------------------------------------------------------------------------

    def password_hash(self, password):
        """bcrypt once per distinct password; every account with it shares the hash."""
        if password not in self._hashes:
            rounds = FAST_BCRYPT_ROUNDS if self.plan.fast_hashes else int(self.config.get("BCRYPT_ROUNDS", 12))
            self._hashes[password] = hash_password(password, rounds=rounds)
        return self._hashes[password]

    def ago(self, **delta):
        """`now` minus a duration."""
        return self.now - timedelta(**delta)

    def insert(self, collection, documents, total, desc=None):
        """insert_many in batches with a progress bar; returns how many were inserted."""
        count = 0
        with scripting.progress(total, desc or collection, self.show_progress) as bar:
            for batch in scripting.batched(documents, self.plan.batch_size):
                self.db[collection].insert_many(batch, ordered=True)
                count += len(batch)
                bar.update(len(batch))
        self.result.created[collection] += count
        if count:
            log.info("seeded %d %s", count, collection)
        return count

    # steps ------------------------------------------------------------------------------------

    def run(self):
        """Ensure indexes, then seed every feature; returns a SeedResult."""
        started = time.monotonic()  # a duration: not the (possibly frozen) domain clock
        ensure_indexes(self.db, self.config)
        if self.db.users.find_one({"email": self.email("admin")}, projection={"_id": 1}):
            raise AlreadySeeded("the demo city is already in this database (admin@"
                                f"{DEMO_DOMAIN} exists): use --drop to start over")
        for step in self.steps():
            step()
        self.result.seconds = time.monotonic() - started
        return self.result

    def steps(self):
        """The seeding steps in dependency order: users are built first and inserted last, once the
        other steps have set their trust scores and open-SOS slots."""
        return [self.seed_users, self.seed_skills, self.seed_help_requests, self.seed_parties, self.seed_reports,
                self.seed_alerts, self.seed_organizations, self.seed_businesses, self.seed_payments,
                self.apply_trust, self.seed_sos, self.insert_users]

    def email(self, local):
        """A demo address on the reserved domain."""
        return f"{local}@{DEMO_DOMAIN}"

    def user_document(self, *, email, display_name, role="user", is_helper=False, verified=False,
                      latlng=None, created_at=None, fresh_minutes=None):
        """A user exactly as registration makes one, plus a realistic location and profile."""
        rng = self.rng
        created_at = created_at or self.ago(days=rng.uniform(1, 720))
        location = point(*latlng) if latlng else None
        doc = users_service.new_user_document(
            email=email, password_hash=self.password_hash(self.plan.password), display_name=display_name,
            vehicle_type=rng.choices(list(VEHICLE_WEIGHTS), weights=list(VEHICLE_WEIGHTS.values()))[0],
            role=role, is_helper=is_helper, verified=verified, location=location, created_at=created_at)
        doc["_id"] = make_id(rng, created_at)
        doc["preferences"] = {"notifications": rng.random() < 0.9, "units": "metric",
                              "language": rng.choice(("en", "fr", "de")), "share_location": True}
        doc["emergency_radius_m"] = rng.choice((2000, 5000, 5000, 5000, 10000))
        doc["trust_events"] = {}
        if location:
            minutes = fresh_minutes if fresh_minutes is not None else rng.uniform(0, 60 * 24 * 30)
            doc["location_updated_at"] = max(created_at, self.ago(minutes=minutes))
            doc["location_accuracy_m"] = round(rng.uniform(3, 40), 1)
        return doc

    def remember(self, doc):
        """Index a seeded user for later steps."""
        location = doc.get("location")
        if location is None:
            return
        lng, lat = location["coordinates"]
        entry = (doc["_id"], lat, lng)
        self.users.append(entry)
        if doc["is_helper"]:
            self.helpers.append(entry)
            if doc["verified"]:
                self.verified_helpers.append(entry)

    def seed_users(self):
        """Demo accounts, then the population: helpers, verified helpers and members."""
        plan, rng = self.plan, self.rng
        centre = (plan.city_lat, plan.city_lng)
        accounts = []
        for local, role, purpose in DEMO_ACCOUNTS:
            is_helper = local == "helper"
            doc = self.user_document(
                email=self.email(local), display_name=f"Demo {local.title()}", role=role,
                is_helper=is_helper, verified=role != "user" or is_helper,
                latlng=self.population.near(*centre, 300), created_at=self.ago(days=400), fresh_minutes=1)
            accounts.append(doc)
            self.accounts[local] = doc
            self.result.logins.append({"email": doc["email"], "password": plan.password, "role": role,
                                       "purpose": purpose})
        for doc in accounts:
            self.remember(doc)
        self.user_docs.extend(accounts)

        def population():
            for n in range(plan.users):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                is_helper = rng.random() < plan.helper_ratio
                verified = is_helper and rng.random() < plan.verified_ratio
                # Helpers keep their location fresh (the app reports it); others may not share one.
                has_location = is_helper or rng.random() < 0.7
                fresh = rng.uniform(0, 120) if verified else (rng.uniform(0, 600) if is_helper else None)
                doc = self.user_document(
                    email=f"{first}.{last}.{n}@{DEMO_DOMAIN}".lower(), display_name=f"{first} {last[0]}.",
                    is_helper=is_helper, verified=verified,
                    latlng=self.population.latlng() if has_location else None, fresh_minutes=fresh)
                self.remember(doc)
                yield doc

        # Kept in memory until the other steps have counted each user's trust events.
        self.user_docs.extend(population())

    def apply_trust(self):
        """Give users the trust scores their seeded reports and help earn (allynet.trust's one rule)."""
        for doc in self.user_docs:
            events = self.trust_counts.get(doc["_id"])
            if events:
                doc["trust_events"] = dict(events)
                doc["trust_score"] = trust.score_from_counts(events)

    def insert_users(self):
        """Insert every user, in batches."""
        self.insert("users", self.user_docs, len(self.user_docs), "users")

    def pick_people(self, count, exclude=(), pool=None):
        """Up to `count` distinct seeded users (id, lat, lng), none of `exclude`."""
        pool = pool if pool is not None else self.users
        excluded = set(exclude)
        chosen, seen = [], set()
        for _ in range(max(count * 4, 50)):
            if len(chosen) >= count or not pool:
                break
            candidate = self.rng.choice(pool)
            if candidate[0] in excluded or candidate[0] in seen:
                continue
            seen.add(candidate[0])
            chosen.append(candidate)
        return chosen

    def money(self, low, high):
        """{amount, currency} as the marketplace schemas store it."""
        return {"amount": float(self.rng.randrange(low, high)), "currency": self.plan.currency}

    def seed_skills(self):
        """Skills offered mostly by helpers, near where they live (skills.service.create's fields)."""
        rng, total = self.rng, self.plan.size("skills")
        owners = self.helpers or self.users

        def skills():
            for _ in range(total):
                owner_id, lat, lng = rng.choice(owners if rng.random() < 0.7 else self.users)
                category = rng.choice(list(SKILLS))
                created_at = self.ago(days=rng.uniform(0, 365))
                rate = None
                if rng.random() < 0.7:
                    rate = {**self.money(10, 60), "unit": rng.choice(("hour", "hour", "job"))}
                yield {
                    "_id": make_id(rng, created_at), "user_id": owner_id, "name": rng.choice(SKILLS[category]),
                    "category": category,
                    "description": rng.choice((None, "Experienced and insured.", "Evenings and weekends.",
                                               "Ask me anything, happy to help neighbours.")),
                    "rate": rate, "location": point(*self.population.near(lat, lng, 500)),
                    "created_at": created_at, "updated_at": created_at,
                }

        if self.users:
            self.insert("skills", skills(), total)

    def seed_help_requests(self):
        """Help requests in every state, with offers (help_requests.service's document shape)."""
        rng, total = self.rng, self.plan.size("help_requests")
        statuses = {"open": 60, "assigned": 15, "completed": 15, "cancelled": 10}

        def requests():
            for _ in range(total):
                owner_id, lat, lng = rng.choice(self.users)
                status = rng.choices(list(statuses), weights=list(statuses.values()))[0]
                category = rng.choice(list(HELP_TITLES))
                created_at = self.ago(hours=rng.uniform(1, 24 * (7 if status == "open" else 30)))
                offer_count = rng.choice((0, 1, 1, 2, 3, 4)) if status in ("open", "cancelled") else rng.randint(1, 4)
                offers = []
                for n, (helper_id, _, _) in enumerate(self.pick_people(offer_count, (owner_id,),
                                                                        self.helpers or self.users)):
                    offers.append({"_id": make_id(rng, created_at + timedelta(minutes=10 * (n + 1))),
                                   "user_id": helper_id, "message": rng.choice(OFFER_MESSAGES),
                                   "price": self.money(5, 80) if rng.random() < 0.5 else None,
                                   "created_at": created_at + timedelta(minutes=10 * (n + 1))})
                if not offers and status in ("assigned", "completed"):
                    status = "open"
                timeline = [{"status": "open", "at": created_at, "by": owner_id}]
                doc = {"_id": make_id(rng, created_at), "user_id": owner_id, "title": rng.choice(HELP_TITLES[category]),
                       "description": "Details in private messages; thank you!", "category": category,
                       "location": point(*self.population.near(lat, lng, 300)),
                       "budget": self.money(10, 100) if rng.random() < 0.5 else None,
                       "status": "open", "helper_id": None, "accepted_offer_id": None, "offers": offers,
                       "offers_count": len(offers), "timeline": timeline, "created_at": created_at,
                       "updated_at": offers[-1]["created_at"] if offers else created_at}
                at = doc["updated_at"]
                if status in ("assigned", "completed"):
                    accepted = rng.choice(offers)
                    at = at + timedelta(hours=1)
                    doc.update(helper_id=accepted["user_id"], accepted_offer_id=accepted["_id"], assigned_at=at)
                    timeline.append({"status": "assigned", "at": at, "by": owner_id})
                if status in ("completed", "cancelled"):
                    at = at + timedelta(hours=rng.uniform(1, 48))
                    at = min(at, self.now)
                    doc[f"{status}_at"] = at
                    timeline.append({"status": status, "at": at, "by": owner_id})
                doc.update(status=status, updated_at=at)
                if status == "completed":
                    self.trust_counts[doc["helper_id"]]["help_completed"] += 1
                yield doc

        if self.users:
            self.insert("help_requests", requests(), total, "help requests")


    def seed_parties(self):
        """Active rides (some ended) with members, live positions, trails, chat and an alert; saved routes.

        Documents as the parties feature writes them: `parties` with the current
        roster, one `party_members` row per rider (last position, status),
        `trail_points` sampled along the ride, `party_messages`, `party_events`.
        """
        from allynet.parties.schemas import INVITE_ALPHABET, INVITE_CODE_LENGTH

        rng, plan, total = self.rng, self.plan, self.plan.size("parties")
        if not self.users or not total:
            return
        riders = {self.accounts["rider"]["_id"]} if "rider" in self.accounts else set()
        busy = {doc["_id"] for local, doc in self.accounts.items() if local != "rider"}
        parties, members, trails, messages, events, codes = [], [], [], [], [], set()
        corridors = [self.corridor() for _ in range(max(2, total // 4))]
        for n in range(total):
            if n == 0 and riders:
                leader = next(entry for entry in self.users if entry[0] in riders)
            else:
                picked = self.pick_people(1, busy)
                leader = picked[0] if picked else None
            if leader is None:
                break
            crew = [leader] + self.pick_people(rng.randint(1, max(1, plan.party_size - 1)), busy | {leader[0]})
            busy.update(entry[0] for entry in crew)
            active = n == 0 or rng.random() < 0.8
            duration = timedelta(minutes=rng.uniform(20, 120))
            end = self.now - timedelta(seconds=rng.uniform(2, 20)) if active else self.ago(hours=rng.uniform(2, 72))
            start = end - duration
            code = "".join(rng.choice(INVITE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))
            while code in codes:
                code = "".join(rng.choice(INVITE_ALPHABET) for _ in range(INVITE_CODE_LENGTH))
            codes.add(code)
            party_id = make_id(rng, start)
            roster = [{"user_id": user_id, "joined_at": start + timedelta(seconds=30 * i)}
                      for i, (user_id, _, _) in enumerate(crew)]
            parties.append({"_id": party_id, "name": rng.choice(PARTY_NAMES), "invite_code": code,
                            "leader_id": leader[0], "is_active": active, "created_at": start,
                            "ended_at": None if active else end, "members": roster})
            path = self.ride_path(leader[1], leader[2], start, end, max(2, plan.trail_points))
            tail = []
            if active and plan.trail_points:
                # The last minutes of a live ride run along one of a few shared corridors, so the
                # traffic layer (3 riders from 2 parties per cell) has something to show.
                path, tail = self.corridor_tail(path, corridors[n % len(corridors)], end)
            for i, entry in enumerate(roster):
                user_id = entry["user_id"]
                offset_m, bearing = rng.uniform(10, 150) * i, rng.uniform(0, 2 * math.pi)
                tail_offset_m = rng.uniform(5, 40) * min(i, 1)
                last = None
                for step, (ts, lat, lng, speed, heading) in enumerate(path + tail):
                    if ts < entry["joined_at"]:
                        continue
                    offset = offset_m if step < len(path) else tail_offset_m
                    lat_i, lng_i = destination(lat, lng, offset, bearing) if offset else (lat, lng)
                    last = (ts, point(lat_i, lng_i), speed, heading)
                    if plan.trail_points:
                        trails.append({"_id": make_id(rng, ts), "party_id": party_id, "user_id": user_id, "ts": ts,
                                       "location": last[1], "speed_kmh": speed, "heading": heading,
                                       "status": "riding"})
                stopped = active and i > 0 and rng.random() < 0.15
                member = {"_id": make_id(rng, entry["joined_at"]), "party_id": party_id, "user_id": user_id,
                          "active": active, "joined_at": entry["joined_at"], "left_at": None if active else end,
                          "left_reason": None if active else "ended", "status": "stopped" if stopped else "riding",
                          "last_speed_kmh": 0.0 if stopped else (last[2] if last else None),
                          "heading": last[3] if last else None,
                          "stopped_since": self.ago(minutes=rng.uniform(1, 4)) if stopped else None,
                          "last_update_at": last[0] if last else None,
                          "left_behind_alerted": False, "stopped_alerted": False}
                if last is not None:
                    member["last_location"] = last[1]
                members.append(member)
            for _ in range(rng.randint(1, 5)):
                author = rng.choice(roster)["user_id"]
                ts = start + (end - start) * rng.random()
                messages.append({"_id": make_id(rng, ts), "party_id": party_id, "user_id": author,
                                 "text": rng.choice(PARTY_MESSAGES), "ts": ts})
            if rng.random() < 0.5:
                ts = start + (end - start) * rng.uniform(0.3, 0.9)
                _, lat, lng, _, _ = min(path + tail, key=lambda step: abs((step[0] - ts).total_seconds()))
                events.append({"_id": make_id(rng, ts), "party_id": party_id, "type": rng.choice(("hazard", "police")),
                               "user_id": rng.choice(roster)["user_id"], "location": point(lat, lng),
                               "description": rng.choice(REPORT_DESCRIPTIONS["hazard"]), "source": "member",
                               "ts": ts})
        self.insert("parties", parties, len(parties))
        self.insert("party_members", members, len(members), "party members")
        self.insert("trail_points", trails, len(trails), "trail points")
        self.insert("party_messages", messages, len(messages), "party messages")
        self.insert("party_events", events, len(events), "party events")
        self.seed_routes(total * 2)

    def corridor(self, length_m=2000.0):
        """A straight street near the centre: ((lat, lng), (lat, lng), length_m, bearing)."""
        rng, plan = self.rng, self.plan
        a = destination(plan.city_lat, plan.city_lng, rng.uniform(0, min(3000.0, plan.radius_km * 300)),
                        rng.uniform(0, 2 * math.pi))
        bearing = rng.uniform(0, 2 * math.pi)
        return a, destination(a[0], a[1], length_m, bearing), length_m, math.degrees(bearing) % 360

    def corridor_tail(self, path, corridor, end, every_s=20.0):
        """`path` cut at the traffic window, and the window's samples riding back and forth along `corridor`."""
        rng = self.rng
        window = timedelta(minutes=float(self.config.get("TRAFFIC_WINDOW_MINUTES", 10)))
        (lat_a, lng_a), (lat_b, lng_b), length_m, bearing = corridor
        since, speed, phase = end - window, round(rng.uniform(18, 45), 1), rng.uniform(0, 2 * length_m)
        tail, t = [], every_s
        while t <= window.total_seconds():
            along = (phase + speed / 3.6 * t) % (2 * length_m)
            fraction = along / length_m if along <= length_m else 2 - along / length_m
            heading = bearing if along <= length_m else (bearing + 180) % 360
            tail.append((since + timedelta(seconds=t), lat_a + (lat_b - lat_a) * fraction,
                         lng_a + (lng_b - lng_a) * fraction, speed, round(heading, 1)))
            t += every_s
        return [step for step in path if step[0] < since], tail

    def ride_path(self, lat, lng, start, end, samples):
        """[(ts, lat, lng, speed_kmh, heading)] of a ride that wanders but stays inside the city."""
        rng, radius = self.rng, self.plan.radius_km * 1000.0
        step = (end - start) / (samples - 1)
        heading = rng.uniform(0, 360)
        path = []
        for n in range(samples):
            speed = round(rng.uniform(15, 55), 1)
            path.append((start + step * n, lat, lng, speed, round(heading, 1)))
            heading = (heading + rng.gauss(0, 25)) % 360
            next_lat, next_lng = destination(lat, lng, speed / 3.6 * step.total_seconds(), math.radians(heading))
            if geo.haversine_m(self.plan.city_lng, self.plan.city_lat, next_lng, next_lat) > radius * 0.9:
                heading = (heading + 180) % 360  # turn back toward town
                next_lat, next_lng = destination(lat, lng, speed / 3.6 * step.total_seconds(), math.radians(heading))
            lat, lng = next_lat, next_lng
        return path

    def seed_routes(self, total):
        """Saved routes (routes.service.create_route's LineString and length)."""
        rng, routes = self.rng, []
        for user_id, lat, lng in self.pick_people(total):
            created_at = self.ago(days=rng.uniform(0, 90))
            coordinates, here = [], (lat, lng)
            for _ in range(rng.randint(2, 6)):
                coordinates.append(point(*here)["coordinates"])
                here = destination(here[0], here[1], rng.uniform(500, 3000), rng.uniform(0, 2 * math.pi))
            length = sum(geo.haversine_m(a[0], a[1], b[0], b[1]) for a, b in zip(coordinates, coordinates[1:]))
            routes.append({"_id": make_id(rng, created_at), "user_id": user_id, "name": rng.choice(ROUTE_NAMES),
                           "waypoints": {"type": "LineString", "coordinates": coordinates},
                           "distance_m": round(length, 1), "created_at": created_at})
        self.insert("routes", routes, len(routes))

    def seed_reports(self):
        """Road reports of every type with their votes, as reports.service leaves them after voting and moderation."""
        from allynet.reports.service import HIDE_MARGIN, LIFETIMES

        rng, total = self.rng, self.plan.size("reports")
        types = list(REPORT_TYPE_WEIGHTS)
        moderator = self.accounts.get("moderator")
        votes, audits = [], []

        def reports():
            for n in range(total):
                # Every type at least once, then by how often riders report them.
                kind = types[n] if n < len(types) else rng.choices(types, weights=list(REPORT_TYPE_WEIGHTS.values()))[0]
                reporter_id, lat, lng = rng.choice(self.users)
                lifetime = LIFETIMES[kind]
                age = lifetime * rng.uniform(0.05, 0.7) if lifetime else timedelta(days=rng.uniform(0, 60))
                created_at = self.now - age
                doc = {"_id": make_id(rng, created_at), "user_id": reporter_id, "type": kind,
                       "location": point(*self.population.near(lat, lng, 2000)),
                       "description": rng.choice(REPORT_DESCRIPTIONS[kind]), "status": "active", "upvotes": 0,
                       "downvotes": 0, "net": 0, "extensions": 0,
                       "lifetime_s": lifetime.total_seconds() if lifetime else None,
                       "expires_at": created_at + lifetime if lifetime else None, "confirmed": False,
                       "reviewed": False, "hidden_by": None, "created_at": created_at, "updated_at": created_at}
                if kind == "speed_camera":
                    doc["status"] = rng.choices(("pending", "approved", "rejected"), weights=(3, 6, 1))[0]
                    if doc["status"] != "pending" and moderator is not None:
                        self.moderate(doc, moderator["_id"], created_at + (self.now - created_at) / 2, audits)
                elif rng.random() < 0.03 and moderator is not None:
                    doc["status"] = "rejected"
                    self.moderate(doc, moderator["_id"], created_at + (self.now - created_at) / 2, audits)
                if doc["status"] in ("active", "approved"):
                    self.vote_on(doc, votes, HIDE_MARGIN)
                if doc["confirmed"]:
                    self.trust_counts[reporter_id]["report_confirmed"] += 1
                if doc["status"] == "rejected":
                    self.trust_counts[reporter_id]["report_rejected"] += 1
                yield doc

        if not self.users:
            return
        self.insert("reports", reports(), total)
        self.insert("report_votes", votes, len(votes), "report votes")
        self.insert("audit_log", audits, len(audits), "audit log")

    def moderate(self, doc, moderator_id, at, audits):
        """A moderator's approve/reject as reports.service.moderate records it (audit entry included)."""
        before = {key: doc.get(key) for key in ("status", "hidden_by", "expires_at")}
        action = "approve" if doc["status"] == "approved" else "reject"
        before["status"] = "pending" if doc["type"] == "speed_camera" else "active"
        doc.update(reviewed=True, moderated_by=moderator_id, moderated_at=at, moderation_reason=None, updated_at=at)
        if action == "approve":
            doc["confirmed"] = True
            doc["expires_at"] = None
        audits.append({"_id": make_id(self.rng, at), "actor_id": moderator_id, "action": f"report.{action}",
                       "target_type": "report", "target_id": doc["_id"], "before": before,
                       "after": {key: doc.get(key) for key in ("status", "hidden_by", "expires_at")},
                       "reason": None, "at": at})

    def vote_on(self, doc, votes, hide_margin):
        """Community votes: one per voter, counters exact, upvotes extend, net -3 hides."""
        rng = self.rng
        voters = self.pick_people(rng.choice((0, 0, 1, 2, 3, 4, 5, 6, 8)), (doc["user_id"],))
        credible = rng.random() < 0.85
        span = (self.now - doc["created_at"]).total_seconds()
        for n, (voter_id, _, _) in enumerate(voters):
            value = "up" if rng.random() < (0.85 if credible else 0.2) else "down"
            at = doc["created_at"] + timedelta(seconds=span * (n + 1) / (len(voters) + 1))
            votes.append({"_id": make_id(rng, at), "report_id": doc["_id"], "user_id": voter_id, "value": value,
                          "extended": value == "up", "created_at": at, "updated_at": at})
            doc[f"{value}votes"] += 1
            doc["net"] += 1 if value == "up" else -1
            doc["updated_at"] = at
            if value == "up":
                doc["extensions"] += 1
                if doc["net"] >= trust.CONFIRM_UPVOTES:
                    doc["confirmed"] = True
            else:
                doc["reviewed"] = False
                if doc["status"] == "active" and doc["net"] <= -hide_margin:
                    doc.update(status="hidden", hidden_by="votes", hidden_at=at)
        if doc.get("lifetime_s") and doc["expires_at"] is not None:
            lifetime = timedelta(seconds=doc["lifetime_s"])
            doc["expires_at"] = doc["created_at"] + lifetime + doc["extensions"] * lifetime / 4

    def seed_alerts(self):
        """Official alerts by the moderator, audited (reports.alerts_service.create_alert's fields)."""
        rng, total = self.rng, self.plan.size("alerts")
        author = self.accounts.get("moderator") or self.accounts.get("admin")
        if author is None or not total:
            return
        alerts, audits = [], []
        for n in range(total):
            kind, text = ALERT_TEXTS[n % len(ALERT_TEXTS)]
            created_at = self.ago(hours=rng.uniform(0.5, 24))
            alert = {"_id": make_id(rng, created_at), "type": kind, "location": point(*self.population.latlng()),
                     "description": text, "expires_at": self.now + timedelta(hours=rng.uniform(6, 72)),
                     "created_by": author["_id"], "created_at": created_at}
            alerts.append(alert)
            audits.append({"_id": make_id(rng, created_at), "actor_id": author["_id"], "action": "alert.create",
                           "target_type": "alert", "target_id": alert["_id"], "before": None,
                           "after": {"type": kind, "expires_at": alert["expires_at"]}, "reason": None,
                           "at": created_at})
        self.insert("alerts", alerts, len(alerts))
        self.insert("audit_log", audits, len(audits), "audit log")

    def seed_organizations(self):
        """A verified pro rescue team around the centre (dispatcher, vouched helpers), a free riding
        club led by the demo rider and an unverified company, each with a square service area.

        Own random stream (seed + 1): the other steps' data stay what they were before organizations.
        """
        rng = random.Random(self.plan.seed + 1)
        centre = (self.plan.city_lat, self.plan.city_lng)
        docs = {doc["_id"]: doc for doc in self.user_docs}
        specs = (  # (name, kind, owner account, half side in km, verified, plan, members)
            ("City Volunteer Rescue", "volunteer_group", "helper", 6.0, True, "pro", 12),
            ("Sunday Riders Club", "club", "rider", 10.0, False, "free", 8),
            ("Courier Fleet Co", "company", "user", 4.0, False, "free", 5),
        )
        orgs, audits, taken = [], [], set()
        for name, kind, owner_local, half_km, verified, plan_name, size in specs:
            owner = self.accounts.get(owner_local)
            if owner is None:
                continue
            created_at = self.ago(days=rng.uniform(30, 300))
            org_id = make_id(rng, created_at)
            members = [{"user_id": owner["_id"], "role": "owner", "joined_at": created_at, "vouched": False}]
            pool = self.helpers if kind == "volunteer_group" else self.users
            candidates = [entry[0] for entry in pool if entry[0] not in taken and entry[0] != owner["_id"]]
            for index, user_id in enumerate(rng.sample(candidates, min(size, len(candidates)))):
                taken.add(user_id)
                role = "dispatcher" if index == 0 else "member"
                vouched = kind == "volunteer_group" and index % 2 == 1
                members.append({"user_id": user_id, "role": role, "vouched": vouched,
                                "joined_at": created_at + timedelta(days=rng.uniform(0, 20))})
                if vouched and verified and plan_name == "pro":
                    docs[user_id].setdefault("vouched_by", []).append(org_id)
            corners = [destination(*centre, half_km * 1000 * math.sqrt(2), math.radians(bearing))
                       for bearing in (45, 135, 225, 315)]
            ring = [[round(lng, 6), round(lat, 6)] for lat, lng in corners]
            orgs.append({"_id": org_id, "name": name, "kind": kind, "description": f"Demo {kind.replace('_', ' ')}",
                         "contact": {"email": self.email(kind.replace("_", "-"))},
                         "service_area": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                         "verified": verified, "plan": plan_name, "members": members,
                         "member_count": len(members), "version": 0, "created_by": owner["_id"],
                         "created_at": created_at, "updated_at": created_at})
            audits.append({"_id": make_id(rng, created_at), "actor_id": owner["_id"],
                           "action": "organization.create", "target_type": "organization", "target_id": org_id,
                           "before": None, "after": {"name": name, "kind": kind}, "reason": None, "at": created_at})
        for org in orgs:
            if org["plan"] == "pro":
                self.pro_subscription(org)
        self.insert("organizations", orgs, len(orgs))
        self.insert("audit_log", audits, len(audits), "audit log")

    def pro_subscription(self, org):
        """A pro organization's subscription as the offline provider and the invoice.paid handler leave
        it (allynet/payments/subscriptions.py): active, paid through the current month, one invoice paid.
        Nothing under another provider (its subscriptions cannot be made up here)."""
        from allynet.payments import offline_store, records

        if (self.config.get("PAYMENTS_PROVIDER") or "offline") != "offline":
            return

        key = f"demo{str(org['_id'])[-10:]}"
        sub_id, customer_id, invoice_id = f"sub_offline_{key}", f"cus_offline_{key}", f"in_offline_{key}"
        start = self.ago(days=10)
        end = start + timedelta(days=30)
        amount, currency = int(self.config.get("ORG_PRO_AMOUNT", 2900)), self.config.get("ORG_PRO_CURRENCY", "EUR")
        org.update(subscription_id=sub_id, billing_customer_id=customer_id, subscription_status="active",
                   subscription_seq=1, subscription_started_by=org["created_by"], subscription_paid_through=end,
                   subscription_failed_through=None, plan_grace_until=None)
        period = {"period_start": calendar.timegm(end.timetuple()),
                  "period_end": calendar.timegm((end + timedelta(days=30)).timetuple())}
        subscription = {
            "id": sub_id, "object": "subscription", "status": "active", "customer": customer_id,
            "metadata": {"organization_id": str(org["_id"])}, "livemode": False,
            "created": calendar.timegm(start.timetuple()), "current_period_start": calendar.timegm(start.timetuple()),
            "current_period_end": period["period_start"], "canceled_at": None,
            "items": {"data": [{"price": {"id": self.config.get("ORG_PRO_PRICE", "price_allynet_org_pro"),
                                          "unit_amount": amount, "currency": currency.lower()}}]},
            "latest_invoice": {"id": f"{invoice_id}_next", "object": "invoice", "status": "open", "amount_due": amount,
                               "currency": currency.lower(), **period,
                               "payment_intent": {"id": f"pi_offline_{key}", "status": "requires_payment_method",
                                                  "client_secret": f"pi_offline_{key}_secret_demo"}},
        }
        self.db[offline_store.COLLECTION].replace_one({"_id": sub_id}, {"_id": sub_id, "obj": subscription},
                                                      upsert=True)
        records.create(db=self.db, origin=f"invoice:{invoice_id}", kind="subscription", payer_id=org["created_by"],
                       payee_id=None, amount=amount, currency=currency, fee_amount=amount, status="succeeded",
                       cause="invoice.paid", livemode=False, provider="offline", refs={"organization_id": org["_id"]},
                       extra={"provider_invoice_id": invoice_id, "provider_subscription_id": sub_id,
                              "last_error": None})

    def seed_payments(self):
        """Help requests of the demo `user` taken on by the demo `helper`, with their payments on the offline
        provider: one paid (completed, captured), one secured (awaiting completion), one whose card was
        declined and one awaiting the requester's confirmation. The intents are stored where the offline
        provider keeps them, so confirming, completing and refunding them works. Own random stream (seed
        + 5); nothing under another provider (its intents cannot be made up here).
        """
        from allynet import money
        from allynet.payments import offline, records
        from allynet.payments.offline_store import COLLECTION as OFFLINE_OBJECTS
        from allynet.payments import service as payments_service

        requester, helper = self.accounts.get("user"), self.accounts.get("helper")
        if (self.config.get("PAYMENTS_PROVIDER") or "offline") != "offline" or not requester or not helper:
            return
        rng = random.Random(self.plan.seed + 5)
        currency = self.plan.currency
        specs = (  # (title, request status, payment status, last error)
            ("Assemble a wardrobe", "completed", "succeeded", None),
            ("Carry a sofa upstairs", "assigned", "requires_capture", None),
            ("Fix a dripping tap", "assigned", "requires_payment_method", offline.DECLINE),
            ("Install a dashcam", "assigned", "requires_payment_method", None),
        )
        requests, payments, stored = [], [], []
        for title, status, payment_status, error in specs:
            created_at = self.ago(hours=rng.uniform(30, 72))
            price = float(rng.randrange(20, 60))
            amount = money.to_minor(price, currency)
            fee = payments_service.platform_fee(amount, self.config)
            request_id, offer_id, payment_id = (make_id(rng, created_at), make_id(rng, created_at),
                                                make_id(rng, created_at))
            intent = offline.new_intent(amount=amount, currency=currency, capture_method="manual",
                                        metadata={"payment_id": str(payment_id), "help_request_id": str(request_id)})
            accepted_at, history = created_at + timedelta(hours=2), []
            history.append({"status": "requires_payment_method", "at": accepted_at, "cause": "offer_accepted"})
            if error:
                intent["last_payment_error"] = dict(error)
                history.append({"status": "requires_payment_method", "at": accepted_at + timedelta(minutes=5),
                                "cause": "declined:card_declined"})
            if payment_status in ("requires_capture", "succeeded"):
                stored.append(offline.authorize(intent))
                history.append({"status": "requires_capture", "at": accepted_at + timedelta(minutes=5),
                                "cause": "confirmed:pm_card_visa"})
            if payment_status == "succeeded":
                intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
                stored[-1].update(amount_captured=amount, captured=True)
                history.append({"status": "succeeded", "at": accepted_at + timedelta(hours=3),
                                "cause": "help_request_completed"})
            stored.append(intent)
            record = {"_id": payment_id, "origin": f"help_request:{request_id}:{offer_id}", "kind": "help_request",
                      "payer_id": requester["_id"], "payee_id": helper["_id"], "amount": amount,
                      "fee_amount": fee, "payee_amount": amount - fee, "currency": currency,
                      "status": payment_status, "refunded_amount": 0, "history": history, "livemode": False,
                      "version": len(history),
                      "provider": "offline", "created_at": accepted_at, "updated_at": history[-1]["at"],
                      "help_request_id": request_id, "offer_id": offer_id, "provider_intent_id": intent["id"],
                      "client_secret": intent["client_secret"], "destination": None,
                      "payout": "awaiting_onboarding", "amount_received": intent["amount_received"],
                      "last_error": {"code": error["code"], "message": error["message"]} if error else None}
            assert payment_status in records.STATUSES
            payments.append(record)
            lat, lng = self.population.near(self.plan.city_lat, self.plan.city_lng, 2000)
            timeline = [{"status": "open", "at": created_at, "by": requester["_id"]},
                        {"status": "assigned", "at": accepted_at, "by": requester["_id"]}]
            request = {"_id": request_id, "user_id": requester["_id"], "title": title,
                       "description": "Details in private messages; thank you!", "category": "repairs",
                       "location": point(lat, lng), "budget": {"amount": price + 10, "currency": currency},
                       "status": status, "helper_id": helper["_id"], "accepted_offer_id": offer_id,
                       "offers": [{"_id": offer_id, "user_id": helper["_id"], "message": rng.choice(OFFER_MESSAGES),
                                   "price": {"amount": price, "currency": currency},
                                   "created_at": created_at + timedelta(hours=1)}],
                       "offers_count": 1, "timeline": timeline, "payment": payments_service.summary(record),
                       "assigned_at": accepted_at, "created_at": created_at, "updated_at": history[-1]["at"]}
            if status == "completed":
                request["completed_at"] = history[-1]["at"]
                timeline.append({"status": "completed", "at": history[-1]["at"], "by": requester["_id"]})
                self.trust_counts[helper["_id"]]["help_completed"] += 1
            requests.append(request)
        self.insert("help_requests", requests, len(requests), "paid help requests")
        self.insert("payments", payments, len(payments))
        self.insert(OFFLINE_OBJECTS, [{"_id": obj["id"], "obj": obj} for obj in stored], len(stored),
                    "offline provider objects")

    def seed_businesses(self):
        """Businesses with weekly hours and promotions (running, upcoming and ended ones), and a few verified
        safe places near the centre (where the first demo SOS is), as businesses.service stores them."""
        rng, total = self.rng, self.plan.size("businesses")
        owners = self.users
        safe_places = max(3, total // 10)

        def businesses():
            for n in range(total):
                owner_id = rng.choice(owners)[0]
                safe = n < safe_places
                category = SAFE_PLACE_CATEGORIES[n % len(SAFE_PLACE_CATEGORIES)] if safe else rng.choice(
                    list(BUSINESS_HOURS))
                # The safe places, and the first other business (a running promotion), near the centre.
                lat, lng = (self.population.near(self.plan.city_lat, self.plan.city_lng, 1500) if n <= safe_places
                            else self.population.latlng())
                created_at = self.ago(days=rng.uniform(10, 400))
                verified = safe or rng.random() < 0.5
                yield {
                    "_id": make_id(rng, created_at), "owner_id": owner_id, "name": rng.choice(BUSINESS_NAMES[category]),
                    "category": category, "location": point(lat, lng), "address": None,
                    "phone": f"+33 4 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
                             f"{rng.randint(10, 99)}",
                    "website": None,
                    "opening_hours": {"timezone": self.plan.timezone,
                                      "intervals": _hours(WEEK, ("00:00", "00:00")) if safe
                                      else BUSINESS_HOURS[category]},
                    "verified": verified, "hidden": False, "safe_place": safe,
                    "promotions": self.promotions(running=n == safe_places, ended=n == safe_places + 1),
                    "created_at": created_at, "updated_at": created_at,
                }

        if self.users:
            self.insert("businesses", businesses(), total)

    def promotions(self, running=False, ended=False):
        """Zero to two promotions: mostly running, some upcoming, some ended (for the maintenance to remove);
        `running`: exactly one, running now and covering 5 km; `ended`: exactly one, over since 13 days."""
        rng, result = self.rng, []
        for _ in range(1 if running or ended else rng.choice((0, 0, 1, 1, 2))):
            fixed = -1 if running else -20 if ended else None
            starts_at = self.now + timedelta(days=fixed if fixed is not None else rng.choice((-20, -5, -3, -1, 2)))
            ends_at = starts_at + timedelta(days=7 if running or ended else rng.choice((2, 7, 14)))
            created_at = min(starts_at, self.now) - timedelta(days=1)
            result.append({"_id": make_id(rng, created_at), "title": rng.choice(PROMOTION_TITLES),
                           "description": None, "starts_at": starts_at, "ends_at": ends_at,
                           "radius_m": 5000.0 if running else float(rng.choice((500, 1000, 2000, 5000))),
                           "created_at": created_at, "updated_at": created_at})
        return result

    def seed_sos(self):
        """A few open SOS, as emergencies.service.open_emergency leaves them (some already answered).

        The document is the service's own (`new_emergency_document`); the alerted
        helpers are chosen here rather than by the service's $geoNear over every user,
        which the embedded store runs in Python, but by its rule (`helper_rank`, at most
        MAX_HELPERS_PER_WAVE verified helpers with a fresh location in the radius).
        """
        from allynet.emergencies import service as sos
        from allynet.emergencies.schemas import EMERGENCY_TYPES

        rng, total = self.rng, self.plan.size("sos")
        docs = {doc["_id"]: doc for doc in self.user_docs}
        helper_ids = {entry[0] for entry in self.helpers}
        demo_ids = {doc["_id"] for doc in self.accounts.values()}
        owners = [entry for entry in self.users if entry[0] not in helper_ids and entry[0] not in demo_ids]
        escalation_seconds = float(self.config.get("ESCALATION_SECONDS", 60.0))
        emergencies = []
        for n, (owner_id, lat, lng) in enumerate(self.pick_people(total, pool=owners)):
            if n == 0:  # the first one near the centre, where the demo helper is alerted
                lat, lng = self.population.near(self.plan.city_lat, self.plan.city_lng, 1500)
            owner = docs[owner_id]
            created_at = self.ago(minutes=rng.uniform(1, 20))
            kind = rng.choice(EMERGENCY_TYPES)
            emergency_id = make_id(rng, created_at)
            doc = sos.new_emergency_document(
                emergency_id=emergency_id, user_id=owner_id, kind=kind, description=SOS_TEXTS[kind],
                location=point(lat, lng), radius_m=owner.get("emergency_radius_m"), now=created_at,
                escalation_seconds=escalation_seconds)
            notified = self.rank_helpers(docs, lat, lng, doc["radius_m"], owner_id, created_at, sos)
            doc["notified_helper_ids"] = notified
            if n % 2 == 1 and notified:
                helper_id, at = notified[0], created_at + timedelta(seconds=rng.uniform(20, 50))
                doc["responses"].append({"helper_id": helper_id, "responded_at": at, "eta_minutes": rng.randint(3, 15)})
                doc["timeline"].append({"status": "responding", "at": at, "by": helper_id})
                doc.update(status="responding", next_wave_at=None, updated_at=at)
            owner["active_emergency_id"] = emergency_id
            owner["active_emergency_claimed_at"] = created_at
            emergencies.append(doc)
        self.insert("emergencies", emergencies, len(emergencies), "SOS")

    def rank_helpers(self, docs, lat, lng, radius, owner_id, at, sos):
        """Who the first wave alerts: the service's ranking over verified helpers with fresh locations."""
        found = []
        for helper_id, helper_lat, helper_lng in self.verified_helpers:
            helper = docs[helper_id]
            if helper_id == owner_id or helper.get("active_emergency_id") is not None:
                continue
            if helper["location_updated_at"] < at - sos.LOCATION_FRESHNESS:
                continue
            distance = geo.haversine_m(lng, lat, helper_lng, helper_lat)
            if distance <= radius:
                found.append((helper_id, distance, helper.get("trust_score")))
        found.sort(key=lambda c: (-sos.helper_rank(c[2], c[1], radius), c[1], str(c[0])))
        return [helper_id for helper_id, _, _ in found[:sos.MAX_HELPERS_PER_WAVE]]

def seed(*, db, config, plan, show_progress=None):
    """Build the demo city described by `plan` into `db`; returns a SeedResult."""
    return CitySeeder(db=db, config=config, plan=plan, show_progress=show_progress).run()


def seeded_collections():
    """Every collection the app declares (what --drop empties), and the offline payment provider's."""
    from allynet.payments.offline_store import COLLECTION as OFFLINE_OBJECTS

    return sorted({collection for collection, _, _ in INDEXES} | {OFFLINE_OBJECTS})


def drop(db):
    """Drop every AllyNet collection (indexes included; the seed recreates them)."""
    for name in seeded_collections():
        db.drop_collection(name)


# --- command line ----------------------------------------------------------------------------

DESCRIPTION = """\
Seed a realistic, reproducible demo city: users (bcrypt passwords), helpers and
verified helpers clustered like a real population around the city centre, skills,
help requests, active parties with members and trails, road reports of every type
with votes, official alerts, organizations (a verified rescue team with a dispatcher
and vouched helpers, a riding club, a company; members and service areas), businesses
with opening hours and promotions (a few verified safe places near the centre), a few
open SOS, and help requests of the demo user paid through the offline payment
provider. Times are relative to now, and helpers' locations are fresh, so SOS alerts
find them at once.

The same --seed builds the same city. Indexes are ensured before inserting.
At the end it prints what it created and the demo logins.
"""

EPILOG = f"""\
examples:
  MONGO_URI=mongodb://localhost:27017 python scripts/seed.py --drop --yes
  python scripts/seed.py --city berlin --users 10000 --fast-hashes
  python scripts/seed.py --city-lat 43.6 --city-lng 1.44 --radius-km 8 --seed 7

{scripting.DATABASE_HELP}

Seeding twice without --drop is refused (the demo accounts already exist).
--drop empties every AllyNet collection first: it asks for confirmation unless --yes.

{scripting.EXIT_CODES_HELP}
"""


def build_parser(prog=None):
    """The seed command's argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SeedPlan()
    where = parser.add_argument_group("where")
    where.add_argument("--city", choices=sorted(CITIES), default=DEFAULT_CITY,
                       help="a known city centre (default: %(default)s)")
    where.add_argument("--city-lat", type=float, help="centre latitude (overrides --city)")
    where.add_argument("--city-lng", type=float, help="centre longitude (overrides --city)")
    where.add_argument("--radius-km", type=float, default=defaults.radius_km,
                       help="nobody lives further out (default: %(default)s)")
    where.add_argument("--currency", help="ISO 4217 code of prices and budgets (default: the city's, else EUR)")
    sizes = parser.add_argument_group("sizes (unset ones scale with --users)")
    sizes.add_argument("--users", type=int, default=defaults.users, help="members (default: %(default)s)")
    sizes.add_argument("--helper-ratio", type=float, default=defaults.helper_ratio,
                       help="share of members who are helpers (default: %(default)s)")
    sizes.add_argument("--verified-ratio", type=float, default=defaults.verified_ratio,
                       help="share of helpers who are verified (default: %(default)s)")
    for name, derived in (("skills", "users/4"), ("help-requests", "users/10"), ("parties", "users/100"),
                          ("reports", "users/5"), ("alerts", "users/500"), ("sos", "users/1000"),
                          ("businesses", "users/50")):
        sizes.add_argument(f"--{name}", type=int, help=f"how many (default: {derived})")
    sizes.add_argument("--party-size", type=int, default=defaults.party_size,
                       help="most members per party (default: %(default)s)")
    sizes.add_argument("--trail-points", type=int, default=defaults.trail_points,
                       help="trail points per party member (default: %(default)s)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    run.add_argument("--password", default=defaults.password,
                     help="the password every demo account shares (default: %(default)s)")
    run.add_argument("--fast-hashes", action="store_true",
                     help=f"bcrypt cost {FAST_BCRYPT_ROUNDS} instead of BCRYPT_ROUNDS: demo/test data only")
    run.add_argument("--batch-size", type=int, default=defaults.batch_size,
                     help="documents per insert_many (default: %(default)s)")
    run.add_argument("--drop", action="store_true", help="drop every AllyNet collection first (asks)")
    run.add_argument("--yes", "-y", action="store_true", help="do not ask before --drop")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--mongo-uri", help="MongoDB to seed (default: $MONGO_URI)")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def plan_from_args(args):
    """A SeedPlan from parsed arguments."""
    lat, lng = CITIES[args.city]
    values = {name.name: getattr(args, name.name) for name in fields(SeedPlan) if hasattr(args, name.name)}
    values["city_lat"] = args.city_lat if args.city_lat is not None else lat
    values["city_lng"] = args.city_lng if args.city_lng is not None else lng
    values["currency"] = (args.currency or CITY_CURRENCY.get(args.city, "EUR")).upper()
    values["timezone"] = CITY_TIMEZONE.get(args.city, "Europe/Paris")
    return SeedPlan(**values)


def check_plan(plan):
    """Reasons the plan cannot be built (empty when it can)."""
    problems = []
    if not geo.valid_lng_lat(plan.city_lng, plan.city_lat):
        problems.append("--city-lat must be in [-90, 90] and --city-lng in [-180, 180]")
    if not 0.1 <= plan.radius_km <= 200:
        problems.append("--radius-km must be between 0.1 and 200")
    for name in ("helper_ratio", "verified_ratio"):
        if not 0.0 <= getattr(plan, name) <= 1.0:
            problems.append(f"--{name.replace('_', '-')} must be between 0 and 1")
    for name in ("users", "skills", "help_requests", "parties", "reports", "alerts", "sos", "trail_points",
                 "businesses"):
        value = getattr(plan, name)
        if value is not None and value < 0:
            problems.append(f"--{name.replace('_', '-')} must not be negative")
    if plan.party_size < 1 or plan.batch_size < 1:
        problems.append("--party-size and --batch-size must be at least 1")
    if len(plan.password) < 8:
        problems.append("--password must have at least 8 characters (the API refuses shorter ones)")
    return problems


def confirm(question, stream_in=None):
    """Ask a yes/no question on the terminal; anything but yes (or no terminal) is no."""
    stream_in = stream_in or sys.stdin
    if not stream_in.isatty():
        return False
    print(f"{question} [y/N] ", end="", flush=True, file=sys.stderr)
    return stream_in.readline().strip().lower() in {"y", "yes"}


def print_summary(result, plan, out=None):
    """What was created and how to log in."""
    out = out or sys.stdout
    print(f"Seeded the city at ({plan.city_lat}, {plan.city_lng}), radius {plan.radius_km} km, "
          f"seed {plan.seed}, in {result.seconds:.1f} s:", file=out)
    for collection, count in sorted(result.created.items()):
        print(f"  {collection:<16} {count:>8}", file=out)
    print_logins(result.logins, out)


def print_logins(logins, out=None):
    """The demo logins, one a line."""
    out = out or sys.stdout
    print("Demo logins (POST /api/v1/auth/login):", file=out)
    for login in logins:
        print(f"  {login['email']:<28} {login['password']:<14} {login['role']:<10} {login['purpose']}",
              file=out)


def main(argv=None, db=None, config=None):
    """Run the seed command; returns the exit code. `db` given: seed it (tests, flask CLI)."""
    parser = build_parser(prog="seed.py")
    args = parser.parse_args(argv)
    scripting.configure_logging(args.verbose)
    plan = plan_from_args(args)
    problems = check_plan(plan)
    if problems:
        parser.error("; ".join(problems))
    config = scripting.load_config(args.mongo_uri, config)
    try:
        if db is None:
            db = scripting.open_database(config)
        else:
            scripting.note_embedded(db, config)
        if args.drop:
            if not args.yes and not confirm(f"Drop every AllyNet collection in '{db.name}'?"):
                return scripting.fail("not confirmed: nothing dropped, nothing seeded (use --yes to skip "
                                      "the question)", scripting.EXIT_FAILED)
            drop(db)
            log.info("dropped every AllyNet collection in %s", db.name)
        result = seed(db=db, config=config, plan=plan, show_progress=False if args.no_progress else None)
    except scripting.DatabaseUnreachable as exc:
        return scripting.fail(str(exc), scripting.EXIT_UNREACHABLE)
    except AlreadySeeded as exc:
        return scripting.fail(str(exc), scripting.EXIT_FAILED)
    except MONGO_DOWN_ERRORS as exc:
        return scripting.fail(f"the database stopped answering during seeding ({type(exc).__name__}); "
                              "partial data may remain: rerun with --drop", scripting.EXIT_UNREACHABLE)
    except PyMongoError as exc:
        return scripting.fail(f"the database refused a write ({type(exc).__name__}: {exc})",
                              scripting.EXIT_FAILED)
    print_summary(result, plan)
    return scripting.EXIT_OK
