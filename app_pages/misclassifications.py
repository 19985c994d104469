"""Misclassifications: the gallery of any (true → predicted) pair, most confident first, with a
"right by one model, wrong by the other" filter; any image goes to the explain pages in one click.

Needs only the saved predictions: it renders when the weights are broken.
"""

import streamlit as st

from cifar.models import get_model
from cifar_app import cache, nav, state, tables, widgets
from cifar_app.store import Unavailable

model = state.current_model()
other = state.other_model(model)
title, other_title = get_model(model).title, get_model(other).title
st.title(nav.heading("misclassifications", title))
try:
    ev = cache.evaluation(model)
    s = cache.summary(model)
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()
names = cache.classes(model)
by_name = state.choice({n: i for i, n in enumerate(names)})
state.from_url(state.TRUE, state.TRUE, by_name)
state.from_url(state.PRED, state.PRED, by_name)
ORDERS = {"most": "most confident first", "least": "least confident first"}
state.from_url(state.ORDER, "mis_order", state.choice(ORDERS))
state.from_url(state.ONLY, "mis_only", state.choice({"1": True, "0": False}))
if state.TRUE not in st.session_state or state.PRED not in st.session_state:  # first visit: the most confused pair
    top = tables.confused_pairs(s["confusion"], 1)
    st.session_state[state.TRUE], st.session_state[state.PRED] = (
        (top[0]["true_idx"], top[0]["pred_idx"]) if top else (3, 5))

c1, c2, c3 = st.columns(3)
true = c1.selectbox("True class", range(len(names)), format_func=names.__getitem__, key=state.TRUE,
                    persist_state="session")
pred = c2.selectbox("Predicted class", range(len(names)), format_func=names.__getitem__, key=state.PRED,
                    persist_state="session", help="Pick the true class here to see the images it gets right.")
order = c3.radio("Order", list(ORDERS.values()), key="mis_order", horizontal=True, persist_state="session")

other_ok = True
try:
    cache.evaluation(other)
except Unavailable:
    other_ok = False
want = "right" if true != pred else "wrong"
only = st.toggle(f"Only images {other_title} gets {want}", key="mis_only", disabled=not other_ok,
                 help=(f"Right by one model, wrong by the other: {title} is {'wrong' if true != pred else 'right'} "
                       f"on every image here; keep those where {other_title} is {want}.") if other_ok
                 else f"{other_title}'s predictions are unavailable.")
state.share(**{state.TRUE: names[true], state.PRED: names[pred], state.ORDER: order.split()[0],
               state.ONLY: int(bool(only))})

widgets.pair_gallery(model, int(true), int(pred), key=f"mis_{model}", descending=order.startswith("most"),
                     other_right=(want == "right") if only and other_ok else None)

if other_ok:
    with st.expander(f"Where {title} and {other_title} disagree, per class"):
        d = tables.disagreement_counts(ev["labels"], ev["preds"], cache.evaluation(other)["preds"])
        st.dataframe([{"class": names[c], f"only {title} right": int(d["only_a"][c]),
                       f"only {other_title} right": int(d["only_b"][c]), "both right": int(d["both"][c]),
                       "both wrong": int(d["neither"][c])} for c in range(len(names))], hide_index=True, width="stretch")
