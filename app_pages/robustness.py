"""Robustness: both models under CIFAR-10-C corruptions and under FGSM/PGD, as summary curves from
checkpoints/robustness.json and live on one image, with the attributions beside the predictions."""

import numpy as np
import streamlit as st

from cifar import adversarial, corruptions, explain
from cifar.models import get_model, list_models
from cifar_app import cache, formats, nav, pixels, robust_views, state, tables, widgets
from cifar_app.store import Unavailable

MODELS = list_models()
SCALE = 4  # 32 px → 128 px
DEFAULT_METHOD = "Grad-CAM"  # the cheapest map that reads well on 32 px (0.02 s on ResNet18)

st.title(nav.heading("robustness"))
st.caption("How each model's accuracy falls under the 15 CIFAR-10-C corruptions (Hendrycks & Dietterich 2019, "
           "re-implemented in numpy/PIL) and under L∞ adversarial attacks (captum FGSM and PGD in [0, 1] pixel "
           "space); then one image, live, with each model's prediction and attribution.")

# --------------------------------------------------------------------------- the summary
try:
    res = cache.robustness()
except Unavailable as e:
    res = None
    widgets.show_problem(e)
if res is None:
    st.info("No sweep results in the checkpoint folder yet. Compute them (resumable; see the README for its time):",
            icon=":material/info:")
    st.code("python -m cifar.robustness --data-dir ../shared/cifar10", language="bash")
else:
    st.subheader("Across the test set")
    st.caption(robust_views.provenance(res))
    st.dataframe(robust_views.summary_rows(res), hide_index=True, width="stretch")
    base = res.get("baseline")
    st.caption(f"Mean corruption accuracy: over every corruption and severity. Error added: mean of (corrupted error − "
               f"clean error), in points. mCE and relative mCE follow Hendrycks & Dietterich with "
               f"**{get_model(base).title if base in MODELS else 'no'}** as the baseline instead of AlexNet (so it "
               f"scores 100% by definition; below 100% = more robust). Anchor: {robust_views.ANCHOR}")
    c1, c2 = st.columns(2)
    with c1:
        st.vega_lite_chart(spec=cache.chart_spec("rob_bars", res.get("written"), lambda: robust_views.corruption_bars(res)),
                           width="stretch")
    with c2:
        st.vega_lite_chart(spec=cache.chart_spec("rob_sev", res.get("written"), lambda: robust_views.severity_lines(res)),
                           width="stretch")
    c1, c2 = st.columns([2, 3])
    with c1:
        st.vega_lite_chart(spec=cache.chart_spec("rob_eps", res.get("written"), lambda: robust_views.epsilon_lines(res)),
                           width="stretch")
    with c2:
        st.markdown(f"**Accuracy under attack** (%), on its own seeded sample of {res.get('subset', {}).get('adv_n', '?')} "
                    "test images; the attacks push each image away from its true class.")
        st.dataframe(robust_views.epsilon_table(res), hide_index=True, width="stretch")
    with st.expander("Every corruption and severity, and where our corruptions differ from the reference"):
        st.dataframe(robust_views.corruption_table(res), hide_index=True, width="stretch")
        for name, c in corruptions.CORRUPTIONS.items():
            if c.deviation:
                st.markdown(f"- **{c.title}**: {c.deviation}.")
        st.caption(f"Command: `{res.get('command', '?')}`")

# --------------------------------------------------------------------------- one image, live
st.subheader("One image, live")
pick = widgets.explain_image()
if pick is None:
    st.stop()
names = cache.classes()
probes = {"corruption": "a corruption", "attack": "an adversarial attack"}
titles = {n: c.title for n, c in corruptions.CORRUPTIONS.items()}
methods = list(explain.METHODS)
state.from_url(state.PROBE, "rb_probe", state.choice(list(probes)))
state.from_url(state.CORRUPTION, "rb_corruption", state.choice(list(titles)))
state.from_url(state.SEVERITY, "rb_severity", state.index_in(1, 5))
state.from_url(state.ATTACK, "rb_attack", state.choice(list(adversarial.ATTACKS)))
state.from_url(state.EPSILON, "rb_eps", state.number_in(0.5, 8.0))
state.from_url(state.METHOD, "rb_method", state.choice({state.slug(m): m for m in methods} | {m: m for m in methods}))
for key, default in (("rb_probe", "corruption"), ("rb_corruption", "gaussian_noise"), ("rb_severity", 3),
                     ("rb_attack", "pgd"), ("rb_eps", 2.0), ("rb_method", DEFAULT_METHOD)):
    st.session_state.setdefault(key, default)

c1, c2, c3 = st.columns([2, 3, 2])
probe = c1.segmented_control("Probe with", list(probes), format_func=probes.get, key="rb_probe",
                             persist_state="session") or "corruption"
if probe == "corruption":
    name = c2.selectbox("Corruption", list(titles), format_func=lambda n: f"{titles[n]} ({corruptions.CORRUPTIONS[n].family})",
                        key="rb_corruption", persist_state="session")
    severity = c2.slider("Severity", 1, 5, key="rb_severity", persist_state="session",
                         help="the CIFAR-10-C parameters of this severity: "
                              f"{corruptions.CORRUPTIONS[name].params[st.session_state['rb_severity'] - 1]}")
    shared = {state.PROBE: probe, state.CORRUPTION: name, state.SEVERITY: severity}
else:
    attack = c2.radio("Attack", list(adversarial.ATTACKS), format_func=lambda a: adversarial.ATTACKS[a].title,
                      key="rb_attack", horizontal=True, persist_state="session",
                      help="; ".join(f"{a.title}: {a.help}" for a in adversarial.ATTACKS.values()))
    eps = c2.slider("ε (L∞ budget, in 1/255 of the pixel range)", 0.5, 8.0, step=0.5, key="rb_eps",
                    persist_state="session", help="each pixel may move at most ε/255; 8/255 is the usual budget")
    search = "pgd" if c2.toggle("Smallest flipping ε by PGD (slower)", help="about 10× slower than FGSM",
                                key="rb_flip_pgd", persist_state="session") else "fgsm"
    shared = {state.PROBE: probe, state.ATTACK: attack, state.EPSILON: f"{eps:g}"}
method = c3.selectbox("Attribution", methods, key="rb_method", persist_state="session",
                      help="each image explains its own predicted class, with the method's default settings")
shared |= {state.IMAGE: pick["index"], state.METHOD: state.slug(method)}
state.share(**shared)
params = explain.default_params(method)


def heat(image: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """The attribution over the image it explains (signed: red raises the class, blue lowers it)."""
    mode = "signed" if explain.METHODS[method].signed else "absolute"
    return pixels.overlay(image, explain.to_display(attr, mode), 0.6, mode, scale=1)


def verdict(probs: np.ndarray, clean_probs: np.ndarray) -> str:
    pred, before = int(probs.argmax()), int(clean_probs.argmax())
    change = "unchanged" if pred == before else f":red[changed from {names[before]}]"
    return f"**{names[pred]}** ({formats.probability(probs[pred])}), {change}"


for model in widgets.model_columns():
    try:
        cache.load_model(model)
        clean_probs = cache.predict(model, pick["image"])
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    clean_pred = int(clean_probs.argmax())
    clean_attr = cache.attribution(model, pick["image"], clean_pred, method, params)
    if probe == "corruption":
        bad = cache.corrupted(pick["image"], name, severity, pick["index"] if pick["index"] is not None else 0)
        probs = cache.predict(model, bad)
        attr = cache.attribution(model, bad, int(probs.argmax()), method, params)
        shown_bad, caption_bad = bad, f"{titles[name]}, severity {severity}"
    else:
        with st.spinner(f"{adversarial.ATTACKS[attack].title} on {get_model(model).title}…"):
            adv = cache.adversarial(model, pick["image"], attack, eps / 255)
            probs = cache.predict_pixels(model, adv.pixels)
            attr = cache.attribution_pixels(model, adv.pixels, int(probs.argmax()), method, params)
        shown_bad = adversarial.pixels_to_image(adv.pixels)
        caption_bad = f"{adversarial.ATTACKS[attack].title}, ε = {eps:g}/255"
    st.markdown(f"Clean: **{names[clean_pred]}** ({formats.probability(clean_probs[clean_pred])}) · "
                f"{caption_bad}: {verdict(probs, clean_probs)}")
    # clean on the left, probed on the right; one st.columns per row so that the rows line up
    left, right = st.columns(2)
    with left:
        widgets.image(pick["image"], SCALE, caption="clean")
    with right:
        widgets.image(shown_bad, SCALE, caption=caption_bad)
    left, right = st.columns(2)
    with left:
        widgets.image(heat(pick["image"], clean_attr), SCALE, caption=f"{method}: {names[clean_pred]}")
    with right:
        widgets.image(heat(shown_bad, attr), SCALE, caption=f"{method}: {names[int(probs.argmax())]}")
    st.caption(tables.top_k_caption(probs, names))
    if probe == "attack":
        left, right = st.columns(2)
        with left:
            widgets.image(adversarial.amplified(adv.delta, adv.epsilon), SCALE,
                          caption=f"the perturbation ×{127.5 / eps:.0f} (grey = 0)")
        with st.spinner("Searching the smallest ε that flips the prediction…"):
            flip = cache.min_flip(model, pick["image"], search)
        with right:
            if flip is None:
                st.markdown(f"No ε up to 8/255 makes {adversarial.ATTACKS[search].title} change this prediction.")
            else:
                flip_probs = cache.predict_pixels(model, flip.pixels)
                widgets.image(adversarial.amplified(flip.delta, flip.epsilon), SCALE,
                              caption="the smallest flipping one, amplified")
                st.markdown(f"Smallest flipping ε ({adversarial.ATTACKS[search].title}): **{flip.epsilon * 255:g}/255** → "
                            f"**{names[int(flip_probs.argmax())]}** ({formats.probability(flip_probs.max())}); "
                            f"searched in steps of {adversarial.EPSILON_UNIT * 255:g}/255 by captum's "
                            "MinParamPerturbation.")
st.caption("Corruptions are seeded by the image's test index, so an image here looks as it did in the sweep. "
           "Attacks push away from each model's own clean prediction; predictions and attributions of adversarial "
           "images use the exact float pixels (the picture shown is rounded to 8 bits).")
