"""The seam between megatron-core's GPTModel and the fused log-prob: hidden states before the output layer.

    hidden_TH, weight_VH = gpt_hidden_states(model, tokens_BS, position_ids_BS, attention_mask)
    logp_T = fused_linear_logprob(hidden_TH, weight_VH, labels_BS.reshape(-1),
                                  tp_group=parallel_state.get_tensor_model_parallel_group())

Legend: B rows, S sequence positions, T = B * S tokens, H hidden dim, V_local this tensor-parallel
rank's vocab slice.

How: for one forward call the GPTModel's `post_process` flag is switched off, so megatron's own
forward (embedding, rotary setup, decoder with its final norm) returns the decoder's output and
skips the output layer; the flag is restored afterwards, even on error. Nothing is patched or
copied: calling it twice, or between ordinary forwards, changes nothing (idempotent). The weight is
the one megatron's `_postprocess` would use (the shared embedding when tied).

Limits on purpose: the last pipeline stage only (earlier stages return hidden states from plain
`model(...)` already); no multi-token prediction; no sequence parallelism (the fused path wants the
full hidden states on every tensor-parallel rank: megatron's output layer would all-gather them).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def unwrap_gpt_model(model: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside megatron's wrappers (DistributedDataParallel, Float16Module: `.module`)."""
    while not hasattr(model, "output_layer") and hasattr(model, "module"):
        model = model.module
    return model


@contextlib.contextmanager
def _without_output_layer(gpt: torch.nn.Module):
    saved = gpt.post_process
    gpt.post_process = False
    try:
        yield
    finally:
        gpt.post_process = saved


def gpt_output_weight(model: torch.nn.Module) -> Tensor:
    """The output-layer weight [V_local, H] megatron multiplies the final hidden states with."""
    gpt = unwrap_gpt_model(model)
    if gpt.share_embeddings_and_output_weights:
        return gpt.shared_embedding_or_output_weight()
    return gpt.output_layer.weight


def sequence_parallel_gather(hidden_sBH: Tensor) -> Tensor:
    """[S/TP, B, H] sequence-parallel hidden states -> [S, B, H] on every TP rank.

    Where megatron's output layer would all-gather its input (ColumnParallelLinear with
    sequence_parallel: tensor_parallel/layers.py `linear_with_grad_accumulation_and_async_allreduce`),
    the fused log-prob path gathers here (megatron tensor_parallel/mappings.py
    `gather_from_sequence_parallel_region`). Its backward is a plain split
    (tensor_parallel_output_grad=False): the fused kernel already all-reduces the hidden-state
    gradient over TP, so each rank keeps its own slice of the summed gradient (issue 18 #11).
    """
    from megatron.core.tensor_parallel import gather_from_sequence_parallel_region

    return gather_from_sequence_parallel_region(hidden_sBH, tensor_parallel_output_grad=False)


def gpt_hidden_states(
    model: torch.nn.Module,
    tokens_BS: Tensor,
    position_ids_BS: Tensor,
    attention_mask: Tensor | None,
    *,
    packed_seq_params=None,
) -> tuple[Tensor, Tensor]:
    """Run megatron's GPTModel (optionally wrapped) up to, not including, its output layer.

    tokens_BS, position_ids_BS [B, S] int; attention_mask and packed_seq_params as GPTModel.forward
    takes them. Returns hidden_TH [T, H] in the order of `tokens_BS.reshape(-1)` (a view when
    B == 1) and in the output weight's dtype, and weight_VH [V_local, H]; both carry gradients
    back into the model.
    """
    gpt = unwrap_gpt_model(model)
    if not gpt.post_process:
        raise ValueError("gpt_hidden_states needs the last pipeline stage (post_process=True); "
                         "earlier stages return hidden states from model(...) itself")
    if gpt.config.mtp_num_layers:
        raise ValueError("multi-token prediction (mtp_num_layers) is not supported by the fused log-prob path")
    with _without_output_layer(gpt):
        hidden_SBH = model(tokens_BS, position_ids_BS, attention_mask, packed_seq_params=packed_seq_params)
    if gpt.output_layer.sequence_parallel:
        hidden_SBH = sequence_parallel_gather(hidden_SBH)
    weight_VH = gpt_output_weight(gpt)
    # Float16Module hands the last stage's output back in float32; the matmul wants the weight's dtype.
    hidden_TH = hidden_SBH.transpose(0, 1).reshape(-1, hidden_SBH.shape[-1]).to(weight_VH.dtype)
    return hidden_TH, weight_VH
