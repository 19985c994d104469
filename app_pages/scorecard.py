"""The explanation scorecard: every attribution method on both models over a seeded sample of test
images (half of them errors), beside a random map and a Sobel edge map, from python -m cifar.scorecard.
"""

import streamlit as st

from cifar import scorecard as sc
from cifar.models import get_model, list_models
from cifar_app import cache, nav, scorecard_views, widgets
from cifar_app.nav import PAGE_FILES
from cifar_app.store import Unavailable

st.title(nav.heading("scorecard"))
st.caption("Can I trust these maps? The sanity check asks whether a map changes when the model's weights are "
           "randomised; deletion and insertion ask whether the pixels it ranks first are the ones the model needs; "
           "infidelity and max-sensitivity are Captum's scores. A method that does no better than a random map or an "
           "edge detector tells you about the image, not the model.")
titles = {m: get_model(m).title for m in list_models()}
try:
    card = cache.scorecard()
except Unavailable as e:
    widgets.show_problem(e)
    st.stop()
if card is None:
    st.info("No scorecard in the checkpoint folder yet. Compute it (resumable; about an hour on 2 CPU cores):",
            icon=":material/info:")
    st.code(f"python -m cifar.scorecard --checkpoints {cache.paths().checkpoints} --data-dir <your CIFAR-10 folder>",
            language="bash")
    st.page_link(PAGE_FILES["explanation_check"], label="Check one image instead", icon=":material/troubleshoot:")
    st.stop()

st.subheader("The verdict", anchor=False)
for line in sc.verdict(card, titles):
    st.markdown(f"- {line}")
missing = scorecard_views.missing_models(card)
if missing:
    st.warning(f"The scorecard does not cover {', '.join(titles[m] for m in missing)}: its run did not finish "
               "for that model. Rerun the command below; it continues where it stopped.", icon=":material/warning:")

st.subheader("The table", anchor=False)
st.dataframe(scorecard_views.table(card, titles), hide_index=True, width="stretch")
st.caption(scorecard_views.sample_caption(card, titles))

st.subheader("Sanity check: similarity to the original map as blocks are randomised", anchor=False)
score = st.segmented_control("Similarity", list(scorecard_views.SCORE_LABELS), key="sc_score",
                             format_func=scorecard_views.SCORE_LABELS.get, default="spearman_abs") or "spearman_abs"
st.vega_lite_chart(spec=scorecard_views.sanity_chart(card, titles, score).to_dict())
st.caption("Mean over the cascade's images; dashed: the references (Sobel never changes, a random map starts over "
           "at each step). A faithful method should fall towards 0 as the model becomes random.")

st.subheader("Faithfulness", anchor=False)
st.vega_lite_chart(spec=scorecard_views.auc_chart(card, titles).to_dict())
kind = st.segmented_control("Mean curve", ["deletion", "insertion"], key="sc_curve", default="deletion") or "deletion"
st.vega_lite_chart(spec=scorecard_views.mean_curves_chart(card, titles, kind).to_dict())

with st.expander("How it was made"):
    st.markdown("The command:")
    st.code(card["command"], language="bash")
    hw = card.get("hardware", {})
    st.markdown(f"Data: {card['data'].get('name')} (test batch md5 `{card['data'].get('test_md5')}`). "
                f"Hardware: {hw.get('cpus')} CPUs ({hw.get('processor')}), torch {hw.get('torch')}, "
                f"Captum {hw.get('captum')}. Minutes per model: "
                + ", ".join(f"{titles.get(m, m)} {sum(v['seconds'] for v in e['methods'].values()) / 60:.0f}"
                            for m, e in card["models"].items()) + ".")
