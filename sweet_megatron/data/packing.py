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
  its own id) and `position_ids` restart at 0 for each sequence. The local layer spec attends
  piece by piece (`attention_pieces`: exactly what the block-diagonal causal mask `block_causal_mask`
  allows); the Transformer Engine spec gets PackedSeqParams (cu_seqlens).
- Shared prefixes (`share_prefix=True`): the sequences of a group that begin with the same tokens
  (the candidate actions of one turn state, a trajectory pair's system prompt, reference and task)
  are laid out as a tree: the common prefix once, then each sequence's remainder as a *branch* that
  attends to the prefix and to itself only (`branch_ids`: 0 on the prefix, k on the k-th branch)
  and whose `position_ids` continue from the prefix. Every label and segment of every sequence is
  unchanged, so per-token log-probs equal those of the flat layout; the prefix is computed once
  instead of once per sequence. The prefix stops before the first labelled position (it carries no
  loss), so it never holds a segment. It needs attention by pieces (`attention_pieces`; or the
  dense `block_causal_mask`) and position-aware RoPE: the local layer spec only (model.py), not THD
  attention.
- `concat_rows` lays several rows out as one (the runner's microbatches): each row's positions
  before its padding tail, documents and segments renumbered, nothing else changed.

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
    branch_ids: torch.Tensor | None = None
    """[S] int64: 0 on shared prefixes and flat sequences, k on the k-th branch of a shared-prefix
    group (module docstring); None when the row has no shared prefix."""
    length: int | None = None
    """Positions holding sequences (the rest, from `length` on, is padding); None: all S."""

    @property
    def num_segments(self) -> int:
        return len(self.segments)

    @property
    def used(self) -> int:
        """Positions before the row's tail padding."""
        return self.tokens.shape[0] if self.length is None else self.length


def first_fit_decreasing(lengths: list[int], seq_length: int) -> list[list[int]]:
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


MIN_SHARED_PREFIX = 8
"""Shorter common prefixes are not worth a branch layout."""


def shared_prefix_length(group: list[Sequence]) -> int:
    """Tokens a group can lay out once (module docstring): 0 for a single sequence, a sequence with
    context loss, or a common prefix under MIN_SHARED_PREFIX tokens.

    The prefix p must be common to all (tokens 0..p, so position p-1 predicts the same token) and
    hold no labelled position (tokens 1..p outside every action); position p starts each branch.
    """
    if len(group) < 2 or any(s.context_weight > 0 for s in group):
        return 0
    first = group[0].ids
    common = len(first)
    for s in group[1:]:
        n = min(common, len(s.ids))
        common = next((i for i in range(n) if s.ids[i] != first[i]), n)
    p = common - 1
    for s in group:
        labelled = next((t for t in range(1, len(s.turn_of_token)) if s.turn_of_token[t] >= 0), len(s.ids))
        p = min(p, labelled - 1)
    return p if p >= MIN_SHARED_PREFIX else 0


def group_length(group: list[Sequence], share_prefix: bool = False) -> int:
    """Tokens the group takes in a row: the sum of its sequences, less the shared prefix's copies."""
    p = shared_prefix_length(group) if share_prefix else 0
    return sum(len(s.ids) for s in group) - p * (len(group) - 1)


def count_rows(groups: list[list[Sequence]], seq_length: int, share_prefix: bool = False) -> int:
    """How many rows `pack_groups` makes of these groups (without building them)."""
    return len(first_fit_decreasing([group_length(g, share_prefix) for g in groups], seq_length))


def merge_groups(groups: list[list[Sequence]], keys: list, seq_length: int) -> list[list[Sequence]]:
    """Merge runs of consecutive groups with equal keys (e.g. the pairs of one turn state) into one
    group, as long as its shared-prefix layout fits `seq_length`; sequence order is kept."""
    out: list[list[Sequence]] = []
    last = object()
    for group, key in zip(groups, keys, strict=True):
        if out and key == last and group_length(out[-1] + group, share_prefix=True) <= seq_length:
            out[-1] = out[-1] + group
        else:
            out.append(list(group))
        last = key
    return out


def pack_groups(groups: list[list[Sequence]], seq_length: int, pad_id: int,
                share_prefix: bool = False) -> tuple[list[PackedRow], list[Sequence]]:
    """Pack groups of sequences into rows. Returns (rows, flat list of sequences by global index).

    share_prefix: lay each group's common prefix out once (module docstring).
    Raises ValueError naming the group when one does not fit in a row.
    """
    flat: list[Sequence] = []
    group_members: list[list[int]] = []
    for g in groups:
        group_members.append(list(range(len(flat), len(flat) + len(g))))
        flat.extend(g)
    prefixes = [shared_prefix_length(g) if share_prefix else 0 for g in groups]
    lengths = [sum(len(s.ids) for s in g) - p * (len(g) - 1) for g, p in zip(groups, prefixes, strict=True)]
    for gi, n in enumerate(lengths):
        if n > seq_length:
            raise ValueError(
                f"group {gi} has {n} tokens, more than model.seq_length={seq_length}: raise "
                "model.seq_length or shorten episodes (rollout.max_turns / rollout.max_tokens)"
            )
    rows = []
    for bin_groups in first_fit_decreasing(lengths, seq_length):
        docs = [([(i, flat[i]) for i in group_members[g]], prefixes[g]) for g in sorted(bin_groups)]
        # a group without a shared prefix is a document per sequence, as before
        docs = [d for items, p in docs for d in ([(items, p)] if p else [([it], 0) for it in items])]
        rows.append(_build_row(docs, seq_length, pad_id))
    return rows, flat


def pack_sequences(seqs: list[Sequence], seq_length: int, pad_id: int) -> list[PackedRow]:
    """Pack independent sequences (groups of one)."""
    return pack_groups([[s] for s in seqs], seq_length, pad_id)[0]


def _build_row(docs: list[tuple[list[tuple[int, Sequence]], int]], seq_length: int, pad_id: int) -> PackedRow:
    """One row from documents: (sequences, shared prefix length); a document of several sequences
    shares its first `p` tokens (p > 0) and lays the rest of each out as a branch."""
    tokens = torch.full((seq_length,), pad_id, dtype=torch.long)
    labels = torch.zeros(seq_length, dtype=torch.long)
    loss_mask = torch.zeros(seq_length, dtype=torch.float32)
    position_ids = torch.zeros(seq_length, dtype=torch.long)
    doc_ids = torch.full((seq_length,), len(docs), dtype=torch.long)
    segment_ids = torch.full((seq_length,), -1, dtype=torch.long)
    branch_ids = torch.zeros(seq_length, dtype=torch.long)
    segments: list[tuple[int, int]] = []
    start = 0
    for doc, (items, p) in enumerate(docs):
        if p:  # the shared prefix: tokens 0..p-1, predicting tokens 1..p (no loss by construction)
            ids = torch.tensor(items[0][1].ids[: p + 1], dtype=torch.long)
            tokens[start : start + p] = ids[:p]
            labels[start : start + p] = ids[1:]
            position_ids[start : start + p] = torch.arange(p)
            doc_ids[start : start + p] = doc
            start += p
        for branch, (gidx, seq) in enumerate(items, start=1):
            ids = torch.tensor(seq.ids[p:], dtype=torch.long)
            next_turn = torch.tensor(seq.turn_of_token[p + 1 :], dtype=torch.long)
            n = len(ids)
            tokens[start : start + n] = ids
            position_ids[start : start + n] = torch.arange(p, p + n)
            doc_ids[start : start + n] = doc
            if p:
                branch_ids[start : start + n] = branch
            # position t predicts token t+1 (within this sequence only)
            labels[start : start + n - 1] = ids[1:]
            seg = torch.full((n - 1,), -1, dtype=torch.long)
            for k in sorted({int(t) for t in next_turn.tolist() if t >= 0}):
                seg[next_turn == k] = len(segments)
                segments.append((gidx, k))
            segment_ids[start : start + n - 1] = seg
            loss_mask[start : start + n - 1] = torch.where(seg >= 0, seq.weight, seq.context_weight)
            start += n
    if start < seq_length:  # padding positions restart too, so positions stay small
        position_ids[start:] = torch.arange(seq_length - start)
    return PackedRow(tokens, labels, loss_mask, position_ids, doc_ids, segment_ids, segments,
                     [g for items, _ in docs for g, _ in items],
                     branch_ids=branch_ids if bool(branch_ids.any()) else None, length=start)


def block_causal_mask(doc_ids_BS: torch.Tensor, branch_ids_BS: torch.Tensor | None = None) -> torch.Tensor:
    """Megatron's boolean attention mask [B, 1, S, S]: True where attention is NOT allowed.

    Token i attends to token j iff j <= i, both belong to the same sequence (document) and, with
    branch_ids [B, S], j is on the shared prefix (branch 0) or on i's own branch.
    """
    S = doc_ids_BS.shape[-1]
    allowed = doc_ids_BS[:, :, None] == doc_ids_BS[:, None, :]
    allowed &= torch.ones(S, S, dtype=torch.bool, device=doc_ids_BS.device).tril()
    if branch_ids_BS is not None:
        allowed &= (branch_ids_BS[:, None, :] == 0) | (branch_ids_BS[:, :, None] == branch_ids_BS[:, None, :])
    return ~allowed[:, None]


def attention_pieces(doc_ids_S: torch.Tensor, branch_ids_S: torch.Tensor | None = None) -> list[tuple[int, int, int]]:
    """The row's attention as pieces: exactly what `block_causal_mask` allows. A list of
    (start, end, prefix) over runs of consecutive positions, in order, covering the row: positions
    start..end-1 attend causally to each other and, when prefix >= 0, to every position of piece
    `prefix` (their document's shared prefix: this piece is a branch). A flat sequence, a shared
    prefix and the padding tail are pieces with prefix -1.
    """
    if branch_ids_S is None:
        key = doc_ids_S
    else:
        key = doc_ids_S * (int(branch_ids_S.max()) + 1) + branch_ids_S
    _, counts = torch.unique_consecutive(key, return_counts=True)
    ends = counts.cumsum(0).tolist()
    starts = [0] + ends[:-1]
    doc = doc_ids_S[starts].tolist()
    branch = [0] * len(starts) if branch_ids_S is None else branch_ids_S[starts].tolist()
    pieces: list[tuple[int, int, int]] = []
    prefix: dict[int, int] = {}  # doc -> index of its opening branch-0 piece
    for i, (start, end, d, b) in enumerate(zip(starts, ends, doc, branch, strict=True)):
        if b == 0:
            if d in prefix:
                raise ValueError(f"document {d}: a second branch-0 run at position {start}")
            prefix[d] = i
            pieces.append((start, end, -1))
        else:
            if d not in prefix:
                raise ValueError(f"document {d}: branch {b} at position {start} has no shared prefix before it")
            pieces.append((start, end, prefix[d]))
    return pieces


def concat_rows(rows: list[PackedRow], pad_id: int, multiple: int = 16) -> PackedRow:
    """One row holding the sequences of `rows` one after another: each row's positions before its tail
    padding, then padding to a multiple of `multiple` (at least one position). Documents, segments and
    sequences are renumbered so the new row means what the rows meant: every position keeps its token,
    label, loss weight, position id and what it attends to, so every log-prob and gradient is the same.
    """
    parts = [r.used for r in rows]
    used = sum(parts)
    S = max(multiple, -(-used // multiple) * multiple)
    tokens = torch.full((S,), pad_id, dtype=torch.long)
    labels = torch.zeros(S, dtype=torch.long)
    loss_mask = torch.zeros(S, dtype=torch.float32)
    position_ids = torch.zeros(S, dtype=torch.long)
    doc_ids = torch.zeros(S, dtype=torch.long)
    segment_ids = torch.full((S,), -1, dtype=torch.long)
    branch_ids = torch.zeros(S, dtype=torch.long)
    ref_logp = torch.zeros(S) if rows and all(r.ref_logp is not None for r in rows) else None
    segments: list[tuple[int, int]] = []
    sequence_index: list[int] = []
    start, next_doc = 0, 0
    for r, n in zip(rows, parts, strict=True):
        end = start + n
        tokens[start:end] = r.tokens[:n]
        labels[start:end] = r.labels[:n]
        loss_mask[start:end] = r.loss_mask[:n]
        position_ids[start:end] = r.position_ids[:n]
        if n:
            docs = r.doc_ids[:n]
            doc_ids[start:end] = docs - docs.min() + next_doc
            next_doc = int(doc_ids[end - 1]) + 1
        seg = r.segment_ids[:n]
        segment_ids[start:end] = torch.where(seg >= 0, seg + len(segments), seg)
        if r.branch_ids is not None:
            branch_ids[start:end] = r.branch_ids[:n]
        if ref_logp is not None:
            ref_logp[start:end] = r.ref_logp[:n]
        segments += r.segments
        sequence_index += r.sequence_index
        start = end
    doc_ids[used:] = next_doc
    position_ids[used:] = torch.arange(S - used)
    return PackedRow(tokens, labels, loss_mask, position_ids, doc_ids, segment_ids, segments, sequence_index,
                     ref_logp=ref_logp, branch_ids=branch_ids if bool(branch_ids.any()) else None, length=used)


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
    if any(r.branch_ids is not None for r in rows):
        out["branch_ids"] = torch.stack([r.branch_ids if r.branch_ids is not None else torch.zeros_like(r.doc_ids)
                                         for r in rows])
    return out
