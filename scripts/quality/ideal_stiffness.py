"""The stiffness of the *ideal* guided noise prediction for gouache-tiny's data: what any perfectly
trained model converges to, whatever its parametrisation (ε or v), loss weighting or caption dropout.

The ideal denoiser of a set of clean latents {x0_i} is the posterior mean
D(x̄, σ) = Σ softmax(-|x̄ - x0_i|² / 2σ²) x0_i, in DDIM's coordinates x̄ = x_t/√ᾱ, σ = √((1-ᾱ)/ᾱ);
its noise prediction ε = (x̄ - D)/σ has the symmetric Jacobian J = (I - Cov[x0 | x̄]/σ²)/σ (Tweedie).
With guidance, ε_g = ε_u + w (ε_c - ε_u) has J_g = (I - Cov_u/σ² - w (Cov_c - Cov_u)/σ²)/σ.
This script encodes N_u dataset images (the unconditional distribution) and N_c images of each
prompt (the conditional one) with gouache-tiny's VAE, runs a guided DDIM trajectory with the ideal
denoisers, and prints h·λ_max(J_g) per step (h: the 20-step schedule's Δσ), as
guidance_stiffness.py does for the trained UNet. An explicit multistep method is stable for real
h·λ > -2 (Euler), -1 (AB2), -6/11 (AB3), -0.3 (AB4: PLMS/PNDM, LMS).

Run: OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/quality/ideal_stiffness.py --prompts 2
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

torch.set_num_threads(1)


@torch.no_grad()
def encode(vae, specs) -> torch.Tensor:
    from gouache.tiny.shapes import draw

    out = []
    for i in range(0, len(specs), 256):
        arr = np.stack([np.asarray(draw(s), dtype=np.float32) for s in specs[i : i + 256]])
        px = torch.from_numpy(arr.transpose(0, 3, 1, 2) / 127.5 - 1.0)
        out.append(vae.encode(px).latent_dist.mode() * vae.config.scaling_factor)
    return torch.cat(out).flatten(1).double()


def posterior(x: torch.Tensor, data: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of x0 given x̄ = x under the empirical prior ``data``."""
    logits = -((data - x) ** 2).sum(1) / (2 * sigma**2)
    p = torch.softmax(logits, 0)
    mean = p @ data
    d = data - mean
    cov = (d * p[:, None]).T @ d
    return mean, cov


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--n-uncond", type=int, default=8192)
    ap.add_argument("--n-cond", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=5.0, help="CFG of the trajectory")
    ap.add_argument("--w", default="0,1,3,5,7.5")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--zero-snr", action="store_true",
                    help="the schedule a zero-terminal-SNR retrain would use: rescale_betas_zero_snr, trailing timesteps")
    args = ap.parse_args()
    ws = [float(w) for w in args.w.split(",")]

    from gouache.pipelines.model import load_model
    from gouache.sampling.loop import initial_noise
    from gouache.sampling.samplers import make_scheduler
    from gouache.tiny.judge import evaluation_prompts, parse_prompt
    from gouache.tiny.shapes import random_spec

    model = load_model(dtype="fp32")
    vae = model.vae
    rng = random.Random(0)
    uncond = encode(vae, [random_spec(rng) for _ in range(args.n_uncond)])
    sched = make_scheduler("DDIM", None, model.scheduler_config)
    if args.zero_snr:
        cfg = {**dict(sched.config), "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
        cfg.pop("_use_default_values", None)  # from_config drops the keys listed there, even when set
        sched = type(sched).from_config(cfg)
    ac = sched.alphas_cumprod.double()
    sched.set_timesteps(args.steps)
    ts = [int(t) for t in sched.timesteps]

    def sigma(t: int) -> float:
        a = float(ac[t]) if t >= 0 else float(sched.final_alpha_cumprod)
        return ((1 - a) / a) ** 0.5 if a > 0 else float("inf")

    worst = {w: [] for w in ws}
    for k, prompt in enumerate(evaluation_prompts(False, args.prompts)):
        c, s_, bg = parse_prompt(prompt)
        cond = encode(vae, [random_spec(rng, colour=c, shape=s_, background=bg) for _ in range(args.n_cond)])
        # x̄ at the first timestep: x_t/√ᾱ with x_t the seed's noise (init_noise_sigma 1)
        noise = initial_noise([args.seed + k], (4, 8, 8)).flatten().double()
        x = noise / float(ac[ts[0]]) ** 0.5 if float(ac[ts[0]]) > 0 else None
        print(f"\n{prompt!r} seed {args.seed + k}: ideal denoisers ({args.n_uncond} uncond, {args.n_cond} cond latents), "
              f"DDIM CFG {args.cfg}")
        print(f"{'t':>4} {'sigma':>7} {'h':>7} " + " ".join(f"{'h*lam w=' + str(w):>12}" for w in ws))
        eye = torch.eye(noise.numel(), dtype=torch.float64)
        for i, t in enumerate(ts):
            t_next = ts[i + 1] if i + 1 < len(ts) else -1
            s, s_next = sigma(t), sigma(t_next)
            if x is None:  # zero terminal SNR: σ = ∞, the posterior is the prior; x̄_next = E[x0] + σ_next·ε
                mu, mc = uncond.mean(0), cond.mean(0)
                x = mu + args.cfg * (mc - mu) + s_next * noise
                print(f"{t:>4} {'inf':>7} {'-inf':>7} (first step from pure noise: no Jacobian)")
                continue
            h = s_next - s
            mu, cu = posterior(x, uncond, s)
            mc, cc = posterior(x, cond, s)
            row = []
            for w in ws:
                jg = (eye - cu / s**2 - w * (cc - cu) / s**2) / s
                lam = float(torch.linalg.eigvalsh(jg).max())
                row.append(h * lam)
                worst[w].append(h * lam)
            print(f"{t:>4} {s:>7.3f} {h:>7.3f} " + " ".join(f"{r:>12.3f}" for r in row), flush=True)
            d_g = mu + args.cfg * (mc - mu)  # guided x0
            x = d_g + (s_next / s) * (x - d_g)  # DDIM in x̄: x0 + σ_next ε
    print("\nmost negative h*lambda (AB4 needs > -0.3, AB2 > -1, Euler > -2):")
    for w in ws:
        print(f"  w={w}: min {min(worst[w]):.3f}; median {float(np.median(worst[w])):.3f}; "
              f"steps below -0.3: {sum(v < -0.3 for v in worst[w])}/{len(worst[w])}")


if __name__ == "__main__":
    main()
