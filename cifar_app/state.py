"""What a user would share lives in the address bar: the model, the test image, the method, the target,
the layer. Everything else a page remembers lives in st.session_state under the keys named here.

How the two meet: before a page draws its widgets, `from_url` copies each shareable value the
address bar holds into the widget's session key, but only when this session did not write that value
itself (a link just opened, or an address edited by hand); after the widgets, `publish` writes the
page's current values back. So a copied URL reopens the same view, and a page switch keeps the
values the user picked.

Why not widgets' bind="query-params": Streamlit 1.67 puts a widget's *formatted* option into the URL
(?model=ResNet18, ?layer=layer3.0 · BasicBlock 128→256 …), so a readable link like ?model=resnet18
is refused as invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from cifar.models import list_models

# Session keys shared between pages. Widget keys that are shared values are the URL names below.
PAIR_KEY = "gallery_pair"  # (true, pred) the Metrics page's gallery shows
UPLOAD_KEY = "upload"  # {"name", "pixels": uint8 32×32×3, "preview", "size"}
_WRITTEN = "_url_written"  # the values this session last put in the address bar

# URL names (also the session keys of their widgets, where one widget holds the value).
MODEL = "model"
IMAGE = "image"  # a test-image index
SOURCE = "source"  # "test" or "upload" (an upload cannot travel in a link; the test image can)
METHOD = "method"
TARGET = "target"  # "predicted", "true" or "class"
CLASS = "cls"  # the class explained when target is "class"
WHY, WHY_NOT = "why", "not"  # target "contrast": why A ("predicted" or a class), not B ("true" or a class)
LAYER = "layer"
VIEW = "view"  # the Attributions page's "grid" or "detail"
DISPLAY, OPACITY = "display", "opacity"  # how the Attributions page draws its maps
TOP = "top"  # how many feature-map channels are shown
ORDER, ONLY = "order", "only"  # the Misclassifications gallery's order and its other-model filter
CELLS = "cells"  # what the confusion matrix's cells show
TRUE, PRED = "true", "pred"  # a (true → predicted) cell of the confusion matrix
K = "k"  # how many training images the Training images page shows per list
SCORE = "score"  # its TracIn score: "cosine" or "raw"
CONFIDENCE = "conf"  # the Label-error candidates page's probability threshold
CALIBRATED = "calibrated"  # the sidebar switch: probabilities after temperature scaling (default) or raw


def _written() -> dict[str, str]:
    return st.session_state.setdefault(_WRITTEN, {})


def from_url(name: str, key: str, parse: Callable[[str], Any]) -> bool:
    """Copy the address bar's `name` into st.session_state[key] when it came from outside this session.

    parse turns the text into the value, raising ValueError (or KeyError) when it is not valid:
    an invalid value is left out, and the page keeps what it had. True when a value was taken.
    Call it before the widget with `key` is drawn.
    """
    text = st.query_params.get(name)
    if text is None or _written().get(name) == text:
        return False
    try:
        value = parse(text)
    except (ValueError, KeyError, TypeError):
        st.toast(f"Ignored `{name}={text}` in the address: not a valid value here.", icon=":material/link_off:")
        _written()[name] = text  # say it once, not on every rerun
        return False
    st.session_state[key] = value
    _written()[name] = text
    return True


def publish(values: Mapping[str, Any]) -> None:
    """Make the address bar hold exactly these shareable values (None values are left out)."""
    text = {k: str(v) for k, v in values.items() if v is not None}
    if dict(st.query_params) != text:
        st.query_params.from_dict(text)
    st.session_state[_WRITTEN] = dict(text)


# ------------------------------------------------------------------------------ parsers


def choice(options: Mapping[str, Any] | list[str] | tuple[str, ...]) -> Callable[[str], Any]:
    """A parser that accepts one of `options` (a list of texts, or text → value), case-insensitively."""
    table = {str(k).lower(): (options[k] if isinstance(options, Mapping) else k) for k in options}

    def parse(text: str) -> Any:
        return table[text.strip().lower()]

    return parse


def index_in(low: int, high: int) -> Callable[[str], int]:
    """A parser for an integer in low..high."""
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return parse


def number_in(low: float, high: float) -> Callable[[str], float]:
    """A parser for a finite number in low..high."""
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # also refuses nan
            raise ValueError(text)
        return value

    return parse


def slug(name: str) -> str:
    """"Integrated Gradients" → "integrated-gradients": a method's name as it reads in a URL."""
    return name.lower().replace(" ", "-")


# ------------------------------------------------------------------------------ the model picker


def current_model() -> str:
    """The model picked in the sidebar (the registry's first by default)."""
    model = st.session_state.get(MODEL)
    return model if model in list_models() else list_models()[0]


def other_model(model: str) -> str:
    """The other registered model (the app compares two)."""
    return next(m for m in list_models() if m != model)


def calibrated() -> bool:
    """The sidebar switch: show probabilities after temperature scaling (the default) or the raw softmax."""
    return bool(st.session_state.get(CALIBRATED, True))


def share(**values: Any) -> None:
    """Put the page's shareable values, and the sidebar's model and switch, in the address bar (see `publish`).

    The switch travels only when off (calibrated=0), so a link keeps its default short.
    """
    publish({MODEL: current_model(), CALIBRATED: None if calibrated() else 0, **values})

# The Robustness page: what it probes (corruption or attack) and with what.
PROBE = "probe"  # "corruption" or "attack"
CORRUPTION, SEVERITY = "corruption", "severity"
ATTACK, EPSILON = "attack", "eps"  # eps in 1/255 pixel units
