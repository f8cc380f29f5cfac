import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_sparse.core import density_counts, group_counts, layer_densities, mapped_densities, raw_scale

shape_st = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.tuples(st.integers(1, 32), st.integers(1, 32), st.integers(1, 5), st.integers(1, 5)),
)
shapes_st = st.lists(shape_st, min_size=1, max_size=6).map(lambda l: {f"l{i}": s for i, s in enumerate(l)})


@settings(max_examples=150, deadline=None)
@given(shapes=shapes_st, density=st.floats(0.01, 1.0), dist=st.sampled_from(["uniform", "er", "erk"]))
def test_budget_is_met_and_bounds_hold(shapes, density, dist):
    dens = layer_densities(shapes, density, dist)
    numel = {k: math.prod(s) for k, s in shapes.items()}
    assert all(0.0 <= d <= 1.0 + 1e-12 for d in dens.values())
    assert sum(dens[k] * numel[k] for k in shapes) == pytest.approx(density * sum(numel.values()), rel=1e-9, abs=1e-6)
    counts = density_counts(dens, numel)
    assert sum(counts.values()) == round(sum(dens[k] * numel[k] for k in shapes))
    assert all(0 <= counts[k] <= numel[k] for k in shapes)
    assert all(abs(counts[k] - dens[k] * numel[k]) < 1.0 + 1e-9 for k in shapes)


@settings(max_examples=100, deadline=None)
@given(shapes=shapes_st, density=st.floats(0.05, 0.95))
def test_erk_dense_layers_are_those_with_largest_raw_scale(shapes, density):
    dens = layer_densities(shapes, density, "erk")
    raw = {k: raw_scale(s, "erk") for k, s in shapes.items()}
    for a in shapes:
        for b in shapes:
            if raw[a] > raw[b]:
                assert dens[a] >= dens[b] - 1e-12  # density is monotone in the raw scale


def test_erk_matches_hand_computation_and_dense_loop():
    # small layer's ERK scale would exceed density 1 -> it is made dense, the rest re-solved
    shapes = {"big": (100, 100), "small": (2, 2)}
    dens = layer_densities(shapes, 0.1, "erk")
    assert dens["small"] == 1.0
    assert dens["big"] == pytest.approx((0.1 * 10004 - 4) / 10000)


def test_uniform_is_uniform_and_er_ignores_kernel():
    assert list(layer_densities({"a": (4, 4), "b": (8, 2, 3, 3)}, 0.3, "uniform").values()) == pytest.approx([0.3, 0.3])
    assert raw_scale((8, 2, 3, 3), "er") == raw_scale((8, 2), "er")
    assert raw_scale((8, 2, 3, 3), "erk") == pytest.approx(16 / 144)


def test_capacities_cap_densities_and_budget_too_large_raises():
    dens = layer_densities({"a": (10, 10), "b": (10, 10)}, 0.6, "uniform", capacities={"a": 0.2})
    assert dens["a"] == pytest.approx(0.2) and dens["b"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="allowed regions"):
        layer_densities({"a": (10, 10)}, 0.6, "uniform", capacities={"a": 0.5})


def test_bad_arguments():
    with pytest.raises(ValueError, match="`density`"):
        layer_densities({"a": (2, 2)}, 0.0)
    with pytest.raises(ValueError, match="`distribution` must be one of"):
        layer_densities({"a": (2, 2)}, 0.5, "gaussian")


def test_mapped_densities_exact_name_beats_glob_and_all_covered():
    out = mapped_densities(["m.fc.weight", "m.conv.weight"], {"*": 0.9, "m.fc.weight": 0.5})
    assert out == {"m.fc.weight": 0.5, "m.conv.weight": pytest.approx(0.1)}
    with pytest.raises(ValueError, match="no sparsity for 'm.conv.weight'"):
        mapped_densities(["m.conv.weight"], {"m.fc.*": 0.5})
    with pytest.raises(ValueError, match=r"sparsity in \[0, 1\)"):
        mapped_densities(["a"], {"a": 1.0})


def test_counts_with_unit_sizes_stay_within_one_unit():
    counts = density_counts({"a": 0.5, "b": 0.5}, {"a": 7, "b": 5}, unit_sizes={"a": 9, "b": 1})
    total = counts["a"] * 9 + counts["b"]
    assert abs(total - round(0.5 * 63 + 0.5 * 5)) < 9


@settings(max_examples=150, deadline=None)
@given(caps=st.lists(st.integers(1, 500), min_size=1, max_size=5), share=st.floats(0.0, 1.0))
def test_group_counts_are_exact_proportional_and_bounded(caps, share):
    capacities = {g + 1: c for g, c in enumerate(caps)}
    count = round(share * sum(caps))
    out = group_counts(count, capacities)
    assert sum(out.values()) == count
    assert all(0 <= out[g] <= capacities[g] for g in capacities)
    assert all(abs(out[g] - count * capacities[g] / sum(caps)) < 1.0 for g in capacities)


def test_group_counts_reject_impossible_counts():
    with pytest.raises(ValueError, match=r"`count` must be in \[0, 5\]"):
        group_counts(6, {1: 2, 2: 3})


def test_sizes_weight_the_budget():
    # densities measured on the allowed region sizes, not the parameter sizes
    dens = layer_densities({"a": (10, 10), "b": (10, 10)}, 0.2, "uniform", sizes={"a": 30, "b": 60})
    assert dens == pytest.approx({"a": 0.2, "b": 0.2})
    erk = layer_densities({"a": (10, 10), "b": (10, 40)}, 0.2, "erk", sizes={"a": 50, "b": 100})
    assert erk["a"] * 50 + erk["b"] * 100 == pytest.approx(0.2 * 150)
