"""Attributions (Captum): which pixels push a class's logit, for both models side by side on one image.

Two views of the same image and target: every registered method for both models at once (the grid),
or one method with its settings (the detail). The method widgets come from cifar.explain's registry.
"""

import streamlit as st

from cifar import explain
from cifar.models import get_model, list_models
from cifar_app import cache, formats, nav, pixels, state, tables, widgets
from cifar_app.store import Unavailable

MODELS = list_models()
GRID_SCALE, DETAIL_SCALE = 5, 8  # 32 px → 160 px in the grid, 256 px in the detail view
DARK = 0.25  # share of near-black pixels above which a black baseline gets a hint

st.title(nav.heading("attributions"))
st.caption("Red pixels raise the target class's logit, blue ones lower it (absolute mode: brighter = more "
           "influence, either way). Both models explain the same image with the same settings.")

pick = widgets.explain_image()
if pick is None:
    st.stop()
names = cache.classes()
st.page_link(nav.PAGE_FILES["training_images"], label="The training images behind this", icon=":material/dataset:")

# --------------------------------------------------------------------------- the shared controls
views = {"grid": "All methods", "detail": "One method in detail"}
methods = list(explain.METHODS)
targets = {"predicted": "each model's prediction", "true": "the true class", "class": "a class I pick",
           "contrast": "why A, not B"}
modes = list(targets) if pick["label"] is not None else ["predicted", "class", "contrast"]
# "why A, not B": the map of logit A − logit B. A is each model's prediction or a class; B the true class or one.
why_options = ["predicted", *names]
not_options = (["true"] if pick["label"] is not None else []) + list(names)
state.from_url(state.VIEW, "at_view", state.choice(list(views)))
state.from_url(state.METHOD, "at_method", state.choice({state.slug(m): m for m in methods} | {m: m for m in methods}))
state.from_url(state.TARGET, "at_target", state.choice(modes))
state.from_url(state.CLASS, "at_class", state.choice({n: i for i, n in enumerate(names)}))
state.from_url(state.WHY, "at_why", state.choice(why_options))
state.from_url(state.WHY_NOT, "at_not", state.choice(not_options))
if st.session_state.get("at_not") not in not_options:  # "true" is gone for an upload
    st.session_state["at_not"] = not_options[0]
st.session_state.setdefault("at_why", "predicted")
state.from_url(state.DISPLAY, "at_display", state.choice(["signed", "absolute"]))
state.from_url(state.OPACITY, "at_opacity", state.number_in(0.0, 1.0))
if st.session_state.get("at_target") not in modes:  # "true" is gone for an upload
    st.session_state["at_target"] = "predicted"
# Defaults through the session, not the widgets: a widget given both warns, and links set the session.
for key, default in (("at_view", "grid"), ("at_opacity", 0.7)):
    st.session_state.setdefault(key, default)

c1, c2, c3 = st.columns([2, 2, 3])
view = c1.segmented_control("View", list(views), format_func=views.get, key="at_view",
                            persist_state="session") or "grid"
method = None
if view == "detail":
    method = c1.selectbox("Method", methods, key="at_method", persist_state="session",
                          help="; ".join(f"{m}: {explain.METHODS[m].help}" for m in methods))
target_mode = c2.radio("Explain", modes, format_func=targets.get, key="at_target", persist_state="session")
chosen = c2.selectbox("Class", range(len(names)), format_func=names.__getitem__, key="at_class",
                      persist_state="session", disabled=target_mode != "class", label_visibility="collapsed")
why = why_not = None
if target_mode == "contrast":
    a_col, b_col = c2.columns(2)
    why = a_col.selectbox("Why", why_options, key="at_why", persist_state="session",
                          format_func=lambda v: "prediction" if v == "predicted" else v)
    why_not = b_col.selectbox("and not", not_options, key="at_not", persist_state="session",
                              format_func=lambda v: "true class" if v == "true" else v,
                              help="The map explains logit A − logit B: red pixels push towards A and away from B.")
with c3:
    display = st.radio("Display", ["signed", "absolute"], key="at_display", horizontal=True, persist_state="session")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, key="at_opacity", persist_state="session")

# The method's own settings, drawn from its registry entry (a layer parameter is per model, below);
# each travels in the address under its own name (?steps=32&baseline=zero).
params: dict = {}
if method is not None:
    with c3:
        for p in explain.METHODS[method].params:
            key = f"at_{p.name}"
            if p.kind == "layer":
                continue
            parse = (state.choice(list(p.choices)) if p.kind == "choice" else
                     state.index_in(int(p.low), int(p.high)) if p.kind == "int" else state.number_in(p.low, p.high))
            state.from_url(p.name, key, parse)
            st.session_state.setdefault(key, p.default)
            if p.kind == "int":
                params[p.name] = st.slider(p.label, int(p.low), int(p.high), step=int(p.step or 1), key=key,
                                           help=p.help or None, persist_state="session")
            elif p.kind == "float":
                params[p.name] = st.slider(p.label, float(p.low), float(p.high), step=float(p.step or 0.01), key=key,
                                           help=p.help or None, persist_state="session")
            else:
                labels = dict(zip(p.choices, p.choice_labels or p.choices))
                params[p.name] = st.radio(p.label, list(p.choices), format_func=labels.get, horizontal=True,
                                          key=key, help=p.help or None, persist_state="session")

# --------------------------------------------------------------------------- per model: prediction, target
ready: dict[str, dict] = {}
for model in MODELS:
    try:
        cache.load_model(model)
        probs = cache.predict(model, pick["image"])
    except Unavailable as e:
        ready[model] = {"problem": e}
        continue
    if target_mode == "contrast":
        a = int(probs.argmax()) if why == "predicted" else names.index(why)
        b = int(pick["label"]) if why_not == "true" else names.index(why_not)
        if a == b:
            ready[model] = {"skip": f"{get_model(model).title} predicts **{names[a]}**, which is B too: "
                                    "'why A, not A' has no answer. Pick another class as B."}
            continue
        ready[model] = {"probs": probs, "target": a, "contrast": b}
    else:
        ready[model] = {"probs": probs, "target": tables.attribution_target(target_mode, probs, pick["label"], chosen)}
    try:  # a warning when the image is unlike CIFAR-10 for this model (the Calibration page's detectors)
        check = cache.ood_check(model, pick["image"])
        ready[model]["unlike"] = check["text"] if check["unlike"] else None
    except Unavailable:
        ready[model]["unlike"] = None  # the Calibration page names the missing file and its fix

shared = {state.IMAGE: pick["index"], state.VIEW: view, state.TARGET: target_mode,
          state.CLASS: names[chosen] if target_mode == "class" else None,
          state.METHOD: state.slug(method) if method else None, state.DISPLAY: display,
          state.WHY: why, state.WHY_NOT: why_not,
          state.OPACITY: f"{opacity:g}", **params}


def usable(model: str) -> bool:
    """Whether this model has a map to show (its checkpoint loads, and its contrast has two classes)."""
    return "problem" not in ready[model] and "skip" not in ready[model]


def target_text(r: dict) -> str:
    """"target **dog** (p = 0.71)", or for a contrast "why **dog** (p = 0.71), not **deer** (p = 0.12)"."""
    p = r["probs"]
    t = f"**{names[r['target']]}** (p = {formats.probability(p[r['target']])})"
    if "contrast" in r:
        return f"why {t}, not **{names[r['contrast']]}** (p = {formats.probability(p[r['contrast']])})"
    return f"target {t}"


def heat(model: str, name: str, run_params: dict):
    """(the map scaled for display, its display mode) of one method for one model."""
    attr = cache.attribution(model, pick["image"], ready[model]["target"], name, run_params,
                             contrast=ready[model].get("contrast"))
    mode = display if explain.METHODS[name].signed else "absolute"  # an unsigned map has no blue half
    return explain.to_display(attr, mode), mode


def dark_hint(names_with_black: list[str], where: str) -> None:
    """Say so when a black baseline meets a dark object: those pixels already look "absent" to it."""
    share = pixels.dark_share(pick["image"])
    if names_with_black and share >= DARK:
        verb = "treats" if len(names_with_black) == 1 else "treat"
        st.info(f"{formats.percent(share, 0)} of the centre of this image is near black. With a black baseline, "
                f"{' and '.join(names_with_black)} {verb} those pixels as already absent, so they get little "
                f"attribution whatever their role: a dark object can look unimportant. {where}",
                icon=":material/contrast:")


if view == "grid":
    state.share(**shared)
    with_black = [m for m in methods if explain.METHODS[m].uses_baseline
                  and explain.default_params(m).get("baseline") == "black"]
    dark_hint(with_black, "Compare with the mid-grey baseline in *One method in detail*.")
    head = st.columns([2, 3, 3])
    with head[0]:
        widgets.image(pick["image"], 4, caption=pick["title"])
    for col, model in zip(head[1:], MODELS):
        col.markdown(f"**{get_model(model).title}**")
        r = ready[model]
        if "problem" in r:
            with col:
                widgets.show_problem(r["problem"])
            continue
        if "skip" in r:
            col.info(r["skip"])
            continue
        col.caption(f"{target_text(r)} · "
                    f"{tables.top_k_caption(r['probs'], names)}  \nleft: overlay · right: the map alone")
        if r["unlike"]:
            col.warning(r["unlike"], icon=":material/warning:")
    todo = [(m, model) for m in methods for model in MODELS if usable(model)]
    bar = st.progress(0.0, text="Computing attributions…") if todo else None
    done = 0
    for name in methods:
        row = st.columns([2, 3, 3])
        row[0].markdown(f"**{name}**")
        row[0].caption(explain.METHODS[name].help)
        for col, model in zip(row[1:], MODELS):
            if not usable(model):
                continue
            shown, mode = heat(model, name, explain.default_params(name))
            a, b = col.columns(2)
            with a:
                widgets.image(pixels.overlay(pick["image"], shown, opacity, mode, scale=1), GRID_SCALE)
            with b:
                widgets.image(pixels.heat_image(shown, mode, scale=1), GRID_SCALE)
            done += 1
            if bar is not None:
                bar.progress(done / len(todo), text=f"{name} on {get_model(model).title}")
    if bar is not None:
        bar.empty()
    st.caption("Every method with its default settings (Integrated Gradients: 50 steps, black baseline; SmoothGrad: "
               "20 samples; Occlusion: 8-pixel window, stride 4; Grad-CAM: each model's last 8×8 stage). Left: "
               "overlay; right: the map alone. Open *One method in detail* to change them.")
else:
    spec = explain.METHODS[method]
    if spec.uses_baseline and params.get("baseline") == "black":
        dark_hint([method], "Try the mid-grey baseline above.")
    widgets.image(pick["image"], 4, caption=pick["title"])
    for model in MODELS:  # one row per model: overlay and map at 256 px each, then the numbers
        st.subheader(get_model(model).title)
        r = ready[model]
        if "problem" in r:
            widgets.show_problem(r["problem"])
            continue
        if "skip" in r:
            st.info(r["skip"])
            continue
        a, b, info = st.columns([2, 2, 3])
        run_params = dict(params)
        with info:
            pred = int(r["probs"].argmax())
            st.markdown(f"{target_text(r)[0].upper()}{target_text(r)[1:]} · predicted **{names[pred]}** · "
                        f"{tables.top_k_caption(r['probs'], names)}")
            if r["unlike"]:
                st.warning(r["unlike"], icon=":material/warning:")
            if any(p.kind == "layer" for p in spec.params):
                layers = cache.layer_options(model)
                default = cache.gradcam_layer(model)
                options = list(layers) if default in layers else [default, *layers]
                labels = {**layers, default: layers.get(default, f"{default} (stage output)")}
                key = f"at_layer_{model}"
                state.from_url(f"{state.LAYER}_{model}", key, state.choice(options))
                st.session_state.setdefault(key, default)
                run_params["layer"] = st.selectbox("Grad-CAM layer", options, format_func=labels.get, key=key,
                                                   persist_state="session")
                shared[f"{state.LAYER}_{model}"] = run_params["layer"]
        with st.spinner(f"{method} on {get_model(model).title}…"):
            shown, mode = heat(model, method, run_params)
        with a:
            widgets.image(pixels.overlay(pick["image"], shown, opacity, mode, scale=1), DETAIL_SCALE, caption="overlay")
        with b:
            widgets.image(pixels.heat_image(shown, mode, scale=1), DETAIL_SCALE, caption=f"{mode} map")
    state.share(**shared)
