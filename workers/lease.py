"""One growth per collective at a time, without a transaction open while it trains: a lease row.

    if lease.acquire(sessions, collective_id, job_id, attempt, ttl_s): ...   # short transaction
    lease.renew(sessions, collective_id, job_id, attempt, ttl_s)             # with each job heartbeat
    lease.release(sessions, collective_id, job_id, attempt)

The lease names the run holding it (job id and attempt). One whose holder went silent expires after
`ttl_s` (the job timeout: by then the reaper has taken the job back), and a later run of the same job
takes it over. Uploads, reads and individuals never touch the row, so nothing of theirs waits on it.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.models import GrowLease, utcnow


def acquire(sessions: sessionmaker[Session], collective_id: int, job_id: int, attempt: int, ttl_s: float) -> bool:
    now = utcnow()
    with sessions() as s:
        taken = s.execute(
            update(GrowLease).where(GrowLease.collective_id == collective_id, or_(
                GrowLease.expires_at < now, and_(GrowLease.job_id == job_id, GrowLease.attempt <= attempt)))
            .values(job_id=job_id, attempt=attempt, expires_at=now + timedelta(seconds=ttl_s))
        ).rowcount
        if taken:
            s.commit()
            return True
        if s.get(GrowLease, collective_id) is not None:
            return False
        s.add(GrowLease(collective_id=collective_id, job_id=job_id, attempt=attempt,
                        expires_at=now + timedelta(seconds=ttl_s)))
        try:
            s.commit()
            return True
        except IntegrityError:  # another grower inserted it first
            s.rollback()
            return False


def renew(sessions: sessionmaker[Session], collective_id: int, job_id: int, attempt: int, ttl_s: float) -> bool:
    with sessions() as s:
        kept = s.execute(update(GrowLease).where(GrowLease.collective_id == collective_id,
                                                 GrowLease.job_id == job_id, GrowLease.attempt == attempt)
                         .values(expires_at=utcnow() + timedelta(seconds=ttl_s))).rowcount
        s.commit()
    return bool(kept)


def release(sessions: sessionmaker[Session], collective_id: int, job_id: int, attempt: int) -> None:
    with sessions() as s:
        s.execute(delete(GrowLease).where(GrowLease.collective_id == collective_id, GrowLease.job_id == job_id,
                                          GrowLease.attempt == attempt))
        s.commit()
