"""MCMS worker service: processes the job queue, publishes results and mirrors them to the shared drive.

Run from an unzipped release: ``python <release>/mcms/worker.py --data DATA_DIR --shared SHARED_DIR``.
It beats a heartbeat into the database every second (the portal's /health reads it) and stamps
``SHARED_DIR/.sync_marker`` after each mirror pass, so a stalled worker or a lost share shows in /health.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from types import FrameType

if __name__ == "__main__" and not __package__:
    # Started as a script from a release directory: make the release root importable (PEP 366).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "mcms"

from . import store

RELEASE_ROOT = Path(__file__).resolve().parent.parent
BATCH = 20
QUEUE_BACKLOG_FAULT = "queue-backlog-after-routed:"
"""The release fault under which this worker never takes its node's own queue (the portal fills it)."""


def log(message: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    sys.stderr.write(f"{stamp} worker {message}\n")
    sys.stderr.flush()


def write_atomic(path: Path, data: bytes) -> None:
    """Readers (the portal, people browsing the share) never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    try:
        os.replace(tmp, path)
    except OSError:
        # Windows refuses to replace a file another process has open; the next pass tries again.
        tmp.unlink(missing_ok=True)
        raise


class Worker:
    def __init__(self, release: store.Release, data_dir: Path, shared_dir: Path, node: str) -> None:
        self.release = release
        self.data_dir = data_dir
        self.outbox = data_dir / store.OUTBOX
        self.shared_dir = shared_dir
        self.node = node
        self.last_sync: float | None = None
        # Release fault queue-backlog-after-routed: this release's worker does not drain its node's own queue.
        self.node_queue = not any(f.startswith(QUEUE_BACKLOG_FAULT) for f in release.faults)

    def beat(self, state: str = "running") -> None:
        with store.database(self.data_dir) as conn:
            store.beat(
                conn,
                self.node,
                pid=os.getpid(),
                version=self.release.version,
                state=state,
                shared_dir=str(self.shared_dir),
                last_sync=self.last_sync,
            )

    def process_pending(self) -> int:
        done = 0
        with store.database(self.data_dir) as conn:
            while done < BATCH:
                claimed = store.claim_job(conn, self.node, node_queue=self.node_queue)
                if claimed is None:
                    break
                job_id, item = claimed
                record = item.to_json() | {"status": "processed", "processed_by": self.release.version}
                data = json.dumps(record, indent=2, sort_keys=True).encode("utf-8") + b"\n"
                try:
                    write_atomic(self.outbox / f"item-{item.id:06d}.json", data)
                except OSError:
                    # Back to the queue rather than stuck as "running" until the next restart.
                    store.release_job(conn, job_id)
                    raise
                store.finish_job(conn, job_id, item.id)
                log(f"processed item {item.id} ({item.name!r}), job {job_id}")
                done += 1
        return done

    def sync(self) -> None:
        """One-way mirror of the outbox: nothing is deleted on the share, other nodes publish there too."""
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        for source in sorted(self.outbox.glob("*.json")):
            target = self.shared_dir / source.name
            stat = source.stat()
            try:
                current = target.stat()
                if current.st_size == stat.st_size and int(current.st_mtime) == int(stat.st_mtime):
                    continue
            except FileNotFoundError:
                pass
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copy2(source, tmp)
            os.replace(tmp, target)
        now = time.time()
        stamp = datetime.fromtimestamp(now).astimezone().isoformat(timespec="milliseconds")
        write_atomic(self.shared_dir / store.SYNC_MARKER, stamp.encode("ascii") + b"\n")
        self.last_sync = now


class _Interrupt(BaseException):
    """Raised by the stop signal handler during the idle sleep; no ``except Exception`` may swallow it."""


class _Signals:
    """Stop requests arrive as signals; they interrupt only the idle sleep, never a job half done."""

    def __init__(self) -> None:
        self.stopping = False
        self.idle = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.idle:
            raise _Interrupt

    def install(self) -> None:
        for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
            signum = getattr(signal, name, None)
            if signum is not None:
                signal.signal(signum, self.handler)


def run(worker: Worker, signals: _Signals, poll_s: float, beat_s: float, sync_s: float) -> None:
    next_beat = next_sync = time.monotonic()
    try:
        while not signals.stopping:
            processed = 0
            try:
                processed = worker.process_pending()
                now = time.monotonic()
                if processed or now >= next_sync:
                    worker.sync()
                    next_sync = now + sync_s
                if now >= next_beat:
                    worker.beat()
                    next_beat = now + beat_s
            except (sqlite3.Error, OSError) as exc:
                # A locked database or an unreachable share is a passing condition: keep beating and retry.
                log(f"pass failed, retrying: {exc}")
            signals.idle = True
            try:
                if not signals.stopping and not processed:
                    time.sleep(poll_s)
            finally:
                signals.idle = False
    except _Interrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MCMS worker service")
    parser.add_argument(
        "--data", type=Path, required=True, help="data directory (database), kept across releases"
    )
    parser.add_argument("--shared", type=Path, required=True, help="shared drive the outbox is mirrored to")
    parser.add_argument("--node", default="default", help="node name, pairs the worker with its portal")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between queue polls")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds between heartbeats")
    parser.add_argument("--sync-every", type=float, default=1.0, help="seconds between mirror passes")
    args = parser.parse_args(argv)
    signals = _Signals()
    signals.install()
    release = store.read_release(RELEASE_ROOT)
    store.init(args.data)
    worker = Worker(release, args.data, args.shared, args.node)
    with store.database(args.data) as conn:
        requeued = store.requeue_abandoned(conn, args.node)
    # The first heartbeat goes out before anything else so that a fresh node reports Healthy at once.
    worker.beat()
    log(f"MCMS worker {release.version} started (node {args.node}, pid {os.getpid()}, requeued {requeued})")
    run(worker, signals, args.poll, args.heartbeat, args.sync_every)
    try:
        worker.beat("stopped")
    except sqlite3.Error as exc:
        log(f"could not record the stop: {exc}")
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
