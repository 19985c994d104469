"""Try your own image: upload, see the 32×32 the models see, both predictions (calibrated) with a warning when
the image is unlike CIFAR-10 for a model, then the explain pages."""

import numpy as np
import streamlit as st

from cifar.models import get_model, list_models
from cifar_app import cache, nav, state, tables, widgets
from cifar_app.store import Unavailable
from cifar_app.uploads import FORMATS, MIN_SIDE, ImageError, check_min_size, load_upload, to_model_input

PREVIEW_SIDE = 320  # px: the original is shown at most this big

st.title(nav.heading("your_image"))
names = cache.classes()
st.caption(f"The models know only CIFAR-10's ten classes: {', '.join(names[:-1])} and {names[-1]}. Upload a photo "
           "of one of them, centred; for anything else they still name one of the ten, often confidently, so each "
           "model also says when an image is unlike CIFAR-10 for it (three out-of-distribution detectors, see the "
           f"Calibration page). The image, at least {MIN_SIDE}×{MIN_SIDE} pixels, is centre-cropped to a square and "
           "shrunk to 32×32 pixels, which is all the models ever see. Confidences are calibrated (temperature "
           "scaling).")
state.share()

types = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]
up = st.file_uploader(f"Upload an image ({', '.join(FORMATS)})", type=types, key="upload_file")
if up is not None:
    try:
        img = load_upload(up.getvalue(), min_side=PREVIEW_SIDE)  # big JPEGs decode at a reduced scale
        check_min_size(img)
        pixels = to_model_input(img)
    except ImageError as e:
        st.session_state.pop(state.UPLOAD_KEY, None)
        st.error(str(e), icon=":material/broken_image:")
        st.stop()
    preview = img.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    st.session_state[state.UPLOAD_KEY] = {"name": up.name, "pixels": pixels, "preview": np.asarray(preview),
                                          "size": img.info["header_size"]}

upload = st.session_state.get(state.UPLOAD_KEY)
if not upload:
    st.info("Upload a PNG, JPEG, WebP, BMP or GIF to see what the two models make of it.")
    st.stop()

a, b, c = st.columns([2, 2, 3])
w, h = upload["size"]
a.image(upload["preview"], caption=f"{upload['name']} ({w}×{h})")
with b:
    widgets.image(upload["pixels"], 8, caption="what the models see: 32×32, shown 8× with square pixels")
with c:
    for model in list_models():
        st.markdown(f"**{get_model(model).title}**")
        try:
            probs = cache.predict(model, upload["pixels"], calibrated=True)  # always calibrated here
        except Unavailable as e:
            widgets.show_problem(e)
            continue
        try:
            check = cache.ood_check(model, upload["pixels"])
        except Unavailable as e:
            check = None
            st.info(f"No out-of-distribution check for this model: {e.message}"
                    + (f" To fix it: `{e.command}`" if e.command and "\n" not in e.command else ""),
                    icon=":material/help:")
        if check and check["unlike"]:
            st.warning(check["text"], icon=":material/warning:")
        cls, p = tables.top_k(probs, 3)
        for ci, pi in zip(cls[0], p[0]):
            st.progress(float(pi), text=f"{names[ci]} {pi:.1%}")
        raw = cache.predict(model, upload["pixels"], calibrated=False)
        note = f"{cache.probability_note(model, calibrated=True)}; raw softmax: {names[cls[0][0]]} {raw[cls[0][0]]:.1%}"
        if check and not check["unlike"]:
            note += f". {check['text']}"
        st.caption(note)
        if check:
            with st.expander("Out-of-distribution scores"):
                st.dataframe(check["records"], hide_index=True, width="stretch",
                             column_config={"score": st.column_config.NumberColumn(format="%.4g"),
                                            "percentile": st.column_config.NumberColumn(format="percent"),
                                            "threshold (95% of CIFAR-10 above)": st.column_config.NumberColumn(
                                                format="%.4g")})

st.subheader("Why?")
x, y = st.columns(2)
if x.button("Feature maps of this image", icon=":material/layers:", width="stretch"):
    st.session_state[state.SOURCE] = "upload"
    st.switch_page(nav.PAGE_FILES["feature_maps"])
if y.button("Attributions for this image", icon=":material/gradient:", width="stretch"):
    st.session_state[state.SOURCE] = "upload"
    st.switch_page(nav.PAGE_FILES["attributions"])
