"""Overview: the two models side by side, as in the report's comparison tables, with its numbers beside ours."""

import json

import streamlit as st

from cifar.models import get_model, list_models
from cifar_app import cache, charts, formats, nav, reference, state, tables, widgets
from cifar_app.store import Unavailable

MODELS = list_models()

st.title(nav.heading("overview"))
data_name = widgets.data_note()
st.caption(f"Our checkpoints next to the numbers the reference report published (columns marked *report*). "
           f"Every *ours* number is read from the checkpoint's metadata and its saved test-set predictions, "
           f"measured on {data_name}; the report's are on the original CIFAR-10.")

ours: dict = {}
for model in widgets.model_columns():
    try:
        meta = cache.metadata(model)
    except Unavailable as e:
        widgets.show_problem(e)
        ours[model] = None
        continue
    ours[model] = {"meta": meta, "summary": None}
    try:
        ours[model]["summary"] = s = cache.summary(model)
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    ref_test = reference.ACCURACY[model]["test"]
    a, b, c = st.columns([3, 2, 2])
    a.metric("test accuracy", formats.percent(s["accuracy"]),
             f"{formats.points(s['accuracy'] - ref_test)} vs report", help=f"the report: {formats.percent(ref_test)}")
    b.metric("macro F1", f"{s['classification']['macro']['f1']:.3f}")
    c.metric("parameters", f"{meta['parameters'] / 1e6:.1f} M", help=f"{meta['parameters']:,}")
    st.caption(tables.versus_report(meta, data_name, reference.RECIPE[model]))

st.subheader("Model and training")
model_rows = tables.model_rows(ours, {m: cache.depth(m) if ours.get(m) else None for m in MODELS}, reference.OVERVIEW)
for col, model in zip(st.columns(len(MODELS)), MODELS):
    # st.table wraps long cells (recipes, hardware); one table per model keeps ours beside the report's.
    col.markdown(f"**{get_model(model).title}**")
    col.table([{"": r[""], "ours": r[f"{model} · ours"], "report": r[f"{model} · report"]} for r in model_rows],
              hide_index=True)


def short_headers(row: dict) -> dict:
    """Short headers ("CNN ours", "ResNet report") for the model columns of a table."""
    return {k: st.column_config.TextColumn(f"{get_model(k.split(' · ')[0]).short} {k.split(' · ')[1]}")
            for k in row if " · " in k}


st.subheader("Accuracy and macro averages")
refs = {m: {"accuracy": reference.ACCURACY[m], "macro": reference.MACRO[m]} for m in MODELS}
acc_rows = tables.accuracy_rows(ours, refs)
st.dataframe(tables.display_rows(acc_rows), hide_index=True, width="stretch", column_config=short_headers(acc_rows[0]))
tta_note = (" The report gives no flip-TTA number (—); ours come from `python -m cifar.evaluate --flip-tta`."
            if any(r["metric"].startswith("test accuracy, flip TTA") for r in acc_rows) else "")
st.caption("— = not measured or not published. Train accuracy is measured on augmented batches during the best "
           f"epoch, as the report's training log does. Report notes: {reference.ACCURACY_NOTES['cnn']}; "
           f"{reference.ACCURACY_NOTES['resnet18']}.{tta_note}")

st.subheader("Per-class test accuracy")
rows = tables.per_class_rows(ours, reference.PER_CLASS_ACCURACY)
left, right = st.columns([1, 1])
with left:
    # Keyed on the rows themselves (ten small dicts): exact, whichever file or model availability changed.
    titles = {m: get_model(m).title for m in MODELS}
    spec = cache.chart_spec("per_class", json.dumps(rows, default=float), lambda: charts.per_class_accuracy(rows, titles))
    st.vega_lite_chart(spec=spec, width="stretch")
    st.caption("Dots: our models. Black ticks: the report's published per-class accuracy. The axis starts just "
               "below the lowest value, so differences of a few points show.")
with right:
    st.dataframe(tables.display_rows(rows), hide_index=True, width="stretch", column_config=short_headers(rows[0]))

state.share()
