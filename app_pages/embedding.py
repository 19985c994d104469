"""Embedding map: every test image at the PCA projection of its penultimate features, coloured by true
class, errors marked; a click picks an image, shows its nearest neighbours and opens it in the explain pages."""

from functools import partial

import numpy as np
import streamlit as st

from cifar.models import get_model
from cifar_app import cache, charts, influences, nav, state, tables, widgets
from cifar_app.store import Unavailable

model = state.current_model()
title = get_model(model).title
st.title(nav.heading("embedding", title))
try:
    ev = cache.evaluation(model)
    bank, test, _ = cache.influence_bank(model)
    images = cache.test_images()
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()
names = cache.classes(model)
n = len(ev["labels"])
if len(test.xy) != n:
    st.error(f"The map holds {len(test.xy):,} test images but the predictions {n:,}: they come from different "
             "test sets. Rebuild the features:", icon=":material/error:")
    st.code(influences.rebuild(cache.paths()).command, language="bash")
    st.stop()

state.from_url(state.IMAGE, state.IMAGE, state.index_in(0, n - 1))
shown = images.has(np.arange(n))
key = f"emb_{model}"


def _pick(chart_key: str) -> None:
    index = influences.selected_point(st.session_state[chart_key].selection.get(charts.POINT_SELECTION))
    if index is not None:
        st.session_state[state.IMAGE] = index
        st.session_state[state.SOURCE] = "test"


records = influences.map_records(test.xy, ev["labels"], ev["preds"], ev["probs"], names, shown)
left, right = st.columns([3, 2])
with left:
    st.altair_chart(charts.embedding_scatter(records, names, selected=st.session_state.get(state.IMAGE)), key=key, on_select=partial(_pick, key),
                    selection_mode=charts.POINT_SELECTION, width="stretch")
    errors = int((ev["preds"] != ev["labels"]).sum())
    st.caption(f"All {n:,} test images; {errors:,} errors as crosses. Axes: the first two principal components of "
               f"{title}'s {bank.features.shape[1]:,} penultimate features (PCA in numpy, fixed signs); the ringed point is "
               f"the picked image. Click a point to pick another.")
index = st.session_state.get(state.IMAGE)
if index is None or not 0 <= int(index) < n:
    index = int(np.flatnonzero(ev["preds"] != ev["labels"])[0]) if errors else 0
index = int(index)
state.share(**{state.IMAGE: index})

with right:
    label, pred = int(ev["labels"][index]), int(ev["preds"][index])
    st.subheader(f"Test image #{index}")
    pos = images.position(index)
    if pos is None:
        st.info(f"#{index} ({names[label]}, predicted {names[pred]}) is not in the demo bundle, so it has no "
                "picture or neighbours here; the dataset brings all 10,000.")
        st.stop()
    pixels = images.images[pos].copy()  # the shared array is read-only; torch wants a writable one
    widgets.image(pixels, 4, caption=f"true {names[label]} · {tables.top_k_caption(ev['probs'][index], names)}")
    b1, b2 = st.columns(2)
    if b1.button("Explain", icon=":material/search:", help="Open this image in Feature maps and Attributions"):
        widgets.send_to_explain(index, "attributions")
    if b2.button("Training images", icon=":material/dataset:", help="The training images behind this prediction"):
        widgets.send_to_explain(index, "training_images")

st.subheader("Nearest neighbours in feature space")
try:
    cache.load_model(model)
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()
idx, sims = cache.test_nearest(model, pixels, 8, exclude=index)
keep = images.has(idx)
st.markdown("**Test images** (captions: true class, cosine similarity, test index)")
widgets.thumbs([images.images[images.position(int(i))] for i in idx[keep]],
               [f"{names[images.labels[images.position(int(i))]]} {s:.3f} · #{i}" for i, s in zip(idx[keep], sims[keep])])
r = cache.ranked(model, pixels, pred, 8)
where = f"all {len(bank):,}" if bank.full else f"{len(bank):,} of its {bank.n_split:,} (the demo subset)"
st.markdown(f"**Training images** (among {where} training images; captions: label, cosine similarity, training index)")
widgets.thumbs([cache.training_image(model, int(i)) for i in r.neighbours],
               [f"{names[bank.labels[i]]} {s:.3f} · #{bank.indices[i]}" for i, s in zip(r.neighbours, r.similarities)])
