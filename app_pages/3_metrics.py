"""Metrics: per-class P/R/F1, the confusion matrix (click a cell), most-confused pairs and their gallery."""

import json
from functools import partial

import numpy as np
import streamlit as st

from cifar import SHORT_CLASSES, analysis, charts
from cifar.app_data import TITLES, Unavailable
from app_pages._shared import (PAGE_FILES, PAIR_KEY, chart_spec, current_model, evaluation, metadata,
                              pair_gallery, show_problem, summary)

model = current_model()
st.title(f"Metrics · {TITLES[model]}")
try:
    metadata(model)  # the checkpoint itself must be there, not only its predictions
    s = summary(model)
    evaluation(model)
except Unavailable as e:
    show_problem(e)
    st.stop()

cm = np.asarray(s["confusion"])
macro = s["classification"]["macro"]
c = st.columns(4)
c[0].metric("test accuracy", f"{s['accuracy']:.2%}", help=f"on {s['n']:,} test images")
c[1].metric("top-2 accuracy", f"{s['top_k']['top2']:.2%}")
c[2].metric("macro F1", f"{macro['f1']:.3f}", help=f"macro precision {macro['precision']:.3f}, recall {macro['recall']:.3f}")
c[3].metric("calibration error (ECE)", f"{s['ece']:.3f}", help="|accuracy − confidence| averaged over 15 confidence bins")

st.subheader("Per-class precision, recall and F1")
left, right = st.columns([2, 3])
num = st.column_config.NumberColumn(format="%.3f")
left.dataframe(analysis.prf_records(s["classification"]), hide_index=True, width="stretch",
               column_config={"precision": num, "recall": num, "f1": num})
# Keyed on what the chart draws, so a rebuilt metrics JSON redraws it even when the eval file did not change.
prf_key = json.dumps(s["classification"], sort_keys=True, default=float)
right.vega_lite_chart(spec=chart_spec("prf", prf_key, lambda: charts.prf_bars(s["classification"])), width="stretch")


def _pick_cell(key: str) -> None:
    pair = analysis.selected_cell(st.session_state[key].selection.get(charts.CELL_SELECTION))
    if pair:
        st.session_state[PAIR_KEY] = pair


def _pick_row(key: str, pairs: list) -> None:
    rows = st.session_state[key].selection.rows
    if rows:
        st.session_state[PAIR_KEY] = (pairs[rows[0]]["true_idx"], pairs[rows[0]]["pred_idx"])


st.subheader("Confusion matrix")
left, right = st.columns([3, 2])
with left:
    mode = st.segmented_control("Cells show", ["counts", "row-normalised"], default="counts", key="cm_mode",
                                persist_state="session")
    chart_key = f"cm_{model}"
    # Not a cached spec like the other charts: the click selection (on_select) goes through Altair's params.
    st.altair_chart(charts.confusion_heatmap(cm, SHORT_CLASSES, normalized=mode == "row-normalised"), key=chart_key,
                    on_select=partial(_pick_cell, chart_key), selection_mode=charts.CELL_SELECTION)
    st.caption("Rows: true class; columns: predicted. Click a cell to see its images below.")
with right:
    st.markdown("**Most confused pairs**")
    pairs = analysis.confused_pairs(cm, 10, SHORT_CLASSES)
    table_key = f"pairs_{model}"
    st.dataframe(pairs, hide_index=True, width="stretch", key=table_key, on_select=partial(_pick_row, table_key, pairs),
                 selection_mode="single-row", column_order=("rank", "pair", "count", "share_of_true"),
                 column_config={"share_of_true": st.column_config.NumberColumn("share of true class", format="percent")})
    st.caption("Select a row to see its images below.")

pair = st.session_state.get(PAIR_KEY)
if pair is None and pairs:
    pair = (pairs[0]["true_idx"], pairs[0]["pred_idx"])
if pair is not None:
    true, pred = pair
    st.subheader(f"{SHORT_CLASSES[true]} → {SHORT_CLASSES[pred]}")
    if st.button("Open in Misclassifications", icon=":material/photo_library:"):
        st.session_state["mis_true"], st.session_state["mis_pred"] = int(true), int(pred)
        st.switch_page(PAGE_FILES["misclassifications"])
    pair_gallery(model, int(true), int(pred), key=f"mg_{model}", per_page=12)
