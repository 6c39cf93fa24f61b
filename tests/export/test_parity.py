import numpy as np
import pytest

from vidsearch.errors import ParityError
from vidsearch.export.parity import BOUNDS, compare, measure, require


def test_error_is_relative_to_the_reference_scale() -> None:
    reference = np.array([[2.0, -4.0], [1.0, 0.0]])
    candidate = reference + np.array([[0.0, 0.004], [0.0, 0.0]])
    abs_err, rel_err, cosine = measure(candidate, reference)
    assert abs_err == pytest.approx(0.004)
    assert rel_err == pytest.approx(0.001)  # 0.004 / max |reference| = 4
    assert 0.99999 < cosine < 1.0


def test_non_finite_output_fails_every_bound() -> None:
    _, rel_err, cosine = measure(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]))
    assert rel_err == float("inf")
    assert cosine == -1.0


def test_a_flipped_embedding_fails_on_cosine_even_with_a_loose_scale() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 1.0]])
    candidate = np.array([[1.0, 0.0], [0.0, -1.0]])
    figures = compare(lambda b: {"E": candidate}, lambda b: {"E": reference}, {"random/2": {"x": reference}},
                      "int8", ("a", "b"))
    assert not figures[0].passed
    with pytest.raises(ParityError, match="does not match its reference"):
        require("m", figures)


def test_fp32_bound_is_1e_4_and_figures_carry_it() -> None:
    reference = np.ones((2, 4), dtype=np.float32)
    cases = {"real/2": {"x": reference}}
    names = ("onnxruntime", "pytorch")
    ok = compare(lambda b: {"E": reference * (1 + 5e-5)}, lambda b: {"E": reference}, cases, "fp32", names)
    bad = compare(lambda b: {"E": reference * (1 + 5e-4)}, lambda b: {"E": reference}, cases, "fp32", names)
    assert BOUNDS["fp32"][0] == 1e-4
    assert ok[0].passed
    assert ok[0].to_dict()["bound"] == 1e-4
    assert (ok[0].inputs, ok[0].batch) == ("real", 2)
    require("m", ok)
    with pytest.raises(ParityError, match=r"EMBEDDING|E .*max rel 5\.00e-04"):
        require("m", bad)
