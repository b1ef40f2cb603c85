"""Money: ISO 4217 currencies and exact conversion between major and minor units.

The codes and their minor-unit exponents come from the ``iso4217`` package
(ISO's own published list, kept current by its maintainers): EUR has 2
decimals, JPY none, KWD 3. Codes without a minor unit (gold, special drawing
rights, the testing codes) and the codes ISO marks as funds (USN, CLF, the
WIR units...) are not currencies anyone pays in and are refused.

The API carries money as ``{amount, currency}`` in major units (a JSON
number); payments keep integer minor units. Conversion goes through
``decimal.Decimal`` built from the number's shortest round-trip text, never
float arithmetic: ``to_minor(15.5, "EUR") == 1550``, and an amount with more
decimals than its currency allows (``15.555 EUR``, ``1500.5 JPY``) is refused.
"""
from decimal import Decimal, InvalidOperation

import iso4217

# Codes the published table marks IsFund="true" (the package keeps that only in its raw XML).
FUNDS = frozenset(entry.findtext("Ccy") for entry in iso4217.raw_xml.iter("CcyNtry")
                  if entry.find("CcyNm") is not None and entry.find("CcyNm").get("IsFund") == "true")
# code -> exponent, for every ISO 4217 currency with a minor unit (no funds).
EXPONENTS = {currency.code: currency.exponent for currency in iso4217.Currency
             if currency.exponent is not None and currency.code not in FUNDS}
CODES = frozenset(EXPONENTS)


class MoneyError(ValueError):
    """An amount or currency that cannot be money: unknown code, too many decimals, not a finite number."""


def normalize_code(code):
    """The upper-case ISO 4217 code for `code` (any case, surrounding blanks ignored); MoneyError if unknown."""
    if not isinstance(code, str) or code.strip().upper() not in CODES:
        raise MoneyError("Not an ISO 4217 currency code (e.g. EUR, USD, GBP).")
    return code.strip().upper()


def exponent(code):
    """How many decimals the currency's minor unit has (EUR 2, JPY 0, KWD 3)."""
    return EXPONENTS[normalize_code(code)]


def as_decimal(amount):
    """An int, float, str or Decimal as an exact Decimal (a float through its shortest round-trip text)."""
    if isinstance(amount, bool):
        raise MoneyError("Not an amount.")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(repr(amount) if isinstance(amount, float)
                                                                   else str(amount))
    except (InvalidOperation, ValueError) as exc:
        raise MoneyError("Not an amount.") from exc
    if not value.is_finite():
        raise MoneyError("Must be a finite number.")
    return value


def check_decimals(amount, code):
    """MoneyError when `amount` has more decimals than `code` allows (JPY 1500, EUR 15.00, KWD 1.250)."""
    places = exponent(code)
    value = as_decimal(amount)
    try:
        exact = value == value.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation as exc:  # more digits than a Decimal context holds
        raise MoneyError("Amount too large.") from exc
    if not exact:
        noun = "no decimals" if places == 0 else f"at most {places} decimal{'s' if places > 1 else ''}"
        raise MoneyError(f"{normalize_code(code)} amounts have {noun}.")
    return value


def to_minor(amount, code):
    """`amount` in major units (number, str or Decimal) as an int of minor units: to_minor(15.5, "EUR") == 1550."""
    value = check_decimals(amount, code)
    return int(value.scaleb(exponent(code)))


def to_major(minor, code):
    """Integer minor units as an exact Decimal in major units: to_major(1550, "EUR") == Decimal("15.50")."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError("Minor units are an integer.")
    places = exponent(code)
    return Decimal(minor).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def major_number(minor, code):
    """Minor units as the JSON number clients get in `{amount, currency}` (an int when whole, else a float)."""
    value = to_major(minor, code)
    return int(value) if value == value.to_integral_value() else float(value)
