"""Feature maps: any layer's channels for one image, strongest first, captured with scoped forward hooks."""

import streamlit as st

from cifar import SHORT_CLASSES, analysis
from cifar.app_data import TITLES, Unavailable
from app_pages._shared import (current_model, explain_image, feature_maps, layer_options, load_model,
                           predict, show_problem, thumbnail)

model = current_model()
st.title(f"Feature maps · {TITLES[model]}")
st.caption("What each channel of a layer responds to in one image. Channels are ranked by mean activation; "
           "each tile is scaled to its own range (brighter = stronger), so compare strengths by the numbers.")
try:
    load_model(model)
    layers = layer_options(model)
except Unavailable as e:
    show_problem(e)
    st.stop()

pick = explain_image("fm")
if pick is None:
    st.stop()

names = list(layers)
layer_key = f"fm_layer_{model}"
c1, c2 = st.columns([2, 1])
layer = c1.selectbox(f"Layer ({len(names)} in forward order)", names, format_func=layers.get, key=layer_key,
                     persist_state="session")
top = c2.slider("Channels shown", 4, 64, 16, step=4, key="fm_top", persist_state="session")

left, right = st.columns([1, 4])
with left:
    st.image(thumbnail(pick["image"], 6), caption=pick["title"])
    probs = predict(model, pick["image"])
    st.markdown(f"**{TITLES[model]}:** {analysis.top_k_caption(probs)}")
    if pick["label"] is not None:
        pred = int(probs.argmax())
        verdict = "right" if pred == pick["label"] else f"wrong (true: {SHORT_CLASSES[pick['label']]})"
        st.caption(f"Prediction is {verdict}.")
with right:
    with st.spinner(f"Capturing {layer}…"):
        fm = feature_maps(model, pick["image"], layer, top)
    c, h, w = fm.shape
    st.markdown(f"**{layers[layer]}** — the {len(fm.order)} strongest of {c} channels, each {h}×{w}")
    tile = 88  # px per channel, whatever the map's size
    st.image(analysis.channel_tiles(fm.maps, scale=max(1, -(-tile // h))), width=tile,
             caption=[f"ch {ch} · {s:.2f}" for ch, s in zip(fm.order, fm.strength)])
