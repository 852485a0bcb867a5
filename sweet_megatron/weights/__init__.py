"""Model weights between megatron-core and Hugging Face Llama, shared by `checkpoint/` and `rollout/`
(which never import each other):

    llama_mapping.py   the one name/layout mapping (QKV groups, fc1 [gate; up], vocab padding); pure
    hf_io.py           HF checkpoint directories: validated lazy safetensors reads, streamed writes,
                       megatron checkpoint region reads
    resharding.py      a megatron model's TP/PP shards as full HF tensors in bounded buckets (the
                       trainer -> rollout engine weight sync; also the per-rank weight list of
                       `sweet-convert hf-to-mcore`)
"""
