"""Money through the HTTP API: every `{amount, currency}` field (help-request budget on create and
edit, offer price, skill rate on publish and edit) takes ISO 4217 codes only and no more decimals
than the currency has (JPY none, EUR 2, KWD 3); what is stored converts exactly to minor units."""
from dataclasses import dataclass
from functools import partial
from typing import Callable

import pytest
from bson import ObjectId

from allynet import money
from tests.helpers import error_code

HELP_REQUESTS, SKILLS = "/api/v1/help-requests", "/api/v1/skills"
COLLECTION = {HELP_REQUESTS: "help_requests", SKILLS: "skills"}
HELP_REQUEST = {"title": "Need a lift", "description": "To the station at 9", "category": "transport",
                "location": {"lat": 0.0, "lng": 0.0}}
SKILL = {"name": "Bike repair", "category": "repairs", "location": {"lat": 0.0, "lng": 0.0}}


@dataclass
class Site:
    """One money field: how to send an amount there and read back what the API and the database keep."""

    name: str
    field: str
    send: Callable  # (client, db, make_user, money) -> (response, read, stored): read() -> the field as GET shows it
    extra: dict


def _created(response):
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def _on_create(url, base, field, client, db, make_user, value):
    owner = make_user()
    collection = db[COLLECTION[url]]
    before = collection.count_documents({})
    response = client.post(url, headers=owner.headers, json={**base, field: value})

    def read():
        if response.status_code != 201:
            assert collection.count_documents({}) == before  # nothing stored
            return None
        return client.get(f"{url}/{response.get_json()['data']['id']}",
                          headers=make_user().headers).get_json()["data"][field]

    def stored():
        return collection.find_one({"_id": ObjectId(response.get_json()["data"]["id"])})[field]

    return response, read, stored


def _on_edit(url, base, field, client, db, make_user, value):
    owner = make_user()
    collection = db[COLLECTION[url]]
    first = {"amount": 7, "currency": "USD", **({"unit": "job"} if field == "rate" else {})}
    created = _created(client.post(url, headers=owner.headers, json={**base, field: first}))
    response = client.patch(f"{url}/{created['id']}", headers=owner.headers, json={field: value})

    def read():
        current = client.get(f"{url}/{created['id']}", headers=owner.headers).get_json()["data"]
        if response.status_code != 200:
            assert current == created  # nothing changed
            return None
        return current[field]

    def stored():
        return collection.find_one({"_id": ObjectId(created["id"])})[field]

    return response, read, stored


def _offer_price(client, db, make_user, value):
    owner, helper = make_user(), make_user()
    created = _created(client.post(HELP_REQUESTS, headers=owner.headers, json=HELP_REQUEST))
    response = client.post(f"{HELP_REQUESTS}/{created['id']}/offers", headers=helper.headers,
                           json={"message": "I can help", "price": value})

    def read():
        current = client.get(f"{HELP_REQUESTS}/{created['id']}", headers=owner.headers).get_json()["data"]
        if response.status_code != 201:
            assert current == created and current["offers_count"] == 0  # nothing changed
            return None
        return current["offers"][0]["price"]

    def stored():
        return db.help_requests.find_one({"_id": ObjectId(created["id"])})["offers"][0]["price"]

    return response, read, stored


SITES = [Site("budget on create", "budget", partial(_on_create, HELP_REQUESTS, HELP_REQUEST, "budget"), {}),
         Site("budget on edit", "budget", partial(_on_edit, HELP_REQUESTS, HELP_REQUEST, "budget"), {}),
         Site("offer price", "price", _offer_price, {}),
         Site("skill rate on publish", "rate", partial(_on_create, SKILLS, SKILL, "rate"), {"unit": "hour"}),
         Site("skill rate on edit", "rate", partial(_on_edit, SKILLS, SKILL, "rate"), {"unit": "hour"})]


@pytest.fixture(params=SITES, ids=[site.name for site in SITES])
def site(request):
    return request.param


def send(site, client, db, make_user, amount, currency):
    return site.send(client, db, make_user, {"amount": amount, "currency": currency, **site.extra})


@pytest.mark.parametrize("amount, currency, minor", [
    (1500, "JPY", 1500), (0, "JPY", 0), (1_000_000_000, "JPY", 1_000_000_000),
    (15.00, "EUR", 1500), (15, "EUR", 1500), (15.5, "EUR", 1550), (0.29, "EUR", 29), (0.01, "EUR", 1),
    (1.250, "KWD", 1250), (1.005, "KWD", 1005), (0.001, "KWD", 1),
])
def test_amounts_within_the_currencys_decimals_are_kept_and_convert_exactly(
        client, db, make_user, site, amount, currency, minor):
    response, read, stored = send(site, client, db, make_user, amount, currency)
    assert response.status_code in (200, 201), response.get_json()
    assert read() == {"amount": amount, "currency": currency, **site.extra}
    kept = stored()
    # 0.29 * 100 is 28.999999999999996 in floats: the conversion goes through the decimal text.
    assert money.to_minor(kept["amount"], kept["currency"]) == minor


@pytest.mark.parametrize("amount, currency, message", [
    (1500.5, "JPY", "JPY amounts have no decimals."),
    (0.5, "jpy", "JPY amounts have no decimals."),
    (15.001, "EUR", "EUR amounts have at most 2 decimals."),
    (0.1 + 0.2, "EUR", "EUR amounts have at most 2 decimals."),  # 0.30000000000000004 as sent
    (5e-324, "EUR", "EUR amounts have at most 2 decimals."),
    (1.2505, "KWD", "KWD amounts have at most 3 decimals."),
])
def test_more_decimals_than_the_currency_has_is_400_and_changes_nothing(
        client, db, make_user, site, amount, currency, message):
    response, read, _ = send(site, client, db, make_user, amount, currency)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert response.get_json()["error"]["details"] == {site.field: {"amount": [message]}}
    assert read() is None


@pytest.mark.parametrize("code", ["jpy", "Eur", " kwd "])
def test_a_code_in_any_case_is_stored_upper_case(client, db, make_user, site, code):
    response, read, stored = send(site, client, db, make_user, 3, code)
    assert response.status_code in (200, 201), response.get_json()
    assert read()["currency"] == code.strip().upper() == stored()["currency"]


@pytest.mark.parametrize("code", [
    "XYZ", "EURO", "", 978,  # unknown, not a code, empty, the numeric code
    "XAU", "XAG", "XDR", "XTS", "XXX",  # gold, silver, special drawing rights, testing, no currency
    "USN", "CLF", "CHE", "BOV",  # funds (ISO marks them IsFund)
])
def test_unknown_codes_metals_and_funds_are_400_and_change_nothing(client, db, make_user, site, code):
    response, read, _ = send(site, client, db, make_user, 10, code)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert list(response.get_json()["error"]["details"][site.field]) == ["currency"]
    assert read() is None


def test_a_bad_code_and_a_bad_amount_name_both(client, make_user):
    response = client.post(HELP_REQUESTS, headers=make_user().headers,
                           json={**HELP_REQUEST, "budget": {"amount": -1.5, "currency": "XAU"}})
    assert response.status_code == 400
    assert set(response.get_json()["error"]["details"]["budget"]) == {"amount", "currency"}


def test_the_openapi_document_lists_the_currencies_money_knows(client):
    money_schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["Money"]
    codes = money_schema["properties"]["currency"]["enum"]
    assert codes == sorted(money.CODES)
    assert {"EUR", "JPY", "KWD", "USD"} <= set(codes) and not {"XAU", "XTS", "USN", "CLF"} & set(codes)
    assert "decimals" in money_schema["properties"]["amount"]["description"]
