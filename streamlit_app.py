"""cifar-explain: what a CustomCNN and a ResNet18 learned on CIFAR-10. `streamlit run streamlit_app.py`

The entrypoint only sets up navigation (st.navigation over the files in app_pages/, listed
explicitly) and the sidebar model picker, which lives here so that it is on every page.

Why app_pages/ and not pages/: Streamlit 1.67 switches a process to the old "pages directory" mode
when a folder named pages/ sits beside the entrypoint, and in that mode a first visit to a deep
link (say /metrics) runs the page file alone: no st.navigation, no sidebar picker, no page config,
and every file of the folder (helpers too) listed as a page, until someone opens "/".
"""

import streamlit as st

from cifar.app_data import MODELS, TITLES, Unavailable
from app_pages._shared import MODEL_KEY, PAGE_FILES, paths, test_images

st.set_page_config(page_title="cifar-explain", page_icon=":material/visibility:", layout="wide")

PAGES = {
    "Results": [
        st.Page(PAGE_FILES["overview"], title="Overview", icon=":material/compare_arrows:", url_path="overview", default=True),
        st.Page(PAGE_FILES["training"], title="Training", icon=":material/show_chart:", url_path="training"),
        st.Page(PAGE_FILES["metrics"], title="Metrics", icon=":material/grid_on:", url_path="metrics"),
        st.Page(PAGE_FILES["misclassifications"], title="Misclassifications", icon=":material/photo_library:",
                url_path="misclassifications"),
    ],
    "Explain": [
        st.Page(PAGE_FILES["feature_maps"], title="Feature maps", icon=":material/layers:", url_path="feature-maps"),
        st.Page(PAGE_FILES["attributions"], title="Attributions", icon=":material/gradient:", url_path="attributions"),
        st.Page(PAGE_FILES["your_image"], title="Try your own image", icon=":material/upload:", url_path="your-image"),
    ],
}
page = st.navigation(PAGES)

with st.sidebar:
    # persist_state="session": a widget's state is otherwise dropped when the page (script hash) changes.
    st.radio("Model", MODELS, format_func=TITLES.get, key=MODEL_KEY, horizontal=True, persist_state="session",
             help="The model the Metrics, Misclassifications and Feature maps pages show.")
    p = paths()
    try:
        imgs = test_images()
        where = "the full test set" if imgs.full else f"the demo bundle ({len(imgs.indices):,} of 10,000 test images)"
        st.caption(f"Checkpoints: `{p.checkpoints}` · images: {where}")
    except Unavailable:  # the pages that need images say what is wrong and how to fix it
        st.caption(f"Checkpoints: `{p.checkpoints}` · images: :red[unavailable]")

page.run()
