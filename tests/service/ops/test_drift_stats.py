"""The drift statistics: binning, PSI, and the reference builder the exporter and the server share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from service.ops import drift_stats as ds
from service.schema import ModelMetadata, Reference, ReferenceGroup


# ----- PSI ------------------------------------------------------------------------------------------------
def test_psi_is_zero_for_the_reference_itself_and_grows_with_the_shift() -> None:
    expected = [0.25, 0.25, 0.25, 0.25]
    assert ds.psi(expected, np.array([25, 25, 25, 25])) == pytest.approx(0.0, abs=1e-12)
    small = ds.psi(expected, np.array([30, 25, 25, 20]))
    large = ds.psi(expected, np.array([70, 10, 10, 10]))
    assert 0 < small < ds.STABLE < ds.DRIFT < large


def test_psi_matches_the_formula_by_hand() -> None:
    # (0.8 - 0.5) ln(0.8 / 0.5) + (0.2 - 0.5) ln(0.2 / 0.5)
    by_hand = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert ds.psi([0.5, 0.5], np.array([80, 20])) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.4159, abs=1e-4)


def test_psi_floors_empty_bins_at_epsilon() -> None:
    # An observed bin left empty counts as EPSILON, so the score stays finite.
    by_hand = 0.5 * math.log(1 / 0.5) + (ds.EPSILON - 0.5) * math.log(ds.EPSILON / 0.5)
    assert ds.psi([0.5, 0.5], np.array([100, 0])) == pytest.approx(by_hand, rel=1e-9)
    # A bin empty on both sides adds nothing.
    assert ds.psi([0.5, 0.5, 0.0], np.array([50, 50, 0])) == pytest.approx(0.0, abs=1e-12)
    # A bin empty in the reference but seen now adds (o - eps) ln(o / eps).
    by_hand = 2 * (0.45 - 0.5) * math.log(0.45 / 0.5) + (0.1 - ds.EPSILON) * math.log(0.1 / ds.EPSILON)
    assert ds.psi([0.5, 0.5, 0.0], np.array([45, 45, 10])) == pytest.approx(by_hand, rel=1e-9)


def test_psi_of_nothing_observed_is_nan() -> None:
    assert math.isnan(ds.psi([0.5, 0.5], np.array([0, 0])))


# ----- binning -------------------------------------------------------------------------------------------
def test_bins_are_left_closed_with_open_outer_bins() -> None:
    edges = [1.0, 2.0, 3.0]
    values = np.array([[-5.0, 0.999, 1.0, 1.5, 2.0, 2.999, 3.0, 1e9]], np.float32)
    counts = ds.row_histograms(values, edges, 4, categorical=False)
    assert counts.tolist() == [[2, 2, 2, 2]]


def test_row_histograms_agree_with_searchsorted_and_bincount() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 256, (50, 784)).astype(np.float32)  # pixel-like: many values on the edges
    edges = ds.even_edges(0.0, 255.0, 16)
    got = ds.row_histograms(values, edges, len(edges) + 1, categorical=False)
    index = np.searchsorted(np.asarray(edges), values, side="right")
    want = np.stack([np.bincount(row, minlength=len(edges) + 1) for row in index])
    assert got.shape == (50, 16) and (got == want).all()
    assert (got.sum(axis=1) == 784).all()


def test_categorical_bins_count_each_class() -> None:
    classes = np.array([[0], [2], [2], [1], [2]])
    counts = ds.row_histograms(classes, [], 3, categorical=True)
    assert counts.sum(axis=0).tolist() == [1, 1, 3]
    assert counts.tolist()[1] == [0, 0, 1]


def test_predicted_class_is_argmax_or_the_sigmoid_threshold() -> None:
    softmax = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32)
    assert ds.predicted_class(softmax).tolist() == [1, 0]
    sigmoid = np.array([[0.2], [0.51], [0.5]], np.float32)
    assert ds.predicted_class(sigmoid).tolist() == [0, 1, 0]


def test_statistic_values_per_kind() -> None:
    images = np.arange(2 * 2 * 2 * 1, dtype=np.float32).reshape(2, 2, 2, 1)  # [[0,1,2,3],[4,5,6,7]]
    outputs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    assert ds.statistic_values("pixel_intensity", images, outputs).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert ds.statistic_values("ink_mass", images, outputs).tolist() == [[1.5], [5.5]]
    assert ds.statistic_values("input_feature", images, outputs, 2).tolist() == [[2], [6]]
    assert ds.statistic_values("predicted_class", images, outputs).tolist() == [[0], [1]]
    assert ds.statistic_values("output_value", images, outputs).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown drift statistic 'nope'"):
        ds.statistic_values("nope", images, outputs)


def test_quantile_edges_merge_repeated_values() -> None:
    rng = np.random.default_rng(0)
    assert len(ds.quantile_edges(rng.normal(size=10_000), 10)) == 9
    assert ds.quantile_edges(np.array([1.0] * 60 + [2.0] * 40), 10) == [1.0, 2.0]
    assert ds.even_edges(5.0, 5.0, 16) == [5.0]


# ----- the reference builder ----------------------------------------------------------------------------
def test_image_reference_has_intensity_ink_mass_and_classes() -> None:
    rng = np.random.default_rng(1)
    images = np.round(rng.uniform(0, 255, (400, 8, 8, 1))).astype(np.float32)
    outputs = rng.dirichlet(np.ones(3), 400).astype(np.float32)
    ref = ds.build_reference(images, outputs, ["a", "b", "c"], "test rows")
    groups = {g.name: g for g in ref.groups}
    assert list(groups) == ["intensity", "ink_mass", "prediction"]
    assert ref.rows == 400 and ref.source == "test rows"
    assert len(groups["intensity"].proportions) == ds.INTENSITY_BINS
    assert groups["intensity"].edges[0] == pytest.approx(255 / 16, rel=1e-5)
    ink = groups["ink_mass"].proportions
    assert len(ink) == ds.REFERENCE_BINS and max(abs(p - 0.1) for p in ink) < 0.02  # deciles
    classes = np.bincount(outputs.argmax(axis=1), minlength=3) / 400
    assert groups["prediction"].proportions == pytest.approx(classes.tolist(), abs=1e-6)
    for group in ref.groups:
        assert sum(group.proportions) == pytest.approx(1.0, abs=1e-5)


def test_tabular_reference_has_a_group_per_feature_and_a_prediction() -> None:
    rng = np.random.default_rng(2)
    features = np.column_stack([rng.normal(size=300), rng.integers(1, 3, 300)]).astype(np.float32)
    prediction = rng.normal(size=(300, 1)).astype(np.float32)
    ref = ds.build_reference(features, prediction, None, "rows")
    names = [g.name for g in ref.groups]
    assert names == ["f0", "f1", "prediction"]
    f1 = ref.groups[1]
    assert (f1.statistic, f1.index, f1.edges) == ("input_feature", 1, [1.0, 2.0])
    assert f1.proportions[0] == 0.0 and sum(f1.proportions[1:]) == pytest.approx(1.0)
    assert ref.groups[2].statistic == "output_value" and len(ref.groups[2].proportions) == 10
    binary = ds.build_reference(features, rng.uniform(size=(300, 1)), ["no", "yes"], "rows")
    assert binary.groups[-1].statistic == "predicted_class" and len(binary.groups[-1].proportions) == 2


def test_wide_rows_get_no_per_feature_groups() -> None:
    wide = np.zeros((20, ds.MAX_FEATURES + 1), np.float32)
    ref = ds.build_reference(wide, np.zeros((20, 1), np.float32), None, "rows")
    assert [g.name for g in ref.groups] == ["prediction"]


def test_builder_refuses_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="same, non-zero number of input and output rows, got 3 and 2"):
        ds.build_reference(np.zeros((3, 2)), np.zeros((2, 1)), None, "rows")


# ----- the schema ---------------------------------------------------------------------------------------
GOOD = {
    "name": "f0",
    "statistic": "input_feature",
    "index": 0,
    "edges": [1.0, 2.0],
    "proportions": [0.2, 0.3, 0.5],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"edges": [2.0, 1.0]}, "strictly ascending"),
        ({"edges": [1.0, float("inf")]}, "finite"),
        ({"proportions": [0.5, 0.5]}, "2 edges make 3 bins, got 2 proportions"),
        ({"proportions": [0.2, 0.3, 0.6]}, "sum to 1"),
        ({"index": None}, "index goes with input_feature"),
        ({"statistic": "ink_mass"}, "index goes with input_feature"),
        ({"statistic": "predicted_class", "index": None}, "predicted_class takes no edges"),
        ({"name": "Bad Name"}, "String should match pattern"),
    ],
)
def test_reference_group_schema_refuses_inconsistent_groups(change: dict, message: str) -> None:
    ReferenceGroup.model_validate(GOOD)
    with pytest.raises(ValidationError, match=message):
        ReferenceGroup.model_validate({**GOOD, **change})


def test_reference_schema_refuses_duplicate_names() -> None:
    with pytest.raises(ValidationError, match="group names must be unique"):
        Reference.model_validate({"rows": 1, "source": "x", "groups": [GOOD, GOOD]})


def test_metadata_without_a_reference_stays_valid() -> None:
    from bench.synthetic import synthetic_metadata

    meta = synthetic_metadata(
        "m", 1, inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": [-1, 4]}], example={"x": [[1, 2, 3, 4]]},
    )  # fmt: skip
    document = meta.model_dump(mode="json")
    document.pop("reference")
    assert ModelMetadata.model_validate(document).reference is None
