"""Linear probes on FFN-layer representations, with control tasks (Hewitt & Liang 2019).

* **Representation datasets** (:func:`representations`): activations at any hook (``resid_post``,
  ``post`` = FFN coefficients, ``out`` …) at chosen positions of each prompt (``"last"``, every
  token ``"all"``, or an explicit position per prompt such as the last subject token), saved as a
  :class:`~ffnmem.store.results.Result` with provenance (:func:`dataset_result`, saved by the probe job; :func:`load_dataset`).
* **Probes** follow scikit-learn's estimator contract: :class:`LogisticProbe` (classes),
  :class:`RidgeProbe` (values), :class:`SparseProbe` (L1 logistic; ``top_neurons`` names the units
  that carry the feature).
* **Curves and controls**: :func:`layer_curve` cross-validates a probe at every layer on the task
  and on a *control task* (the same probe on random labels assigned per word type,
  :func:`control_labels`); selectivity = task accuracy − control accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ffnmem.core.errors import BadInput
from ffnmem.core.workbench import Workbench
from ffnmem.methods import capture as cap
from ffnmem.store.provenance import make_provenance, texts_hash
from ffnmem.store.results import Result, table_from_rows

# --- estimators -------------------------------------------------------------------------------


class LogisticProbe(ClassifierMixin, BaseEstimator):
    """Standardised multinomial logistic regression (L2, strength ``1/C``)."""

    def __init__(self, C=1.0, max_iter=500):
        self.C = C
        self.max_iter = max_iter

    def _model(self):
        return LogisticRegression(C=self.C, max_iter=self.max_iter)

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.scaler_ = StandardScaler().fit(X)
        self.model_ = self._model().fit(self.scaler_.transform(X), y)
        self.classes_ = self.model_.classes_
        self.n_iter_ = self.model_.n_iter_
        self.coef_ = self.model_.coef_ / np.where(self.scaler_.scale_ == 0, 1.0, self.scaler_.scale_)
        return self

    def decision_function(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.decision_function(self.scaler_.transform(X))

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.predict_proba(self.scaler_.transform(X))

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.predict(self.scaler_.transform(X))


class SparseProbe(LogisticProbe):
    """L1 logistic regression: most units get weight 0; :meth:`top_neurons` lists the rest."""

    def __init__(self, C=0.05, max_iter=1000):
        self.C = C
        self.max_iter = max_iter

    def _model(self):
        return LogisticRegression(C=self.C, l1_ratio=1.0, solver="saga", max_iter=self.max_iter)

    def top_neurons(self, k: int = 5) -> list[tuple[int, float]]:
        """``(unit, weight)`` with the largest |weight| (max over classes), non-zero only."""
        check_is_fitted(self)
        w = np.abs(self.model_.coef_).max(0)
        order = np.argsort(-w, kind="stable")[:k]
        return [(int(i), float(w[i])) for i in order if w[i] > 0]


class RidgeProbe(RegressorMixin, BaseEstimator):
    """Standardised ridge regression for scalar attributes (``score`` is R²)."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=True)
        self.scaler_ = StandardScaler().fit(X)
        self.model_ = Ridge(alpha=self.alpha).fit(self.scaler_.transform(X), y)
        self.coef_ = self.model_.coef_
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return self.model_.predict(self.scaler_.transform(X))


# --- datasets ---------------------------------------------------------------------------------


def representations(wb: Workbench, prompts: Sequence[str], hooks: Sequence[str],
                    positions: str | Sequence[int] = "last") -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Activations ``{hook: [n_rows, d]}`` and the ``(prompt, position)`` of each row.

    ``positions``: ``"last"``, ``"all"`` (every token but BOS) or one index per prompt (token
    index with BOS at 0; negative counts from the end). Prompts are batched by token length.
    """
    if not prompts:
        raise BadInput("no prompts: give at least one")
    names = [wb.check_hook(h) for h in hooks]
    if not isinstance(positions, str) and len(positions) != len(prompts):
        raise BadInput(f"{len(positions)} positions for {len(prompts)} prompts; give one position per prompt")
    if isinstance(positions, str) and positions not in ("last", "all"):
        raise BadInput(f"positions must be 'last', 'all' or one index per prompt, got {positions!r}")
    ids = [wb.encode(p) for p in prompts]
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(ids):
        wb.check_length(len(row), what=f"prompt {prompts[i][:40]!r}")
        groups.setdefault(len(row), []).append(i)
    rows, parts = [], {n: [] for n in names}
    for length, members in groups.items():
        acts = cap.collect(wb, torch.tensor([ids[i] for i in members]), names, progress=False)
        for j, i in enumerate(members):
            pos = _positions(positions, i, length)
            rows += [(i, p) for p in pos]
            for n in names:
                parts[n].append(acts[n][j, pos].float())
    order = np.lexsort((np.array([p for _, p in rows]), np.array([i for i, _ in rows])))
    where = np.array(rows, dtype=np.int64)[order]
    return {n: torch.cat(parts[n])[torch.from_numpy(order)] for n in names}, where


def _positions(positions, i: int, length: int) -> list[int]:
    if positions == "last":
        return [length - 1]
    if positions == "all":
        return list(range(1 if length > 1 else 0, length))
    p = int(positions[i])
    if not -length <= p < length:
        raise BadInput(f"position {p} is outside prompt {i} ({length} tokens with BOS)")
    return [p % length]


def dataset_result(wb: Workbench, acts: dict[str, torch.Tensor], where: np.ndarray, labels,
                   prompts: Sequence[str]) -> Result:
    """A representation dataset as a Result (tensors per hook, labels, provenance), to cache with ``.save``."""
    rows = [{"prompt": int(i), "position": int(p), "label": str(l), "text": prompts[int(i)]}
            for (i, p), l in zip(where, labels)]
    res = Result(kind="representations", tables={"rows": table_from_rows(rows)},
                 tensors={f"acts/{n}": a for n, a in acts.items()},
                 meta={"hooks": list(acts)}, provenance=make_provenance(wb, data_hash=texts_hash(prompts)))
    return res


def load_dataset(path) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    res = Result.load(path)
    if res.kind != "representations":
        raise BadInput(f"{path} holds a {res.kind!r} result, not a representation dataset")
    t = res.table("rows")
    acts = {n: res.tensors[f"acts/{n}"] for n in res.meta["hooks"]}
    return acts, t[["prompt", "position"]].to_numpy(), t["label"].to_numpy()


# --- curves and controls ----------------------------------------------------------------------


def control_labels(types, labels, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: each word *type* gets a random label, drawn from the task's
    label distribution; every occurrence of the type carries it."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    uniq = list(dict.fromkeys(types))
    drawn = dict(zip(uniq, rng.choice(labels, size=len(uniq), replace=True)))
    return np.array([drawn[t] for t in types])


def check_task(X, y, cv: int) -> None:
    """One-line errors for labels that cannot be probed with ``cv`` folds."""
    y = np.asarray(y)
    if len(y) != len(X):
        raise BadInput(f"{len(y)} labels for {len(X)} examples; give one label per example")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise BadInput(f"only one class ({classes[0]!r}) in the labels; a probe needs at least two")
    if counts.min() < cv:
        raise BadInput(f"class {classes[counts.argmin()]!r} has {counts.min()} examples, fewer than the {cv} "
                       "folds; add examples or lower --folds")


def cv_accuracy(X, y, probe=None, cv: int = 5, seed: int = 0) -> tuple[float, float]:
    check_task(X, y, cv)
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    s = cross_val_score(probe if probe is not None else LogisticProbe(), np.asarray(X), np.asarray(y), cv=folds)
    return float(s.mean()), float(s.std())


def layer_curve(acts: dict[str, torch.Tensor], labels, types=None, *, cv: int = 5, seed: int = 0,
                probe=None) -> list[dict]:
    """Per hook: CV accuracy on the task and on the control task, and selectivity (their gap).

    ``types`` names the word type of each example (e.g. the token at the probed position or the
    subject); without it each example is its own type.
    """
    labels = np.asarray(labels)
    types = list(range(len(labels))) if types is None else list(types)
    ctrl = control_labels(types, labels, seed)
    if len(np.unique(ctrl)) < 2:
        ctrl = control_labels(types, labels, seed + 1)
    rows = []
    for name, X in acts.items():
        X = X.numpy()
        acc, sd = cv_accuracy(X, labels, probe, cv, seed)
        try:
            c_acc, _ = cv_accuracy(X, ctrl, probe, cv, seed)
        except BadInput:  # too few examples of some control class: no control estimate
            c_acc = float("nan")
        rows.append({"hook": name, "accuracy": acc, "accuracy_std": sd, "control": c_acc,
                     "selectivity": acc - c_acc, "majority": float(np.unique(labels, return_counts=True)[1].max()
                                                                   / len(labels))})
    return rows


def selectivity_folds(acts: dict[str, torch.Tensor], labels, types, *, cv: int = 5, draws: int = 5,
                      seed: int = 0, probe=None) -> list[dict]:
    """Task and control-task accuracy per hook, control draw and CV fold (Hewitt & Liang 2019).

    Draw ``d`` assigns every word *type* one control label (:func:`control_labels`, seed
    ``seed * 1000 + d``) and splits the examples into ``cv`` folds (stratified on the task
    labels, same seed); the task and its control are fit and scored on the same folds, so each row
    pairs them. Selectivity is only meaningful when types recur across folds: a type seen once can
    only be guessed, and its control accuracy is chance, not the probe's memorisation capacity.
    """
    labels, types = np.asarray(labels), list(types)
    check_task(np.zeros((len(labels), 1)), labels, cv)
    if len(set(types)) == len(types):
        raise BadInput("every example is its own word type, so the control task reduces to chance; "
                       "give types that recur (e.g. the same subject in several templates)")
    rows = []
    for d in range(draws):
        s = seed * 1000 + d
        ctrl = control_labels(types, labels, s)
        if len(np.unique(ctrl)) < 2:
            raise BadInput(f"control draw {d} gave one label to every type; give more word types")
        folds = list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=s).split(labels, labels))
        for name, X in acts.items():
            X = X.numpy()
            for f, (train, test) in enumerate(folds):
                acc = _fit_score(probe, X, labels, train, test)
                c_acc = _fit_score(probe, X, ctrl, train, test) if len(np.unique(ctrl[train])) > 1 else float(
                    np.mean(ctrl[test] == ctrl[train][0]))  # one control class in training: it predicts it
                rows.append({"hook": name, "draw": d, "fold": f, "accuracy": acc, "control": c_acc,
                             "n_test": len(test)})
    return rows


def _fit_score(probe, X, y, train, test) -> float:
    from sklearn.base import clone

    model = clone(probe if probe is not None else LogisticProbe()).fit(X[train], y[train])
    return float(model.score(X[test], y[test]))
