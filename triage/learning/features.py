"""What the learned extractor reads of a conversation, and the TF-IDF features it turns that into.

The model reads the customer's messages (:func:`model_text`, as the rules extractor does). Its
features are two scikit-learn :class:`~sklearn.feature_extraction.text.TfidfVectorizer` parts side
by side: word n-grams, and character n-grams within word boundaries (``char_wb``), which is what
makes unspaced Chinese work. A fitted part is kept as data: its settings, its terms in column
order and their idf weights; :meth:`Featurizer.transform` rebuilds the vectorizers from exactly
those numbers (scikit-learn's ``vocabulary`` parameter and ``idf_``), so no fitted object is stored.

>>> featurizer = fit_featurizer(["my card is broken", "my card was declined"],
...                             FeatureSettings(word_ngrams=(1, 1), char_ngrams=(3, 3), min_df=2))
>>> featurizer.parts[0].terms
('card', 'my')
>>> featurizer.transform(["card"]).shape == (1, featurizer.width)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from triage.conversation import Conversation

#: Bytes of a text's hash kept for "was this text in the training set" (``--split all``).
HASH_BYTES = 8
FloatArray = npt.NDArray[np.float64]


def model_text(conversation: Conversation) -> str:
    """The text the model reads: the customer's messages, one per line."""
    return conversation.customer_text()


def text_hash(text: str) -> bytes:
    """A short hash of a training text (whitespace-trimmed), to tell later whether a text was trained on.

    >>> text_hash(" hi ") == text_hash("hi"), len(text_hash("hi"))
    (True, 8)
    """
    return hashlib.sha256(text.strip().encode()).digest()[:HASH_BYTES]


@dataclass(frozen=True)
class FeatureSettings:
    """How a featurizer is fitted (from ``[learn]``)."""

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    min_df: int = 2
    max_features: int = 100_000


@dataclass(frozen=True)
class FeaturePart:
    """One fitted TF-IDF part: scikit-learn's parameters, the terms in column order and their idf."""

    name: str
    params: dict[str, Any]
    terms: tuple[str, ...]
    idf: FloatArray

    def vectorizer(self) -> TfidfVectorizer:
        """The fitted vectorizer, rebuilt from the stored terms and idf weights."""
        vectorizer = TfidfVectorizer(**_tuples(self.params), dtype=np.float64,
                                     vocabulary={term: i for i, term in enumerate(self.terms)})
        vectorizer.idf_ = self.idf
        return vectorizer

    def to_json(self) -> dict[str, Any]:
        """The part without its idf array (stored as bytes beside it)."""
        return {"name": self.name, "params": self.params, "terms": list(self.terms)}


def _tuples(params: dict[str, Any]) -> dict[str, Any]:
    """JSON gives lists back; scikit-learn wants its ``ngram_range`` as a tuple."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in params.items()}


class Featurizer:
    """The fitted parts, transforming texts to one sparse row each (the parts' columns side by side)."""

    def __init__(self, parts: Sequence[FeaturePart]) -> None:
        self.parts = tuple(parts)
        self._vectorizers = [part.vectorizer() for part in self.parts]

    @property
    def width(self) -> int:
        return sum(len(part.terms) for part in self.parts)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        blocks = [vectorizer.transform(texts) for vectorizer in self._vectorizers]
        return sparse.csr_matrix(sparse.hstack(blocks, format="csr"))


def part_params(settings: FeatureSettings) -> dict[str, dict[str, Any]]:
    """scikit-learn's parameters of each part (stored with the version, so it is scored as fitted)."""
    common = {"lowercase": True, "sublinear_tf": True, "norm": "l2", "use_idf": True, "smooth_idf": True,
              "min_df": settings.min_df, "max_features": settings.max_features}
    return {
        "word": {**common, "analyzer": "word", "ngram_range": list(settings.word_ngrams)},
        "char": {**common, "analyzer": "char_wb", "ngram_range": list(settings.char_ngrams)},
    }


def _fit_part(name: str, params: dict[str, Any], texts: Sequence[str]) -> FeaturePart | None:
    fitting = {**_tuples(params), "dtype": np.float64}
    if len(texts) < params["min_df"]:
        fitting["min_df"] = 1
    vectorizer = TfidfVectorizer(**fitting)
    try:
        vectorizer.fit(texts)
    except ValueError:  # no term is frequent enough (e.g. very few texts): the part adds nothing
        return None
    order = sorted(vectorizer.vocabulary_.items(), key=lambda item: item[1])
    stored = {**params, "min_df": fitting["min_df"]}
    return FeaturePart(name, stored, tuple(term for term, _ in order), np.asarray(vectorizer.idf_, dtype=np.float64))


def fit_featurizer(texts: Sequence[str], settings: FeatureSettings) -> Featurizer:
    """Fit each part on ``texts`` with scikit-learn; a part with no term left out."""
    parts = [part for name, params in part_params(settings).items() if (part := _fit_part(name, params, texts))]
    if not parts:
        raise ValueError("no features: the texts have no term in common (give more, or longer, texts)")
    return Featurizer(parts)
