"""The command line's job progress view: a live bar on a terminal, plain lines elsewhere."""
from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

from learngene_client._render import JobProgressView
from service.schemas import JobProgress, JobPublic


def job(status: str, fraction: float, epoch: int | None = None, loss: float | None = None) -> JobPublic:
    return JobPublic(id=7, kind="individual", status=status, created_at=datetime.now(timezone.utc),
                     progress=JobProgress(stage="train" if epoch else status, epoch=epoch, epochs=10 if epoch else None,
                                          loss=loss, fraction=fraction))


def test_a_terminal_gets_a_live_bar_with_epoch_and_loss():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    with JobProgressView(console) as view:
        view(job("running", 0.3, epoch=3, loss=0.4312))
        view(job("succeeded", 1.0, epoch=10, loss=0.0101))
    text = out.getvalue()
    # The last frame, drawn when the view closes: the final stage, a full bar, the last epoch and loss.
    assert "succeeded" in text and "100%" in text and "epoch 10/10 loss 0.0101" in text
    assert "━" in text and "job 7" not in text  # a bar, not the plain lines


def test_elsewhere_one_plain_line_per_change():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    with JobProgressView(console) as view:
        for j in (job("queued", 0.0), job("running", 0.3, epoch=3, loss=0.4312),
                  job("running", 0.3, epoch=3, loss=0.4312), job("succeeded", 1.0)):
            view(j)
    assert out.getvalue().splitlines() == ["job 7 queued (0%)", "job 7 running: train epoch 3/10 loss 0.4312 (30%)",
                                           "job 7 succeeded (100%)"]
    assert "━" not in out.getvalue()
