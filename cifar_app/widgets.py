"""UI pieces several pages share: the problem box, thumbnails, the gallery, the explain pages' image
picker and the data-source note. They draw; they compute nothing that is not cached."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
import streamlit as st

from cifar.models import get_model, list_models
from cifar_app import cache, state, tables
from cifar_app.nav import PAGE_FILES
from cifar_app.pixels import upscale_nearest
from cifar_app.store import Unavailable

THUMB_SCALE = 3  # 32×32 → 96×96 gallery thumbnails, nearest neighbour, shown at exactly that size
PER_PAGE = 24


def show_problem(e: Unavailable) -> None:
    """One error box: what is wrong with which file, and the advice that fits (command and what it does)."""
    with st.container():  # the box and its command stay together
        fix = e.advice
        st.error(e.message + (f"\n\nTo fix it ({fix.note}):" if fix and fix.note else "\n\nTo fix it:" if fix else ""),
                 icon=":material/error:")
        if fix and fix.command:
            st.code(fix.command, language="bash", wrap_lines=True)  # wraps in narrow columns, copy button


def model_columns() -> Iterator[str]:
    """One bordered column per registered model, side by side, headed by its title: yields the model
    name with its column active, so a page fills each the same way."""
    for col, model in zip(st.columns(len(list_models()), border=True), list_models()):
        with col:
            st.subheader(get_model(model).title)
            yield model


def image(pixels: np.ndarray, scale: int, caption: str | None = None) -> None:
    """A small image upscaled nearest-neighbour and shown at exactly its pixel size: the browser never
    rescales it, so its pixels stay sharp squares."""
    big = upscale_nearest(pixels, scale)
    st.image(big, caption=caption, width=int(big.shape[1]))


def data_note() -> str:
    """"… measured on CIFAR-10 (JPEG re-encoded copy)": which data the shown numbers come from."""
    source = cache.data_source()
    return source["name"] if source else "CIFAR-10 (which copy is not recorded)"


def index_help() -> str:
    """What a test-image index means here: official only when the images are the official archive's."""
    source = cache.data_source(images=True)
    if source and source.get("official"):
        return "0…9,999: the official CIFAR-10 test index."
    return (f"0…9,999: the index in this test set, {source['name'] if source else 'CIFAR-10'}, which is not the "
            "official archive, so its order may differ from the official test index (the JPEG copy is grouped "
            "by class).")


def send_to_explain(index: int, page: str = "feature_maps") -> None:
    """Make test image `index` the explain pages' image and open `page` (ends this run)."""
    st.session_state[state.IMAGE] = int(index)
    st.session_state[state.SOURCE] = "test"
    st.switch_page(PAGE_FILES[page])


def send_to_contrast(index: int) -> None:
    """Open Attributions on test image `index` with the target "why <prediction>, not <true class>" (ends this run)."""
    st.session_state["at_target"] = "contrast"
    st.session_state["at_why"], st.session_state["at_not"] = "predicted", "true"
    send_to_explain(index, "attributions")


def gallery(indices: np.ndarray, model: str, key: str, per_page: int = PER_PAGE, columns: int = 6,
            why_not: tuple[str, str] | None = None) -> None:
    """Thumbnails of test images with the model's top-3, and an Explain button each.

    `indices` are test indices in display order; all must be in cache.test_images(). why_not: (predicted,
    true) class names of a gallery of errors, to add a "why <predicted>, not <true>?" button to each.
    """
    images = cache.test_images()
    probs = cache.shown_probs(model)  # calibrated or raw, as the sidebar switch says
    names = cache.classes(model)
    n = len(indices)
    if n == 0:
        st.info("No images here.")
        return
    pages = (n + per_page - 1) // per_page
    page = 1
    if pages > 1:
        # The key names this exact list: another pair, order or filter starts again on page 1, at the
        # most telling images, instead of on the page number the last list was left at.
        digest = zlib.crc32(np.ascontiguousarray(indices).tobytes())
        page = st.number_input(f"Page (of {pages}, {per_page} images each)", 1, pages, 1, key=f"{key}_page_{digest:08x}")
    shown = indices[(page - 1) * per_page: page * per_page]
    for row in range(0, len(shown), columns):  # one st.columns per row: rows line up, order is reading order
        for col, idx in zip(st.columns(columns), shown[row: row + columns]):
            with col:
                image(images.images[images.position(int(idx))], THUMB_SCALE,
                      caption=f"#{idx} · {tables.top_k_caption(probs[idx], names)}")
                if st.button("Explain", key=f"{key}_x{idx}", icon=":material/search:",
                             help=f"Open test image #{idx} in Feature maps and Attributions"):
                    send_to_explain(int(idx))
                if st.button("Training images", key=f"{key}_t{idx}", icon=":material/dataset:",
                             help=f"The training images behind the predictions for test image #{idx}"):
                    send_to_explain(int(idx), "training_images")
                if why_not and st.button("Why not?", key=f"{key}_w{idx}", icon=":material/compare_arrows:",
                                         help=f"Attributions of why {get_model(model).title} says {why_not[0]}, "
                                              f"not {why_not[1]}: the map of logit {why_not[0]} − logit {why_not[1]}"):
                    send_to_contrast(int(idx))


def pair_gallery(model: str, true: int, pred: int, key: str, *, other_right: bool | None = None,
                 descending: bool = True, per_page: int | None = None) -> int:
    """The gallery of test images `model` labels `true` → `pred`, most confident first; returns how many.

    other_right: keep only images the other model gets right (True) or wrong (False).
    """
    ev = cache.evaluation(model)
    images = cache.test_images()
    labels = ev["labels"]
    title, names = get_model(model).title, cache.classes(model)
    if not tables.labels_agree(labels, images.labels, images.indices):
        from cifar_app import advice

        st.error(f"The {title} predictions and the test images ({images.source}) disagree on the labels: "
                 "they come from different test sets. Re-run the evaluation on this data:", icon=":material/error:")
        st.code(advice.evaluate(model, cache.paths()).command, language="bash")
        return 0
    available = np.zeros(len(labels), dtype=bool)
    available[images.indices] = True
    idx = tables.pair_indices(labels, ev["preds"], cache.shown_probs(model), true, pred, descending=descending)
    total = len(idx)
    idx = idx[available[idx]]
    other = state.other_model(model)
    if other_right is not None:
        idx = tables.filter_by_other(idx, labels, cache.evaluation(other)["preds"], other_right)
    support = int((labels == true).sum())
    verb = "correctly as" if true == pred else "as"
    text = (f"{title} classifies **{total}** of the {support} *{names[true]}* test images {verb} "
            f"*{names[pred]}* ({total / support:.2%})." if support else "No test images of this class.")
    if not images.full and len(idx) < total and other_right is None:
        text += f" The demo bundle holds {len(idx)} of them."
    if other_right is not None:
        text += (f" **{len(idx)}** of them are classified {'correctly' if other_right else 'wrongly'} by "
                 f"{get_model(other).title}.")
    st.markdown(text)
    gallery(idx, model, key, per_page or PER_PAGE, why_not=(names[pred], names[true]) if true != pred else None)
    return len(idx)


# ------------------------------------------------------------------------------ the explain pages' image


def explain_image() -> dict | None:
    """The image the explain pages work on: a test image (by index, shareable) or the user's upload.

    Returns {"image": uint8 32×32×3, "label": int | None, "index": int | None, "title": str}, or None
    (with a message shown) when no image is available. Both explain pages draw their widgets on the
    same session keys (state.IMAGE, state.SOURCE), so they show the same image, and the gallery's and
    the upload page's buttons set those keys before switching here.
    """
    try:
        images = cache.test_images()
    except Unavailable as e:
        images = None
        show_problem(e)
    upload = st.session_state.get(state.UPLOAD_KEY)
    sources = (["test"] if images is not None else []) + (["upload"] if upload else [])
    if not sources:
        st.info("No image to explain: upload one on *Try your own image*.")
        return None
    if images is not None:
        if state.from_url(state.IMAGE, state.IMAGE, state.index_in(0, int(images.indices[-1]))):
            st.session_state[state.SOURCE] = "test"  # a link names a test image
        st.session_state.setdefault(state.IMAGE, int(images.indices[0]))
    if st.session_state.get(state.SOURCE) not in sources:
        st.session_state[state.SOURCE] = sources[0]
    c1, c2 = st.columns([1, 2])
    if len(sources) > 1:
        source = c1.radio("Image", sources, key=state.SOURCE, horizontal=True, persist_state="session",
                          format_func={"test": "test image", "upload": "your upload"}.get)
    else:
        source = sources[0]
        c1.caption("Upload your own on *Try your own image* to explain it here.")
    if source == "upload":
        c2.caption(f"Your upload *{upload['name']}*, as the model sees it (32×32).")
        return {"image": upload["pixels"], "label": None, "index": None, "title": f"your upload {upload['name']}"}
    index = c2.number_input("Test image index", 0, int(images.indices[-1]), key=state.IMAGE, persist_state="session",
                            help=index_help() + " Or pick one in the Misclassifications gallery.")
    pos = images.position(int(index))
    if pos is None:
        near = int(images.indices[np.argmin(np.abs(images.indices - int(index)))])
        c2.warning(f"Test image #{index} is not in the demo bundle ({len(images.indices):,} of 10,000 images); "
                   f"showing the nearest one it holds, #{near}.")
        index, pos = near, images.position(near)
    c2.page_link(PAGE_FILES["misclassifications"], label="Pick an image from the gallery", icon=":material/photo_library:")
    label = int(images.labels[pos])
    return {"image": images.images[pos].copy(), "label": label, "index": int(index),
            "title": f"test image #{index} (a {cache.classes()[label]})"}


def thumbs(pixels: list[np.ndarray], captions: list[str], columns: int = 8, scale: int = 3) -> None:
    """A row-major grid of small images with captions (training images, neighbours)."""
    if not pixels:
        st.caption("None.")
        return
    for row in range(0, len(pixels), columns):
        for col, px, cap in zip(st.columns(columns), pixels[row: row + columns], captions[row: row + columns]):
            with col:
                image(px, scale, caption=cap)
