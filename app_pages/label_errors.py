"""Label-error candidates: test images both models confidently call another class, and the training
images of highest self-influence. Candidates to look at, not verified label errors."""

import numpy as np
import streamlit as st

from cifar.models import get_model, list_models
from cifar_app import cache, formats, nav, state, widgets
from cifar_app.store import Unavailable

model = state.current_model()
title = get_model(model).title
st.title(nav.heading("label_errors", title))
st.caption("Images whose label may be wrong, by two signals computed here. What we find, not a list of "
           "confirmed errors: Northcutt et al. (2021) found label errors in CIFAR-10's test set by confident "
           "learning and human review; compare by eye.")

names = cache.classes(model)
state.from_url(state.CONFIDENCE, "le_conf", state.number_in(0.5, 0.99))
st.session_state.setdefault("le_conf", 0.9)

st.subheader("Test images both models confidently call another class")
try:
    evals = [cache.evaluation(m) for m in list_models()]
    images = cache.test_images()
except Unavailable as e:
    widgets.show_problem(e)
    evals = None
if evals is not None:
    from cifar_app import influences

    threshold = st.slider("Each model's probability at least", 0.5, 0.99, step=0.01, key="le_conf",
                          persist_state="session")
    labels = evals[0]["labels"]
    idx, agreed, low = influences.confident_disagreements(labels, [e["probs"] for e in evals], threshold)
    titles = " and ".join(get_model(m).title for m in list_models())
    st.markdown(f"**{len(idx)}** of {len(labels):,} test images: {titles} predict the same class, not the label, "
                f"each with p ≥ {threshold:.2f}; ordered by the lower of their probabilities, highest first. Captions: test "
                f"index, label → the class both predict, the lower probability.")
    keep = images.has(idx)
    shown = idx[keep][:48]
    widgets.thumbs([images.images[images.position(int(i))] for i in shown],
                   [f"#{i} {names[labels[i]]} → {names[a]} {formats.probability(p)}"
                    for i, a, p in zip(shown, agreed[keep][:48], low[keep][:48])], columns=8)
    if len(idx) > len(shown):
        st.caption(f"The first {len(shown)} shown.")
    if len(shown):
        c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
        pick = c1.selectbox("Look closer at", [int(i) for i in shown], format_func=lambda i: f"test image #{i}")
        if c2.button("Training images behind it", icon=":material/dataset:"):
            widgets.send_to_explain(pick, "training_images")
else:
    threshold = st.session_state["le_conf"]

st.subheader(f"Training images of highest self-influence · {title}")
try:
    bank, _, _ = cache.influence_bank(model)
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()
top = np.argsort(-bank.self_influence, kind="stable")[:24]
where = (f"all {len(bank):,} training images" if bank.full else
         f"the demo subset's {len(bank):,} of {bank.n_split:,} training images, which includes each model's 50 "
         f"highest of all {bank.n_split:,}")
st.caption(f"Self-influence |g|²·|a|²: how much a training image's own final-layer gradient step changes its own "
           f"loss; high for atypical, ambiguous or mislabelled images. Ranked among {where}. Captions: label, the "
           f"model's probability for that label, self-influence, training index.")
widgets.thumbs([cache.training_image(model, int(i)) for i in top],
               [f"{names[bank.labels[i]]} {formats.probability(bank.probs[i, bank.labels[i]])} · "
                f"{bank.self_influence[i]:.3g} · #{bank.indices[i]}" for i in top], columns=8)
state.share(**{state.CONFIDENCE: f"{threshold:g}"})
