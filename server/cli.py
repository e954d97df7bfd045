"""`fieldsync-server`: run the server, mint workspace codes, back up the databases.

fieldsync-server run --data-dir /var/lib/fieldsync --port 8000
fieldsync-server workspace-code --data-dir /var/lib/fieldsync
fieldsync-server backup --data-dir /var/lib/fieldsync /srv/backup/2026-11-27
fieldsync-server restore /srv/backup/2026-11-27 --data-dir /var/lib/fieldsync
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .store import Paths, server_db, valid_workspace_id
from .store import restore as restoring
from .store.chunks import backup_files
from .store.inspect import backup as backup_db

DEFAULT_CONF = Path(__file__).resolve().parents[1] / "deploy" / "gunicorn.conf.py"
# Used only when deploy/gunicorn.conf.py is absent: the settings privacy depends on.
FALLBACK_SETTINGS: dict[str, Any] = {
    "workers": 2 * (os.cpu_count() or 1),
    "worker_class": "server.worker.Worker",
    "threads": 4,
    "accesslog": None,
    "errorlog": "-",
    "logger_class": "server.logs.GunicornLogger",
    "control_socket_disable": True,
}


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("FIELDSYNC_DATA_DIR", "./fieldsync-data"))


def gunicorn_settings(conf: Path | None) -> dict[str, Any]:
    path = conf or Path(os.environ.get("FIELDSYNC_GUNICORN_CONF", DEFAULT_CONF))
    if not path.exists():
        if conf is not None:
            raise SystemExit(f"no gunicorn config at {path}")
        return dict(FALLBACK_SETTINGS)
    return {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}


def run(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from .app import create_app

    data_dir = _data_dir(args.data_dir).resolve()
    Paths(data_dir).ensure()
    os.environ["FIELDSYNC_DATA_DIR"] = str(data_dir)
    settings = gunicorn_settings(args.config)
    settings["bind"] = [f"{args.host}:{args.port}"]
    if args.workers:
        settings["workers"] = args.workers

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app({"DATA_DIR": data_dir})

    try:
        # Held until the server ends, so that `restore` refuses meanwhile.
        with restoring.run_lock(data_dir):
            Server().run()
    except restoring.DataDirBusy as exc:
        print(f"fieldsync-server: {exc}", file=sys.stderr)
        return 1
    return 0


def workspace_code(args: argparse.Namespace) -> int:
    code = server_db.new_code(Paths(_data_dir(args.data_dir)), int(time.time()))
    print(code)
    return 0


def backup(args: argparse.Namespace) -> int:
    paths = Paths(_data_dir(args.data_dir))
    out = Path(args.out_dir)
    dbs = paths.all_databases()
    if not dbs:
        print(f"no databases under {paths.data_dir}", file=sys.stderr)
        return 1
    failed = 0
    for db in dbs:
        target = out / db.relative_to(paths.data_dir)
        result = backup_db(db, target)
        print(f"{target}: {result}")
        failed += result != "ok"
        if result == "ok" and db.parent == paths.workspaces and valid_workspace_id(db.stem):
            # After the database: the chunks its copy lists, so the two agree.
            listed, copied, missing = backup_files(paths, db.stem, target, out)
            note = f", {missing} no longer on disk" if missing else ""
            print(f"{out / 'chunks' / db.stem}: {listed} chunk files ({copied} copied{note})")
    return 1 if failed else 0


def restore(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args.data_dir)
    try:
        done = restoring.restore(Path(args.backup_dir), data_dir)
    except (restoring.DataDirBusy, restoring.BadBackup) as exc:
        print(f"fieldsync-server: {exc}; nothing was restored", file=sys.stderr)
        return 1
    for item in done:
        note = f", new incarnation {item.incarnation}" if item.incarnation else ""
        if item.chunks:
            note += f", {item.chunks} attachment chunk(s) put back"
        print(f"{item.name}: integrity ok, restored{note}")
    print(
        "devices re-send what the backup lacks at their next sync; keyholders pull again"
        " from the start"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fieldsync-server", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="serve API v1 with gunicorn (loopback by default)")
    r.add_argument("--data-dir", help="default: $FIELDSYNC_DATA_DIR or ./fieldsync-data")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=8000)
    r.add_argument("--workers", type=int, help="default: from the gunicorn config")
    r.add_argument("--config", type=Path, help=f"gunicorn config (default {DEFAULT_CONF})")
    r.set_defaults(func=run)
    w = sub.add_parser("workspace-code", help="print a one-time code that creates one workspace")
    w.add_argument("--data-dir")
    w.set_defaults(func=workspace_code)
    b = sub.add_parser(
        "backup",
        help="copy every database with SQLite's online backup API, then the attachment chunks"
        " each lists",
    )
    b.add_argument("--data-dir")
    b.add_argument("out_dir", metavar="OUT_DIR")
    b.set_defaults(func=backup)
    s = sub.add_parser(
        "restore", help="restore a backup into the data directory (the server must be stopped)"
    )
    s.add_argument("backup_dir", metavar="BACKUP_DIR")
    s.add_argument("--data-dir")
    s.set_defaults(func=restore)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Databases, WAL, backups: readable by the service's user only, whatever the shell's umask.
    os.umask(0o077)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
