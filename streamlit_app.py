"""cifar-explain: what a CustomCNN and a ResNet18 learned on CIFAR-10. `streamlit run streamlit_app.py`

The entrypoint only sets up navigation (st.navigation over the page registry, cifar_app.nav) and the
sidebar model picker, which lives here so that it is on every page and in every shared link.

Why the pages live in app_pages/ and not pages/: with a folder named pages/ beside the entrypoint,
Streamlit 1.67 serves a deep link (say /metrics) that is the process's first request by running the
page file alone: no st.navigation, no sidebar picker, no page config, and every file of the folder
listed as a page, until someone opens "/". tests/test_browser.py::test_a_pages_folder_breaks_deep_links
shows it on a fresh server.
"""

import streamlit as st

from cifar.models import get_model, list_models
from cifar_app import cache, memory, nav, state, widgets
from cifar_app.store import Unavailable

# The server's memory (README, "Memory"): at most 2 malloc arenas for the session threads, and free
# heap given back to the OS every 30 s, so the server shrinks again once sessions end.
memory.limit_malloc_arenas(2)
memory.start_heap_trimmer(30.0)

st.set_page_config(page_title="cifar-explain", page_icon=":material/visibility:", layout="wide")

page = nav.navigation()
state.from_url(state.MODEL, state.MODEL, state.choice(list_models()))
state.from_url(state.CALIBRATED, state.CALIBRATED, state.choice({"1": True, "0": False}))
st.session_state.setdefault(state.CALIBRATED, True)  # calibrated unless a link or the user says otherwise

with st.sidebar:
    # persist_state="session": a widget's state is otherwise dropped when the page (script hash) changes.
    st.radio("Model", list_models(), format_func=lambda m: get_model(m).title, key=state.MODEL, horizontal=True,
             persist_state="session", help="The model the Metrics, Misclassifications and Feature maps pages show.")
    st.toggle("Calibrated probabilities", key=state.CALIBRATED, persist_state="session",
              help="Divide every model's logits by the temperature fitted on its validation split (temperature "
                   "scaling), so a shown 80% is right about 80% of the time; off: the raw softmax. "
                   "See the Calibration page.")
    p = cache.paths()
    try:
        imgs = cache.test_images()
        where = "the full test set" if imgs.full else f"the demo bundle ({len(imgs.indices):,} of 10,000 test images)"
    except Unavailable:  # the pages that need images say what is wrong and how to fix it
        where = ":red[unavailable]"
    st.caption(f"Data: {widgets.data_note()} · images: {where} · checkpoints: `{p.checkpoints}`")

page.run()
