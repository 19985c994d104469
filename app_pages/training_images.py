"""Training images behind it: TracIn proponents and opponents of one image's class, and its nearest
training and test images in feature space, for both models side by side."""

import streamlit as st

from cifar_app import cache, formats, influences, nav, state, tables, widgets
from cifar_app.store import Unavailable

SCORES = {"cosine": "cosine (TracIn on unit gradients)", "raw": "raw TracIn (captum's TracInCPFast)"}

st.title(nav.heading("training_images"))
st.caption("Proponents: training images whose gradient step on the final layer lowers this image's loss for the "
           "target class (TracIn, Pruthi et al. 2020, restricted to the last layer as captum's TracInCPFast); "
           "opponents raise it. Neighbours: the closest images by cosine similarity of the penultimate features.")

pick = widgets.explain_image()
if pick is None:
    st.stop()
names = cache.classes()
targets = {"predicted": "each model's prediction", "true": "the true class", "class": "a class I pick"}
modes = list(targets) if pick["label"] is not None else ["predicted", "class"]
state.from_url(state.TARGET, "ti_target", state.choice(modes))
state.from_url(state.CLASS, "ti_class", state.choice({n: i for i, n in enumerate(names)}))
state.from_url(state.K, "ti_k", state.index_in(4, 24))
state.from_url(state.SCORE, "ti_score", state.choice(list(SCORES)))
if st.session_state.get("ti_target") not in modes:
    st.session_state["ti_target"] = "predicted"
st.session_state.setdefault("ti_k", 8)
st.session_state.setdefault("ti_score", "cosine")

c1, c2, c3 = st.columns([2, 2, 3])
mode = c1.radio("Training images for", modes, format_func=targets.get, key="ti_target", persist_state="session")
chosen = c1.selectbox("Class", range(len(names)), format_func=names.__getitem__, key="ti_class",
                      persist_state="session", disabled=mode != "class", label_visibility="collapsed")
k = c2.slider("Images per list", 4, 24, step=4, key="ti_k", persist_state="session")
score = c3.radio("Score", list(SCORES), format_func=SCORES.get, key="ti_score", persist_state="session",
                 help="Cosine divides each product by the gradients' and features' norms, so a training image with a "
                      "large gradient does not top every list; an exact copy of the image then scores 1, the maximum. "
                      "Raw is the unnormalised score, equal to captum's TracInCPFast (tests/test_influence.py).")
state.share(**{state.IMAGE: pick["index"], state.TARGET: mode, state.CLASS: names[chosen] if mode == "class" else None,
               state.K: k, state.SCORE: score})

widgets.image(pick["image"], 4, caption=pick["title"])
try:
    images = cache.test_images()
except Unavailable:
    images = None


def _score(x: float) -> str:
    return f"{x:+.3f}" if score == "cosine" else f"{x:+.3g}"


def _train_thumbs(model: str, bank, positions, values, fmt) -> None:
    widgets.thumbs([cache.training_image(model, int(i)) for i in positions],
                   [f"{names[bank.labels[i]]} {fmt(v)} · #{bank.indices[i]}" for i, v in zip(positions, values)],
                   columns=4)


for model in widgets.model_columns():
    try:
        bank, _, _ = cache.influence_bank(model)
        cache.load_model(model)
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    _, probs = cache.penultimate(model, pick["image"])
    target = tables.attribution_target(mode, probs, pick["label"], chosen)
    pred = int(probs.argmax())
    st.markdown(f"Predicts **{names[pred]}** (p = {formats.probability(probs[pred])}) · target **{names[target]}** "
                f"(p = {formats.probability(probs[target])})")
    where = (f"among all **{len(bank):,}** training images it was trained on" if bank.full else
             f"among **{len(bank):,}** of its {bank.n_split:,} training images (the demo subset: the dataset or its "
             f"feature cache is not on this machine)")
    st.caption(f"Ranked {where}; from {bank.source}. {influences.CHECKPOINT_NOTE}.")
    with st.spinner("Ranking the training images…"):
        r = cache.ranked(model, pick["image"], target, k, score == "cosine")
    st.markdown(f"**Proponents of {names[target]}** (support it; captions: label, score, training index)")
    _train_thumbs(model, bank, r.proponents, r.proponent_scores, _score)
    st.markdown(f"**Opponents of {names[target]}** (argue against it)")
    _train_thumbs(model, bank, r.opponents, r.opponent_scores, _score)
    st.markdown("**Nearest training images** (cosine similarity of features)")
    _train_thumbs(model, bank, r.neighbours, r.similarities, lambda v: f"{v:.3f}")
    st.markdown("**Nearest test images**" + (" (itself left out)" if pick["index"] is not None else ""))
    idx, sims = cache.test_nearest(model, pick["image"], k, exclude=pick["index"])
    if images is not None:
        keep = images.has(idx)
        widgets.thumbs([images.images[images.position(int(i))] for i in idx[keep]],
                       [f"{names[images.labels[images.position(int(i))]]} {s:.3f} · #{i}"
                        for i, s in zip(idx[keep], sims[keep])], columns=4)
