"""Leases: who works on which step of a campaign, so two runs never do the same work.

A step that does expensive or external work (generation, scoring, the oracle) is claimed first
(:meth:`Leases.hold`): one row per (campaign, key) with its owner (``host:pid:token``) and an
expiry that a heartbeat thread pushes forward while the owner works. Another worker waits; it
takes the lease over once it expired, or at once when the owner's process is gone on this host
(a ``kill -9``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from matgen.campaign._schema import leases

log = logging.getLogger("matgen.campaign")


def _owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:10]}"


def owner_alive(owner: str) -> bool:
    """Whether the process of a lease owner (``host:pid:token``) may still run.

    Only a process on this host can be checked; one elsewhere counts as alive (its lease then
    ends at its expiry). A zombie (killed, not yet reaped) counts as dead.
    """
    try:
        host, pid_s, _ = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return True
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Leases:
    """The lease methods of :class:`~matgen.campaign.CampaignStore` (which supplies
    ``engine``, ``campaign_id`` and ``transaction``)."""

    campaign_id: int

    def try_lease(self, key: str, owner: str, ttl: float) -> tuple[bool, str | None]:
        """Take lease ``key`` for ``owner`` if it is free, expired, already ``owner``'s, or
        held by a process that is gone (compare-and-set in one transaction).

        Returns:
            ``(taken, other)``: ``other`` is the holder that keeps it (not taken) or the
            previous holder whose claim was taken over (taken), else None.
        """
        now = time.time()
        try:
            with self.transaction() as conn:
                row = conn.execute(
                    select(leases).where(
                        leases.c.campaign_id == self.campaign_id, leases.c.key == key
                    )
                ).first()
                if row is None:
                    conn.execute(
                        insert(leases).values(
                            campaign_id=self.campaign_id,
                            key=key,
                            owner=owner,
                            expires_at=now + ttl,
                            acquired_at=now,
                        )
                    )
                    return True, None
                holder = row.owner
                if (
                    holder is not None
                    and holder != owner
                    and row.expires_at > now
                    and owner_alive(holder)
                ):
                    return False, holder
                same = leases.c.owner.is_(None) if holder is None else leases.c.owner == holder
                res = conn.execute(
                    update(leases)
                    .where(leases.c.id == row.id, same, leases.c.expires_at == row.expires_at)
                    .values(
                        owner=owner,
                        expires_at=now + ttl,
                        acquired_at=now,
                        previous_owner=holder if holder != owner else row.previous_owner,
                    )
                )
                if res.rowcount != 1:
                    return False, None
                return True, (holder if holder != owner else None)
        except IntegrityError:  # another worker inserted the row first (PostgreSQL)
            return False, None

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Push the expiry of ``owner``'s lease forward; False when it is no longer held."""
        with self.transaction() as conn:
            res = conn.execute(
                update(leases)
                .where(
                    leases.c.campaign_id == self.campaign_id,
                    leases.c.key == key,
                    leases.c.owner == owner,
                )
                .values(expires_at=time.time() + ttl)
            )
        return res.rowcount == 1

    def release_lease(self, key: str, owner: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(leases)
                .where(
                    leases.c.campaign_id == self.campaign_id,
                    leases.c.key == key,
                    leases.c.owner == owner,
                )
                .values(owner=None, expires_at=0.0)
            )

    def lease(self, key: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(leases).where(leases.c.campaign_id == self.campaign_id, leases.c.key == key)
            ).first()
        return dict(row._mapping) if row else None

    @contextmanager
    def hold(
        self, key: str, ttl: float = 60.0, stop: Callable[[], bool] | None = None, poll: float = 0.5
    ):
        """Hold lease ``key`` for the ``with`` block (renewed every ``ttl / 3`` seconds).

        Waits while another live worker holds it. Yields True once held, or False when
        ``stop()`` became true while waiting (the other worker finished the work).
        """
        owner = _owner_token()
        said = False
        while True:
            taken, other = self.try_lease(key, owner, ttl)
            if taken:
                if other:
                    log.warning("%s: taking over the claim of %s (gone or expired)", key, other)
                break
            if stop is not None and stop():
                yield False
                return
            if not said and other:
                log.info("%s: waiting for %s, which is working on it", key, other)
                said = True
            time.sleep(poll)
        beat = threading.Event()

        def heartbeat() -> None:
            while not beat.wait(max(ttl / 3.0, 0.05)):
                try:
                    if not self.renew_lease(key, owner, ttl):
                        log.warning("%s: lease lost to another worker", key)
                        return
                except Exception as exc:  # noqa: BLE001 - keep working; the CAS guards writes
                    log.warning("%s: lease renewal failed: %s", key, exc)

        t = threading.Thread(target=heartbeat, name=f"lease {key}", daemon=True)
        t.start()
        try:
            yield True
        finally:
            beat.set()
            t.join()
            self.release_lease(key, owner)
