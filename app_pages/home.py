"""Home: what the app shows, the two models' headline numbers, which data they come from, and a link to
every view."""

import streamlit as st

from cifar_app import cache, formats, nav, state, widgets
from cifar_app.store import Unavailable

st.title(nav.heading("home"))
st.markdown("What a small **CustomCNN** and a **ResNet18** learned on CIFAR-10, where they fail, and what "
            "their explanations show. Every number here is read from the shipped checkpoints and their saved "
            "test-set predictions.")

source = cache.data_source()
if source and not source.get("official"):
    st.info(f"Our numbers are measured on **{source['name']}**, not on the official archive. "
            + ("Every image of this copy went through JPEG compression once (quality 75, 4:2:0 chroma "
               "subsampling), which published reports put at 2–3 points of accuracy for a ResNet, and its "
               "test set is grouped by class, so its indices are not the official ones. "
               if "JPEG" in source["name"] else "")
            + "The reference report's numbers are on the original CIFAR-10.", icon=":material/info:")
elif source is None:
    st.info("Which CIFAR-10 the numbers come from is not recorded with these checkpoints.", icon=":material/info:")

for model in widgets.model_columns():
    try:
        s = cache.summary(model)
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    a, b = st.columns(2)
    a.metric("test accuracy", formats.percent(s["accuracy"]), help=f"on {s['n']:,} test images")
    b.metric("macro F1", f"{s['classification']['macro']['f1']:.3f}")

st.subheader("Where to look")
for spec in nav.PAGES[1:]:
    st.page_link(nav.PAGE_FILES[spec.key], label=spec.title, icon=spec.icon)
    st.caption(spec.blurb)

state.share()
