"""The torch-only sparse core: targets, distributions, init, criteria, topology, schedules, optimizer state.

Never imports Lightning; every algorithm is a plain function tested on its own.
"""

from .bilevel import functional_forward, hypergradients, unrolled_parameters
from .criteria import (
    GROW_CRITERIA,
    INIT_MASKS,
    PRUNE_CRITERIA,
    gradient_score,
    leftmost_score,
    magnitude_score,
    mest_score,
    random_score,
    set_prune_score,
)
from .ctc import BeamSearchDecoder, greedy_decode
from .ctc_prefix import CTCPrefixScorer
from .distributions import DISTRIBUTIONS, density_counts, group_counts, layer_densities, mapped_densities, raw_scale
from .init import WEIGHT_INITS, sparse_fans, sparse_init_
from .joint_decoding import Hypothesis, beam_search, greedy_attention_decode, joint_decode
from .methods import METHOD_PRESETS, MethodPreset, register_method
from .min_norm import (
    MIN_NORM_SOLVERS,
    NORMALIZATIONS,
    gradient_normalizers,
    min_norm_direction,
    min_norm_weights,
    pareto_stationarity,
)
from .masks import MaskSet, density, mask_checksum, pack_mask, unpack_mask
from .optim_state import reset_optimizer_state
from .saliency import (
    SALIENCY_SCHEDULES,
    SALIENCY_SCOPES,
    grasp_scores,
    iterative_masks,
    magnitude_scores,
    schedule_densities,
    snip_scores,
    synflow_masks,
    synflow_scores,
    topk_masks,
)
from .schedules import SCHEDULES, Schedule, schedule_value
from .seq2seq import HybridLoss, add_sos_eos, hybrid_ctc_attention_loss, label_smoothing_loss
from .targets import GRANULARITIES, SparseTarget, find_targets
from .time_drop import TIME_DROP_MODES, TimeDrop, time_drop
from .transport import class_conditional_transport_cost, cosine_cost, normalize_marginal, transport_plan
from .topology import (
    drop_lowest,
    global_keep_counts,
    grow_highest,
    prune_and_grow,
    prune_and_grow_groups,
    select_topk,
    select_topk_groups,
)

from .updates import (
    drop_counts,
    gradual_prune_masks,
    grow_score,
    initial_mask,
    interpolate_densities,
    prune_and_grow_target,
    prune_score,
    update_moving_average_,
)

__all__ = [
    "functional_forward",
    "hypergradients",
    "unrolled_parameters",
    "MIN_NORM_SOLVERS",
    "NORMALIZATIONS",
    "gradient_normalizers",
    "min_norm_direction",
    "min_norm_weights",
    "pareto_stationarity",
    "class_conditional_transport_cost",
    "cosine_cost",
    "normalize_marginal",
    "transport_plan",
    "grasp_scores",
    "iterative_masks",
    "magnitude_scores",
    "schedule_densities",
    "snip_scores",
    "synflow_masks",
    "synflow_scores",
    "topk_masks",
    "BeamSearchDecoder",
    "CTCPrefixScorer",
    "HybridLoss",
    "Hypothesis",
    "add_sos_eos",
    "beam_search",
    "greedy_attention_decode",
    "hybrid_ctc_attention_loss",
    "joint_decode",
    "label_smoothing_loss",
    "TIME_DROP_MODES",
    "TimeDrop",
    "greedy_decode",
    "time_drop",
    "METHOD_PRESETS",
    "MethodPreset",
    "register_method",
    "drop_counts",
    "gradual_prune_masks",
    "grow_score",
    "initial_mask",
    "interpolate_densities",
    "prune_and_grow_target",
    "prune_score",
    "update_moving_average_",
    "DISTRIBUTIONS",
    "SALIENCY_SCHEDULES",
    "SALIENCY_SCOPES",
    "GRANULARITIES",
    "GROW_CRITERIA",
    "INIT_MASKS",
    "MaskSet",
    "PRUNE_CRITERIA",
    "SCHEDULES",
    "Schedule",
    "SparseTarget",
    "WEIGHT_INITS",
    "density",
    "density_counts",
    "drop_lowest",
    "find_targets",
    "global_keep_counts",
    "gradient_score",
    "group_counts",
    "grow_highest",
    "layer_densities",
    "leftmost_score",
    "magnitude_score",
    "mapped_densities",
    "mask_checksum",
    "mest_score",
    "pack_mask",
    "prune_and_grow",
    "prune_and_grow_groups",
    "random_score",
    "reset_optimizer_state",
    "schedule_value",
    "select_topk",
    "select_topk_groups",
    "set_prune_score",
    "sparse_fans",
    "sparse_init_",
    "unpack_mask",
]
