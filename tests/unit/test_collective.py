import numpy as np
import pytest
import torch

from learngene import Cancelled, Collective, InputSpec
from learngene.training import logits_of


@pytest.fixture(scope="module")
def grown():
    from tests.unit.conftest import make_task
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, memory_per_class=4, heldout_per_class=2)
    reports, progress = [], []
    tasks = [make_task([f"t{t}c{i}" for i in range(4)] + (["shared"] if t else []), per_class=10, seed=t)
             for t in range(3)]
    for t, ds in enumerate(tasks):
        reports.append(c.learn_task(ds, epochs=25, progress=progress.append))
    return c, reports, progress, tasks


def test_class_ids_are_stable_by_name(grown):
    c, _, _, _ = grown
    assert c.label_space[:4] == ["t0c0", "t0c1", "t0c2", "t0c3"]
    assert c.label_space.count("shared") == 1  # the same name keeps one id across tasks
    assert c.net.classifier.out_features == len(c.label_space) == 13


def test_accuracy_matrix_is_lower_triangular_and_learned(grown):
    c, reports, _, _ = grown
    R = c.accuracy_matrix
    assert [len(r) for r in R] == [1, 2, 3]
    assert reports[-1]["accuracy"] >= 0.5  # separable synthetic data: far above 1/13 chance
    info = c.info()
    assert info["forgetting"] is not None and info["average_accuracy"] > 0.6


def test_growth_widens_one_layer_per_task(grown):
    c, reports, _, _ = grown
    assert reports[0]["growth"] is None
    assert [r["growth"]["layer"] for r in reports[1:]] == [0, 1]
    assert c.net.config.widths == [8, 16, 8]


def test_top_down_growth_widens_the_last_layer_first():
    from tests.unit.conftest import make_task
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, growth_order="top-down")
    for t in range(3):
        c.learn_task(make_task([f"t{t}c{i}" for i in range(3)], per_class=6, seed=t), epochs=1)
    assert [e["layer"] for e in c.growth_log] == [2, 1]
    assert c.net.config.widths == [4, 16, 16]
    with pytest.raises(ValueError, match="growth_order"):
        Collective.create(InputSpec(1, 16), preset="tiny", growth_order="sideways")


def test_open_world_report_from_the_second_task(grown):
    _, reports, _, _ = grown
    assert reports[0]["open_world"] is None
    ow = reports[1]["open_world"]
    assert set(ow["per_class"]) == {"t1c0", "t1c1", "t1c2", "t1c3", "shared"}
    assert 0.0 <= ow["auroc"] <= 1.0 and np.isfinite(ow["threshold"])


def test_replay_memory_is_bounded_per_class(grown):
    c, _, _, _ = grown
    counts = torch.bincount(c.memory_y)
    assert counts.max() <= 4 and len(counts) == len(c.label_space)


def test_progress_and_gradient_statistics(grown):
    c, _, progress, _ = grown
    assert len(progress) == 75 and progress[-1]["fraction"] == 1.0
    assert all(np.isfinite(p["loss"]) for p in progress)
    assert c.recorder.table("share").shape == (3, 3)


def test_round_trip_gives_identical_outputs(grown):
    c, _, _, tasks = grown
    c2 = Collective.from_bytes(c.to_bytes())
    from learngene import to_input
    x = to_input(tasks[0].x[:8], c.spec)
    assert torch.allclose(logits_of(c.net, x, c.device), logits_of(c2.net, x, c2.device), atol=1e-5)
    assert c2.label_space == c.label_space and c2.accuracy_matrix == c.accuracy_matrix
    assert c2.info()["growth"] == c.info()["growth"]


def test_cancel_stops_training(task_factory):
    c = Collective.create(InputSpec(1, 16), preset="tiny")
    with pytest.raises(Cancelled):
        c.learn_task(task_factory(["a", "b"]), epochs=3, should_stop=lambda: True)


def test_unknown_classes_score_higher_than_known(task_factory):
    """Known: classes trained on; unknown: images unlike anything seen (constant images)."""
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=1)
    c.learn_task(task_factory(["a", "b", "c"], per_class=20, noise=10), epochs=10)
    known = c.unknown_scores(task_factory(["a", "b", "c"], per_class=20, noise=10).x)
    assert np.isfinite(c.threshold)
    assert (known > c.threshold).mean() < 0.5


def test_replay_keeps_old_classes_in_proportion_and_holds_classes_back():
    """Every batch mixes old and new classes by their share of the label space; with enough new classes a
    task holds a tenth of them back, never trains on them, and keeps their samples for validation."""
    from tests.unit.conftest import make_task
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, memory_per_class=3, heldout_per_class=2)
    first = make_task([f"a{i}" for i in range(10)], per_class=10, seed=0)
    r1 = c.learn_task(first, epochs=2)
    assert len(r1["held_back_classes"]) == 1 and r1["held_back_classes"][0] not in c.label_space
    assert c.held_back_classes == r1["held_back_classes"] and len(c.holdback_y) == 10
    seen = []
    original = c.net.forward
    c.net.forward = lambda x: (seen.append(len(x)), original(x))[1]
    try:
        c._train(torch.zeros(30, 1, 16, 16), torch.full((30,), 8), torch.zeros(0, 1, 16, 16),
                 torch.zeros(0, dtype=torch.long), set(c.label_space), 1, torch.Generator().manual_seed(0), None, None)
    finally:
        c.net.forward = original
    # 9 classes learned; training on class 8 alone leaves 8 old ones: round(64 * 8 / 9) = 57 replayed,
    # 7 new per batch: 30 new samples take ceil(30 / 7) = 5 batches, raised to min_batches_per_epoch (10).
    steps = max(c.options.min_batches_per_epoch, 5)
    assert len(seen) == steps + 1 and all(n == 64 for n in seen[:steps])  # + the held-out check's forward
    r2 = c.learn_task(make_task([f"b{i}" for i in range(3)], per_class=10, seed=1))  # the whole schedule
    assert r2["held_back_classes"] == [] and 1 <= r2["epochs"] <= c.options.epochs
    assert len(r2["history"]) == r2["epochs"] and all("heldout_accuracy" in h for h in r2["history"])
    back = Collective.from_bytes(c.to_bytes())
    assert back.held_back_classes == c.held_back_classes and torch.equal(back.holdback_x, c.holdback_x)


def test_a_task_runs_its_whole_schedule_and_keeps_its_best_pass():
    """By default every pass of the schedule runs and the pass with the best held-out accuracy is kept;
    `patience` stops a task once held-out accuracy has not improved for that many passes."""
    from tests.unit.conftest import make_task
    task = make_task([f"c{i}" for i in range(4)], per_class=10, seed=0)
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, epochs=8, heldout_per_class=2)
    r = c.learn_task(task)
    assert r["epochs"] == 8
    assert r["accuracy"] == pytest.approx(max(h["heldout_accuracy"] for h in r["history"]))
    early = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, epochs=40, patience=1, heldout_per_class=2)
    r = early.learn_task(task)
    accs = [h["heldout_accuracy"] for h in r["history"]]
    assert r["epochs"] < 40 and accs[-1] <= max(accs[:-1])  # stopped on a pass that did not improve
