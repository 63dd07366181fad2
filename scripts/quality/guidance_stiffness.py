"""How stiff is gouache-tiny's guided noise prediction? Per sampling step, along a DDIM trajectory.

In DDIM's coordinates (x̄ = x_t / √ᾱ, σ = √((1-ᾱ)/ᾱ)) every sampler here integrates
dx̄/dσ = ε(x̄, σ): DDIM is Euler's method on it, PNDM/PLMS and LMS are 4th-order Adams–Bashforth
(linear multistep) methods, DPM++ 2M a 2nd-order one. An explicit method of step h = Δσ is stable
only while h·λ stays inside its stability region, λ the eigenvalues of J = ∂ε/∂x̄; on the negative
real axis that is h·λ > -2 for Euler (AB1), -1 for AB2, -6/11 for AB3, -0.3 for AB4.

For each step of a 20-step DDIM run (CFG ``--cfg``, the trajectory all samplers share at first),
this script finds the dominant eigenvalue of J for the unconditional prediction, the conditional
one, and the guided one ε_u + w (ε_c − ε_u) for several w, by power iteration with finite
differences, and prints h·λ (h: the 20-step schedule's Δσ there).

Run: OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/quality/guidance_stiffness.py --prompts 2
"""

from __future__ import annotations

import argparse

import torch

torch.set_num_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=5.0, help="CFG of the trajectory")
    ap.add_argument("--w", default="0,1,3,5,7.5", help="guidance scales whose Jacobian is probed")
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    ws = [float(w) for w in args.w.split(",")]

    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.engine import prompt_conditioning as conditioning_schedule
    from gouache.sampling.loop import initial_noise
    from gouache.sampling.samplers import make_scheduler
    from gouache.tiny.judge import evaluation_prompts

    model = load_model(dtype="fp32")
    unet = model.unet
    sched = make_scheduler("DDIM", None, model.scheduler_config)
    ac = sched.alphas_cumprod
    sched.set_timesteps(args.steps)
    ts = [int(t) for t in sched.timesteps]

    def sigma(t: int) -> float:
        a = float(ac[t]) if t >= 0 else float(sched.final_alpha_cumprod)
        return ((1 - a) / a) ** 0.5

    summary = {w: [] for w in ws}
    for k, prompt in enumerate(evaluation_prompts(False, args.prompts)):
        req = GenerationRequest(prompt, steps=args.steps, cfg_scale=args.cfg, seed=args.seed + k, width=64, height=64)
        conds, uncond = conditioning_schedule(model, req)(0)
        hid = torch.cat([uncond.hidden, conds[0][0].hidden])

        @torch.no_grad()
        def eps_uc(x_in: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            out = unet(torch.cat([x_in, x_in]), t, encoder_hidden_states=hid, return_dict=False)[0]
            return out[:1], out[1:]

        x = initial_noise([args.seed + k], (4, 8, 8))  # x_t at t = ts[0] (init_noise_sigma is 1)
        print(f"\n{prompt!r} seed {args.seed + k}: trajectory DDIM CFG {args.cfg}, {args.steps} steps")
        print(f"{'t':>4} {'sigma':>7} {'h':>7} " + " ".join(f"{'h*lam w=' + str(w):>12}" for w in ws))
        for i, t in enumerate(ts):
            t_next = ts[i + 1] if i + 1 < len(ts) else -1
            s, s_next = sigma(t), sigma(t_next)
            h = s_next - s
            root_a = float(ac[t]) ** 0.5
            eu, ec = eps_uc(x, t)
            row = []
            for w in ws:
                def guided(e_u, e_c, w=w):
                    return e_u + w * (e_c - e_u)

                base = guided(eu, ec)
                v = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
                v /= v.norm()
                lam = 0.0
                for _ in range(args.iters):
                    d = 1e-3
                    # x̄ = x_t/√ᾱ, so a step d·v in x̄ is d·√ᾱ·v in x_t
                    e2u, e2c = eps_uc(x + d * root_a * v, t)
                    jv = (guided(e2u, e2c) - base) / d
                    lam = float((jv * v).sum())  # Rayleigh quotient (v has unit norm)
                    v = jv / jv.norm()
                row.append(h * lam)
                summary[w].append(h * lam)
            print(f"{t:>4} {s:>7.3f} {h:>7.3f} " + " ".join(f"{r:>12.3f}" for r in row), flush=True)
            # one DDIM step with the trajectory's CFG
            g = eu + args.cfg * (ec - eu)
            a, a_next = float(ac[t]), (float(ac[t_next]) if t_next >= 0 else float(sched.final_alpha_cumprod))
            x0 = (x - (1 - a) ** 0.5 * g) / a ** 0.5
            x = a_next ** 0.5 * x0 + (1 - a_next) ** 0.5 * g
    print("\nmost negative h*lambda over all steps and prompts (AB4 needs > -0.3, AB2 > -1, Euler > -2):")
    for w in ws:
        print(f"  w={w}: min {min(summary[w]):.3f}; steps below -0.3: {sum(v < -0.3 for v in summary[w])}/{len(summary[w])}")


if __name__ == "__main__":
    main()
