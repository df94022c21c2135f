"""Object signatures: a fingerprint carried through an object's attribute (THEORY.md §5).

**An extension, our design choice (not the paper's).** The paper (§3.3) only says that its
supplement generalises the sketch to "Object Signature Recovery", and (§1.1) that a recovered
attribute can serve as a fingerprint to find an object's more accurate sketch in a repository.
THEORY.md §5 proposes two designs; we implement the **cheaper variant**, which changes nothing
structural in the sketch:

    x'_θ = [x_θ; σ_θ] / √2     (x_θ and σ_θ unit ℓ2, so x'_θ is unit ℓ2)

i.e. the signature is appended to the attribute and travels through R_{M,1} with it. Every decoder
of the attribute then decodes the signature too: σ̂ = √2 · x̂'[L:L+k]. Why this variant and not a
fourth module matrix R_{M,3}: it keeps the bank's naming (``module/<M>/<k>``, k ∈ {0, 1, 2}), the
engine, the JSON format and every other decoder unchanged, and costs only k extra coordinates of
the attribute; the price is that the attribute itself is stored at half energy (its decoders'
relative error grows by √2) — the same trade as the ⅓/⅓/⅓ split of the R_{M,3} design.

Signatures must be **nonnegative** like every attribute (Theorem 2 needs x ≥ 0). We use binary
codes σ = b/‖b‖, b ∈ {0, 1}^k with independent fair bits (:func:`make_signatures`): unit,
nonnegative, and after centring a ±1 code, so two distinct codes are nearly orthogonal.

**List decoding** (:func:`match_signature`) scores each candidate by the centred correlation
⟨σ̂, c − mean(c)⟩/‖c − mean(c)‖. For the true code (k/2 ones) the score is ≈ 1/√2; for an unrelated
code it is ≈ N(0, 1/k) plus the decoder noise N(0, τ²), τ the per-coordinate noise of σ̂ — so the
top-1 rate among N candidates is high while √(2 ln N)·√(1/k + τ²) < 1/√2 (:func:`top1_probability`).
"""
from __future__ import annotations

import math

import numpy as np

from ._rng import check_random_state
from ._validation import check_int
from .graph import Graph

__all__ = ["SIG_LEN", "make_signatures", "signature_moments", "with_signatures", "split_signature",
           "signature", "match_signature", "top1_probability"]

SIG_LEN = 128
"""Default signature length k: 1/k = 0.008 leaves room for 10^5 candidates (√(2 ln 10^5)/√k ≈ 0.42
< 1/√2) and for decoder noise τ up to ≈ 0.1 per coordinate."""


def make_signatures(n, sig_len=SIG_LEN, random_state=None):
    """``n`` random nonnegative unit binary codes σ = b/‖b‖, b ∈ {0,1}^k (no all-zero code).

    Returns ndarray of shape (n, sig_len), float64.
    """
    n = check_int("n", n, minimum=1)
    k = check_int("sig_len", sig_len, minimum=2)
    rng = check_random_state(random_state)
    B = rng.integers(0, 2, size=(n, k)).astype(np.float64)
    empty = B.sum(axis=1) == 0
    B[empty, 0] = 1.0
    return B / np.linalg.norm(B, axis=1, keepdims=True)


def signature_moments(sig_len=SIG_LEN):
    """(μ, C): mean and covariance of one code of :func:`make_signatures` (extension, THEORY.md §5).

    σ = b/‖b‖ with independent fair bits b ∈ {0, 1}^k. Given the number of ones m = ‖b‖² ~
    Binomial(k, ½): E[σ_j | m] = √m/k, E[σ_j² | m] = 1/k and E[σ_i σ_j | m] = (m − 1)/(k(k − 1))
    (i ≠ j), so μ_j = E[√m]/k, E σ_j² = 1/k, E σ_iσ_j = E[m − 1]/(k(k − 1)). The all-zero draw
    (probability 2^{−k}, replaced by e_1 in :func:`make_signatures`) is left out (m ≥ 1).

    Parameters
    ----------
    sig_len : int
        k ≥ 2.

    Returns
    -------
    (ndarray of shape (k,), ndarray of shape (k, k))
    """
    from scipy.stats import binom

    k = check_int("sig_len", sig_len, minimum=2)
    m = np.arange(1, k + 1)
    p = binom.pmf(m, k, 0.5)
    p /= p.sum()
    mu = float(np.sum(p * np.sqrt(m))) / k
    second = np.full((k, k), float(np.sum(p * (m - 1))) / (k * (k - 1.0)))
    np.fill_diagonal(second, 1.0 / k)
    return np.full(k, mu), second - mu * mu


def _check_sig(name, v, k=None):
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"{name} must be a nonempty vector; got shape {v.shape}")
    if k is not None and v.shape[0] != k:
        raise ValueError(f"{name} must have length sig_len={k}; got {v.shape[0]}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite; got {float(v[~np.isfinite(v)][0])!r}")
    if np.any(v < 0):
        raise ValueError(f"{name} must be nonnegative (attributes are, Theorem 2); got {float(v[v < 0][0])!r}")
    nrm = float(np.linalg.norm(v))
    if nrm == 0:
        raise ValueError(f"{name} must not be all zeros")
    return v / nrm


def with_signatures(graph, signatures):
    """A copy of ``graph`` whose attributes carry signatures: x'_θ = [x_θ; σ_θ]/√2 (extension).

    Parameters
    ----------
    graph : Graph
    signatures : dict of object id -> vector of length k (nonnegative, nonzero; normalised to unit)
        Every object of the graph needs one, all of the same length k.

    Returns
    -------
    Graph
    """
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a sketchsim.Graph; got {type(graph).__name__}")
    if not isinstance(signatures, dict):
        raise ValueError(f"signatures must be a dict of object id -> vector; got {type(signatures).__name__}")
    unknown = [o for o in signatures if o not in graph.index]
    if unknown:
        raise ValueError(f"signatures must be keyed by object ids of the graph; got unknown id {unknown[0]!r}")
    missing = [o for o in graph.ids if o not in signatures]
    if missing:
        raise ValueError(f"signatures must give every object a signature; {missing[0]!r} has none")
    k = None
    spec = graph.to_dict()
    for obj in spec["objects"]:
        sig = _check_sig(f"signature of object {obj['id']!r}", signatures[obj["id"]], k)
        k = len(sig)
        obj["attributes"] = (np.concatenate([obj["attributes"], sig]) / math.sqrt(2.0)).tolist()
    return Graph.from_dict(spec, normalize=True)


def split_signature(attribute, sig_len):
    """(x, σ) from a combined attribute x' = [x; σ]/√2 (or a decoded estimate of one): both times √2."""
    a = np.asarray(attribute, dtype=np.float64)
    k = check_int("sig_len", sig_len, minimum=1)
    if a.ndim != 1 or a.shape[0] <= k:
        raise ValueError(f"attribute must be a vector longer than sig_len={k}; got shape {a.shape}")
    return math.sqrt(2.0) * a[:-k], math.sqrt(2.0) * a[-k:]


def signature(s, bank, graph, object_id, sig_len=SIG_LEN, weight=None, method="path", column_norm=None):
    """σ̂ of one object from a sketch of a graph built with :func:`with_signatures` (extension).

    The structure (index path, module, attribute length) comes from ``graph`` (attribute values
    are not used); the signature is the trailing ``sig_len`` coordinates of the decoded attribute,
    times √2.

    Parameters
    ----------
    s : ndarray of shape (d,)
    bank : MatrixBank
    graph : Graph
        The signed graph's structure (ids, modules, inputs; attribute lengths L + sig_len).
    object_id : str
    sig_len : int
    weight : float, optional
        The object's effective weight for ``method="path"`` (None: the self-normalised form).
    method : {"path", "joint"}
        ``"path"``: the all-tuple word decoder of Theorem 1(ii)
        (:func:`sketchsim.decode.attributes_on_path`). ``"joint"``: the joint least-squares refit of
        every attribute of the known structure (THEORY.md §2.5), exact while Σ(L_θ+1) < d.
    column_norm : bool, optional
        Passed to the path decoder.

    Returns
    -------
    ndarray of shape (sig_len,)
    """
    from . import decode

    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a sketchsim.Graph; got {type(graph).__name__}")
    i = graph._idx(object_id)
    k = check_int("sig_len", sig_len, minimum=1)
    L = len(graph.attributes[i])
    if L <= k:
        raise ValueError(f"sig_len must be shorter than the attribute length {L} of object {object_id!r}; "
                         f"got {k}")
    if method == "path":
        path = graph.paths(object_id)[0]
        x = decode.attributes_on_path(s, bank, path, graph.module(object_id), weight=weight, length=L,
                                      column_norm=column_norm)
    elif method == "joint":
        from .unroll import fit_structure

        x = fit_structure(s, bank, graph)[object_id]
    else:
        raise ValueError(f"method must be 'path' or 'joint'; got {method!r}")
    return math.sqrt(2.0) * np.asarray(x)[L - k:L]


def match_signature(sig_hat, candidates, k=1):
    """List decoding: the ``k`` candidates best matching σ̂, by centred correlation (extension).

    score_c = ⟨σ̂, c − mean(c)⟩ / ‖c − mean(c)‖ (invariant to the codes' nonnegative offset).

    Parameters
    ----------
    sig_hat : array_like of shape (sig_len,)
    candidates : array_like of shape (n, sig_len)
    k : int
        How many to return (1 ≤ k ≤ n).

    Returns
    -------
    (indices, scores) : ndarrays of shape (k,), best first
    """
    q = np.asarray(sig_hat, dtype=np.float64)
    C = np.asarray(candidates)
    if q.ndim != 1 or not np.all(np.isfinite(q)):
        raise ValueError(f"sig_hat must be a finite vector; got shape {q.shape}")
    if C.ndim != 2 or C.shape[1] != q.shape[0] or C.shape[0] == 0:
        raise ValueError(f"candidates must have shape (n ≥ 1, sig_len={q.shape[0]}); got {C.shape}")
    k = check_int("k", k, minimum=1)
    if k > C.shape[0]:
        raise ValueError(f"k must be at most the number of candidates {C.shape[0]}; got {k}")
    scores = np.empty(C.shape[0])
    step = max(1, 2 ** 22 // C.shape[1])
    for a in range(0, C.shape[0], step):
        B = np.asarray(C[a:a + step], dtype=np.float64)
        B = B - B.mean(axis=1, keepdims=True)
        nrm = np.linalg.norm(B, axis=1)
        scores[a:a + step] = np.where(nrm > 0, (B @ q) / np.where(nrm > 0, nrm, 1.0), -np.inf)
    idx = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx, scores[idx]


def top1_probability(true_score_mean, tau, sig_len, n_candidates):
    """Predicted P(the true code ranks first) among ``n_candidates`` (THEORY.md §5, our model).

    True score ~ N(μ, τ²); each of the n−1 others ~ N(0, 1/k + τ²) independently:
    P = ∫ φ(t) Φ((μ + τt)/√(1/k + τ²))^{n−1} dt (Gauss–Hermite quadrature).
    """
    n = check_int("n_candidates", n_candidates, minimum=1)
    if n == 1:
        return 1.0
    from scipy.stats import norm

    t, w = np.polynomial.hermite_e.hermegauss(80)
    so = math.sqrt(1.0 / int(sig_len) + float(tau) ** 2)
    vals = np.exp((n - 1) * norm.logcdf((float(true_score_mean) + float(tau) * t) / so))
    return float(np.sum(w * vals) / math.sqrt(2 * math.pi))
