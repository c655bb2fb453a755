"""The dense heads, one module per head (chapters 12, 12a-12e): `from learndet.models.dense_heads import RetinaHead`.

Written by hand, not exported: nbdev makes one module per notebook, and this package file only gathers them.
"""
from .base_dense_head import (BaseDenseHead, DenseTargets, ImageTargets, check_feats, check_gt, conv_towers, forward_tower,
                              filter_scores_and_topk, flatten_levels, init_head_weights, scale_factor_of)
from .anchor_head import AnchorHead
from .retina_head import RetinaHead
from .fcos_head import FCOSHead
from .atss_head import ATSSHead, anchor_centerness_targets

__all__ = ['BaseDenseHead', 'DenseTargets', 'ImageTargets', 'check_feats', 'check_gt', 'conv_towers', 'forward_tower',
           'filter_scores_and_topk',
           'flatten_levels', 'init_head_weights', 'scale_factor_of', 'AnchorHead', 'RetinaHead',
           'FCOSHead', 'ATSSHead', 'anchor_centerness_targets']
