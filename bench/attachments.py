"""Attachment benchmark: MB/s sealed, uploaded and downloaded through a real gunicorn on
loopback, beside raw ChaCha20-Poly1305 and raw disk writes measured in the same run.

    .venv/bin/python bench/attachments.py [--quick] [--mb 64]

- `aead_mb_s`: ChaCha20-Poly1305 over 1 MiB pieces, one core, nothing else.
- `disk_mb_s`: 1 MiB files written and fsynced one by one (each chunk is made
  durable before it is acknowledged, so this is the disk's bound for uploads);
  `disk_seq_mb_s`: one file, one fsync at the end (the disk's best case).
- `seal_mb_s`: `protocol.attachment.Sealer` (padding, SHA-256 of the file, AEAD).
- `upload_mb_s`: every chunk of a sealed file `PUT` over two keep-alive connections,
  as the client does (signed request, hash check, file, fsync, rename, directory
  fsync, row, quota), 1 MiB chunks; `upload_1conn_mb_s` over one connection;
  `upload_256k_mb_s` with 256 KiB chunks (why devices seal 1 MiB).
- `download_mb_s`: every chunk `GET` by a keyholder, checked (`open_chunk`) and the
  whole reassembled and checked against its SHA-256.
- `in_process_upload_mb_s`: the uploads through the Flask app in process (no HTTP, no
  gunicorn): the server's own cost, signature to commit; `chunk_write_ms`: the part of
  it that makes one chunk durable.
- `aim`: upload and download over the slower of AEAD and disk; issue 12 asks ≥ 0.5.

Each figure is the median of three runs (one with --quick).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402
from servergun import Gunicorn  # noqa: E402
from serverkit import HttpTransport, Kit, Member  # noqa: E402

from protocol import attachment  # noqa: E402
from protocol.encoding import b64e  # noqa: E402
from server.store import Paths, server_db  # noqa: E402

MIB = 1 << 20


def _median(fn: Callable[[], float], runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def aead_mb_s(mb: int) -> float:
    aead = ChaCha20Poly1305(os.urandom(32))
    piece = os.urandom(MIB)
    start = time.perf_counter()
    for i in range(mb):
        aead.encrypt(i.to_bytes(12, "big"), piece, b"ad")
    return mb / (time.perf_counter() - start)


def disk_mb_s(folder: Path, mb: int, per_file: bool) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    piece = os.urandom(MIB)
    start = time.perf_counter()
    if per_file:
        for i in range(mb):
            fd = os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, piece)
            os.fsync(fd)
            os.close(fd)
    else:
        fd = os.open(folder / "one", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for _ in range(mb):
            os.write(fd, piece)
        os.fsync(fd)
        os.close(fd)
    took = time.perf_counter() - start
    for p in folder.iterdir():
        p.unlink()
    return mb / took


def chunk_write_ms(folder: Path, n: int) -> float:
    """What making one 1 MiB chunk durable costs the server: `chunks.write_file` (temporary
    name, write, fsync, rename, directory fsync), median of `n`."""
    from server.store.chunks import write_file

    piece = os.urandom(MIB)
    times = []
    for i in range(n):
        start = time.perf_counter()
        write_file(folder / f"{i:02x}" / f"c{i}", piece)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def in_process_mb_s(root: Path, data: bytes) -> float:
    """Every chunk PUT through the Flask app in process (no HTTP, no gunicorn): the
    server's own cost per chunk, signature to commit."""
    from serverkit import FlaskTransport

    from server.app import create_app

    app = create_app({"DATA_DIR": root, "DEVICE_QUOTA": 1 << 40, "MIN_FREE_DISK": 0})
    code = server_db.new_code(Paths(root), int(time.time()))
    kit = Kit.create(FlaskTransport(app.test_client()), code, seed=13)
    vol = kit.member("volunteer")
    _, chunks = seal(data, attachment.CHUNK_SIZE)
    signed = []
    for cid, ct in chunks:
        path = kit.path(f"chunks/{cid}")
        headers = kit.signed_headers("PUT", path, vol, ct, nonce=b64e(os.urandom(16)))
        headers["Content-Type"] = "application/octet-stream"
        signed.append((path, headers, ct))
    client = app.test_client()
    start = time.perf_counter()
    for path, headers, ct in signed:
        resp = client.put(path, headers=headers, data=ct)
        assert resp.status_code == 200, resp.get_data()
    return len(data) / MIB / (time.perf_counter() - start)


def seal(data: bytes, chunk_size: int) -> tuple[attachment.Descriptor, list[tuple[str, bytes]]]:
    return attachment.seal_file(
        data,
        name="arrest.mp4",
        media_type="video/mp4",
        captured_at="2026-12-04T18:30:05Z",
        random=os.urandom,
        chunk_size=chunk_size,
    )


def seal_mb_s(data: bytes) -> float:
    start = time.perf_counter()
    seal(data, attachment.CHUNK_SIZE)
    return len(data) / MIB / (time.perf_counter() - start)


class Conn:
    """One keep-alive connection sending signed requests."""

    def __init__(self, kit: Kit, port: int) -> None:
        self.kit = kit
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(self, member: Member, method: str, path: str, body: bytes, ctype: str) -> bytes:
        headers = self.kit.signed_headers(method, path, member, body, nonce=b64e(os.urandom(16)))
        headers["Content-Type"] = ctype
        self.http.request(method, path, body=body or None, headers=headers)
        resp = self.http.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {resp.status}: {data[:200]!r}")
        return data

    def close(self) -> None:
        self.http.close()


def upload_mb_s(
    conns: list[Conn], vol: Member, chunks: list[tuple[str, bytes]], size: int
) -> float:
    """Every chunk PUT, spread over `conns` (a device may have FIELDSYNC_DEVICE_REQUESTS,
    2, requests in progress: the client uploads on two connections)."""
    errors: list[BaseException] = []

    def send(conn: Conn, mine: list[tuple[str, bytes]]) -> None:
        try:
            for cid, ct in mine:
                path = conn.kit.path(f"chunks/{cid}")
                conn.send(vol, "PUT", path, ct, "application/octet-stream")
        except BaseException as exc:
            errors.append(exc)

    n = len(conns)
    threads = [threading.Thread(target=send, args=(c, chunks[i::n])) for i, c in enumerate(conns)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise errors[0]
    return size / MIB / took


def download_mb_s(conn: Conn, coord: Member, desc: attachment.Descriptor, data: bytes) -> float:
    start = time.perf_counter()
    reader = attachment.Reader(desc)
    got = bytearray()
    for i, cid in enumerate(desc.chunks):
        raw = conn.send(coord, "GET", conn.kit.path(f"chunks/{cid}"), b"", "application/json")
        got += reader.piece(i, attachment.open_chunk(desc, i, raw))
    reader.finish()
    took = time.perf_counter() - start
    assert bytes(got) == data
    return len(data) / MIB / took


def run(quick: bool, mb: int | None = None) -> dict[str, float]:
    mb = mb or (8 if quick else 64)
    runs = 1 if quick else 3
    out: dict[str, float] = {"file_mb": float(mb)}
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-att-") as tmp:
        root = Path(tmp)
        out["aead_mb_s"] = _median(lambda: aead_mb_s(mb), runs)
        out["disk_mb_s"] = _median(lambda: disk_mb_s(root / "disk", mb, True), runs)
        out["disk_seq_mb_s"] = _median(lambda: disk_mb_s(root / "disk", mb, False), runs)
        data = os.urandom(mb * MIB)
        out["seal_mb_s"] = _median(lambda: seal_mb_s(data), runs)
        out["chunk_write_ms"] = chunk_write_ms(root / "writes", 9 if quick else 31)
        out["in_process_upload_mb_s"] = in_process_mb_s(root / "inproc", data)
        data_dir = root / "data"
        server = Gunicorn(
            data_dir,
            workers=2,
            log_dir=root / "logs",
            env={"FIELDSYNC_DEVICE_QUOTA": str(1 << 40), "FIELDSYNC_MIN_FREE_DISK": "0"},
        )
        server.start()
        try:
            code = server_db.new_code(Paths(data_dir), int(time.time()))
            kit = Kit.create(HttpTransport(server.url), code, seed=12)
            vol = kit.member("volunteer")
            coord = kit.member("coordinator")
            conns = [Conn(kit, server.port) for _ in range(2)]
            figures: dict[str, list[float]] = {}
            for _ in range(runs):
                for name, size, n in [
                    ("upload", attachment.CHUNK_SIZE, 2),
                    ("upload_1conn", attachment.CHUNK_SIZE, 1),
                    ("upload_256k", 256 * 1024, 2),
                ]:
                    desc, chunks = seal(data, size)
                    got = upload_mb_s(conns[:n], vol, chunks, len(data))
                    figures.setdefault(name, []).append(got)
                    if name == "upload":
                        down = download_mb_s(conns[0], coord, desc, data)
                        figures.setdefault("download", []).append(down)
            for name, values in figures.items():
                out[f"{name}_mb_s"] = statistics.median(values)
            for c in conns:
                c.close()
        finally:
            server.stop()
    slower = min(out["aead_mb_s"], out["disk_mb_s"])
    out["upload_aim"] = out["upload_mb_s"] / slower
    out["download_aim"] = out["download_mb_s"] / slower
    return out


def tables(f: dict[str, float]) -> dict[str, str]:
    rows = [
        ("raw ChaCha20-Poly1305, 1 MiB pieces", f["aead_mb_s"]),
        ("raw disk: 1 MiB files, each fsynced", f["disk_mb_s"]),
        ("raw disk: one file, one fsync", f["disk_seq_mb_s"]),
        ("seal a file (padding, SHA-256, AEAD)", f["seal_mb_s"]),
        ("upload through the server, 1 MiB chunks, 2 connections", f["upload_mb_s"]),
        ("upload, 1 MiB chunks, 1 connection", f["upload_1conn_mb_s"]),
        ("upload, 256 KiB chunks, 2 connections", f["upload_256k_mb_s"]),
        ("download, check each chunk and the whole", f["download_mb_s"]),
        ("upload in process (the Flask app, no HTTP), 1 MiB chunks", f["in_process_upload_mb_s"]),
    ]
    lines = ["| what | MB/s |", "|---|---|", *(f"| {a} | {b:,.0f} |" for a, b in rows)]
    lines.append(
        f"| upload / download over the slower of AEAD and disk (aim ≥ 0.5) |"
        f" {f['upload_aim']:.2f} / {f['download_aim']:.2f} |"
    )
    lines.append(
        f"| making one chunk durable (write, fsync, rename, directory fsync), ms |"
        f" {f['chunk_write_ms']:.1f} |"
    )
    return {"attachments": "\n".join(lines)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--mb", type=int, default=None)
    args = p.parse_args()
    got = run(args.quick, args.mb)
    for key, value in got.items():
        print(f"{key:>20} {value:10.2f}")
    print(tables(got)["attachments"])


if __name__ == "__main__":
    main()
