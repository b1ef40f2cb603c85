"""A faster websocket unmasking for eventlet (issue 9), applied by wsgi.py under eventlet.

Every frame a client sends is masked (RFC 6455 5.3). eventlet's
`RFC6455WebSocket._apply_mask` unmasks byte by byte in Python, building one
`bytes` object per byte: for a ~200-byte `party:update` that is a few
hundred allocations per received event. `apply_mask` does the same XOR on
whole integers. Same signature and result (see tests/test_realtime_fastpath.py).
"""


def apply_mask(data, mask, length=None, offset=0):
    """XOR the first `length` bytes of `data` with the 4-byte `mask` rotated by `offset`."""
    if length is None:
        length = len(data)
    if length <= 0:
        return b""
    key = bytes(mask[(offset + i) % 4] for i in range(4)) * (length // 4 + 1)
    value = int.from_bytes(bytes(data[:length]), "little") ^ int.from_bytes(key[:length], "little")
    return value.to_bytes(length, "little")


def install():
    """Replace eventlet's per-byte unmasking (idempotent); returns the class patched."""
    from eventlet import websocket

    websocket.RFC6455WebSocket._apply_mask = staticmethod(apply_mask)
    return websocket.RFC6455WebSocket
