"""Opening hours: "open now" and `closes_at` in the business's own zone, across midnight and DST changes.

Times are set with the injectable clock (allynet/clock.py) and read through `service.public_view`,
the view every client and the map overlays get.
"""
from datetime import datetime

import pytest

from allynet.businesses import hours, service
from allynet.businesses.schemas import business_create_schema

PARIS = {"type": "Point", "coordinates": [2.3522, 48.8566]}


def business(*intervals, timezone="Europe/Paris"):
    return {"_id": None, "owner_id": None, "name": "Night owl", "category": "cafe", "location": PARIS,
            "opening_hours": {"timezone": timezone,
                              "intervals": [{"day": day, "open": opens, "close": closes}
                                            for day, opens, closes in intervals]},
            "verified": True, "hidden": False, "safe_place": True, "promotions": []}


def seen_at(clock, document, when):
    clock.current = when
    view = service.public_view(document)
    return view["open_now"], view["closes_at"]


def test_a_night_shift_is_open_after_midnight_and_closes_the_next_day(clock):
    night = business(("sat", "22:00", "02:00"))  # Paris in winter: UTC+1
    assert seen_at(clock, night, datetime(2026, 1, 10, 20, 59)) == (False, None)  # Sat 21:59
    assert seen_at(clock, night, datetime(2026, 1, 10, 21, 0)) == (True, "2026-01-11T01:00:00Z")  # Sat 22:00
    assert seen_at(clock, night, datetime(2026, 1, 11, 0, 30)) == (True, "2026-01-11T01:00:00Z")  # Sun 01:30
    assert seen_at(clock, night, datetime(2026, 1, 11, 1, 0)) == (False, None)  # Sun 02:00: closed
    # Sunday night is not Saturday night.
    assert seen_at(clock, night, datetime(2026, 1, 11, 21, 30)) == (False, None)


def test_the_same_wall_clock_hours_follow_the_zone_through_summer_and_winter(clock):
    office = business(("mon", "09:00", "17:00"))
    assert seen_at(clock, office, datetime(2026, 1, 12, 7, 30))[0] is False  # 08:30 CET
    assert seen_at(clock, office, datetime(2026, 6, 15, 7, 30)) == (True, "2026-06-15T15:00:00Z")  # 09:30 CEST
    assert seen_at(clock, office, datetime(2026, 1, 12, 15, 30)) == (True, "2026-01-12T16:00:00Z")  # 16:30 CET
    assert seen_at(clock, office, datetime(2026, 6, 15, 15, 30))[0] is False  # 17:30 CEST


def test_a_night_shift_across_the_spring_change_is_an_hour_shorter(clock):
    # Paris, night of 28-29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    night = business(("sat", "22:00", "04:00"))
    assert seen_at(clock, night, datetime(2026, 3, 28, 21, 0)) == (True, "2026-03-29T02:00:00Z")  # 22:00 CET
    assert seen_at(clock, night, datetime(2026, 3, 29, 1, 30)) == (True, "2026-03-29T02:00:00Z")  # 03:30 CEST
    # 04:30 CEST: closed, though a fixed winter offset would make it 03:30 and open.
    assert seen_at(clock, night, datetime(2026, 3, 29, 2, 30)) == (False, None)


def test_a_night_shift_across_the_autumn_change_is_an_hour_longer(clock):
    # Paris, night of 24-25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC).
    night = business(("sat", "22:00", "04:00"))
    assert seen_at(clock, night, datetime(2026, 10, 24, 20, 0)) == (True, "2026-10-25T03:00:00Z")  # 22:00 CEST
    assert seen_at(clock, night, datetime(2026, 10, 25, 2, 30)) == (True, "2026-10-25T03:00:00Z")  # 03:30 CET
    assert seen_at(clock, night, datetime(2026, 10, 25, 3, 0)) == (False, None)  # 04:00 CET


def test_another_zone_changes_on_its_own_date(clock):
    # New York springs forward on 8 March 2026 (02:00 EST -> 03:00 EDT, 07:00 UTC); Paris three weeks later.
    shop = business(("sun", "09:00", "12:00"), timezone="America/New_York")
    assert seen_at(clock, shop, datetime(2026, 3, 8, 13, 30)) == (True, "2026-03-08T16:00:00Z")  # 09:30 EDT
    assert seen_at(clock, shop, datetime(2026, 3, 1, 13, 30))[0] is False  # 08:30 EST a week before


def test_a_whole_day_is_24_hours_and_a_whole_week_never_closes(clock):
    monday = business(("mon", "00:00", "00:00"))
    assert seen_at(clock, monday, datetime(2026, 1, 12, 22, 59)) == (True, "2026-01-12T23:00:00Z")  # Mon 23:59
    assert seen_at(clock, monday, datetime(2026, 1, 12, 23, 0)) == (False, None)  # Tue 00:00
    always = business(*[(day, "00:00", "00:00") for day in hours.DAYS])
    assert seen_at(clock, always, datetime(2026, 3, 29, 1, 30)) == (True, None)


def test_intervals_that_touch_close_when_the_last_one_ends(clock):
    split = business(("fri", "18:00", "00:00"), ("sat", "00:00", "03:00"), ("sat", "02:00", "05:00"))
    assert seen_at(clock, split, datetime(2026, 1, 9, 22, 0)) == (True, "2026-01-10T04:00:00Z")  # Fri 23:00
    assert seen_at(clock, split, datetime(2026, 1, 10, 3, 59)) == (True, "2026-01-10T04:00:00Z")  # Sat 04:59


def test_no_hours_is_never_open_now(clock):
    document = dict(business(), opening_hours=None)
    assert seen_at(clock, document, datetime(2026, 1, 12, 12, 0)) == (False, None)


@pytest.mark.parametrize("opening_hours, field", [
    ({"timezone": "Mars/Olympus", "intervals": []}, "timezone"),
    ({"timezone": "../../etc/passwd", "intervals": []}, "timezone"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "monday", "open": "08:00", "close": "18:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "24:00", "close": "18:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "8:00", "close": "18:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "08:60", "close": "18:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "０８:00", "close": "18:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": 800, "close": "18:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "08:00"}]}, "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "08:00", "close": "18:00", "x": 1}]},
     "intervals"),
    ({"timezone": "Europe/Paris", "intervals": [{"day": "mon", "open": "08:00", "close": "09:00"}] * 51},
     "intervals"),
    ({"intervals": []}, "timezone"),
    ({"timezone": "Europe/Paris"}, "intervals"),
])
def test_bad_hours_are_refused_naming_the_field(opening_hours, field):
    from marshmallow import ValidationError

    with pytest.raises(ValidationError) as refused:
        business_create_schema.load({"name": "Cafe", "category": "cafe", "location": {"lat": 1, "lng": 2},
                                     "opening_hours": opening_hours})
    assert field in refused.value.messages["opening_hours"]
