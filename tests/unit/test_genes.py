import json

import pytest
import torch

from learngene import Collective, InputSpec, Learngene


@pytest.fixture(scope="module")
def collective():
    from tests.unit.conftest import make_task
    c = Collective.create(InputSpec(1, 16), preset="tiny", seed=0, heldout_per_class=2)
    for t in range(3):
        c.learn_task(make_task([f"t{t}c{i}" for i in range(4)], per_class=10, seed=t), epochs=3)
    return c


def test_gradient_selection_follows_the_scores(collective):
    lg = Learngene.extract(collective, method="gradient", k=2)
    scores = lg.scores
    best = min([[0, 1], [1, 2]], key=lambda b: sum(scores[i] for i in b))
    assert lg.layers == best and lg.method == "gradient"
    assert len(lg.grad_stats["share"]) == 3 and len(lg.grad_stats["share"][0]) == 3


def test_validated_selection_tries_every_block_and_records_evidence(collective):
    from learngene import ValidationOptions
    from learngene.selection import all_blocks
    lg = Learngene.extract(collective, method="validated", k=2,
                           validation=ValidationOptions(tasks=1, ways=3, shots=1, max_fraction=10.0))
    assert [c["layers"] for c in lg.candidates] == all_blocks(3, 2) == [[0], [0, 1], [0, 1, 2], [1, 2]]
    assert all_blocks(6, 3) == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5],
                                [1, 2, 3], [2, 3, 4], [3, 4, 5]]
    best = max(lg.candidates, key=lambda c: (round(c["accuracy"], 6), -c["parameters"]))["layers"]
    assert lg.layers == best == lg.selections["validated"]
    assert "gradient" in lg.selections
    assert set(lg.strategies["1"]) == {"learngene", "scratch", "instant", "tasks", "paired_se"}
    assert set(lg.strategies["1"]["paired_se"]) <= {"scratch", "instant"}
    back = Learngene.from_bytes(lg.to_bytes())
    assert back.strategies == lg.strategies and back.candidates == lg.candidates


def test_the_parameter_cap_drops_blocks_whose_individual_is_too_big(collective):
    from learngene import ValidationOptions
    from learngene.selection import individual_parameters
    cap = 0.5
    lg = Learngene.extract(collective, method="validated", validation=ValidationOptions(tasks=1, ways=3, shots=1,
                                                                                      max_fraction=cap))
    assert lg.candidates and all(c["parameters"] <= cap * collective.parameters for c in lg.candidates)
    too_big = [b for b in ([0, 1, 2], [1, 2]) if individual_parameters(collective, b, 3) > cap * collective.parameters]
    assert not any(c["layers"] in too_big for c in lg.candidates)


def test_weights_are_copies_of_the_collective(collective):
    lg = Learngene.extract(collective, method="gradient", k=2)
    for p in lg.layers:
        assert torch.equal(lg.tensors[f"blocks.{p}.conv.weight"], collective.net.blocks[p].conv.weight.cpu())
        assert torch.equal(lg.tensors[f"blocks.{p}.bn.running_var"], collective.net.blocks[p].bn.running_var.cpu())
    assert lg.parameters == sum(sum(x.numel() for x in collective.net.blocks[p].parameters()) for p in lg.layers)


def test_export_is_safetensors_with_json_metadata(collective):
    lg = Learngene.extract(collective, method="gradient", k=2)
    blob = lg.to_bytes()
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    meta = json.loads(header["__metadata__"]["learngene"])
    assert meta["layers"] == lg.layers and meta["kind"] == "learngene"
    back = Learngene.from_bytes(blob)
    assert back.layers == lg.layers and back.info()["layer_shapes"] == lg.info()["layer_shapes"]
    with pytest.raises(ValueError):
        Learngene.from_bytes(collective.to_bytes())
    with pytest.raises(ValueError):
        Learngene.from_bytes(b"\x80\x04pickle")
    json.dumps(lg.info())  # the catalog entry is plain JSON
