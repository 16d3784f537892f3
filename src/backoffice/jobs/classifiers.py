"""The packaged models the `sentiment` and `language` jobs run, each loaded once per process.

Both models ship inside their wheels (nothing is downloaded at run time, so a machine
without internet runs them): VADER's lexicon in `vaderSentiment`, and the naive Bayes
language model of langid.py in `py3langid`. A model is loaded on its first use in a
process, under a lock, and kept for the process's life: a worker's threads (the Procfile
runs four) share one copy, and no job pays for a load but the first. Each load is counted
(`backoffice_model_loads_total{model}`), so "once per process" is something a test sees.

Loading is lazy, not at import: the web processes import the job runners (the registry is
the same table in both) but never run a model, and must not carry its memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Generic, TypeVar

from backoffice import metrics

T = TypeVar("T")

#: VADER's documented thresholds on the compound score: at least this is positive, at most
#: its negative is negative, and anything between is neutral.
COMPOUND_THRESHOLD = 0.05
#: Below this confidence the language is `und` (undetermined): emoji, digits, whitespace and
#: words too short to tell give every language about the same score (0.014).
MIN_LANGUAGE_CONFIDENCE = 0.1


@dataclass
class PackagedModel(Generic[T]):
    """A model that a package ships, loaded on first use, once per process, under a lock."""

    #: The model's name, as results and metrics give it.
    name: str
    #: The distribution that ships it: its installed version is the model's version.
    distribution: str
    load: Callable[[], T]
    _model: T | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def version(self) -> str:
        return version(self.distribution)

    def get(self) -> T:
        """The loaded model; the first caller in this process loads it, the others wait."""
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = self.load()
                    metrics.count_model_load(self.name)
                model = self._model
        return model


# The packages are imported where the model is loaded: importing them (numpy, for one)
# would otherwise cost every web process memory it never uses.


def _load_vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _load_langid() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(
        MODEL_FILE, norm_probs=True, min_confidence=MIN_LANGUAGE_CONFIDENCE
    )


VADER: PackagedModel[Any] = PackagedModel("vader", "vaderSentiment", _load_vader)
LANGID: PackagedModel[Any] = PackagedModel("langid", "py3langid", _load_langid)


def sentiment(model: Any, text: str) -> dict[str, Any]:
    """VADER's scores for `text` and the label its compound score gives."""
    scores = model.polarity_scores(text)
    compound = scores["compound"]
    if compound >= COMPOUND_THRESHOLD:
        label = "positive"
    elif compound <= -COMPOUND_THRESHOLD:
        label = "negative"
    else:
        label = "neutral"
    return {
        "label": label,
        "scores": {
            "negative": scores["neg"],
            "neutral": scores["neu"],
            "positive": scores["pos"],
            "compound": compound,
        },
    }


def language(model: Any, text: str) -> dict[str, Any]:
    """The ISO 639 code langid gives `text` and its probability, or `und`."""
    code, confidence = model.classify(text)
    return {"language": code, "confidence": round(float(confidence), 4)}
