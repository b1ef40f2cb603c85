"""Opaque cursors for list endpoints: `meta.next_cursor` in, `?cursor=` back."""
import base64
import json

from bson import ObjectId

from allynet.errors import ValidationFailed


def encode_cursor(values):
    """Encode a list of JSON-able values (ObjectIds as strings) as an opaque cursor."""
    raw = json.dumps([str(v) if isinstance(v, ObjectId) else v for v in values],
                     separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor, length):
    """Decode a cursor made by encode_cursor; 400 validation_error when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]}) from exc
    if not isinstance(values, list) or len(values) != length:
        raise ValidationFailed(details={"cursor": ["Not a valid cursor."]})
    return values
