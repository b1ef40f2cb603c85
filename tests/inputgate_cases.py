"""Bad inputs shared by the input gate's REST and Socket.IO walks (raw JSON text)."""
import json

DEEP = "[" * 1000 + "]" * 1000

# Raw JSON text: what a client may send and Python's encoder would not write as such.
GATE_VALUES = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate": '"a\\udc00b"',
    "NUL": '"a\\u0000b"',
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e400": "1e400",
    "10**400": "1" + "0" * 400,
    "2**63": str(2 ** 63),
    "-2**63-1": str(-2 ** 63 - 1),
    "$gt operator": '{"$gt": ""}',
    "$where operator": '{"$where": "sleep(1000)"}',
    "dotted key": '{"a.b": 1}',
    "$ key in a list": '[{"$ne": null}]',
    "nested surrogate": '{"lat": "\\ud800", "lng": 0}',
    "nested NaN": '{"lat": NaN, "lng": 0}',
    "surrogate key": '{"\\ud800": 1}',
}
OTHER_VALUES = {  # refused too, by the schema's lengths and types: any 4xx
    "huge string": json.dumps("x" * 60000),
    "huge array": "[" + ",".join(["0"] * 20000) + "]",
    "huge array of objects": "[" + ",".join(['{"lat": 1, "lng": 2}'] * 600) + "]",
}


def snapshot(db):
    """Every document of every collection, comparable before and after."""
    return {name: sorted(map(repr, db[name].find())) for name in sorted(db.list_collection_names())}
