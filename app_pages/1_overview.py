"""Overview: the two models side by side, as in the report's comparison tables, with its numbers beside ours."""

import json

import streamlit as st

from cifar import analysis, charts, reference
from cifar.app_data import MODELS, TITLES, Unavailable
from app_pages._shared import chart_spec, depth, metadata, show_problem, summary

st.title("CustomCNN vs ResNet18 on CIFAR-10")
st.caption("Our checkpoints next to the numbers the reference report published (columns marked *report*). "
           "Every *ours* number is read from the checkpoint's metadata and its saved test-set predictions.")

ours: dict = {}
cards = st.columns(len(MODELS), border=True)
for col, model in zip(cards, MODELS):
    with col:
        st.subheader(TITLES[model])
        try:
            meta = metadata(model)
        except Unavailable as e:
            show_problem(e)
            ours[model] = None
            continue
        ours[model] = {"meta": meta, "summary": None}
        try:
            ours[model]["summary"] = s = summary(model)
        except Unavailable as e:
            show_problem(e)
            continue
        ref_test = reference.ACCURACY[model]["test"]
        a, b, c = st.columns(3)
        a.metric("test accuracy", f"{s['accuracy']:.2%}", f"{(s['accuracy'] - ref_test) * 100:+.1f} pts vs report",
                 help=f"the report: {ref_test:.2%}")
        b.metric("macro F1", f"{s['classification']['macro']['f1']:.3f}")
        c.metric("parameters", f"{meta['parameters'] / 1e6:.1f} M", help=f"{meta['parameters']:,}")

st.subheader("Model and training")
model_rows = analysis.model_rows(ours, {m: depth(m) if ours.get(m) else None for m in MODELS}, reference.OVERVIEW)
for col, model in zip(st.columns(len(MODELS)), MODELS):
    # st.table wraps long cells (recipes, hardware); one table per model keeps ours beside the report's.
    col.markdown(f"**{TITLES[model]}**")
    col.table([{"": r[""], "ours": r[f"{model} · ours"], "report": r[f"{model} · report"]} for r in model_rows],
              hide_index=True)


SHORT = {"cnn": "CNN", "resnet18": "ResNet"}


def percent_columns(row: dict) -> dict:
    """Percent format and short headers ("CNN ours", "ResNet report") for the model columns of a table."""
    return {k: st.column_config.NumberColumn(f"{SHORT[k.split(' · ')[0]]} {k.split(' · ')[1]}", format="percent")
            for k in row if " · " in k}


st.subheader("Accuracy and macro averages")
refs = {m: {"accuracy": reference.ACCURACY[m], "macro": reference.MACRO[m]} for m in MODELS}
acc_rows = analysis.accuracy_rows(ours, refs)
st.dataframe(acc_rows, hide_index=True, width="stretch", column_config=percent_columns(acc_rows[0]))
tta_note = (" None in the flip-TTA row: not measured (the report gives no such number; ours come from "
            "`python -m cifar.evaluate --flip-tta`)."
            if any(r["metric"].startswith("test accuracy, flip TTA") for r in acc_rows) else "")
st.caption("Train accuracy is measured on augmented batches during the best epoch, as the report's training log "
           f"does. Report notes: {reference.ACCURACY_NOTES['cnn']}; {reference.ACCURACY_NOTES['resnet18']}.{tta_note}")

st.subheader("Per-class test accuracy")
rows = analysis.per_class_rows(ours, reference.PER_CLASS_ACCURACY)
left, right = st.columns([1, 1])
with left:
    # Keyed on the rows themselves (ten small dicts): exact, whichever file or model availability changed.
    spec = chart_spec("per_class", json.dumps(rows, default=float), lambda: charts.per_class_accuracy(rows, TITLES))
    st.vega_lite_chart(spec=spec, width="stretch")
    st.caption("Bars: our models. Black ticks: the report's published per-class accuracy.")
with right:
    st.dataframe(rows, hide_index=True, width="stretch", column_config=percent_columns(rows[0]))
