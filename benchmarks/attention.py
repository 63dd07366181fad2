"""gouache's CPU attention kernels against PyTorch's SDPA on Stable Diffusion 1.5's attention calls.

Each call as the UNet makes it at 512² (batch 2 for CFG, 8 heads; the VAE's one head), bf16, on
``--threads`` threads (default 2), best of ``--repeats`` runs, side by side in one process; prints
milliseconds, GFLOP/s and the ratio to SDPA, and each kernel's largest difference from fp32
attention next to SDPA's own:

    python benchmarks/attention.py [--threads 2] [--repeats 5] [--out benchmarks/results/attention-DATE.json]
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gouache.bench import best_seconds, write_results  # noqa: E402
from gouache.speed import attention, kernels  # noqa: E402
from gouache.speed.hardware import describe  # noqa: E402

# (name, batch x heads, queries, keys, head width): SD 1.5 at 512x512 (UNet levels 64², 32², 16², 8²) and its VAE
CALLS = [
    ("UNet self 64² (x5 per step)", (2, 8), 4096, 4096, 40),
    ("UNet cross 64² (x5)", (2, 8), 4096, 77, 40),
    ("UNet self 32² (x5)", (2, 8), 1024, 1024, 80),
    ("UNet cross 32² (x5)", (2, 8), 1024, 77, 80),
    ("UNet self 16² (x5)", (2, 8), 256, 256, 160),
    ("UNet self 8² (x1)", (2, 8), 64, 64, 160),
    ("VAE mid-block (x1 per decode)", (1, 1), 4096, 4096, 512),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here (and a .md next to it)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lib = kernels.attention_library()
    rows = []
    g = torch.Generator().manual_seed(0)
    for name, (b, h), lq, s, d in CALLS:
        q, k, v = (torch.randn(b, h, n, d, generator=g).bfloat16() for n in (lq, s, s))
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        flops = 4 * b * h * lq * s * d
        sides = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
                 "pytorch-blocked": lambda: attention.cpu_attention(q, k, v)}
        if lib is not None:
            sides["fused"] = lambda: attention.fused_attention(lib, q, k, v)
        row = {"call": name, "batch_heads": b * h, "queries": lq, "keys": s, "width": d}
        with torch.no_grad():
            for side, fn in sides.items():
                ms = best_seconds(fn, args.repeats) * 1e3
                row[side] = {"ms": ms, "gflops": flops / ms / 1e6,
                             "max_error": (fn().float() - ref).abs().max().item()}
        for side in sides:
            row[side]["x_sdpa"] = row["sdpa"]["ms"] / row[side]["ms"]
        rows.append(row)
        print(name, " | ".join(f"{side} {row[side]['ms']:.2f} ms {row[side]['gflops']:.0f} GFLOP/s "
                               f"{row[side]['x_sdpa']:.2f}x err {row[side]['max_error']:.4f}" for side in sides),
              flush=True)
    result = {"machine": describe(), "torch": torch.__version__, "threads": args.threads, "calls": rows}
    if args.out:
        out = Path(args.out)
        sides = [s for s in ("sdpa", "pytorch-blocked", "fused") if s in rows[0]]
        md = [f"Threads: {args.threads}; bf16; best of {args.repeats}.", "",
              "| call | batch·heads × q × k × width | " + " | ".join(f"{s} ms (× SDPA)" for s in sides) + " |",
              "| --- | --- | " + " | ".join("---:" for _ in sides) + " |"]
        for r in rows:
            md.append(f"| {r['call']} | {r['batch_heads']} × {r['queries']} × {r['keys']} × {r['width']} | "
                      + " | ".join(f"{r[s]['ms']:.2f} ({r[s]['x_sdpa']:.2f}×)" for s in sides) + " |")
        write_results(out, result, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
