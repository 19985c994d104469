"""Metrics: per-class P/R/F1, the confusion matrix (click a cell), most-confused pairs and their gallery.

Needs only the saved predictions (.eval.npz, .metrics.json): it renders when the weights are broken.
"""

import json
from functools import partial

import numpy as np
import streamlit as st

from cifar.models import get_model
from cifar_app import cache, charts, formats, nav, state, tables, widgets
from cifar_app.store import Unavailable

model = state.current_model()
st.title(nav.heading("metrics", get_model(model).title))
try:
    s = cache.summary(model)
    cache.evaluation(model)
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()
names = cache.classes(model)
try:
    cache.metadata(model)
except Unavailable as e:  # the numbers come from the predictions; say why the explain pages will not work
    st.warning(f"These numbers come from the saved test-set predictions. {e.message}"
               + (f" To fix it: `{e.command}`" if e.command and "\n" not in e.command else ""),
               icon=":material/warning:")

cm = np.asarray(s["confusion"])
macro = s["classification"]["macro"]
c = st.columns(4)
c[0].metric("test accuracy", formats.percent(s["accuracy"]), help=f"on {s['n']:,} test images of {widgets.data_note()}")
c[1].metric("top-2 accuracy", formats.percent(s["top_k"]["top2"]))
c[2].metric("macro F1", f"{macro['f1']:.3f}", help=f"macro precision {macro['precision']:.3f}, recall {macro['recall']:.3f}")
c[3].metric("calibration error (ECE)", f"{s['ece']:.3f}", help="|accuracy − confidence| averaged over 15 confidence bins")

st.subheader("Per-class precision, recall and F1")
left, right = st.columns([2, 3])
num = st.column_config.NumberColumn(format="%.3f")
left.dataframe(tables.prf_records(s["classification"]), hide_index=True, width="stretch",
               column_config={"precision": num, "recall": num, "f1": num})
# Keyed on what the chart draws, so a rebuilt metrics JSON redraws it even when the eval file did not change.
prf_key = json.dumps(s["classification"], sort_keys=True, default=float)
right.vega_lite_chart(spec=cache.chart_spec("prf", prf_key, lambda: charts.prf_bars(s["classification"])),
                      width="stretch")
right.caption("The axis starts just below the lowest value, so differences of a few points show.")

# The gallery's cell: from a shared link (?true=cat&pred=dog), else the last one picked, else the top pair.
pairs = tables.confused_pairs(cm, 10, names)
by_name = state.choice({n: i for i, n in enumerate(names)})
state.from_url(state.CELLS, "cm_mode", state.choice({"counts": "counts", "rows": "row-normalised"}))
st.session_state.setdefault("cm_mode", "counts")
pair = st.session_state.get(state.PAIR_KEY) or ((pairs[0]["true_idx"], pairs[0]["pred_idx"]) if pairs else None)
st.session_state["_m_true"], st.session_state["_m_pred"] = pair or (0, 0)  # a link may give one half only
if state.from_url(state.TRUE, "_m_true", by_name) | state.from_url(state.PRED, "_m_pred", by_name):
    pair = st.session_state[state.PAIR_KEY] = (st.session_state["_m_true"], st.session_state["_m_pred"])


def _pick_cell(key: str) -> None:
    cell = tables.selected_cell(st.session_state[key].selection.get(charts.CELL_SELECTION))
    if cell:
        st.session_state[state.PAIR_KEY] = cell


def _pick_row(key: str) -> None:
    rows = st.session_state[key].selection.rows
    if rows:
        st.session_state[state.PAIR_KEY] = (pairs[rows[0]]["true_idx"], pairs[rows[0]]["pred_idx"])


st.subheader("Confusion matrix")
left, right = st.columns([3, 2])
with left:
    mode = st.segmented_control("Cells show", ["counts", "row-normalised"], key="cm_mode",
                                persist_state="session") or "counts"
    chart_key = f"cm_{model}"
    # Not a cached spec like the other charts: the click selection (on_select) goes through Altair's params.
    st.altair_chart(charts.confusion_heatmap(cm, names, normalized=mode == "row-normalised"), key=chart_key,
                    on_select=partial(_pick_cell, chart_key), selection_mode=charts.CELL_SELECTION)
    st.caption("Rows: true class; columns: predicted. Click a cell to see its images below.")
cells = "rows" if mode == "row-normalised" else "counts"
with right:
    st.markdown("**Most confused pairs**")
    table_key = f"pairs_{model}"
    shown = [{"rank": p["rank"], "pair": p["pair"], "count": p["count"],
              "share of true class": formats.percent(p["share_of_true"])} for p in pairs]
    st.dataframe(shown, hide_index=True, width="stretch", key=table_key, on_select=partial(_pick_row, table_key),
                 selection_mode="single-row")
    st.caption("Select a row to see its images below.")

if pair is not None:
    true, pred = int(pair[0]), int(pair[1])
    st.subheader(f"{names[true]} → {names[pred]}")
    if st.button("Open in Misclassifications", icon=":material/photo_library:"):
        st.session_state[state.TRUE], st.session_state[state.PRED] = true, pred
        st.switch_page(nav.PAGE_FILES["misclassifications"])
    state.share(**{state.TRUE: names[true], state.PRED: names[pred], state.CELLS: cells})
    widgets.pair_gallery(model, true, pred, key=f"mg_{model}", per_page=12)
else:
    state.share(**{state.CELLS: cells})
