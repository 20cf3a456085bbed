"""A tiny Segment Anything model for tests: the vit_b/l/h classes at toy widths, no checkpoint."""

from __future__ import annotations

from functools import partial

import torch

from rgpt_model.sam import sam_modeling


def make_tiny_sam(seed: int = 0) -> torch.nn.Module:
    """A 64 px SAM with a 4x4 embedding grid: same classes as vit_b/l/h, tiny widths."""
    torch.manual_seed(seed)
    m = sam_modeling()
    dim, img, patch = 32, 64, 16
    sam = m.Sam(
        image_encoder=m.ImageEncoderViT(
            img_size=img,
            patch_size=patch,
            embed_dim=32,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=2,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(img // patch, img // patch),
            input_image_size=(img, img),
            mask_in_chans=8,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
    )
    return sam.eval()
