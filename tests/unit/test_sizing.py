"""learngene/sizing.py: individuals built to a parameter budget from one learngene."""
import pytest
import torch

from learngene import InputSpec, Learngene, TrainOptions, train_individual
from learngene.individual import individual_config
from learngene.model import ConvNet, NetConfig, count_parameters
from learngene.sizing import (BudgetTooSmall, STEPS, fitting_plan, ladder_size, parameters_at, parameters_of, plan,
                              sized_net, smallest_budget)

SOURCE = NetConfig(1, [8, 16, 16, 32], [0, 1, 3], [], 0)


def source_net(seed: int = 0) -> ConvNet:
    """A 'collective' with random weights and non-trivial BN statistics and affine parameters."""
    torch.manual_seed(seed)
    net = ConvNet(NetConfig.from_dict(SOURCE.to_dict()))
    with torch.no_grad():
        for b in net.blocks:
            b.bn.weight.uniform_(0.5, 1.5); b.bn.bias.uniform_(-0.2, 0.2)
            b.bn.running_mean.uniform_(-0.1, 0.1); b.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def gene(layers: list[int], net: ConvNet | None = None) -> Learngene:
    net = net or source_net()
    tensors = {k: v.clone() for k, v in net.state_dict().items() if k.startswith(tuple(f"blocks.{p}." for p in layers))}
    return Learngene(NetConfig.from_dict(SOURCE.to_dict()), InputSpec(1, 16), layers, tensors, "test", [], {})


def test_parameter_arithmetic_matches_the_built_net():
    for rung in (0, 7, STEPS - 1, 2 * STEPS + 1):
        p = plan(SOURCE, [1, 2], 5, rung)
        assert parameters_of(p.config) == count_parameters(ConvNet(p.config))
        cosine = NetConfig.from_dict({**p.config.to_dict(), "head": "cosine"})
        assert parameters_of(cosine) == count_parameters(ConvNet(cosine))


def test_rung_at_one_times_width_is_todays_individual():
    p = plan(SOURCE, [1, 2], 5, STEPS - 1)
    assert p.config == individual_config(SOURCE, [1, 2], 5, 0.5)
    assert p.multiplier == 1.0 and not any(p.repeated)


@pytest.mark.parametrize("budget", [3_000, 9_000, 20_000, 60_000])
def test_largest_member_that_fits(budget):
    lg = gene([1, 2])
    net, d = sized_net(lg, 5, budget, seed=1)
    assert count_parameters(net) == d["parameters"] <= budget
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 5)
    for layer, w in zip(d["layers"], net.config.widths):  # shapes follow the derivation
        assert layer["width"] == w
    if d["rung"] + 1 < ladder_size(lg.layers):  # one step larger would not fit
        assert parameters_at(SOURCE, lg.layers, 5, d["rung"] + 1) > budget


def test_too_small_budget_says_the_smallest_that_works():
    lg = gene([1, 2])
    least = smallest_budget(SOURCE, lg.layers, 5)
    with pytest.raises(BudgetTooSmall) as e:
        sized_net(lg, 5, least - 1)
    assert e.value.smallest_budget == least
    net, d = sized_net(lg, 5, least)
    assert count_parameters(net) == least  # the smallest member (or an equal-sized one further up)


@pytest.mark.parametrize("shrink", ["even", "importance"])
def test_shrunk_layers_are_a_consistent_subset_of_the_learngene(shrink):
    src = source_net()
    lg = gene([1, 2], src)
    budget = parameters_at(SOURCE, lg.layers, 5, STEPS // 2 - 1)  # half width
    net, d = sized_net(lg, 5, budget, shrink=shrink)
    rows = {r["position"]: r for r in d["layers"]}
    assert [rows[p]["derived"] for p in (0, 1, 2, 3)] == ["fresh", f"shrunk-{shrink}", f"shrunk-{shrink}", "fresh"]
    out1, out2 = rows[1]["channels"], rows[2]["channels"]
    assert len(set(out1)) == len(out1) == net.config.widths[1] < SOURCE.widths[1]
    w2 = lg.tensors["blocks.2.conv.weight"]
    # layer 2's in-channels are exactly layer 1's kept out-channels
    assert torch.equal(net.blocks[2].conv.weight, w2[out2][:, out1])
    for k in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(net.blocks[1].bn, k), lg.tensors[f"blocks.1.bn.{k}"][out1])
    if shrink == "even":
        assert out1 == [i * SOURCE.widths[1] // len(out1) for i in range(len(out1))]
    else:  # the kept filters are the most important ones
        from learngene.sizing import filter_importance
        scores = filter_importance(lg.tensors, 1)
        assert scores[out1].min() >= scores[[c for c in range(len(scores)) if c not in out1]].max()


@pytest.mark.parametrize("rung", [int(1.5 * STEPS) - 1, 2 * STEPS + 1])  # widened; widened and repeated
def test_widened_and_repeated_layers_preserve_the_function(rung):
    src = source_net()
    whole = gene([0, 1, 2, 3], src)
    budget = parameters_at(SOURCE, whole.layers, 5, rung)
    net, d = sized_net(whole, 5, budget, shrink="importance", seed=3)
    net.eval()
    kinds = {r["derived"] for r in d["layers"]}
    assert "widened" in kinds and ("repeated" in kinds) == (rung >= 2 * STEPS)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        ours, theirs = net.conv_features(x), src.conv_features(x)
    assert ours.shape[1] > theirs.shape[1]
    # every channel of the widened trunk is the source channel it copies: the function is unchanged
    torch.testing.assert_close(ours, theirs[:, d["layers"][-1]["channels"]], atol=1e-5, rtol=1e-5)


def test_scratch_twin_has_the_same_architecture_and_nothing_inherited():
    lg = gene([1, 2])
    a, da = sized_net(lg, 5, 20_000, seed=0)
    b, db = sized_net(lg, 5, 20_000, init="scratch", seed=0)
    assert a.config == b.config and db["inherited"] == [] and set(r["derived"] for r in db["layers"]) == {"fresh"}
    assert not torch.equal(a.blocks[1].conv.weight, b.blocks[1].conv.weight)


def test_fitting_plan_of_depth_rungs_adds_layers_after_widening():
    top = plan(SOURCE, [1, 2], 5, ladder_size([1, 2]) - 1)
    assert top.multiplier == 2.0 and sum(top.repeated) == 2 and len(top.config.widths) == 6
    assert fitting_plan(SOURCE, [1, 2], 5, 10**9).rung == top.rung  # capped at the top of the ladder


def test_train_individual_respects_the_budget(task_factory):
    lg = gene([1, 2])
    support = task_factory(["a", "b", "c"], per_class=3)
    for init in ("learngene", "scratch", "instant", "probe"):
        ind = train_individual(support, lg, TrainOptions(epochs=2, init=init, max_parameters=6_000),
                               trunk=gene([0, 1, 2, 3]))
        assert ind.parameters == ind.metrics["size"]["parameters"] <= 6_000
        assert len(ind.predict(support.x[:2])) == 2
    plain = train_individual(support, lg, TrainOptions(epochs=1, init="learngene"))
    assert plain.net.config == individual_config(SOURCE, [1, 2], 3, 0.5) and "size" not in plain.metrics


def test_layers_that_lost_inputs_re_estimate_their_bn_statistics_on_the_support():
    lg = gene([0, 1, 2])
    budget = parameters_at(SOURCE, lg.layers, 5, STEPS // 2 - 1)
    x = torch.randn(12, 1, 16, 16)
    net, d = sized_net(lg, 5, budget, shrink="even", support=x, refit=False)  # refit: the test below
    rows = {r["position"]: r for r in d["layers"]}
    assert "statistics" not in rows[0] and rows[1]["statistics"] == rows[2]["statistics"] == "re-estimated"
    # layer 0 saw all its inputs: its statistics are the learngene's (sliced)
    assert torch.equal(net.blocks[0].bn.running_mean, lg.tensors["blocks.0.bn.running_mean"][rows[0]["channels"]])
    with torch.no_grad():  # layer 1's statistics are those of its pre-BN input on the support
        h = net.blocks[0](x)
        pre = net.blocks[1].conv(h)
    torch.testing.assert_close(net.blocks[1].bn.running_mean, pre.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert not net.training


def test_a_budget_with_an_ablation_subset_sizes_that_subset():
    from learngene.individual import make_net

    lg = gene([1, 2])
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2] * 2)
    net, inherited, _ = make_net("learngene", lg, None, x, y, 3, TrainOptions(epochs=1, max_parameters=8_000),
                                 layers=[2])
    assert net.derivation["inherited"] == inherited == [2] and count_parameters(net) <= 8_000


def test_refit_makes_shrunk_layers_closer_to_what_the_learngene_computed():
    src = source_net()
    lg = gene([0, 1, 2], src)
    budget = parameters_at(SOURCE, lg.layers, 5, STEPS // 2 - 1)  # half width: layers 1 and 2 lose inputs
    torch.manual_seed(0)
    x = torch.rand(24, 1, 16, 16)

    def error(net, d, i: int) -> float:
        """Relative error of layer i's pre-BN outputs (kept channels) against the source's, on x."""
        with torch.no_grad():
            h, hs = x, x
            for j in range(i):
                h, hs = net.blocks[j](h), src.blocks[j](hs)
            ours, theirs = net.blocks[i].conv(h), src.blocks[i].conv(hs)[:, d["layers"][i]["channels"]]
        return float((ours - theirs).norm() / theirs.norm())

    plain, dp = sized_net(lg, 5, budget, support=x, refit=False)
    refitted, dr = sized_net(lg, 5, budget, support=x, refit=True)
    assert dr["refit"] and not dp["refit"] and plain.config == refitted.config
    assert [r["derived"] for r in dr["layers"][:3]] == ["shrunk-importance", "shrunk-importance, refitted",
                                                      "shrunk-importance, refitted"]
    assert torch.equal(plain.blocks[0].conv.weight, refitted.blocks[0].conv.weight)  # it lost no inputs
    for i in (1, 2):
        assert error(refitted, dr, i) < 0.8 * error(plain, dp, i)
    assert refitted(x).shape == (24, 5) and not refitted.training
