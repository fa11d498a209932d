"""The built-in FlatENN models: found by name, same architecture, formats, normalisation
and class names as the conventional model, and recipes naming their method."""

import pytest

from numharden.io import builtin_names, load_model

FLATENN = {"lenet5-fmnist-w4a4": ("plain", False, 20),
           "lenet5-fmnist-w4a4-sparse": ("plain", True, 20),
           "lenet5-fmnist-w4a4-saq": ("saq", False, 10),
           "lenet5-fmnist-w4a4-sparse-saq": ("saq", True, 10)}


def test_flatenn_models_are_built_in():
    assert set(FLATENN) <= set(builtin_names())


@pytest.mark.parametrize("name", sorted(FLATENN))
def test_flatenn_model_recipes(name):
    method, sparse, epochs = FLATENN[name]
    ref, m = load_model("lenet5-fmnist-w4a4"), load_model(name)
    assert [(n.name, n.op) for n in m.graph.nodes] == [(n.name, n.op) for n in ref.graph.nodes]
    assert {k: p.fmt.spec for k, p in m.params.items()} == \
           {k: p.fmt.spec for k, p in ref.params.items()}
    assert m.meta["normalization"] == ref.meta["normalization"]
    assert m.meta["class_names"] == ref.meta["class_names"]
    rec = m.meta["training"]["recipe"]
    assert rec["step"]["name"] == method and ("act_l1" in rec["step"]) == sparse
    assert rec["epochs"] == epochs and rec["data"]["n"] == 60000
    assert m.meta["training"]["results"]["test_accuracy"] > 0.89
