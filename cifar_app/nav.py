"""The page registry: every view's file, title, icon, URL path and section, in menu order.

streamlit_app.py builds st.navigation from it, pages link to each other through it, and the tests
open every page it lists; a new view is one line here plus its file in app_pages/.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

PAGES_DIR = "app_pages"  # why not pages/: see tests/test_browser.py::test_a_pages_folder_breaks_deep_links


@dataclass(frozen=True)
class PageSpec:
    key: str
    file: str  # relative to the repository root (the entrypoint's folder)
    title: str
    icon: str
    url_path: str  # "" = the app's root URL
    section: str
    uses_model: bool  # whether the sidebar's model picker changes this page: its heading then names the model
    blurb: str  # one line on the Home page
    heading: str  # the page's title (h1); tests and benchmarks wait for it


PAGES: tuple[PageSpec, ...] = (
    PageSpec("home", "home.py", "Home", ":material/home:", "", "Start", False,
             "What the app shows and which data the numbers come from.",
             heading="cifar-explain"),
    PageSpec("overview", "overview.py", "Overview", ":material/compare_arrows:", "overview", "Results", False,
             "Both models side by side with the reference report: accuracy, macro averages, per class.",
             heading="CustomCNN vs ResNet18 on CIFAR-10"),
    PageSpec("training", "training.py", "Training", ":material/show_chart:", "training", "Results", False,
             "Loss, accuracy and learning rate per epoch, and the CustomCNN's tuning grid.",
             heading="Training curves"),
    PageSpec("metrics", "metrics.py", "Metrics", ":material/grid_on:", "metrics", "Results", True,
             "Per-class precision, recall and F1; the confusion matrix, whose cells open their images.",
             heading="Metrics"),
    PageSpec("misclassifications", "misclassifications.py", "Misclassifications", ":material/photo_library:",
             "misclassifications", "Results", True,
             "Any (true → predicted) pair's images, and the ones only one model gets right.",
             heading="Misclassifications"),
    PageSpec("feature_maps", "feature_maps.py", "Feature maps", ":material/layers:", "feature-maps", "Explain", True,
             "What each channel of any layer responds to in one image.",
             heading="Feature maps"),
    PageSpec("attributions", "attributions.py", "Attributions", ":material/gradient:", "attributions", "Explain",
             False, "Which pixels push a class, by six Captum methods, for both models at once.",
             heading="Attributions"),
    PageSpec("your_image", "your_image.py", "Try your own image", ":material/upload:", "your-image", "Explain", False,
             "Upload a photo and see what both models make of it.",
             heading="Try your own image"),
    PageSpec("training_images", "training_images.py", "Training images", ":material/dataset:", "training-images",
             "Explain", False, "The training images that support or oppose a prediction (TracIn), and the nearest ones.",
             heading="Training images behind it"),
    PageSpec("embedding", "embedding.py", "Embedding map", ":material/scatter_plot:", "embedding-map", "Results", True,
             "Every test image on a 2-D map of the model's features; click one for its neighbours.",
             heading="Embedding map"),
    PageSpec("label_errors", "label_errors.py", "Label-error candidates", ":material/report:", "label-errors",
             "Results", True, "Test images both models confidently call another class; training images of highest "
             "self-influence.", heading="Label-error candidates"),
    PageSpec("calibration", "calibration.py", "Calibration", ":material/verified:", "calibration", "Results", False,
             "Can a confidence be trusted? Reliability, temperature scaling, and when an image is unlike CIFAR-10.",
             heading="Calibration and out-of-distribution images"),
    PageSpec("robustness", "robustness.py", "Robustness", ":material/shield:", "robustness", "Explain", False,
             "Both models under CIFAR-10-C corruptions and FGSM/PGD attacks: curves, and one image live.",
             heading="Robustness"),
    PageSpec("explanation_check", "explanation_check.py", "Check a map", ":material/troubleshoot:",
             "explanation-check", "Explain", False,
             "Does a map depend on the model, and does it point at what the model uses? One image, both models.",
             heading="Can I trust this map?"),
    PageSpec("scorecard", "scorecard.py", "Explanation scorecard", ":material/fact_check:", "scorecard", "Explain",
             False, "Sanity checks and faithfulness of every method over 200 test images, beside an edge detector.",
             heading="Explanation scorecard"),
)
PAGE_FILES = {p.key: f"{PAGES_DIR}/{p.file}" for p in PAGES}


def page(key: str) -> PageSpec:
    """The registered page with this key."""
    return next(p for p in PAGES if p.key == key)


def heading(key: str, model_title: str | None = None) -> str:
    """A page's title, with the model's name on the pages the sidebar picker changes ("Metrics · ResNet18")."""
    spec = page(key)
    return f"{spec.heading} · {model_title}" if spec.uses_model and model_title else spec.heading


def navigation():
    """st.navigation over the registered pages, grouped by section; the first page is the default."""
    sections: dict[str, list] = {}
    for i, p in enumerate(PAGES):
        sections.setdefault(p.section, []).append(
            st.Page(PAGE_FILES[p.key], title=p.title, icon=p.icon, url_path=p.url_path or None, default=i == 0))
    return st.navigation(sections)
