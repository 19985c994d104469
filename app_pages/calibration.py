"""Calibration: can the models' confidence be read as a probability, and can they tell an image unlike CIFAR-10?

Reads the stored test-set predictions and what `python -m cifar.trust` shipped beside each checkpoint
(the temperature, the OOD table); needs no dataset and no weights.
"""

import streamlit as st

from cifar import ood
from cifar.models import get_model
from cifar_app import cache, formats, nav, state, trust, trust_charts, widgets
from cifar_app.store import Unavailable, file_key

st.title(nav.heading("calibration"))
state.share()
data_name = widgets.data_note()
try:
    full = cache.test_images().full
except Unavailable:
    full = False
st.caption(
    f"A model is calibrated when, of the images it gives 80% confidence, 80% are right. Measured on the "
    f"{data_name} test set's stored predictions. **Temperature scaling** (Guo et al. 2017) divides the logits by one "
    "number T fitted on the checkpoint's own 5,000-image validation split (never the test set) by minimising the "
    "negative log-likelihood; it changes no prediction, only how sure each one sounds. "
    + ("The dataset is here, but the page uses the temperature and OOD statistics shipped in the checkpoint "
       "folder (refit them with the command below each model)." if full else
       "No dataset here (the demo): the page uses the temperature and OOD statistics shipped in the checkpoint "
       "folder, fitted where the dataset was."))

views: dict = {}
for model in widgets.model_columns():
    try:
        info = cache.trust_file(model)
        view = cache.calibration_view(model)
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    views[model] = (info, view)
    t = view["temperature"]
    before, after = view["summary"]["before"], view["summary"]["after"]
    a, b, c = st.columns(3)
    a.metric("temperature T", f"{t:.4g}", help=(
        "T > 1 softens overconfident probabilities; T < 1 sharpens underconfident ones (label smoothing in "
        "training makes a model underconfident). " + info["fit"]["split"] + f"; validation NLL "
        f"{info['fit']['nll_before']:.4f} → {info['fit']['nll_after']:.4f}."))
    b.metric("ECE, 15 bins", f"{after['ece']:.4f}", f"{after['ece'] - before['ece']:+.4f} vs T = 1", delta_color="inverse",
             help=f"before: {before['ece']:.4f}; |accuracy − confidence| weighted over 15 equal-width bins")
    c.metric("NLL", f"{after['nll']:.4f}", f"{after['nll'] - before['nll']:+.4f} vs T = 1", delta_color="inverse",
             help=f"before: {before['nll']:.4f}; mean −log p(true class) on the test set")
    key = (model, str(cache.paths().evaluation(model)), file_key(cache.paths().evaluation(model)), t)
    st.markdown("**Reliability diagram** (bars: accuracy per confidence bin; dots: the bin's mean confidence; "
                "on the dashed line confidence = accuracy)")
    st.vega_lite_chart(spec=cache.chart_spec("reliability", key, lambda: trust_charts.reliability_diagram(view["bins"])),
                       width="stretch")
    st.vega_lite_chart(spec=cache.chart_spec("bin_counts", key, lambda: trust_charts.bin_counts(view["bins"])),
                       width="stretch")
    st.caption("Images per bin (log scale): most test images sit in the top bin, so its gap weighs most in the ECE.")
    side = "after" if state.calibrated() else "before"
    conf = view["confidences"][side]
    st.markdown(f"**Confidence of right and wrong predictions** ({cache.probability_note(model)}, the sidebar switch)")
    st.vega_lite_chart(spec=cache.chart_spec("conf_hist", (key, side), lambda: trust_charts.confidence_histogram(
        conf["confidence"], conf["correct"])), width="stretch")
    st.code(f"python -m cifar.trust --checkpoint {cache.paths().checkpoint(model).as_posix()} --data-dir <CIFAR-10 folder>",
            language="bash", wrap_lines=True)
    st.caption(f"Made by `{info['provenance']['command']}` on {info['provenance']['hardware']['scoring']} "
               f"({info['provenance']['created']}), data: {info['provenance']['data']['name']}.")

if not views:
    st.stop()

st.subheader("Before and after temperature scaling, on the test set")
num = st.column_config.NumberColumn(format="%.4f")
for col, (model, (info, view)) in zip(st.columns(len(views)), views.items()):
    col.markdown(f"**{get_model(model).title}** ({view['n']:,} test images)")
    records = trust.summary_records(view)
    col.dataframe(records, hide_index=True, width="stretch",
                  column_config={k: num for k in records[0] if k != "metric"})

st.subheader("Per class")
st.caption("For the images each model predicts as a class: how many, how sure it is on average, and how many of "
           "them really are that class (its precision). A positive gap is overconfidence. Class-wise ECE treats "
           "each class's probability as a yes/no forecast for every test image.")
names = cache.classes()
for model, (info, view) in views.items():
    with st.expander(f"{get_model(model).title}: per-class calibration", expanded=False):
        rows = trust.per_class_records(view, names)
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={k: num for k in rows[0] if k not in ("class", "predicted")})

st.subheader("Out-of-distribution detection")
st.caption(
    "How well each detector tells CIFAR-10 test images (in) from images no CIFAR-10 class describes (out). "
    + " ".join(f"**{d.title}**: {d.help}." for d in (*ood.DETECTORS.values(), ood.COMBINED))
    + " AUROC: the chance an in-image scores higher than an out-image (1 is perfect, 0.5 is chance). FPR@95: the "
    "share of out-images still taken for CIFAR-10 at the threshold that keeps 95% of the test images (lower is "
    "better). The upload page calls an image unlike CIFAR-10 when the combined detector flags it: 5% of the "
    "test images are, whichever detector would flag them.")
for model, (info, view) in views.items():
    st.markdown(f"**{get_model(model).title}**: thresholds at 95% of the {info['ood']['in_distribution']}: "
                + ", ".join(f"{ood.DETECTORS[k].title if k in ood.DETECTORS else 'combined'} {v:.4g}"
                            for k, v in info["ood"]["thresholds"].items())
                + f"; Mahalanobis on `{info['ood']['mahalanobis']['layer']}` "
                  f"({info['ood']['mahalanobis']['dim']} features, {info['ood']['mahalanobis']['n_train']:,} "
                  "training images)")
    st.dataframe(trust.ood_records(info), hide_index=True, width="stretch")
st.caption(f"{formats.percent(1 - ood.TPR, 0)} of real CIFAR-10 test images are flagged by each detector by "
           "construction. MSP: max softmax probability. Each set holds "
           + " and ".join(sorted({f"{v[0]['ood']['n_per_set']:,}" for v in views.values()}))
           + " images made offline from a seed (`cifar/ood_sets.py`); blurred and patch-shuffled CIFAR-10 images are "
           "the hard, near-distribution cases.")
