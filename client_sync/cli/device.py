"""`fieldsync` commands about the device itself: sync and status."""

from __future__ import annotations

import json

import click

from .kit import cli, emit, format_option, unlocked, warn

PUSH_BATCH = 100  # client_sync.sync.PUSH_BATCH, named here so `--help` loads no core


@cli.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 500),
    default=PUSH_BATCH,
    show_default=True,
    help="Bundles per push request.",
)
def sync(batch_size: int) -> None:
    """Push the outbox; a coordinator then pulls and merges. Safe to rerun.

    Example: fieldsync sync
    """
    from .. import operations

    with unlocked() as s:
        report = operations.sync(s, batch_size)
    emit(
        f"pushed {report.pushed} bundle(s): {report.accepted} accepted,"
        f" {report.stored} already stored, {len(report.rejected)} rejected"
    )
    for line in report.rejected:
        warn(line)
    if report.confirmed:
        emit(f"a coordinator confirmed {report.confirmed} capture(s): no longer kept here")
    if report.uploaded_chunks:
        emit(
            f"uploaded {report.uploaded_chunks} attachment chunk(s),"
            f" {report.uploaded_bytes / 1e6:,.1f} MB"
        )
    if report.pulled is not None:
        if report.fetched:
            emit(f"fetched {report.fetched} missing bundle(s) by device and number")
        emit(f"pulled {report.pulled} new bundle(s), {report.cells} cell(s)")
    for line in report.warnings:
        warn(line)


@cli.command()
@format_option("text", "json")
def status(fmt: str) -> None:
    """Role, workspace, epoch, outbox size and last sync (offline).

    Example: fieldsync status --format json
    """
    from .. import operations

    with unlocked() as s:
        info = operations.status(s)
    if fmt == "json":
        emit(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        if key in ("rejected", "problems", "warnings"):
            value = len(value)
        shown = value if value is not None else ("never" if key == "last_sync" else "-")
        emit(f"{key}: {shown}")
    for r in info["rejected"]:
        warn(f"rejected bundle {r['seq']} ({r['bundle_id']}): {r['code']}: {r['message']}")
    for p in info.get("problems", []):
        warn(p)
    for w in info["warnings"]:
        warn(w)
