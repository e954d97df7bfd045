"""`fieldsync` commands about the device itself: sync and status."""

from __future__ import annotations

import json

import click

from .. import operations
from .. import sync as syncing
from .kit import cli, emit, format_option, unlocked, warn


@cli.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 500),
    default=syncing.PUSH_BATCH,
    show_default=True,
    help="Bundles per push request.",
)
def sync(batch_size: int) -> None:
    """Push the outbox; a coordinator then pulls and merges. Safe to rerun.

    Example: fieldsync sync
    """
    with unlocked() as s:
        report = operations.sync(s, batch_size)
    emit(
        f"pushed {report.pushed} bundle(s): {report.accepted} accepted,"
        f" {report.stored} already stored, {len(report.rejected)} rejected"
    )
    for line in report.rejected:
        warn(line)
    if report.uploaded_chunks:
        emit(
            f"uploaded {report.uploaded_chunks} attachment chunk(s),"
            f" {report.uploaded_bytes / 1e6:,.1f} MB"
        )
    if report.pulled is not None:
        emit(f"pulled {report.pulled} new bundle(s), {report.cells} cell(s)")
    for line in report.warnings:
        warn(line)


@cli.command()
@format_option("text", "json")
def status(fmt: str) -> None:
    """Role, workspace, epoch, outbox size and last sync (offline).

    Example: fieldsync status --format json
    """
    with unlocked() as s:
        info = operations.status(s)
    if fmt == "json":
        emit(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        if key in ("rejected", "problems"):
            value = len(value)
        shown = value if value is not None else ("never" if key == "last_sync" else "-")
        emit(f"{key}: {shown}")
    for r in info["rejected"]:
        warn(f"rejected bundle {r['seq']} ({r['bundle_id']}): {r['code']}: {r['message']}")
    for p in info.get("problems", []):
        warn(p)
