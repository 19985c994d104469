"""Training: loss and accuracy curves (train vs val, best epoch dashed), the lr schedule, and the CNN tuning grid."""

import streamlit as st

from cifar import analysis, app_data, charts, reference
from cifar.app_data import MODELS, TITLES, Unavailable, tune_command
from app_pages._shared import chart_spec, metadata, model_cache_key, paths, show_problem, tune_rows

st.title("Training curves")
st.caption("Per epoch, from each checkpoint's saved history. The dashed red line marks the epoch whose weights "
           "were kept (best validation accuracy).")

for col, model in zip(st.columns(len(MODELS), border=True), MODELS):
    with col:
        st.subheader(TITLES[model])
        try:
            meta = metadata(model)
        except Unavailable as e:
            show_problem(e)
            continue
        history = meta.get("history") or []
        if not history:
            st.warning(f"{TITLES[model]}'s checkpoint holds no training history.")
            continue
        h = analysis.history_summary(meta)
        st.caption(f"{meta.get('recipe', '?')} recipe · best epoch {h['best_epoch']} of {h['epochs_run']}: "
                   f"val accuracy {h['best_val_acc']:.2%}, train accuracy {h['best_train_acc']:.2%} "
                   f"(gap {h['gap']:+.2%}) · {analysis.format_duration(meta.get('wall_time_s'))} on {meta.get('hardware', '?')}")
        st.vega_lite_chart(spec=chart_spec("training", model_cache_key(model),
                                           lambda: charts.training_panel(history, h["best_epoch"])))
        if phases := analysis.size_phases_text(history):
            st.caption(phases)
        if meta.get("command"):
            st.code(meta["command"], language="bash", wrap_lines=True)

st.header("CustomCNN tuning grid")
p = paths()
try:
    rows = tune_rows()
except Unavailable as e:
    show_problem(e)
    rows = []
grid_ref = reference.TUNE_GRID
st.caption(f"The report searched lr ∈ {{{', '.join(f'{v:g}' for v in grid_ref['lr'])}}} × batch size ∈ "
           f"{{{', '.join(map(str, grid_ref['batch_size']))}}} with Adam and picked lr {reference.TUNE_BEST['lr']:g}, "
           f"batch {reference.TUNE_BEST['batch_size']} (val ≈ {reference.TUNE_BEST['val_acc']:.0%}).")
if rows is None:
    st.info(f"No tuning results yet: `{p.tune_csv}` is absent. Run the report's grid with:")
    st.code(tune_command(p), language="bash", wrap_lines=True)
elif rows:
    try:
        grid = analysis.tune_grid(rows)
    except ValueError as e:
        st.error(f"`{p.tune_csv}`: {e}.")
    else:
        left, right = st.columns([3, 2])
        left.vega_lite_chart(spec=chart_spec("tune", app_data.file_key(p.tune_csv), lambda: charts.tune_heatmap(grid)),
                             width="stretch")
        best = grid["best"]
        with right:
            if best:
                st.metric("best cell", f"{best['best_val_acc']:.2%}", f"lr {best['lr']:g}, batch {best['batch_size']}",
                          delta_color="off")
            st.caption(f"{grid['n_trials']} trials from `{p.tune_csv}`"
                       + (f", {grid['n_failed']} failed (grey)" if grid["n_failed"] else "")
                       + ". A cell shows its best validation accuracy"
                       + analysis.tune_epochs_note(grid["epochs"], reference.EPOCHS["cnn"]))
