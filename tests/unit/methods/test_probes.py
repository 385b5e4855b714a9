import warnings

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import check_estimator

from ffnmem.core.errors import BadInput
from ffnmem.methods import probes as P


@pytest.mark.parametrize("est", [P.LogisticProbe(), P.RidgeProbe()])
def test_sklearn_contract(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(est)


def test_sparse_probe_names_the_informative_unit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 30))
    y = (X[:, 7] > 0).astype(int)
    sp = P.SparseProbe(C=0.1).fit(X, y)
    assert sp.top_neurons(1)[0][0] == 7 and sp.score(X, y) > 0.95


def test_control_labels_are_per_type():
    types = ["a", "b", "a", "c", "b", "a"]
    ctrl = P.control_labels(types, [0, 1, 0, 1, 0, 1], seed=0)
    assert ctrl[0] == ctrl[2] == ctrl[5] and ctrl[1] == ctrl[4]
    assert (ctrl == P.control_labels(types, [0, 1, 0, 1, 0, 1], seed=0)).all()


@pytest.mark.parametrize("y,msg", [([0, 1, 0], "labels for"), ([1] * 10, "only one class"),
                                   ([0] * 8 + [1] * 2, "fewer than the 5 folds")])
def test_bad_labels_one_line(y, msg):
    with pytest.raises(BadInput, match=msg) as e:
        P.cv_accuracy(np.zeros((10, 3)), y, cv=5)
    assert "\n" not in str(e.value)


def test_representations_positions_and_cache(tiny, tmp_path):
    prompts = ["abc", "hello", "xy"]
    acts, where = P.representations(tiny, prompts, ["blocks.0.hook_resid_post"], positions="last")
    assert acts["blocks.0.hook_resid_post"].shape == (3, tiny.d_model)
    assert where.tolist() == [[0, 3], [1, 5], [2, 2]]
    full = tiny.bridge.run_with_cache(tiny.to_tokens("hello"), names_filter="blocks.0.hook_resid_post")[1]
    assert torch.allclose(acts["blocks.0.hook_resid_post"][1], full["blocks.0.hook_resid_post"][0, -1], atol=1e-5)
    every, w2 = P.representations(tiny, prompts, ["blocks.1.mlp.hook_post"], positions="all")
    assert every["blocks.1.mlp.hook_post"].shape[0] == 3 + 5 + 2 == len(w2)
    P.dataset_result(tiny, acts, where, ["x", "y", "x"], prompts).save(tmp_path / "ds")
    a2, w3, lab = P.load_dataset(tmp_path / "ds")
    assert torch.equal(a2["blocks.0.hook_resid_post"], acts["blocks.0.hook_resid_post"]) and list(lab) == ["x", "y", "x"]


def test_bad_hook_and_positions(tiny):
    with pytest.raises(BadInput) as e:
        P.representations(tiny, ["abc"], ["blocks.9.mlp.hook_post"])
    assert "\n" not in str(e.value)
    with pytest.raises(BadInput, match="positions for"):
        P.representations(tiny, ["abc", "de"], ["blocks.0.hook_resid_post"], positions=[1])


def test_selectivity_control_memorises_recurring_types_and_refuses_single_ones():
    # 12 types, each seen 5 times; the task label is a noisy function of a planted direction,
    # each type has its own offset so a probe can also memorise types
    rng = np.random.default_rng(0)
    types = np.repeat(np.arange(12), 5)
    task = types % 2
    X = rng.normal(size=(12, 20))[types] * 3 + rng.normal(size=(60, 20)) * 0.1
    X[:, 0] += 4 * task
    acts = {"h": torch.tensor(X, dtype=torch.float32)}
    rows = P.selectivity_folds(acts, task, types, cv=5, draws=3, probe=P.LogisticProbe(C=1.0))
    assert len(rows) == 3 * 5 and {r["draw"] for r in rows} == {0, 1, 2}
    # types recur across folds, so the control task is learnable (well above the chance of ~0.5):
    assert np.mean([r["control"] for r in rows]) > 0.8
    with pytest.raises(BadInput, match="reduces to chance"):
        P.selectivity_folds(acts, task, list(range(60)), cv=5)


def test_selectivity_task_and_control_share_folds():
    rng = np.random.default_rng(1)
    types = np.repeat(np.arange(10), 4)
    y = types % 2
    acts = {"h": torch.tensor(rng.normal(size=(40, 5)), dtype=torch.float32)}
    a = P.selectivity_folds(acts, y, types, cv=4, draws=2, seed=3)
    b = P.selectivity_folds(acts, y, types, cv=4, draws=2, seed=3)
    assert a == b and all(r["n_test"] == 10 for r in a)
