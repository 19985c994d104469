"""Feature maps: any layer's channels for one image, strongest first, captured with scoped forward hooks."""

import streamlit as st

from cifar.models import get_model
from cifar_app import cache, nav, pixels, state, tables, widgets
from cifar_app.store import Unavailable

TILE = 96  # px per channel tile: a multiple of every map size (32, 16, 8, 4), so tiles are never rescaled

model = state.current_model()
title = get_model(model).title
st.title(nav.heading("feature_maps", title))
st.caption("What each channel of a layer responds to in one image. Channels are ranked by mean activation; "
           "each tile is scaled to its own range (brighter = stronger), so compare strengths by the numbers.")
try:
    cache.load_model(model)
    layers = cache.layer_options(model)
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()

pick = widgets.explain_image()
if pick is None:
    st.stop()

names = list(layers)
layer_key = f"fm_layer_{model}"  # per model: the two models' layers have different names
state.from_url(state.LAYER, layer_key, state.choice(names))
state.from_url(state.TOP, "fm_top", state.index_in(4, 64))
st.session_state.setdefault("fm_top", 16)
c1, c2 = st.columns([2, 1])
layer = c1.selectbox(f"Layer ({len(names)} in forward order)", names, format_func=layers.get, key=layer_key,
                     persist_state="session")
top = c2.slider("Channels shown", 4, 64, step=4, key="fm_top", persist_state="session")
state.share(**{state.IMAGE: pick["index"], state.LAYER: layer, state.TOP: top})

left, right = st.columns([1, 4])
with left:
    widgets.image(pick["image"], 6, caption=pick["title"])
    probs = cache.predict(model, pick["image"])
    names_c = cache.classes(model)
    st.markdown(f"**{title}:** {tables.top_k_caption(probs, names_c)}")
    if pick["label"] is not None:
        pred = int(probs.argmax())
        verdict = "right" if pred == pick["label"] else f"wrong (true: {names_c[pick['label']]})"
        st.caption(f"Prediction is {verdict}.")
    st.caption(f"Probabilities: {cache.probability_note(model)}.")
    try:
        check = cache.ood_check(model, pick["image"])
        (st.warning if check["unlike"] else st.caption)(check["text"])
    except Unavailable:
        pass  # the Calibration page names the missing file and its fix
with right:
    with st.spinner(f"Capturing {layer}…"):
        fm = cache.feature_maps(model, pick["image"], layer, top)
    c, h, w = fm.shape
    st.markdown(f"**{layers[layer]}** — the {len(fm.order)} strongest of {c} channels, each {h}×{w}")
    scale = max(1, TILE // h)
    st.image(pixels.channel_tiles(fm.maps, scale=scale), width=h * scale,
             caption=[f"ch {ch} · {s:.2f}" for ch, s in zip(fm.order, fm.strength)])
