"""Can I trust this map? For one image and one method, on both models: the sanity check (cascading
randomisation of a copy of the model) and the faithfulness scores (deletion and insertion curves against
a random order, infidelity, max-sensitivity). The scorecard page has the same over 200 images.
"""

import streamlit as st

from cifar import explain
from cifar import scorecard as sc
from cifar.models import get_model, list_models
from cifar_app import cache, formats, nav, pixels, scorecard_views, state, tables, widgets
from cifar_app.nav import PAGE_FILES
from cifar_app.store import Unavailable

MODELS = list_models()
MAP_SCALE = 2  # 32 px → 64 px per cascade step

st.title(nav.heading("explanation_check"))
st.caption("Two questions for one map. **Does it depend on the model?** Re-initialise the model's layers from the "
           "logits down, one block at a time, on a copy of it, and recompute the map: a map that stays the same "
           "describes the image, not the model (Adebayo et al. 2018). **Does it point at what the model uses?** "
           "Remove the pixels it ranks first and the prediction should fall fast (deletion, lower area is better); "
           "restore them into a blurred copy and it should rise fast (insertion, higher is better), faster than "
           "in a random order (Petsiuk et al. 2018). Each map explains the model's predicted class.")

pick = widgets.explain_image()
if pick is None:
    st.stop()
names = cache.classes()
choices = [*explain.METHODS, *explain.REFERENCES]
state.from_url(state.METHOD, "ec_method", state.choice({state.slug(m): m for m in choices} | {m: m for m in choices}))
st.session_state.setdefault("ec_method", "Guided Backprop")
method = st.selectbox("Method", choices, key="ec_method", persist_state="session",
                      help="; ".join(f"{m}: {explain.METHODS[m].help}" for m in explain.METHODS)
                      + "; Random: a random map (the floor); Sobel edges: an edge detector that never looks at the model")
state.share(**{state.IMAGE: pick["index"], state.METHOD: state.slug(method)})
c1, c2 = st.columns([1, 4])
with c1:
    widgets.image(pick["image"], 4, caption=pick["title"])
c2.page_link(PAGE_FILES["scorecard"], label="The scorecard: every method over 200 test images per model",
             icon=":material/fact_check:")
if method in explain.METHODS:
    c2.caption(f"{method} with its default settings ({explain.METHODS[method].help}).")

for model in MODELS:
    title = get_model(model).title
    st.header(title, divider="gray")
    try:
        cache.load_model(model)
        probs = cache.predict(model, pick["image"])
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    target = tables.attribution_target("predicted", probs, None, None)
    verdict = f"predicts **{names[target]}** (p = {formats.probability(probs[target])})"
    if pick["label"] is not None:
        verdict += " ✓" if target == pick["label"] else f", the image is a **{names[pick['label']]}** ✗"
    st.markdown(f"{title} {verdict}.")

    st.subheader("Sanity check: randomise the model", anchor=False)
    with st.spinner(f"Randomising {title} block by block and recomputing {method}…"):
        run = cache.sanity_cascade(model, pick["image"], target, method)
    labels = scorecard_views.step_labels(run["steps"])
    per_row = 6
    for start in range(0, len(labels), per_row):
        cols = st.columns(per_row)
        for col, i in zip(cols, range(start, min(start + per_row, len(labels)))):
            m = run["maps"][i]
            shown = explain.to_display(m, "absolute")
            with col:
                widgets.image(pixels.heat_image(shown, "absolute", scale=1), MAP_SCALE, caption=labels[i])
                col.caption(f"ρ|·| {run['scores']['spearman_abs'][i]:.2f} · SSIM {run['scores']['ssim'][i]:.2f}")
    st.vega_lite_chart(spec=scorecard_views.cascade_chart(run).to_dict(), width="stretch")
    last = run["scores"]["spearman_abs"][-1]
    if method in explain.REFERENCES:
        st.caption("A reference map: it never looks at the model, so the Sobel map stays identical and a random map "
                   "is redrawn at every step.")
    else:
        word = "still much like" if last >= sc.SANITY_FAIL else "unlike"
        st.caption(f"With every block re-initialised, the {method} map is {word} the original (Spearman of |attr| "
                   f"{last:.2f}; the scorecard calls a method failed from {sc.SANITY_FAIL:g}). Maps shown as |attr|. "
                   "Caveat: top-down randomisation keeps activation scales, which favours some methods (Binder et al. "
                   "2022).")

    st.subheader("Faithfulness: delete and insert pixels in the map's order", anchor=False)
    with st.spinner(f"Deletion and insertion curves of {method} on {title}…"):
        f = cache.faithfulness(model, pick["image"], target, method)
    a, b = st.columns([3, 2])
    with a:
        st.vega_lite_chart(spec=scorecard_views.image_curves_chart(f, method).to_dict(), width="stretch")
    with b:
        d, i = sc.auc(f["deletion"]), sc.auc(f["insertion"])
        rd, ri = sc.auc(f["random_deletion"]), sc.auc(f["random_insertion"])
        st.metric("Deletion AUC (lower is better)", f"{d:.3f}", f"{d - rd:+.3f} vs random order", delta_color="inverse")
        st.metric("Insertion AUC (higher is better)", f"{i:.3f}", f"{i - ri:+.3f} vs random order")
        st.metric("Infidelity (lower is better)", f"{f['infidelity']:.3g}",
                  help="captum.metrics.infidelity, normalize=True: how badly map · noise predicts the change of "
                       "the output under Gaussian noise (std 0.1 per pixel)")
        st.metric("Max-sensitivity (lower is better)", "–" if f["sensitivity"] is None else f"{f['sensitivity']:.3f}",
                  help="captum.metrics.sensitivity_max: the largest relative change of the map when the image moves "
                       "by at most 0.02 per pixel (normalised units)")
    st.caption(f"{f['steps']} steps of {1024 // f['steps']} pixels; deletion towards a black image, insertion from a "
               "blurred copy (Gaussian, kernel 11, sigma 5). The random order is one seeded random map.")
