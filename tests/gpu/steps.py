"""The steps of tests/gpu/acceptance.sh, one per process: `python tests/gpu/steps.py STEP OUT.json`.

Each step writes {"step", "status": passed|failed|skipped, "reason", "figures": {...}} to OUT.json and
prints its figures. Steps that need what this machine lacks (CUDA, Transformer Engine, vLLM, two
GPUs) are skipped with the reason. Sizes are small so that the whole script fits 8 minutes on one
H100/H200 (the vLLM step dominates: engine start-up).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import torch


class Skip(Exception):
    pass


def _need_cuda(n: int = 1) -> None:
    if not torch.cuda.is_available():
        raise Skip("no CUDA device")
    if torch.cuda.device_count() < n:
        raise Skip(f"needs {n} GPUs, this machine has {torch.cuda.device_count()}")


def _need_te() -> None:
    from sweet_megatron.platform import has_transformer_engine

    if not has_transformer_engine():
        raise Skip("Transformer Engine is not usable here")


def _mem() -> dict:
    if not torch.cuda.is_available():
        return {}
    free, total = torch.cuda.mem_get_info()
    return {"used_gb": round((total - free) / 1e9, 2), "torch_reserved_gb": round(torch.cuda.memory_reserved() / 1e9, 2)}


def _tiny(**kw):
    from sweet_megatron.model import ModelConfig

    return ModelConfig(**{**dict(num_layers=2, hidden_size=256, ffn_hidden_size=512, num_attention_heads=4,
                                 num_query_groups=2, vocab_size=1000, seq_length=256), **kw})


def _rows(n=6, seed=0, vocab=1000):
    import random

    from sweet_megatron.data.packing import Sequence, pack_sequences

    rng = random.Random(seed)
    seqs = []
    for _ in range(n):
        k = rng.randint(20, 60)
        seqs.append(Sequence([rng.randrange(vocab) for _ in range(k)], [-1] * 3 + [0] * (k - 3)))
    return pack_sequences(seqs, 256, pad_id=0)


# ------------------------------------------------------------------------------------------- steps
def step_versions() -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    for mod in ("megatron.core", "transformer_engine", "vllm", "triton"):
        try:
            m = __import__(mod, fromlist=["_"])
            out[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            out[mod] = f"not importable ({type(exc).__name__})"
    from sweet_kernels import segment_logprob as sl

    out["triton_kernels"] = "available" if sl.triton_rows is not None else sl.TRITON_UNAVAILABLE_REASON
    out["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
    out["CUDA_DEVICE_MAX_CONNECTIONS"] = os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS")
    if "expandable_segments:True" in (out["PYTORCH_CUDA_ALLOC_CONF"] or ""):
        raise AssertionError("PYTORCH_CUDA_ALLOC_CONF has expandable_segments:True: vLLM's sleep-mode allocator "
                             "refuses it; unset it")
    return out


def step_plan() -> dict:
    import subprocess

    out = {}
    for args, want in ((["model=llama3_70b", "parallel=h100_70b", "rollout=vllm"], 0),
                       (["model=llama3_8b", "parallel=h100_8b", "rollout=vllm"], 0),
                       (["model=llama3_70b", "parallel=h100_8b", "rollout=vllm"], 1)):
        proc = subprocess.run([sys.executable, "-m", "sweet_megatron.bench.cli", "plan", *args], capture_output=True,
                              text=True, timeout=120)
        out[" ".join(args)] = {"exit": proc.returncode, "peak_line": max(
            (ln for ln in proc.stdout.splitlines() if " GB  (" in ln), key=lambda ln: float(ln.split()[1]), default="")}
        if proc.returncode != want:
            raise AssertionError(f"sweet-bench plan {' '.join(args)} exited {proc.returncode}, expected {want}")
    return out


def step_kernel() -> dict:
    _need_cuda()
    from sweet_kernels import fused_linear_logprob
    from sweet_kernels import segment_logprob as sl

    if sl.triton_rows is None:
        raise AssertionError(sl.TRITON_UNAVAILABLE_REASON)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        g = torch.Generator(device="cuda").manual_seed(0)
        T, H, V = 2048, 512, 16032  # 128256 / 8: one TP=8 shard of Llama-3's vocabulary
        hid = torch.randn(T, H, device="cuda", generator=g, dtype=dtype, requires_grad=True)
        w = (torch.randn(V, H, device="cuda", generator=g, dtype=dtype) * 0.05).requires_grad_(True)
        lab = torch.randint(0, V, (T,), device="cuda", generator=g)
        got = fused_linear_logprob(hid, w, lab, backend="triton")
        got.sum().backward()
        gh, gw = hid.grad.clone(), w.grad.clone()
        hid.grad = w.grad = None
        ref = (hid.double() @ w.double().T).log_softmax(-1).gather(-1, lab[:, None])[:, 0]
        ref.sum().backward()
        t0 = time.perf_counter()
        for _ in range(5):
            fused_linear_logprob(hid.detach(), w.detach(), lab, backend="triton")
        torch.cuda.synchronize()
        out[str(dtype)] = {"fwd_max_abs": float((got.double() - ref).abs().max()),
                           "grad_hidden_max_abs": float((gh.double() - hid.grad).abs().max()),
                           "grad_weight_max_abs": float((gw.double() - w.grad).abs().max()),
                           "fwd_ms": round((time.perf_counter() - t0) / 5 * 1e3, 2)}
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        if out[str(dtype)]["fwd_max_abs"] > tol:
            raise AssertionError(f"Triton forward off by {out[str(dtype)]['fwd_max_abs']} in {dtype}")
    return out


def _runner(model_cfg, optim=None, **par):
    from sweet_megatron.parallel import ParallelConfig, initialize
    from sweet_megatron.training.runner import ModelRunner

    pc = ParallelConfig(**par)
    return ModelRunner(model_cfg, pc, initialize(pc, seed=0), optim)


def step_te_vs_local() -> dict:
    _need_cuda()
    _need_te()
    from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint

    rows = _rows()
    local = _runner(_tiny(transformer_impl="local"))
    path = f"/tmp/sweet-acc-{os.getpid()}-local"
    save_model_checkpoint(path, local.chunks, checkpoint_meta(local.model_cfg))  # a local-spec checkpoint (#10)
    te = _runner(_tiny(transformer_impl="transformer_engine"))
    te.load_weights(path)
    a = torch.cat([r for r in local.token_logprobs(rows)])
    b = torch.cat([r for r in te.token_logprobs(rows)])  # THD packed on the TE spec
    gap = float((a - b).abs().max())
    if gap > 5e-2:
        raise AssertionError(f"TE vs local log-probs differ by {gap}")
    return {"max_abs_logprob_gap_bf16": gap, "local_spec_checkpoint_loaded_into_te": True, **_mem()}


def step_thd() -> dict:
    _need_cuda()
    _need_te()
    rows = _rows()
    te = _runner(_tiny(transformer_impl="transformer_engine"))
    # compare doc by doc: the packed row's values at each doc's positions vs that doc run alone
    from sweet_megatron.data.packing import Sequence, pack_sequences

    worst = 0.0
    for r, lp in zip(rows, te.token_logprobs(rows), strict=True):
        for d in sorted(set(r.doc_ids.tolist())):
            keep = (r.doc_ids == d).nonzero()[:, 0]
            if r.loss_mask[keep].sum() == 0:
                continue
            toks = r.tokens[keep].tolist()
            alone = pack_sequences([Sequence(toks, [0] * len(toks))], 256, pad_id=0)
            ref = te.token_logprobs(alone)[0][: len(toks)]
            worst = max(worst, float((lp[keep][:-1] - ref[:-1]).abs().max()))
    if worst > 5e-2:
        raise AssertionError(f"THD packed vs alone differ by {worst}")
    return {"max_abs_packed_vs_alone": worst}


def step_init_step() -> dict:
    """An init checkpoint, then one small-lr step: the loss must not jump (issue 18 #4)."""
    from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint
    from sweet_megatron.config import OptimConfig
    from sweet_megatron.training.runner import sft_loss

    cfg = _tiny()
    rows = _rows()
    src = _runner(cfg, OptimConfig(lr=1e-3, min_lr=1e-3, warmup_steps=0))
    for _ in range(20):  # a "pretrained" model: fit these rows
        m = src.train_step(rows, sft_loss, [])
    trained = m["loss_sum"] / m["count"]
    path = f"/tmp/sweet-acc-{os.getpid()}-init"
    save_model_checkpoint(path, src.chunks, checkpoint_meta(cfg))
    torch.manual_seed(123)
    dst = _runner(cfg, OptimConfig(lr=1e-5, min_lr=1e-5, warmup_steps=0))
    dst.load_weights(path)
    first = dst.train_step(rows, sft_loss, [])
    second = dst.train_step(rows, sft_loss, [])
    l1, l2 = first["loss_sum"] / first["count"], second["loss_sum"] / second["count"]
    out = {"loss_trained": trained, "loss_step1_after_load": l1, "loss_step2": l2, "ln_vocab": float(torch.log(
        torch.tensor(1000.0))), "params_dtype": str(dst.platform.params_dtype), **_mem()}
    if l1 > trained + 0.5:
        raise AssertionError(f"the first step after loading starts at loss {l1:.3f}, the checkpoint's was "
                             f"{trained:.3f}: the loaded weights did not take (issue 18 #4)")
    if abs(l2 - l1) > 0.5:
        raise AssertionError(f"the loss jumped from {l1:.3f} to {l2:.3f} after one lr-1e-5 step")
    return out


def step_vllm_cycle() -> dict:
    """vLLM sleep -> train -> update -> wake -> generate, memory at each point, and the probe gap."""
    _need_cuda()
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise Skip(f"vLLM not importable ({exc})") from exc
    from sweet_megatron.config import OptimConfig
    from sweet_megatron.rollout.base import SamplingParams
    from sweet_megatron.rollout.probe import Probe, megatron_score, probe_logprob_gap
    from sweet_megatron.rollout.vllm_engine import VLLMEngine
    from sweet_megatron.training.runner import sft_loss
    from sweet_megatron.weights.resharding import sync_weights

    cfg = _tiny(vocab_size=32000, seq_length=512)
    actor = _runner(cfg, OptimConfig(lr=1e-4, min_lr=1e-4, warmup_steps=0))
    mem = {"actor_built": _mem()}
    eng = VLLMEngine(cfg, gpu_memory_utilization=0.3, engine_kwargs={"enforce_eager": True})
    mem["engine_built"] = _mem()
    sync_weights(eng, actor.modules(), cfg)
    eng.wake()
    probe = Probe.random(cfg.vocab_size, seed=1)
    gap0 = probe_logprob_gap(eng, lambda p, c: megatron_score(actor.modules(), p, c, cfg), probe)
    eng.sleep()
    mem["engine_asleep"] = _mem()
    actor.train_step(_rows(vocab=1000), sft_loss, [])
    mem["after_train_step"] = _mem()
    actor.offload()
    mem["actor_offloaded"] = _mem()
    sync_weights(eng, actor.modules(), cfg)
    mem["weights_updated"] = _mem()
    eng.wake()
    mem["engine_awake"] = _mem()
    gens = eng.generate([[1, 2, 3, 4]] * 4, SamplingParams(max_tokens=16, temperature=1.0, seed=0))
    gap1 = probe_logprob_gap(eng, lambda p, c: megatron_score(actor.modules(), p, c, cfg), probe)
    out = {"probe_gap_first_sync": gap0, "probe_gap_after_step": gap1, "generated_tokens": sum(
        len(g[0].token_ids) for g in gens), "memory_gb": mem}
    if gap1 > 0.05:
        raise AssertionError(f"trainer vs engine log-prob gap {gap1} after the update")
    return out


def step_fp8_gap() -> dict:
    _need_cuda()
    _need_te()
    from sweet_megatron.model import FP8Config
    from sweet_megatron.rollout.probe import Probe, megatron_score

    cfg = _tiny(vocab_size=1024, transformer_impl="transformer_engine")
    bf16 = _runner(cfg)
    path = f"/tmp/sweet-acc-{os.getpid()}-fp8"
    from sweet_megatron.checkpoint.model_io import checkpoint_meta, save_model_checkpoint

    save_model_checkpoint(path, bf16.chunks, checkpoint_meta(cfg))
    fp8 = _runner(_tiny(vocab_size=1024, transformer_impl="transformer_engine", fp8=FP8Config(enabled=True)))
    fp8.load_weights(path)
    probe = Probe.random(1024, seed=2, prompt_len=16, cont_len=16)
    a = megatron_score(bf16.modules(), probe.prompts, probe.continuations, cfg)
    cold = megatron_score(fp8.modules(), probe.prompts, probe.continuations, cfg)
    warm = megatron_score(fp8.modules(), probe.prompts, probe.continuations, cfg)

    def gap(x, y):
        return max(abs(u - v) for r, s in zip(x, y) for u, v in zip(r, s))

    return {"fp8_cold_vs_bf16_max_gap": gap(a, cold), "fp8_warm_vs_bf16_max_gap": gap(a, warm)}


def step_dp2_tp2() -> dict:
    _need_cuda(2)
    import subprocess

    out = {}
    for layout in ("tensor_parallel=2", "tensor_parallel=1"):  # TP2 and DP2 under NCCL (#1)
        proc = subprocess.run(["torchrun", "--nproc-per-node", "2", __file__, "_multi", layout], capture_output=True,
                              text=True, timeout=240)
        out[layout] = proc.stdout.strip().splitlines()[-1:] or proc.stderr[-500:]
        if proc.returncode:
            raise AssertionError(f"{layout}: {proc.stderr[-2000:]}")
    return out


def _multi(layout: str) -> None:
    from sweet_megatron.config import OptimConfig
    from sweet_megatron.training.runner import sft_loss

    k, v = layout.split("=")
    r = _runner(_tiny(), OptimConfig(lr=1e-4, min_lr=1e-4, warmup_steps=0), **{k: int(v)})
    m = r.train_step(_rows(8), sft_loss, [])
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"loss": m["loss_sum"] / m["count"], "grad_norm": m["grad_norm"]}))


STEPS = {"versions": step_versions, "plan": step_plan, "kernel": step_kernel, "te_vs_local": step_te_vs_local,
         "thd": step_thd, "init_step": step_init_step, "fp8_gap": step_fp8_gap, "vllm_cycle": step_vllm_cycle,
         "dp2_tp2": step_dp2_tp2}


def main() -> int:
    name, out_path = sys.argv[1], sys.argv[2]
    if name == "_multi":
        _multi(out_path)
        return 0
    rec = {"step": name, "status": "passed", "reason": None, "figures": {}}
    t0 = time.perf_counter()
    try:
        rec["figures"] = STEPS[name]()
    except Skip as exc:
        rec.update(status="skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded, the script goes on
        rec.update(status="failed", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    with open(out_path, "w") as f:
        json.dump(rec, f, indent=2, default=str)
    print(json.dumps(rec, default=str)[:3000])
    return 0 if rec["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
