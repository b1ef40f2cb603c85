"""The embedded store: mongomock made faithful to MongoDB and fast enough to serve the app.

`make_client()` gives a client with geo queries (`geo`), `$text` (`text`), atomic
single-document writes and hash-indexed lookups (`store`, `indexes`) and cheap document
copies (`copies`). The package imports nothing from the rest of AllyNet, so it could become
its own distribution; its tests are in tests/embedded/.
"""
from allynet.embedded.store import install, make_client

__all__ = ["install", "make_client"]
