"""Attributions (Captum): which pixels push a class's logit, for both models side by side on one image."""

import streamlit as st

from cifar import SHORT_CLASSES, analysis
from cifar.app_data import MODELS, TITLES, Unavailable
from cifar.explain import default_gradcam_layer, to_display
from app_pages._shared import (attribution, explain_image, layer_options, load_model, predict, show_problem,
                           thumbnail)

st.title("Attributions")
st.caption("Red pixels raise the target class's logit, blue ones lower it (absolute mode: brighter = more "
           "influence, either way). Both models explain the same image with the same settings.")

pick = explain_image("at")
if pick is None:
    st.stop()

METHODS = list(analysis.METHOD_PARAMS)
HELP = {
    "Integrated Gradients": "gradients averaged along a straight path from a baseline image to this one; "
                            "the map sums to logit(image) − logit(baseline)",
    "Saliency": "the gradient of the logit with respect to each pixel",
    "SmoothGrad": "the gradient averaged over noisy copies of the image",
    "Guided Backprop": "gradients with negative ReLU gradients zeroed",
    "Grad-CAM": "a layer's channels weighted by their mean gradient, upsampled (≥ 0)",
    "Occlusion": "how much the logit drops when a square patch is blacked out",
}
c1, c2, c3 = st.columns([2, 2, 3])
method = c1.selectbox("Method", METHODS, key="at_method", persist_state="session", help="; ".join(f"{k}: {v}" for k, v in HELP.items()))
targets = {"predicted": "each model's prediction", "true": "the true class", "class": "a class I pick"}
modes = list(targets) if pick["label"] is not None else ["predicted", "class"]
if st.session_state.get("at_target") not in modes:  # "true" is gone for an upload
    st.session_state["at_target"] = "predicted"
target_mode = c2.radio("Explain", modes, format_func=targets.get, key="at_target", horizontal=False)
chosen = c2.selectbox("Class", range(10), format_func=SHORT_CLASSES.__getitem__, key="at_class",
                      disabled=target_mode != "class", label_visibility="collapsed")

params = {}
with c3:
    if method == "Integrated Gradients":
        params["steps"] = st.slider("Steps", 8, 200, 50, step=2, key="at_steps")
    if method == "SmoothGrad":
        params["n_samples"] = st.slider("Noisy samples", 4, 64, 20, key="at_samples")
        params["stdev"] = st.slider("Noise std (normalised units; the input spans 2.0)", 0.01, 0.5, 0.15, key="at_stdev")
    if method == "Occlusion":
        params["window"] = st.slider("Window (pixels)", 2, 16, 8, key="at_window")
        params["stride"] = st.slider("Stride (pixels)", 1, 8, 4, key="at_stride")
    if method in ("Integrated Gradients", "Occlusion"):
        params["baseline"] = st.radio("Baseline", ["black", "zero"], key="at_baseline", horizontal=True,
                                      format_func={"black": "black image", "zero": "mid-grey (0)"}.get)
    if method == "Grad-CAM":
        st.caption("Grad-CAM layer per model (default: the last 8×8 stage).")
    display = st.radio("Display", ["signed", "absolute"], key="at_display", horizontal=True)
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.7, key="at_opacity")

cols = st.columns([1] + [2] * len(MODELS))
with cols[0]:
    st.image(thumbnail(pick["image"], 6), caption=pick["title"])
for col, model in zip(cols[1:], MODELS):
    with col:
        st.subheader(TITLES[model])
        try:
            net = load_model(model)
            probs = predict(model, pick["image"])
        except Unavailable as e:
            show_problem(e)
            continue
        run_params = dict(params)
        if method == "Grad-CAM":
            layers = layer_options(model)
            default = default_gradcam_layer(net)
            names = list(layers) if default in layers else [default, *layers]
            labels = {**layers, default: layers.get(default, f"{default} (stage output)")}
            run_params["layer"] = st.selectbox("Grad-CAM layer", names, index=names.index(default), format_func=labels.get,
                                               key=f"at_layer_{model}")
        target = analysis.attribution_target(target_mode, probs, pick["label"], chosen)
        with st.spinner(f"{method} on {TITLES[model]}…"):
            attr = attribution(model, pick["image"], target, method, analysis.method_params(method, **run_params))
        shown = to_display(attr, display)
        a, b = st.columns(2)
        a.image(analysis.overlay(pick["image"], shown, opacity, display, scale=6), caption="overlay")
        b.image(analysis.heat_image(shown, display, scale=6), caption=f"{display} map")
        pred = int(probs.argmax())
        st.markdown(f"Target **{SHORT_CLASSES[target]}** (p = {probs[target]:.0%}) · predicted "
                    f"**{SHORT_CLASSES[pred]}** · {analysis.top_k_caption(probs)}")
