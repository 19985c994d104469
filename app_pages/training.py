"""Training: loss and accuracy curves (train vs val, best epoch dashed), the lr schedule, and the CNN tuning grid."""

import streamlit as st

from cifar.models import get_model
from cifar_app import advice, cache, charts, formats, nav, reference, state, training, widgets
from cifar_app.store import Unavailable, file_key

st.title(nav.heading("training"))
st.caption("Per epoch, from each checkpoint's saved history. The dashed red line marks the epoch whose weights "
           "were kept (best validation accuracy).")

for model in widgets.model_columns():
    title = get_model(model).title
    try:
        meta = cache.metadata(model)
    except Unavailable as e:
        widgets.show_problem(e)
        continue
    history = meta.get("history") or []
    if not history:
        st.warning(f"{title}'s checkpoint holds no training history.")
        continue
    h = training.history_summary(meta)
    st.caption(f"{meta.get('recipe', '?')} recipe · best epoch {h['best_epoch']} of {h['epochs_run']}: "
               f"val accuracy {formats.percent(h['best_val_acc'])}, train accuracy "
               f"{formats.percent(h['best_train_acc'])} (gap {formats.points(h['gap'])}) · "
               f"{formats.duration(meta.get('wall_time_s'))} on {meta.get('hardware', '?')}")
    st.vega_lite_chart(spec=cache.chart_spec("training", cache.model_key(model),
                                             lambda: charts.training_panel(history, h["best_epoch"])))
    if phases := training.size_phases_text(history):
        st.caption(phases)
    if meta.get("command"):
        # The recorded line, without the folders of the machine that ran it.
        st.code(advice.portable_command(meta["command"], advice.data_flags(cache.paths().data)), language="bash",
                wrap_lines=True)

st.header("CustomCNN tuning grid")
p = cache.paths()
try:
    rows = cache.tune_rows()
except Unavailable as e:
    widgets.show_problem(e)
    rows = []
grid_ref = reference.TUNE_GRID
st.caption(f"The report searched lr ∈ {{{', '.join(f'{v:g}' for v in grid_ref['lr'])}}} × batch size ∈ "
           f"{{{', '.join(map(str, grid_ref['batch_size']))}}} with Adam and picked lr {reference.TUNE_BEST['lr']:g}, "
           f"batch {reference.TUNE_BEST['batch_size']} (val ≈ {reference.TUNE_BEST['val_acc']:.0%}, as the report "
           "rounds it).")
if rows is None:
    st.info(f"No tuning results yet: `{p.tune_csv}` is absent. Run the report's grid with:")
    st.code(advice.tune(p).command, language="bash", wrap_lines=True)
elif rows:
    try:
        grid = training.tune_grid(rows)
    except ValueError as e:
        st.error(f"`{p.tune_csv}`: {e}.")
    else:
        left, right = st.columns([3, 2])
        left.vega_lite_chart(spec=cache.chart_spec("tune", (str(p.tune_csv), file_key(p.tune_csv)), lambda: charts.tune_heatmap(grid)),
                             width="stretch")
        best = grid["best"]
        with right:
            if best:
                st.metric("best cell", formats.percent(best["best_val_acc"]),
                          f"lr {best['lr']:g}, batch {best['batch_size']}", delta_color="off")
            st.caption(f"{grid['n_trials']} trials from `{p.tune_csv}`"
                       + (f", {grid['n_failed']} failed (grey)" if grid["n_failed"] else "")
                       + ". A cell shows its best validation accuracy"
                       + training.tune_epochs_note(grid["epochs"], reference.EPOCHS["cnn"]))

state.share()
