import pytest
import torch

from learngene import Collective, DatasetError, Individual, InputSpec, Learngene, TrainOptions, train_individual
from learngene.individual import (AUTO_WITHIN_SE, build_net, choose_init, inherited_prefix, paired_margins, pick_init,
                                  step_budget)


_COLLECTIVE: dict = {}


def learngene_collective() -> Collective:
    """A tiny collective trained once for this module."""
    if not _COLLECTIVE:
        from tests.unit.conftest import make_task
        c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0)
        for t in range(2):
            c.learn_task(make_task([f"t{t}c{i}" for i in range(4)], per_class=8, seed=t), epochs=3)
        _COLLECTIVE["c"] = c
    return _COLLECTIVE["c"]


@pytest.fixture(scope="module")
def learngene():
    return Learngene.extract(learngene_collective(), method="gradient", k=2)


def test_inherited_layers_start_as_the_learngene_and_stay_its_copy(learngene, task_factory):
    net = build_net(learngene.source_config, learngene.tensors, 3, learngene.layers)
    for p in learngene.layers:
        assert torch.equal(net.blocks[p].conv.weight, learngene.tensors[f"blocks.{p}.conv.weight"])
        assert torch.equal(net.blocks[p].bn.running_mean, learngene.tensors[f"blocks.{p}.bn.running_mean"])
    before = {k: v.clone() for k, v in learngene.tensors.items()}
    ind = train_individual(task_factory(["a", "b", "c"], per_class=5), learngene,
                           TrainOptions(epochs=3, init="learngene"))
    assert all(torch.equal(before[k], learngene.tensors[k]) for k in before)  # the learngene is untouched
    p = learngene.layers[0]
    assert not torch.equal(ind.net.blocks[p].conv.weight.cpu(), before[f"blocks.{p}.conv.weight"])


def test_scratch_inherits_nothing(learngene):
    net = build_net(learngene.source_config, learngene.tensors, 3, learngene.layers, init="scratch")
    p = learngene.layers[0]
    assert net.blocks[p].conv.weight.shape == learngene.tensors[f"blocks.{p}.conv.weight"].shape
    assert not torch.equal(net.blocks[p].conv.weight, learngene.tensors[f"blocks.{p}.conv.weight"])


def test_learns_an_easy_task_and_reports_metrics(learngene, task_factory):
    support = task_factory(["x", "y", "z"], per_class=5, noise=10)
    query = task_factory(["x", "y", "z"], per_class=5, noise=10, seed=7)
    ind = train_individual(support, learngene, TrainOptions(epochs=15, seed=3, init="learngene"), eval_set=query)
    assert ind.metrics["train_accuracy"] > 0.6
    assert len(ind.metrics["history"]) == 15
    assert set(ind.metrics) >= {"train_accuracy", "eval_accuracy", "history"}
    # The curve's per-epoch eval accuracy ends where the reported one does (the same net, the same samples).
    curve = [h["eval_accuracy"] for h in ind.metrics["history"]]
    assert all(0 <= a <= 1 for a in curve) and curve[-1] == ind.metrics["eval_accuracy"]
    # With an eval set the unknown threshold comes from it: at most ~5% of those known images are flagged.
    assert ind.metrics["unknown_threshold_from"] == "eval set"
    assert sum(p["unknown"] for p in ind.predict(query.x)) <= 1


def test_predict_and_round_trip(learngene, task_factory):
    support = task_factory(["x", "y"], per_class=4, channels=3, size=20)  # RGB, other size: converted
    ind = train_individual(support, learngene, TrainOptions(epochs=2))
    preds = ind.predict(support.x[:3])
    assert len(preds) == 3 and set(preds[0]) == {"label", "probabilities", "unknown"}
    assert abs(sum(preds[0]["probabilities"].values()) - 1) < 1e-5
    back = Individual.from_bytes(ind.to_bytes())
    assert back.predict(support.x[:3]) == preds
    assert back.parameters == ind.parameters


def test_anchor_keeps_inherited_weights_closer(learngene, task_factory):
    support = task_factory(["x", "y", "z"], per_class=4)
    p = learngene.layers[0]
    start = learngene.tensors[f"blocks.{p}.conv.weight"]
    drift = {}
    for anchor in (0.0, 10.0):
        ind = train_individual(support, learngene, TrainOptions(epochs=5, anchor=anchor, lr=1e-2, init="learngene"))
        drift[anchor] = float((ind.net.blocks[p].conv.weight.detach().cpu() - start).norm())
    assert drift[10.0] < drift[0.0]


def test_bad_requests(learngene, task_factory):
    with pytest.raises(DatasetError, match="at least 2 classes"):
        train_individual(task_factory(["solo"], per_class=3), learngene)
    ind = train_individual(task_factory(["x", "y"], per_class=3), learngene, TrainOptions(epochs=1))
    with pytest.raises(DatasetError, match="no class name"):
        ind.evaluate(task_factory(["other"], per_class=2))
    with pytest.raises(ValueError):
        train_individual(task_factory(["x", "y"], per_class=3), learngene, TrainOptions(init="magic"))


def test_inherited_bn_statistics_are_kept_where_their_input_is_inherited(learngene, task_factory):
    """Inherited layers fed only by inherited layers keep their running statistics; fresh ones adapt."""
    assert inherited_prefix([0, 1, 2]) == [0, 1, 2] and inherited_prefix([1, 2]) == []
    assert inherited_prefix([0, 2]) == [0]
    support = task_factory(["a", "b", "c"], per_class=5)
    ind = train_individual(support, learngene, TrainOptions(epochs=4, init="learngene", inherited_lr=0.0))
    fresh = [p for p in range(len(ind.net.blocks)) if p not in learngene.layers]
    for p in inherited_prefix(learngene.layers):
        for stat in ("running_mean", "running_var"):
            assert torch.equal(getattr(ind.net.blocks[p].bn, stat).cpu(), learngene.tensors[f"blocks.{p}.bn.{stat}"])
        # inherited_lr=0: the inherited conv is not trained at all
        assert torch.equal(ind.net.blocks[p].conv.weight.cpu(), learngene.tensors[f"blocks.{p}.conv.weight"])
    assert fresh and any(float(ind.net.blocks[p].bn.running_mean.abs().sum()) > 0 for p in fresh)


def test_default_recipe_trains_full_batch_for_a_step_budget(learngene, task_factory, monkeypatch):
    import learngene.individual as individual
    batches = []
    real_augment = individual.augment
    monkeypatch.setattr(individual, "augment", lambda x, gen: batches.append(len(x)) or real_augment(x, gen))
    support = task_factory(["a", "b", "c", "d", "e"], per_class=8)  # 40 images
    for init in ("learngene", "scratch"):
        batches.clear()
        ind = train_individual(support, learngene, TrainOptions(init=init, distill=0))
        assert ind.metrics["history"][-1]["steps"] == step_budget(40) == 100
        assert max(batches[:100]) == 32  # batches of at most `batch_size`
    # Run R2's scratch variant: full batch, epochs = steps
    batches.clear()
    o = TrainOptions(init="scratch", batch_size=128, epochs=200)
    assert train_individual(support, learngene, o).metrics["history"][-1]["steps"] == 2 * step_budget(40)
    assert set(batches[:200]) == {40}
    assert step_budget(1000) > step_budget(100) >= step_budget(10)
    with pytest.raises(ValueError):
        TrainOptions(batch_size=0).resolved()


def test_instant_individual_is_prototypes_on_the_trunk(learngene, task_factory):
    support = task_factory(["x", "y", "z"], per_class=3)
    trunk = Learngene.whole(learngene_collective())
    ind = train_individual(support, learngene, TrainOptions(init="instant"), trunk=trunk,
                           eval_set=task_factory(["x", "y", "z"], per_class=4, seed=9))
    assert ind.init == "instant" and ind.metrics["history"] == []
    assert ind.net.config.head == "cosine" and ind.net.config.widths == trunk.source_config.widths
    assert ind.metrics["eval_accuracy"] > 0.9  # easy separable classes: prototypes alone suffice
    back = Individual.from_bytes(ind.to_bytes())
    assert back.predict(support.x) == ind.predict(support.x)
    with pytest.raises(DatasetError, match="trunk"):
        train_individual(support, learngene, TrainOptions(init="instant"))


def test_probe_individual_is_a_fitted_linear_head_on_the_frozen_trunk(learngene, task_factory):
    from learngene.data import to_input
    from learngene.training import features_of, linear_probe
    support = task_factory(["x", "y", "z"], per_class=3)
    trunk = Learngene.whole(learngene_collective())
    ind = train_individual(support, learngene, TrainOptions(init="probe"), trunk=trunk,
                           eval_set=task_factory(["x", "y", "z"], per_class=4, seed=9))
    assert ind.init == "probe" and ind.metrics["history"] == [] and ind.net.config.head == "linear"
    assert ind.metrics["train_accuracy"] == 1.0 and ind.metrics["eval_accuracy"] > 0.9
    for name, tensor in trunk.tensors.items():  # the trunk is frozen: every inherited tensor as it was
        assert torch.equal(ind.net.state_dict()[name].cpu(), tensor.cpu()), name
    # The served head is the regression on standardised features, its standardisation folded in.
    x = to_input(support.x, learngene.spec)
    f = features_of(ind.net, x, torch.device("cpu"))
    weight, bias = linear_probe(f, torch.from_numpy(support.y), 3)
    assert torch.allclose(ind.logits(support.x), f @ weight.T + bias, atol=1e-4)
    back = Individual.from_bytes(ind.to_bytes())
    assert back.predict(support.x) == ind.predict(support.x)
    with pytest.raises(DatasetError, match="trunk"):
        train_individual(support, learngene, TrainOptions(init="probe"))


def test_auto_chooses_by_cross_validation_and_records_why(learngene, task_factory):
    support = task_factory(["x", "y", "z"], per_class=3)
    trunk = Learngene.whole(learngene_collective())
    ind = train_individual(support, learngene, TrainOptions(epochs=2), trunk=trunk)
    auto = ind.metrics["auto"]
    assert set(auto["scores"]) == {"learngene", "scratch", "instant", "probe"} and "cross-validation" in auto["by"]
    assert set(auto["margins"]) == {"scratch", "instant", "probe"} and all(m >= 0 for m in auto["margins"].values())
    assert ind.init == auto["init"] and auto["within_se"] == AUTO_WITHIN_SE
    assert ind.options["init"] == "auto"
    # One shot per class: no folds, so the learngene's recorded evidence decides.
    one = task_factory(["x", "y", "z"], per_class=1)
    learngene.strategies = {"1": {"learngene": 0.2, "scratch": 0.9, "instant": 0.5}}
    try:
        pick = choose_init(learngene, trunk, *_converted(one, learngene), 3, TrainOptions().resolved(),
                           torch.device("cpu"))
    finally:
        learngene.strategies = {}
    assert pick["init"] == "scratch" and "validation" in pick["by"]
    # Under a parameter budget the probe is not weighed (run P2 chose it at the default size only).
    x, y = _converted(task_factory(["x", "y", "z"], per_class=2), learngene)
    budget = choose_init(learngene, trunk, x, y, 3, TrainOptions(epochs=1, max_parameters=10**6).resolved(),
                         torch.device("cpu"))
    assert set(budget["scores"]) == {"learngene", "scratch", "instant"}


def test_auto_takes_the_best_score_and_ties_go_to_the_learngene_individual():
    assert pick_init({"learngene": 0.80, "scratch": 0.70, "instant": 0.83}) == "instant"
    assert pick_init({"learngene": 0.80, "scratch": 0.80, "instant": 0.80}) == "learngene"
    assert pick_init({"scratch": 0.9, "instant": 0.9}) == "instant"
    assert paired_margins({"learngene": [1, 0, 1, 1], "instant": [1, 1, 1, 1]}) == {"instant": 0.25}


def test_the_one_se_rule_takes_the_simplest_init_the_evidence_cannot_separate_from_the_best():
    # learngene ahead by 1 of 8 images; SE of the paired difference = sqrt(1/8)/sqrt(8) = 0.125.
    out = {"learngene": [1, 1, 1, 1, 1, 1, 1, 1], "instant": [1, 1, 1, 1, 1, 1, 1, 0],
           "scratch": [0, 1, 0, 1, 0, 1, 0, 1]}
    scores = {i: sum(v) / len(v) for i, v in out.items()}
    assert pick_init(scores, out, 0.0) == pick_init(scores) == "learngene"
    assert pick_init(scores, out, 1.5) == "instant"  # 0.125 behind: within 1.5 SE (0.1875)
    assert pick_init(scores, out, 0.5) == "learngene"  # not within half an SE (0.0625)
    # A clear winner stays: learngene right on every image, instant on half of them.
    clear = {"learngene": [1] * 8, "instant": [1, 0] * 4}
    assert pick_init({"learngene": 1.0, "instant": 0.5}, clear, 1.0) == "learngene"
    # Scratch is the last resort: the learngene individual within 1.5 SE of it (1 SE = 0.25) is simpler.
    tie = {"learngene": [1, 1, 1, 0], "scratch": [1, 1, 1, 1]}
    assert pick_init({"learngene": 0.75, "scratch": 1.0}, tie, 1.5) == "learngene"
    # Another preference order: instant ahead by 1 of 8 images, the learngene individual kept within 1.5 SE.
    swapped = {"learngene": out["instant"], "instant": out["learngene"]}
    swapped_scores = {i: sum(v) / len(v) for i, v in swapped.items()}
    assert pick_init(swapped_scores, swapped, 1.5) == "instant"
    assert pick_init(swapped_scores, swapped, 1.5, ("learngene", "instant", "scratch")) == "learngene"


def test_pick_init_weighs_the_probe_when_it_is_scored():
    # Since run P2 `auto` scores the probe at several shots, second in the simplest-first order.
    assert pick_init({"learngene": 0.80, "instant": 0.78, "probe": 0.85}) == "probe"
    assert pick_init({"learngene": 0.80, "probe": 0.80}) == "learngene"  # ties: the learngene individual
    assert pick_init({"instant": 0.80, "probe": 0.80}) == "instant"
    # Simplest first with the probe second: instant 1 of 8 behind the best (1 SE = 0.125) is kept within 1.5 SE,
    # the probe within 1.5 SE of the learngene individual is preferred to it.
    out = {"probe": [1] * 8, "instant": [1] * 7 + [0], "learngene": [1] * 8}
    scores = {i: sum(v) / len(v) for i, v in out.items()}
    order = ("instant", "probe", "learngene", "scratch")
    assert pick_init(scores, out, 1.5, order) == "instant"
    assert pick_init({"probe": 1.0, "learngene": 1.0}, {"probe": [1] * 8, "learngene": [1] * 8}, 1.0, order) == "probe"


def _converted(ds, learngene):
    from learngene import to_input
    return to_input(ds.x, learngene.spec), torch.from_numpy(ds.y)


def test_distillation_pulls_the_learngene_individual_towards_the_instant_model(learngene, task_factory):
    """With the trunk given, the learngene individual also learns the instant model's soft answers."""
    import torch.nn.functional as F
    from learngene.individual import make_net
    support = task_factory(["x", "y", "z"], per_class=3)
    probe = task_factory(["x", "y", "z"], per_class=6, seed=4)
    x, y = _converted(support, learngene)
    px, _ = _converted(probe, learngene)
    trunk = Learngene.whole(learngene_collective())
    teacher = make_net("instant", learngene, trunk, x, y, 3, TrainOptions().resolved())[0]
    with torch.no_grad():
        target = torch.softmax(teacher(px) / 2.0, 1)

    def gap(distill: float, with_trunk: bool = True) -> float:
        o = TrainOptions(init="learngene", epochs=6, distill=distill, seed=1).resolved()
        net = make_net("learngene", learngene, trunk if with_trunk else None, x, y, 3, o)[0].eval()
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(net(px) / 2.0, 1), target, reduction="batchmean"))

    assert gap(20.0) < gap(0.0)
    from learngene.individual import distils
    assert distils("learngene", TrainOptions(), True) and not distils("learngene", TrainOptions(), False)
    assert not distils("learngene", TrainOptions(max_parameters=10**5), True)  # budgets: not distilled (S6)
    assert not distils("scratch", TrainOptions(), True) and not distils("learngene", TrainOptions(distill=0), True)
    assert gap(0.0) == gap(20.0, with_trunk=False)  # no trunk, no teacher: the plain recipe
    with pytest.raises(ValueError, match="distill"):
        TrainOptions(distill=-1).resolved()
