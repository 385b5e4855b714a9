"""Plots of every analysis, as display rather than side effect.

Each ``plot_*(data, ax=None, **opts)`` returns a :class:`matplotlib.figure.Figure`: given ``ax``
(or ``axes`` for the multi-panel plots) it draws there and returns that figure, otherwise it makes
its own. Nothing here selects a matplotlib backend or writes a file: a notebook shows the figure
inline, and a job writes it with :func:`save_figure` (or :func:`png_bytes` to embed it in HTML)::

    from ffnmem import viz
    fig = viz.plot_agreement(ag)
    viz.save_figure(fig, "agreement.png")

Results people look at also come as rich objects that render inline (``_repr_html_``) and in HTML
pages (``to_html()``): :func:`show` picks the one of a result (:class:`TraceView`, :class:`CausalTraces`,
:class:`DirectEffectsTable`, :class:`RecallTable`, :class:`ProbeCurves`, :class:`ClaimsTable`)::

    viz.show(recall_result)            # last line of a notebook cell: table and bar chart inline
"""

from ffnmem.viz.architectures import (
                                      plot_attention_erank,
                                      plot_capacity_entropy_signal,
                                      plot_ffn_share,
                                      plot_position_probe,
                                      plot_position_probe_seeds,
                                      plot_variant_recall,
)
from ffnmem.viz.attribution import (
                                      plot_attribution,
                                      plot_heads,
                                      plot_layer_dla,
                                      plot_top_neurons,
)
from ffnmem.viz.figures import png_bytes, save_figure
from ffnmem.viz.frequency import (
                                      plot_capacity,
                                      plot_capacity_sweep,
                                      plot_dla_by_exposure,
                                      plot_loss_decomposition,
                                      plot_recall_vs_exposure,
                                      plot_scaling,
                                      plot_steps_curve,
)
from ffnmem.viz.keyvalue import plot_agreement, plot_coefficient_histogram
from ffnmem.viz.lossy import plot_recall_by_value_rank, plot_substitution, plot_survival
from ffnmem.viz.popularity import plot_recall_vs_popularity, plot_substitutions
from ffnmem.viz.probes import plot_curves
from ffnmem.viz.recall import plot_recall
from ffnmem.viz.report import plot_query
from ffnmem.viz.rich import (
                                      CausalTraces,
                                      DirectEffectsTable,
                                      TraceView,
                                      direct_effects_table,
)
from ffnmem.viz.superposition import plot_dimensionality, plot_phase, plot_wtw
from ffnmem.viz.tables import ClaimsTable, ProbeCurves, RecallTable, show
from ffnmem.viz.tracing import plot_average, plot_trace

__all__ = [
    "CausalTraces", "ClaimsTable", "DirectEffectsTable", "ProbeCurves", "RecallTable", "TraceView", "direct_effects_table",
    "plot_agreement", "plot_attention_erank", "plot_attribution", "plot_average", "plot_capacity", "plot_capacity_sweep", "plot_steps_curve",
    "plot_capacity_entropy_signal", "plot_coefficient_histogram", "plot_curves", "plot_dimensionality",
    "plot_dla_by_exposure", "plot_ffn_share", "plot_heads", "plot_layer_dla", "plot_loss_decomposition", "plot_phase",
    "plot_position_probe", "plot_position_probe_seeds", "plot_query", "plot_recall", "plot_recall_by_value_rank", "plot_recall_vs_exposure", "plot_recall_vs_popularity",
    "plot_scaling",
    "plot_substitution", "plot_substitutions", "plot_survival", "plot_top_neurons", "plot_trace", "plot_variant_recall", "plot_wtw", "png_bytes",
    "save_figure", "show",
]
