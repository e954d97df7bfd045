from protocol.encoding import b64d, b64e


def test_b64_round_trip() -> None:
    assert b64d(b64e(b"\x00\xff")) == b"\x00\xff"
