"""KID and the intensity Wasserstein distance against independent implementations.

References: a direct O(n²) numpy MMD², the formula of torchmetrics 1.9's
``KernelInceptionDistance`` (its ``poly_kernel`` / ``maximum_mean_discrepancy`` read from the
installed source and run in torch, without importing torchvision), and
``scipy.stats.wasserstein_distance``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.stats

from medphys.metrics import intensity_wasserstein, kid
from medphys.metrics._distribution import mmd2_unbiased


def _mmd2_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD², cubic polynomial kernel, by explicit double loops over pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_mmd2_equals_direct_double_sum(rng):
    x = rng.normal(size=(17, 6))
    y = rng.normal(0.4, 1.3, size=(23, 6))
    np.testing.assert_allclose(float(mmd2_unbiased(x, y)), _mmd2_numpy(x, y), rtol=1e-12)


def test_kid_full_sets_is_exact_mmd2_with_zero_std(rng):
    x = rng.normal(size=(20, 5))
    y = rng.normal(0.5, 1.0, size=(20, 5))
    mean, std = kid(x, y, subset_size=20)
    np.testing.assert_allclose(float(mean), _mmd2_numpy(x, y), rtol=1e-12)
    assert float(std) == 0.0


def test_kid_subsets_are_mean_and_population_std_of_subset_mmd2(rng):
    """Each subset draws rows from fold_in(key, i) (set a: fold_in(., 0), set b: fold_in(., 1));
    the result is the mean and the ddof=0 standard deviation of the per-subset MMD²."""
    x = rng.normal(size=(40, 4))
    y = rng.normal(0.3, 1.0, size=(35, 4))
    key = jax.random.key(3)
    mean, std = kid(x, y, subsets=7, subset_size=12, key=key)
    scores = []
    for i in range(7):
        k = jax.random.fold_in(key, i)
        ia = np.asarray(jax.random.permutation(jax.random.fold_in(k, 0), 40))[:12]
        ib = np.asarray(jax.random.permutation(jax.random.fold_in(k, 1), 35))[:12]
        scores.append(_mmd2_numpy(x[ia], y[ib]))
    np.testing.assert_allclose(float(mean), np.mean(scores), rtol=1e-10)
    np.testing.assert_allclose(float(std), np.std(scores), rtol=1e-10)


def _torchmetrics_kid_functions():
    """torchmetrics' own `poly_kernel`, `maximum_mean_discrepancy` and `poly_mmd`, compiled from
    the installed source (importing torchmetrics pulls a torchvision that may not load)."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or spec.origin is None:
        pytest.skip("torchmetrics is not installed")
    source = (Path(spec.origin).parent / "image" / "kid.py").read_text()
    tree = ast.parse(source)
    wanted = {"poly_kernel", "maximum_mean_discrepancy", "poly_mmd"}
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {f.name for f in funcs} == wanted
    namespace = {"torch": torch, "Tensor": torch.Tensor, "Optional": __import__("typing").Optional}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), "kid.py", "exec"), namespace)
    return torch, namespace["poly_mmd"]


def test_kid_formula_equals_torchmetrics(rng):
    torch, poly_mmd = _torchmetrics_kid_functions()
    x = rng.normal(size=(30, 8))
    y = rng.normal(0.2, 1.1, size=(30, 8))
    ours = float(kid(x, y, subset_size=30)[0])
    theirs = float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_kid_near_zero_for_one_distribution_and_positive_for_two(rng):
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8))
    c = rng.normal(0.5, 1.0, size=(400, 8))
    key = jax.random.key(0)
    same, same_std = kid(a, b, subsets=20, subset_size=100, key=key)
    diff, _ = kid(a, c, subsets=20, subset_size=100, key=key)
    assert abs(float(same)) < 3 * float(same_std) + 1e-3
    assert float(diff) > 10 * abs(float(same))


@pytest.mark.parametrize(("n", "m"), [(7, 5), (100, 37), (3, 3), (1, 4), (64, 64)])
def test_intensity_wasserstein_equals_scipy(rng, n, m):
    a = rng.normal(size=n)
    b = rng.normal(1.0, 2.0, size=m)
    np.testing.assert_allclose(
        float(intensity_wasserstein(a, b)), scipy.stats.wasserstein_distance(a, b), rtol=1e-12
    )


def test_intensity_wasserstein_pools_all_pixels_of_image_sets(rng):
    a = rng.normal(40.0, 20.0, size=(6, 8, 8))
    b = rng.normal(60.0, 25.0, size=(4, 8, 8))
    expected = scipy.stats.wasserstein_distance(a.ravel(), b.ravel())
    np.testing.assert_allclose(float(intensity_wasserstein(a, b)), expected, rtol=1e-12)
    # a shift by 20 HU moves the distribution by exactly 20
    np.testing.assert_allclose(float(intensity_wasserstein(a, a + 20.0)), 20.0, rtol=1e-12)
    assert float(intensity_wasserstein(a, a)) == 0.0


def test_bad_input_is_refused_with_the_call_named(rng):
    x = rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match=r"medphys\.metrics\.kid: `features_a` and `features_b`"):
        kid(x, rng.normal(size=(10, 5)))
    with pytest.raises(ValueError, match="`subset_size` must not exceed"):
        kid(x, x, subset_size=11)
    with pytest.raises(ValueError, match="`key` is required"):
        kid(x, rng.normal(size=(12, 4)), subset_size=5)
    with pytest.raises(ValueError, match="must be 2-D"):
        kid(rng.normal(size=(10,)), x)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="`features_b` must be finite"):
        kid(x, bad)
    with pytest.raises(ValueError, match=r"intensity_wasserstein: `b` must be finite"):
        intensity_wasserstein(x, np.full((3, 3), np.inf))
    with pytest.raises(ValueError, match="must not be empty"):
        intensity_wasserstein(x, np.zeros((0,)))
    json.dumps(float(kid(x, x, subset_size=10)[0]))
