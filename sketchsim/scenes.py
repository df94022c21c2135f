"""Scenes of real handwritten digits and a small modular network over them (paper §1.1).

Data: scikit-learn's bundled ``load_digits`` (1797 grey 8×8 images, nothing downloaded; the extra
``sketchsim[scenes]``). A *scene* is a canvas of up to four slots (a 2×2 grid, 16×16 pixels), each
holding one digit image or nothing, drawn from a seed (:func:`compose_scenes`).

The modular network (:class:`DigitNet`, trained by :func:`train_digit_net`) is a one-hidden-layer
ReLU perceptron trained in plain NumPy (full-batch Adam, deterministic per seed, under a second);
scikit-learn only supplies the data. Its communication graph (:func:`scene_graph`) for one scene is::

    output ──1──▶ scene  (module "scene")
                    │  inputs in slot order (tuple position i = slot i), weight conf/n_slots
                    ▼
                  digit  (module "digit-<predicted class>", e.g. "digit-7"; "empty" for an empty slot)
                    │  optional, patches=True: the 4 quadrants in reading order, weight = ink share
                    ▼
                  patch  (module "patch")

* digit attributes: the network's real hidden ReLU activations of the image, scaled to unit ℓ2
  (nonnegative by construction; an all-zero activation falls back to the uniform unit vector);
* digit weight: the network's confidence (its maximum softmax probability, in (0, 1]) divided by
  the number of slots, so the scene's input weights sum to at most 1; ``weights="uniform"`` uses
  1/n_slots instead (every digit then has the common effective weight w* = 1/n_slots that
  Theorem 3's count needs);
* an empty slot is an object of module ``"empty"`` with weight 0 (it keeps the slot's tuple
  position and adds nothing to the sketch);
* scene attributes: the sum of the digits' class-probability vectors, scaled to unit ℓ2;
* patch attributes (depth 4): the quadrant's 16 pixel intensities, unit ℓ2; weight = the
  quadrant's share of the digit's ink (an inkless quadrant gets weight 0).

Depths: scene 2, digits 3, patches 4. Every sketch and decoder of the package applies unchanged.

Trained weights are cached as ``.npz`` (arrays only, loaded with ``allow_pickle=False``) under
``cache_dir`` (default ``results/cache/scenes`` relative to the working directory), keyed by the
seed and a SHA-256 of the data and the training settings: a change of either retrains.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._io import atomic_save_npz
from ._rng import check_seed
from ._validation import check_int
from .graph import Graph

__all__ = ["DigitNet", "Scene", "load_digit_data", "data_hash", "train_digit_net", "compose_scenes",
           "scene_graph", "scene_graphs", "DEFAULT_CACHE_DIR", "N_SLOTS"]

DEFAULT_CACHE_DIR = os.path.join("results", "cache", "scenes")
N_SLOTS = 4
IMAGE_SIDE = 8
TRAINING_VERSION = 1          # bump when the training recipe changes (invalidates caches)
LEARNING_RATE = 1e-2


def _sklearn(what):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(
            f"{what} needs scikit-learn, an optional dependency: pip install 'sketchsim[scenes]' "
            "(or pip install scikit-learn)") from None


def load_digit_data():
    """The digits data set bundled with scikit-learn (nothing is downloaded).

    Returns
    -------
    X : ndarray of shape (1797, 64), float64 in [0, 1]
        Pixel intensities (the data set's 0..16 scaled by 1/16), rows in reading order.
    y : ndarray of shape (1797,), int64
        Labels 0..9.
    """
    _sklearn("load_digit_data")
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.asarray(d.data, dtype=np.float64) / 16.0, np.asarray(d.target, dtype=np.int64)


def data_hash(X, y):
    """SHA-256 (hex) of a data set's shapes and values: the cache key of the data."""
    X = np.ascontiguousarray(X, dtype="<f8")
    y = np.ascontiguousarray(y, dtype="<i8")
    h = hashlib.sha256()
    h.update(json.dumps([list(X.shape), list(y.shape)]).encode())
    h.update(X.tobytes())
    h.update(y.tobytes())
    return h.hexdigest()


def _check_data(data):
    if data is None:
        return load_digit_data()
    try:
        X, y = data
    except (TypeError, ValueError):
        raise ValueError("data must be a pair (X, y) of arrays of shapes (n, 64) and (n,); got "
                         f"{type(data).__name__}") from None
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != IMAGE_SIDE * IMAGE_SIDE or y.shape != (X.shape[0],):
        raise ValueError(f"data must be (X, y) of shapes (n, 64) and (n,); got {X.shape} and {y.shape}")
    if not np.all(np.isfinite(X)) or (X < 0).any():
        raise ValueError("data X must be finite and nonnegative (pixel intensities)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"data y must hold integer labels; got dtype {y.dtype}")
    return X, y.astype(np.int64)


# --------------------------------------------------------------------------- the network
@dataclass(frozen=True, eq=False)
class DigitNet:
    """A trained digit module: x ↦ h = ReLU(x W1 + b1) ↦ softmax(h W2 + b2).

    Attributes
    ----------
    W1, b1, W2, b2 : ndarray
        Weights (64 × H, H, H × C, C).
    classes : ndarray of shape (C,)
        The labels it was trained on (all ten, or a subset such as 0–7).
    seed : int
    data_hash : str
        :func:`data_hash` of the data it was trained on.
    train_idx, test_idx : ndarray of int
        Rows of that data used for training and held out (both only of ``classes``; a
        stratified split drawn from the seed).
    from_cache : bool
        Whether this object was loaded from the cache rather than trained.
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    classes: np.ndarray
    seed: int
    data_hash: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    from_cache: bool = field(default=False)

    @property
    def n_hidden(self):
        return self.W1.shape[1]

    def _images(self, X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 3:
            X = X.reshape(X.shape[0], -1)
        if X.ndim != 2 or X.shape[1] != self.W1.shape[0]:
            raise ValueError(f"images must have shape (n, {self.W1.shape[0]}) or (n, 8, 8); got {np.shape(X)}")
        return X

    def hidden(self, X):
        """Hidden ReLU activations, shape (n, H) (nonnegative)."""
        return np.maximum(self._images(X) @ self.W1 + self.b1, 0.0)

    def proba(self, X):
        """Class probabilities, shape (n, C), columns in the order of :attr:`classes`."""
        z = self.hidden(X) @ self.W2 + self.b2
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted labels, shape (n,)."""
        return self.classes[np.argmax(self.proba(X), axis=1)]

    def features(self, X):
        """Digit attributes: hidden activations scaled to unit ℓ2, shape (n, H); an all-zero row
        becomes the uniform unit vector 1/√H."""
        h = self.hidden(X)
        norm = np.linalg.norm(h, axis=1, keepdims=True)
        out = np.full_like(h, 1.0 / np.sqrt(h.shape[1]))
        ok = norm[:, 0] > 0
        out[ok] = h[ok] / norm[ok]
        return out

    def accuracy(self, X, y):
        """Fraction of correct predictions."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def arrays(self):
        """Everything that identifies the trained module, as arrays (the cache file's content)."""
        return {"W1": self.W1, "b1": self.b1, "W2": self.W2, "b2": self.b2, "classes": self.classes,
                "seed": np.int64(self.seed), "data_hash": np.array(self.data_hash),
                "train_idx": self.train_idx, "test_idx": self.test_idx}


def _split(y, classes, test_fraction, seed):
    rng = np.random.default_rng([seed, 0x5C3E])
    train, test = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _settings_key(dhash, classes, hidden, test_fraction, max_iter):
    text = json.dumps({"data": dhash, "classes": [int(c) for c in classes], "hidden": hidden,
                       "test_fraction": test_fraction, "max_iter": max_iter, "version": TRAINING_VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def train_digit_net(seed=0, *, classes=None, hidden=32, data=None, cache_dir=DEFAULT_CACHE_DIR,
                    test_fraction=0.25, max_iter=400, retrain=False):
    """Train (or load from the cache) the digit module, deterministically per seed.

    Parameters
    ----------
    seed : int
        Seeds the stratified train/test split and the initialisation.
    classes : sequence of int, optional
        Train on these labels only (e.g. ``range(8)``, leaving 8 and 9 as concepts the network has
        never seen). Default: every label in the data.
    hidden : int
        Hidden units H (the digit attributes' length).
    data : (X, y), optional
        Images of shape (n, 64) with values ≥ 0 and integer labels; default
        :func:`load_digit_data`.
    cache_dir : str or PathLike or None
        Folder of the cache (created on demand); None disables caching.
    test_fraction : float
        Share of each class held out (:attr:`DigitNet.test_idx`).
    max_iter : int
        Full-batch Adam steps.
    retrain : bool
        Ignore (and overwrite) a cached model.

    Returns
    -------
    DigitNet
    """
    seed = check_seed(seed)
    hidden = check_int("hidden", hidden, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction!r}")
    X, y = _check_data(data)
    present = np.unique(y)
    if classes is None:
        classes = present
    else:
        classes = np.unique(np.asarray(list(classes), dtype=np.int64))
        missing = sorted(set(classes.tolist()) - set(present.tolist()))
        if missing or len(classes) < 2:
            raise ValueError(f"classes must be at least two labels present in the data {present.tolist()}; got "
                             f"{classes.tolist()}")
    dhash = data_hash(X, y)
    key = _settings_key(dhash, classes, hidden, test_fraction, max_iter)
    path = None
    if cache_dir is not None:
        path = os.path.join(os.fspath(cache_dir), f"digitnet-seed{seed}-{key[:16]}.npz")
        if not retrain and os.path.exists(path):
            net = _load(path, seed, dhash, key)
            if net is not None:
                return net
    net = _train(X, y, classes, seed, hidden, test_fraction, max_iter, dhash)
    if path is not None:
        arrays = net.arrays()
        arrays["key"] = np.array(key)
        atomic_save_npz(path, arrays)
    return net


def _load(path, seed, dhash, key):
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key or int(z["seed"]) != seed or str(z["data_hash"]) != dhash:
                return None
            return DigitNet(z["W1"], z["b1"], z["W2"], z["b2"], z["classes"], seed, dhash, z["train_idx"],
                            z["test_idx"], from_cache=True)
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"ignoring the unreadable cached model {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None


def _train(X, y, classes, seed, hidden, test_fraction, max_iter, dhash):
    """Full-batch Adam on softmax cross-entropy + ½·1e-4‖W‖², He initialisation from the seed.

    Plain NumPy on one BLAS thread: bit-identical for a seed on a given machine, ≈ 0.5 s here."""
    from threadpoolctl import threadpool_limits

    train_idx, test_idx = _split(y, classes, test_fraction, seed)
    Xt = X[train_idx]
    Y = (y[train_idx][:, None] == classes[None, :]).astype(np.float64)
    n, p = Xt.shape
    rng = np.random.default_rng([seed, 0x7EA1])
    params = [rng.standard_normal((p, hidden)) * np.sqrt(2.0 / p), np.zeros(hidden),
              rng.standard_normal((hidden, len(classes))) * np.sqrt(2.0 / hidden), np.zeros(len(classes))]
    m = [np.zeros_like(a) for a in params]
    v = [np.zeros_like(a) for a in params]
    beta1, beta2, lr, l2, eps = 0.9, 0.999, LEARNING_RATE, 1e-4, 1e-8
    with threadpool_limits(1):
        for t in range(1, max_iter + 1):
            W1, c1, W2, c2 = params
            Z = Xt @ W1 + c1
            H = np.maximum(Z, 0.0)
            L = H @ W2 + c2
            L -= L.max(axis=1, keepdims=True)
            P = np.exp(L)
            P /= P.sum(axis=1, keepdims=True)
            G = (P - Y) / n
            GH = (G @ W2.T) * (Z > 0)
            grads = (Xt.T @ GH + l2 * W1, GH.sum(axis=0), H.T @ G + l2 * W2, G.sum(axis=0))
            for i, g in enumerate(grads):
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                params[i] = params[i] - lr * (m[i] / (1 - beta1 ** t)) / (np.sqrt(v[i] / (1 - beta2 ** t)) + eps)
    W1, b1, W2, b2 = params
    return DigitNet(W1, b1, W2, b2, classes.copy(), seed, dhash, train_idx, test_idx)


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True, eq=False)
class Scene:
    """A canvas of ``n_slots`` slots, each holding a digit image or nothing.

    Attributes
    ----------
    slots : tuple of (int or None)
        Per slot, the row of the data set drawn there, or None for an empty slot.
    images : ndarray of shape (n_slots, 8, 8)
        The slot images (zeros where empty).
    labels : tuple of (int or None)
        True labels per slot.
    """

    slots: tuple
    images: np.ndarray
    labels: tuple

    @property
    def occupied(self):
        """Indices (0-based) of the slots that hold a digit."""
        return tuple(i for i, s in enumerate(self.slots) if s is not None)

    @property
    def canvas(self):
        """The scene as one image: slots on a grid of 2 columns, row-major (16×16 for 4 slots)."""
        n = len(self.slots)
        rows = (n + 1) // 2
        out = np.zeros((rows * IMAGE_SIDE, 2 * IMAGE_SIDE))
        for i in range(n):
            r, c = divmod(i, 2)
            out[r * IMAGE_SIDE:(r + 1) * IMAGE_SIDE, c * IMAGE_SIDE:(c + 1) * IMAGE_SIDE] = self.images[i]
        return out


def compose_scenes(n, seed=0, *, pool=None, data=None, n_slots=N_SLOTS, p_empty=0.25, min_digits=1):
    """Draw ``n`` scenes: each slot is empty with probability ``p_empty``, else holds a digit drawn
    uniformly from ``pool``; every scene holds at least ``min_digits`` digits.

    Parameters
    ----------
    n : int
    seed : int
    pool : sequence of int, optional
        Rows of the data to draw from (e.g. ``net.test_idx`` for held-out digits). Default: all.
    data : (X, y), optional
        Default :func:`load_digit_data`.
    n_slots : int
        Slots per canvas (1..4 by default: a 2×2 grid).
    p_empty : float in [0, 1)
    min_digits : int in 1..n_slots

    Returns
    -------
    list of Scene
    """
    n = check_int("n", n, minimum=1)
    seed = check_seed(seed)
    n_slots = check_int("n_slots", n_slots, minimum=1)
    min_digits = check_int("min_digits", min_digits, minimum=1)
    if min_digits > n_slots:
        raise ValueError(f"min_digits must be at most n_slots={n_slots}; got {min_digits}")
    p_empty = float(p_empty)
    if not 0.0 <= p_empty < 1.0:
        raise ValueError(f"p_empty must lie in [0, 1); got {p_empty!r}")
    X, y = _check_data(data)
    pool = np.arange(len(y)) if pool is None else np.asarray(pool, dtype=np.int64)
    if pool.ndim != 1 or len(pool) == 0 or pool.min() < 0 or pool.max() >= len(y):
        raise ValueError(f"pool must be a nonempty list of data rows in 0..{len(y) - 1}")
    rng = np.random.default_rng([seed, 0x5CE4E])
    scenes = []
    for _ in range(n):
        full = rng.random(n_slots) >= p_empty
        while full.sum() < min_digits:
            full = rng.random(n_slots) >= p_empty
        picks = rng.choice(pool, size=n_slots)
        slots = tuple(int(p) if f else None for p, f in zip(picks, full))
        images = np.zeros((n_slots, IMAGE_SIDE, IMAGE_SIDE))
        for i, s in enumerate(slots):
            if s is not None:
                images[i] = X[s].reshape(IMAGE_SIDE, IMAGE_SIDE)
        labels = tuple(None if s is None else int(y[s]) for s in slots)
        scenes.append(Scene(slots, images, labels))
    return scenes


def _unit_or_uniform(v):
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else np.full(len(v), 1.0 / np.sqrt(len(v)))


def _patch_objects(digit_id, image):
    """The 4 quadrant patches of an 8×8 image (reading order) and their ink-share weights."""
    h = IMAGE_SIDE // 2
    quads = [image[r:r + h, c:c + h].ravel() for r in (0, h) for c in (0, h)]
    ink = np.array([q.sum() for q in quads])
    w = ink / ink.sum() if ink.sum() > 0 else np.zeros(4)
    objs, inputs = [], []
    for k, q in enumerate(quads):
        pid = f"{digit_id}-patch{k + 1}"
        objs.append({"id": pid, "module": "patch", "attributes": _unit_or_uniform(q).tolist()})
        inputs.append({"id": pid, "weight": float(w[k])})
    return objs, inputs


def scene_graphs(scenes, net, *, patches=False, weights="confidence"):
    """:func:`scene_graph` for many scenes, with one network evaluation for all their digits."""
    if weights not in ("confidence", "uniform"):
        raise ValueError(f"weights must be 'confidence' or 'uniform'; got {weights!r}")
    if not isinstance(net, DigitNet):
        raise ValueError(f"net must be a DigitNet (train_digit_net); got {type(net).__name__}")
    scenes = list(scenes)
    for k, sc in enumerate(scenes):
        if not isinstance(sc, Scene):
            raise ValueError(f"scenes[{k}] must be a Scene (compose_scenes); got {type(sc).__name__}")
        if not sc.occupied:
            raise ValueError(f"scenes[{k}] must hold at least one digit; got an empty canvas")
    where = [(k, i) for k, sc in enumerate(scenes) for i in sc.occupied]
    imgs = np.array([scenes[k].images[i].ravel() for k, i in where]).reshape(len(where), -1)
    feats = net.features(imgs)
    proba = net.proba(imgs)
    row = {ki: r for r, ki in enumerate(where)}
    graphs = []
    for k, sc in enumerate(scenes):
        n_slots = len(sc.slots)
        objects, scene_inputs = [], []
        scene_attr = np.zeros(len(net.classes))
        for i in range(n_slots):
            oid = f"slot{i + 1}"
            if sc.slots[i] is None:
                objects.append({"id": oid, "module": "empty", "attributes": [1.0]})
                scene_inputs.append({"id": oid, "weight": 0.0})
                continue
            r = row[(k, i)]
            c = int(np.argmax(proba[r]))
            conf = float(proba[r, c])
            obj = {"id": oid, "module": f"digit-{int(net.classes[c])}", "attributes": feats[r].tolist()}
            if patches:
                pobjs, pins = _patch_objects(oid, sc.images[i])
                obj["inputs"] = pins
                objects += pobjs
            objects.append(obj)
            w = conf / n_slots if weights == "confidence" else 1.0 / n_slots
            scene_inputs.append({"id": oid, "weight": w})
            scene_attr += proba[r]
        objects.append({"id": "scene", "module": "scene", "attributes": _unit_or_uniform(scene_attr).tolist(),
                        "inputs": scene_inputs})
        graphs.append(Graph(objects, [{"id": "scene", "weight": 1.0}]))
    return graphs


def scene_graph(scene, net, *, patches=False, weights="confidence"):
    """The communication graph of the modular network on one scene (module docstring).

    Parameters
    ----------
    scene : Scene
    net : DigitNet
    patches : bool
        Add the patch module beneath each digit (depth 4).
    weights : {"confidence", "uniform"}
        A digit's weight in the scene: its confidence / n_slots, or 1 / n_slots.

    Returns
    -------
    Graph
        Object ids ``"scene"``, ``"slot<i>"`` (1-based slot i, also its tuple position) and
        ``"slot<i>-patch<k>"``.
    """
    return scene_graphs([scene], net, patches=patches, weights=weights)[0]
