"""Misclassifications: the gallery of any (true → predicted) pair, most confident first, with a
"right by one model, wrong by the other" filter; any image goes to the explain pages in one click."""

import streamlit as st

from cifar import SHORT_CLASSES, analysis
from cifar.app_data import TITLES, Unavailable
from app_pages._shared import (current_model, evaluation, metadata, other_model, pair_gallery, show_problem,
                              summary)

model = current_model()
other = other_model(model)
st.title(f"Misclassifications · {TITLES[model]}")
try:
    metadata(model)  # the checkpoint itself must be there, not only its predictions
    ev = evaluation(model)
    s = summary(model)
except Unavailable as e:
    show_problem(e)
    st.stop()

if "mis_true" not in st.session_state:  # first visit: the most confused pair
    top = analysis.confused_pairs(s["confusion"], 1)
    st.session_state["mis_true"], st.session_state["mis_pred"] = (top[0]["true_idx"], top[0]["pred_idx"]) if top else (3, 5)

c1, c2, c3 = st.columns(3)
true = c1.selectbox("True class", range(10), format_func=SHORT_CLASSES.__getitem__, key="mis_true", persist_state="session")
pred = c2.selectbox("Predicted class", range(10), format_func=SHORT_CLASSES.__getitem__, key="mis_pred",
                    persist_state="session", help="Pick the true class here to see the images it gets right.")
order = c3.radio("Order", ["most confident first", "least confident first"], key="mis_order", horizontal=True,
                 persist_state="session")

other_ok = True
try:
    evaluation(other)
except Unavailable:
    other_ok = False
want = "right" if true != pred else "wrong"
only = st.toggle(f"Only images {TITLES[other]} gets {want}", key="mis_only", disabled=not other_ok,
                 help=(f"Right by one model, wrong by the other: {TITLES[model]} is {'wrong' if true != pred else 'right'} "
                       f"on every image here; keep those where {TITLES[other]} is {want}.") if other_ok
                 else f"{TITLES[other]}'s predictions are unavailable.")

pair_gallery(model, int(true), int(pred), key=f"mis_{model}", descending=order.startswith("most"),
             other_right=(want == "right") if only and other_ok else None)

if other_ok:
    with st.expander(f"Where {TITLES[model]} and {TITLES[other]} disagree, per class"):
        d = analysis.disagreement_counts(ev["labels"], ev["preds"], evaluation(other)["preds"])
        st.dataframe([{"class": SHORT_CLASSES[c], f"only {TITLES[model]} right": int(d["only_a"][c]),
                       f"only {TITLES[other]} right": int(d["only_b"][c]), "both right": int(d["both"][c]),
                       "both wrong": int(d["neither"][c])} for c in range(10)], hide_index=True, width="stretch")
