"""The Streamlit app's own code, between the pages (app_pages/) and the ML core (cifar/).

Pure modules (no Streamlit, unit-tested): store (paths, file reads, Unavailable), advice (the fix
that fits a missing or broken file), tables (view tables), training (history, tuning grid), charts
(Altair specs), pixels (colormaps, overlays), formats (how numbers read), uploads (decode and check),
reference (the report's numbers), memory (heap settings). UI modules (Streamlit): nav (the page
registry), cache (the cached loaders), state (session keys, the address bar), widgets (shared UI).
README.md, "Architecture", says where a new page, method or model goes.
"""
