"""marshmallow fields shared by every feature's schemas.

The one place that turns wire formats into stored ones and back:
``{"lat", "lng"}`` <-> GeoJSON ``Point [lng, lat]``, 24-hex strings <->
ObjectId, naive UTC datetimes -> ISO 8601 with ``Z``; and money as clients
send it, ``{amount, currency}`` in major units, checked against the
currency's decimals (allynet/money.py).
"""
import math
import re
from datetime import datetime, timezone

from bson import ObjectId
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from allynet import money

# What str.strip() removes (Python's white space), spelled out so a JSON Schema pattern means the
# same to every regex engine (ECMA's \s differs: no \x1c-\x1f or \x85, but \ufeff).
_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
HEX24_PATTERN = "^[0-9a-fA-F]{24}$"
LAT_LNG_OPENAPI = {
    "type": "object",
    "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                   "lng": {"type": "number", "minimum": -180, "maximum": 180}},
    "required": ["lat", "lng"],
    "additionalProperties": False,
}


def stripped_min_length_pattern(min_len):
    """A JSON Schema pattern: the string holds at least `min_len` characters once stripped."""
    if not min_len:
        return None
    if min_len == 1:
        return f"[^{_WS}]"
    return f"^[{_WS}]*[^{_WS}][\\s\\S]{{{min_len - 2},}}[^{_WS}][{_WS}]*$"


class ObjectIdField(fields.Field):
    """A 24-hex id on the wire, an ObjectId in Mongo."""

    default_error_messages = {"invalid": "Not a valid id."}

    def openapi_property(self):
        """OpenAPI: a 24-hex string."""
        return {"type": "string", "pattern": HEX24_PATTERN}

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and ObjectId.is_valid(value) and len(value) == 24:
            return ObjectId(value)
        raise self.make_error("invalid")


class DateTimeZ(fields.Field):
    """An ISO 8601 UTC time with a trailing Z."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 datetime."}

    def openapi_property(self):
        """OpenAPI: an RFC 3339 date-time."""
        return {"type": "string", "format": "date-time"}

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else iso(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError) as exc:  # OverflowError: year 9999 -23:59 is past year 9999 in UTC
            raise self.make_error("invalid") from exc
        return parsed


def iso(value):
    """Naive-UTC (or aware) datetime -> '2026-11-22T10:00:00Z' (milliseconds kept when set)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text + "Z"


class Finite(fields.Float):
    """A float that refuses NaN and infinities (and booleans); with `strict`, JSON numbers only.

    JSON bodies and socket payloads use `strict=True` ("12.5" is refused, as marshmallow's
    `Integer(strict=True)` refuses it); query strings, where every value is text, do not.
    """

    default_error_messages = {"not_number": "Must be a number, not a string."}

    def __init__(self, *, strict=False, **kwargs):
        self.strict = strict
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if self.strict and not isinstance(value, (int, float)):
            raise self.make_error("not_number" if isinstance(value, str) else "invalid")
        number = super()._deserialize(value, attr, data, **kwargs)
        if not math.isfinite(number):
            raise ValidationError("Must be a finite number.")
        return number


MAX_AMOUNT = 1_000_000_000


class Currency(fields.String):
    """An ISO 4217 currency code from allynet/money.py (case-insensitive in, upper-case out)."""

    def openapi_property(self):
        """OpenAPI: the codes, upper-case (lower-case is accepted too)."""
        return {"type": "string", "enum": sorted(money.CODES)}

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return money.normalize_code(super()._deserialize(value, attr, data, **kwargs))
        except money.MoneyError as exc:
            raise ValidationError(str(exc)) from exc


class MoneySchema(Schema):
    """An amount of money in major units: {amount >= 0, currency}, no more decimals than the currency has.

    The decimals are checked on the number's exact decimal text (allynet/money.py), so what is
    stored converts exactly to the integer minor units payments use: `money.to_minor(amount, currency)`.
    """

    amount = Finite(required=True, strict=True, validate=validate.Range(0, MAX_AMOUNT), metadata={
        "description": "In major units, with at most the currency's decimals (ISO 4217: JPY 0, EUR 2, "
                       "KWD 3); more is 400 validation_error"})
    currency = Currency(required=True, metadata={
        "description": "ISO 4217 code of a circulating currency, e.g. EUR, USD, GBP (stored upper-case)"})

    @validates_schema
    def amount_fits_the_currency(self, data, **kwargs):
        try:
            money.check_decimals(data["amount"], data["currency"])
        except money.MoneyError as exc:
            raise ValidationError(str(exc), field_name="amount") from exc


class LatLngSchema(Schema):
    """A coordinate as clients send it (JSON numbers)."""

    lat = Finite(required=True, strict=True, validate=validate.Range(-90, 90))
    lng = Finite(required=True, strict=True, validate=validate.Range(-180, 180))


class Location(fields.Field):
    """`{"lat", "lng"}` on the wire, a GeoJSON Point `[lng, lat]` in Mongo."""

    default_error_messages = {"invalid": "Must be an object with lat and lng."}
    _inner = LatLngSchema()

    def openapi_property(self):
        """OpenAPI: `{lat, lng}`, both required, nothing else."""
        return dict(LAT_LNG_OPENAPI)

    def _serialize(self, value, attr, obj, **kwargs):
        return point_to_latlng(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        loaded = self._inner.load(value)
        return {"type": "Point", "coordinates": [loaded["lng"], loaded["lat"]]}


def point_to_latlng(point):
    """GeoJSON Point -> {"lat", "lng"} (None stays None)."""
    if not point:
        return None
    lng, lat = point["coordinates"][:2]
    return {"lat": lat, "lng": lng}


class Id(ObjectIdField):
    """The document's `_id`, published as `id`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("attribute", "_id")
        kwargs.setdefault("dump_only", True)
        super().__init__(**kwargs)


class Text(fields.String):
    """A string stripped of surrounding white space, with a length range.

    The minimum counts the stripped string; the maximum the string as sent, too (so the
    OpenAPI maxLength is exact: a padded string over it is refused, not silently trimmed).
    """

    default_error_messages = {"too_long": "Longer than maximum length {max}."}

    def __init__(self, *, min_len=None, max_len=None, **kwargs):
        validators = list(kwargs.pop("validate", []) or [])
        if min_len is not None or max_len is not None:
            validators.append(validate.Length(min=min_len, max=max_len))
        super().__init__(validate=validators, **kwargs)
        self.min_len, self.max_len = min_len, max_len

    def openapi_property(self):
        """OpenAPI: the length range holds after stripping, so a minimum also needs a pattern."""
        pattern = stripped_min_length_pattern(self.min_len)
        return {"pattern": pattern} if pattern else {}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if self.max_len is not None and len(text) > self.max_len:
            raise self.make_error("too_long", max=self.max_len)
        return text.strip()


# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# In JSON Schema pattern syntax: the control characters a Name refuses, and the white space left to it.
_CONTROL_CLASS = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029"
_NAME_WS = " \\xa0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000"


class Name(Text):
    """A one-line name (display name, party, route, skill, title): Text without control characters."""

    default_error_messages = {"control": "Must not contain control characters or line breaks."}

    def openapi_property(self):
        """OpenAPI: no control character anywhere, and the stripped minimum length."""
        body, edge = f"[^{_CONTROL_CLASS}]", f"[^{_CONTROL_CLASS}{_NAME_WS}]"
        if not self.min_len:
            return {"pattern": f"^{body}*$"}
        if self.min_len == 1:
            return {"pattern": f"^[{_NAME_WS}]*{edge}{body}*$"}
        return {"pattern": f"^[{_NAME_WS}]*{edge}{body}{{{self.min_len - 2},}}{edge}[{_NAME_WS}]*$"}

    def _deserialize(self, value, attr, data, **kwargs):
        # Checked as sent, before the stripping: a line break or tab at either end is refused too,
        # as the documented pattern says (white space alone is stripped).
        if isinstance(value, str) and _CONTROL.search(value):
            raise self.make_error("control")
        return super()._deserialize(value, attr, data, **kwargs)


class BoundedList(fields.List):
    """A List whose `validate.Length` runs before its items are loaded: a 64 KB body of
    20,000 items is one error, not 20,000 item loads and as many messages."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            for validator in self.validators:
                if isinstance(validator, validate.Length):
                    validator(value)
        return super()._deserialize(value, attr, data, **kwargs)


def indexable_geometry(geometry):
    """Raise ValidationError unless a 2dsphere index takes `geometry` (GeoJSON).

    The embedded store's geo layer applies MongoDB's own rules (allynet/embedded/geo.py),
    so what passes here is stored by either.
    """
    from allynet.embedded import geo as geo_mongomock

    problem = geo_mongomock.index_problem(geometry)
    if problem is not None:
        raise ValidationError(f"Not a valid {geometry.get('type', 'geometry')}: {problem}")


def object_id(value):
    """A client-supplied id as an ObjectId, or None when it is not a 24-hex string."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
        return ObjectId(value)
    return None


class Cursor(fields.String):
    """The opaque `meta.next_cursor` of the previous page (URL-safe base64, no padding)."""

    def openapi_property(self):
        """OpenAPI: URL-safe base64 characters."""
        return {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"}


class Email(fields.Email):
    """An email address, trimmed and lower-cased (emails are unique case-insensitively)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.strip().lower()
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBool(fields.Boolean):
    """JSON true or false only (not "yes", 1 or "on")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class ListFormat(fields.String):
    """`format=json|geojson` of a geographic list (default json); answered by `http.ok_list`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.OneOf(("json", "geojson")))
        kwargs.setdefault("load_default", "json")
        kwargs.setdefault("metadata", {"description": "geojson: a bare GeoJSON FeatureCollection "
                                                      "(application/geo+json) of the same items and meta"})
        super().__init__(**kwargs)
