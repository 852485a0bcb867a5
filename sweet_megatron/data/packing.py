"""Packing: many dialogues in one row, nothing spent on padding but a row's tail.

Convention (shared with sweet_megatron.algorithms and the kernels):
- A *sequence* is one rendered dialogue: `ids` and `turn_of_token` from data/chat.render_dialogue
  (turn k >= 0 for tokens of the k-th agent action, -1 elsewhere).
- A *group* is a list of sequences that must land in the same microbatch (a chosen/rejected pair);
  a group of one is a plain sequence. Groups are packed whole into rows of `seq_length` tokens by
  first-fit-decreasing; each row is one microbatch (micro_batch_size 1 keeps pairs together).
- Position t predicts token t+1: `labels[t] = ids[t+1]`, and position t belongs to segment
  `segment_ids[t]` when token t+1 is an agent-action token. Each (sequence, turn) pair gets a segment
  index local to its row; `segments` lists, per row, the (sequence_index, turn) of each segment.
- Attention never crosses a sequence boundary: `doc_ids` numbers the sequences in a row (padding gets
  its own id) and `position_ids` restart at 0 for each sequence. The local layer spec gets a
  block-diagonal causal mask; the Transformer Engine spec gets PackedSeqParams (cu_seqlens).

Shapes: B rows, S = seq_length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sequence:
    """One rendered dialogue."""

    ids: list[int]
    turn_of_token: list[int]
    """Per token: index of the agent turn it belongs to, -1 for non-agent tokens."""
    weight: float = 1.0
    """Per-sequence loss weight for token losses (e.g. SFT)."""
    context_weight: float = 0.0
    """Loss weight of the tokens outside agent actions (system prompt, person's turns, headers):
    0 for the RL losses; > 0 adds language modelling of the whole dialogue to SFT."""
    extra: dict = field(default_factory=dict)
    """Anything the loss needs per sequence (e.g. reference log-probs per turn, a reward)."""


@dataclass
class PackedRow:
    """One packed row and the bookkeeping to map segments back to sequences and turns."""

    tokens: torch.Tensor  # [S] int64
    labels: torch.Tensor  # [S] int64 (0 where no label)
    loss_mask: torch.Tensor  # [S] float32: sequence weight at agent-action label positions, its context_weight elsewhere in the sequence
    position_ids: torch.Tensor  # [S] int64, restarting per sequence
    doc_ids: torch.Tensor  # [S] int64
    segment_ids: torch.Tensor  # [S] int64, -1 outside agent actions
    segments: list[tuple[int, int]]
    """segments[j] = (global sequence index, turn) of local segment j."""
    sequence_index: list[int]
    """Global indices of the sequences in this row, in order."""
    ref_logp: torch.Tensor | None = None
    """[S] reference-model log-probs of the labels, attached by a stage before training."""

    @property
    def num_segments(self) -> int:
        return len(self.segments)


def _pack_order(lengths: list[int], seq_length: int) -> list[list[int]]:
    """First-fit decreasing bin packing of item lengths into bins of `seq_length`."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, r in enumerate(room):
            if lengths[i] <= r:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(seq_length - lengths[i])
    return bins


def pack_groups(groups: list[list[Sequence]], seq_length: int, pad_id: int) -> tuple[list[PackedRow], list[Sequence]]:
    """Pack groups of sequences into rows. Returns (rows, flat list of sequences by global index).

    Raises ValueError naming the group when one does not fit in a row.
    """
    flat: list[Sequence] = []
    group_members: list[list[int]] = []
    for g in groups:
        group_members.append(list(range(len(flat), len(flat) + len(g))))
        flat.extend(g)
    lengths = [sum(len(flat[i].ids) for i in members) for members in group_members]
    for gi, n in enumerate(lengths):
        if n > seq_length:
            raise ValueError(
                f"group {gi} has {n} tokens, more than model.seq_length={seq_length}: raise "
                "model.seq_length or shorten episodes (rollout.max_turns / rollout.max_tokens)"
            )
    rows = []
    for bin_groups in _pack_order(lengths, seq_length):
        members = [i for g in sorted(bin_groups) for i in group_members[g]]
        rows.append(_build_row([(i, flat[i]) for i in members], seq_length, pad_id))
    return rows, flat


def pack_sequences(seqs: list[Sequence], seq_length: int, pad_id: int) -> list[PackedRow]:
    """Pack independent sequences (groups of one)."""
    return pack_groups([[s] for s in seqs], seq_length, pad_id)[0]


def _build_row(items: list[tuple[int, Sequence]], seq_length: int, pad_id: int) -> PackedRow:
    tokens = torch.full((seq_length,), pad_id, dtype=torch.long)
    labels = torch.zeros(seq_length, dtype=torch.long)
    loss_mask = torch.zeros(seq_length, dtype=torch.float32)
    position_ids = torch.zeros(seq_length, dtype=torch.long)
    doc_ids = torch.full((seq_length,), len(items), dtype=torch.long)
    segment_ids = torch.full((seq_length,), -1, dtype=torch.long)
    segments: list[tuple[int, int]] = []
    start = 0
    for doc, (gidx, seq) in enumerate(items):
        n = len(seq.ids)
        ids = torch.tensor(seq.ids, dtype=torch.long)
        turns = torch.tensor(seq.turn_of_token, dtype=torch.long)
        tokens[start : start + n] = ids
        position_ids[start : start + n] = torch.arange(n)
        doc_ids[start : start + n] = doc
        # position t predicts token t+1 (within this sequence only)
        labels[start : start + n - 1] = ids[1:]
        next_turn = turns[1:]
        seg = torch.full((n - 1,), -1, dtype=torch.long)
        for k in sorted({int(t) for t in next_turn.tolist() if t >= 0}):
            seg[next_turn == k] = len(segments)
            segments.append((gidx, k))
        segment_ids[start : start + n - 1] = seg
        loss_mask[start : start + n - 1] = torch.where(seg >= 0, seq.weight, seq.context_weight)
        start += n
    if start < seq_length:  # padding positions restart too, so positions stay small
        position_ids[start:] = torch.arange(seq_length - start)
    return PackedRow(tokens, labels, loss_mask, position_ids, doc_ids, segment_ids, segments, [g for g, _ in items])


def block_causal_mask(doc_ids_BS: torch.Tensor) -> torch.Tensor:
    """Megatron's boolean attention mask [B, 1, S, S]: True where attention is NOT allowed.

    Token i attends to token j iff j <= i and both belong to the same sequence.
    """
    S = doc_ids_BS.shape[-1]
    same_doc = doc_ids_BS[:, :, None] == doc_ids_BS[:, None, :]
    causal = torch.ones(S, S, dtype=torch.bool, device=doc_ids_BS.device).tril()
    return ~(same_doc & causal)[:, None]


def cu_seqlens(doc_ids_S: torch.Tensor) -> torch.Tensor:
    """Cumulative sequence lengths [num_docs + 1] (int32) of one row, for THD-format attention."""
    _, counts = torch.unique_consecutive(doc_ids_S, return_counts=True)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)


def collate(rows: list[PackedRow]) -> dict[str, torch.Tensor]:
    """Stack rows into a microbatch dict of [B, S] tensors."""
    out = {
        "tokens": torch.stack([r.tokens for r in rows]),
        "labels": torch.stack([r.labels for r in rows]),
        "loss_mask": torch.stack([r.loss_mask for r in rows]),
        "position_ids": torch.stack([r.position_ids for r in rows]),
        "doc_ids": torch.stack([r.doc_ids for r in rows]),
        "segment_ids": torch.stack([r.segment_ids for r in rows]),
    }
    if all(r.ref_logp is not None for r in rows):
        out["ref_logp"] = torch.stack([r.ref_logp for r in rows])
    return out
