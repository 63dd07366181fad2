"""A diagnostic for issue #22 (not a trainer): can a motion adapter learn to steer when the direction is
needed, told through the words or handed to it directly?

The cleanest form of the task (docs/motion-training.md, "Where the words are needed, and an oracle"):

* clips whose start says nothing about the direction — shapes of 30 % of the side starting near the
  centre and travelling 18-20 px either way;
* the first frame given clean (timestep 0), the loss on frames 1-15;
* half the clips at the top timesteps (t >= 850) from fresh noise, the noise that input implies as the
  target, so nothing of the clip's path is left in the input and only the conditioning can say it.

It trains the shipped gouache-tiny-motion further (lr 3e-4, 4 clips a step) and every ``--eval-every``
steps samples a centred shape in the four directions from ``--eval-n`` seeds (DDIM 20, CFG 5, the first
frame held clean) and prints how many move the named way and how far each travelled along it. Options:

* ``--sideways``: each motion module's attention branch also reads the neighbouring positions (four
  groups of an eighth of the channels shifted by one position left, right, up and down; no weights);
* ``--oracle``: a learnt vector per direction added to every motion module's input (the direction
  handed over, not read from the words);
* ``--text-shift``: the prompt handed to the motion modules: each adds to its input a learnt linear map
  (zero at the start) of the mean of the text encoder's states — motion modules conditioned on the
  prompt themselves, which AnimateDiff's are not;
* ``--readout``: gouache's text readout (:class:`gouache.adapters.motion_text.TextReadout`, as
  ``gouache train motion --text-readout --readout-labels 1`` trains it: its reader at 3e-3 with 64
  labelled captions a step, its per-module maps with the adapter); implies the sideways shift;
* ``--txt2vid``: no clean first frame, in training (every frame noisy, the loss on all) and in the
  evaluation (the clips from noise alone, judged as ``motion_bars`` judges: the named way by a quarter);
  ``--first-frame P`` still gives it clean in a fraction P of the training clips (an anchor to learn from);
* ``--lora R``: a rank-R LoRA on the UNet's cross-attention trains too.

With ``--readout`` each evaluation also writes the adapter and its readout as a MotionAdapter folder
(``OUT/adapter``) that ``gouache video --motion OUT/adapter`` runs.

    python scripts/quality/motion_direction_probe.py runs/probe-oracle --oracle --sideways --steps 1500

On one CPU thread: about 1 step a second, plus a minute per evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import random
import time
from pathlib import Path

import torch

SIZE = 0.30 * 64  # the shapes' side, px: small enough for either way from the centre
TRAVEL = (18.0, 20.0)  # px over the clip (the bar asks for 16)
FRAMES = 16


def decoupled_clip(index: int, seed: int = 77):
    """A clip that starts near the centre (along its path) and may go either way."""
    from gouache.tiny.motion import DIRECTIONS, MotionSpec
    from gouache.tiny.shapes import random_spec

    rng = random.Random(seed * 1_000_003 + index)
    base = random_spec(rng, 64)
    direction = rng.choice(tuple(DIRECTIONS))
    travel = rng.uniform(*TRAVEL)
    lo, hi = SIZE / 2 + 1, 64 - SIZE / 2 - 1
    along, across = rng.uniform(lo + travel, hi - travel), rng.uniform(lo, hi)
    dx, _ = DIRECTIONS[direction]
    cx, cy = (along, across) if dx else (across, along)
    return MotionSpec(dataclasses.replace(base, cx=cx, cy=cy, size=SIZE), direction, travel, FRAMES)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--sideways", action="store_true")
    p.add_argument("--text-shift", action="store_true")
    p.add_argument("--readout", action="store_true")
    p.add_argument("--txt2vid", action="store_true")
    p.add_argument("--first-frame", type=float, default=None,
                   help="with --txt2vid: the fraction of training clips whose first frame is still given clean")
    p.add_argument("--lora", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-n", type=int, default=4)
    args = p.parse_args()

    from diffusers import DDIMScheduler
    from diffusers.models.attention_processor import AttnProcessor2_0

    from gouache.adapters.motion import FrameCount, load_motion, pairs
    from gouache.adapters.motion_text import sideways
    from gouache.models.latents import to_latents
    from gouache.pipelines.model import load_model
    from gouache.tiny.motion import DIRECTIONS, clips_array, evaluation_specs, render
    from gouache.tiny.motion_eval import judge_clip
    from gouache.train.diffusion import encode_captions, training_noise_scheduler

    torch.manual_seed(0)
    random.seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model()
    pipe = model.pipeline
    vae, te, tok = pipe.vae, pipe.text_encoder, pipe.tokenizer
    # a contiguous copy: backward through the fast path's channels-last UNet with hooks segfaults (torch 2.13 CPU)
    unet = copy.deepcopy(pipe.unet).to(memory_format=torch.contiguous_format)
    unet.set_attn_processor(AttnProcessor2_0())
    for m in (unet, vae, te):
        m.requires_grad_(False).eval()
    adapter = load_motion("gouache-tiny-motion").adapter.float().train().requires_grad_(True)
    params = list(adapter.parameters())
    if args.lora:
        from peft import LoraConfig

        from gouache.train.motion import cross_attention_targets

        unet.add_adapter(LoraConfig(r=args.lora, lora_alpha=args.lora, target_modules=cross_attention_targets(unet)))
        params += [q for n, q in unet.named_parameters() if "lora_" in n]
    directions = list(DIRECTIONS)
    frames, chosen = FrameCount(FRAMES), {"rows": None}
    modules = [m for _, m in pairs(adapter, unet)]
    oracle = [torch.nn.Parameter(torch.zeros(len(directions), m.proj_in.in_features)) for m in modules]
    if args.oracle:
        params += oracle
    width = te.config.hidden_size
    from_text = [torch.nn.Linear(width, m.proj_in.in_features, bias=False) for m in modules]
    for lin in from_text:
        torch.nn.init.zeros_(lin.weight)
    if args.text_shift:
        params += [q for lin in from_text for q in lin.parameters()]
    groups = []
    if args.readout:
        from gouache.adapters.motion_text import TextReadout

        readout = TextReadout(width, [m.proj_in.in_features for m in modules])
        label_head = torch.nn.Linear(readout.out[0].in_features, len(directions) + 1)
        params += list(readout.out.parameters())
        groups = [{"params": readout.reader() + list(label_head.parameters()), "lr": 3e-3}]

    def hook(module, vectors, lin, index):
        def run(layer, inputs, output):
            h = output[0] if isinstance(output, tuple) else output
            x = sideways(h) if args.sideways else h
            if args.readout:
                x = readout.steer(h, index, chosen["read"])
            if args.oracle:
                e = vectors[chosen["rows"]]
                x = x + e.repeat_interleave(h.shape[0] // e.shape[0], 0)[:, :, None, None]
            if args.text_shift:
                x = x + lin(chosen["text"].mean(1))[:, :, None, None]  # one text row per frame
            moved = h + (module(x, num_frames=frames.n) - x)  # the module's branch on x, its residual on h
            return (moved, *output[1:]) if isinstance(output, tuple) else moved
        return run

    @contextlib.contextmanager
    def installed():
        if args.readout:
            chosen["read"] = readout(chosen["text"])
        handles = [t.register_forward_hook(hook(m, v, lin, i))
                   for i, ((t, m), v, lin) in enumerate(zip(pairs(adapter, unet), oracle, from_text))]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def latents_of(clips):
        px = torch.from_numpy(clips_array(clips))
        with torch.no_grad():
            z = vae.encode(px.flatten(0, 1)).latent_dist.sample()
        return to_latents(vae, z).unflatten(0, (px.shape[0], px.shape[1]))

    def text(captions):
        with torch.no_grad():
            return encode_captions(tok, te, captions).repeat_interleave(FRAMES, 0)

    @torch.no_grad()
    def sample(first, caption, direction, seed):
        s = DDIMScheduler.from_config(model.scheduler_config)
        s.set_timesteps(20)
        x = torch.randn((FRAMES, *first.shape), generator=torch.Generator().manual_seed(seed))
        cond, unc = text([caption]), text([""])
        chosen["rows"] = torch.tensor([directions.index(direction)] * 2)
        chosen["text"] = torch.cat([cond, unc])
        with installed():
            for t in s.timesteps:
                inp = x.clone()
                tt = torch.full((FRAMES,), int(t))
                if not args.txt2vid:
                    inp[0], tt[0] = first, 0
                ec, eu = unet(torch.cat([inp, inp]), torch.cat([tt, tt]), torch.cat([cond, unc])).sample.chunk(2)
                x = s.step(eu + 5.0 * (ec - eu), t, x).prev_sample
        if not args.txt2vid:
            x[0] = first
        return model.decode(x)

    @torch.no_grad()
    def evaluate(step):
        adapter.eval()
        moved, travel = 0, {}
        for k, spec in enumerate(evaluation_specs(False, args.eval_n)):
            centred = dataclasses.replace(spec, start=dataclasses.replace(spec.start, cx=32.0, cy=32.0, size=SIZE))
            for d in directions:
                clip = dataclasses.replace(centred, direction=d)
                j = judge_clip(sample(latents_of([[render(clip)[0]]])[0, 0], clip.caption, d, k), clip.caption)
                moved += bool(j.moving)
                travel.setdefault(d, []).append(None if j.motion is None else round(j.motion.travel))
        adapter.train()
        row = {"step": step, "moving": f"{moved}/{args.eval_n * len(directions)}", "travel": travel}
        if args.readout and step:
            from gouache.adapters.motion import MOTION_TEXT

            adapter.save_pretrained(args.out / "adapter")
            (args.out / "adapter" / MOTION_TEXT).write_bytes(readout.save_bytes(torch.float32))
        print(json.dumps(row), flush=True)
        with open(args.out / "eval.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    acp = training_noise_scheduler(model.scheduler_config).alphas_cumprod
    opt = torch.optim.AdamW([{"params": params}, *groups], lr=args.lr, weight_decay=0.0)
    evaluate(0)
    batch, start = 4, time.time()
    for step in range(1, args.steps + 1):
        specs = [decoupled_clip(step * batch + k) for k in range(batch)]
        z = latents_of([render(s) for s in specs])
        captions = [s.caption if random.random() > 0.1 else "" for s in specs]
        top = torch.rand(batch) < 0.5
        t = torch.where(top, torch.randint(850, 1000, (batch,)), torch.randint(0, 1000, (batch,)))
        a = acp[t].view(batch, 1, 1, 1, 1)
        noise, fresh = torch.randn_like(z), torch.randn_like(z)
        at_top = top.view(batch, 1, 1, 1, 1)
        inp = torch.where(at_top, fresh, a.sqrt() * z + (1 - a).sqrt() * noise)
        target = torch.where(at_top, (fresh - a.sqrt() * z) / (1 - a).sqrt(), noise)
        tf = t[:, None].repeat(1, FRAMES)
        clean = torch.rand(batch) < (1.0 if not args.txt2vid else (args.first_frame or 0.0))
        inp[:, 0] = torch.where(clean.view(batch, 1, 1, 1), z[:, 0], inp[:, 0])
        tf[:, 0] = torch.where(clean, 0, tf[:, 0])
        chosen["rows"] = torch.tensor([directions.index(s.direction) for s in specs])
        chosen["text"] = text(captions)
        with installed():
            pred = unet(inp.flatten(0, 1), tf.flatten(), chosen["text"]).sample.unflatten(0, (batch, FRAMES))
        judged = torch.ones(batch, FRAMES)
        judged[:, 0] = (~clean).float()  # a clean first frame is given, not predicted
        err = (((pred - target) ** 2).mean(dim=(2, 3, 4)) * judged).sum(1) / judged.sum(1)
        weight = torch.where(top, 20.0, 1.0)  # the top clips' errors are ~0.07 of the clip: weighed up
        loss = (err * weight).sum() / weight.sum()
        if args.readout:  # 64 labelled captions (every tenth empty: none)
            label_specs = [decoupled_clip(10_000_000 + step * 64 + k) for k in range(64)]
            label_text = [s.caption if k % 10 else "" for k, s in enumerate(label_specs)]
            target = torch.tensor([directions.index(s.direction) if c else len(directions)
                                   for s, c in zip(label_specs, label_text)])
            with torch.no_grad():
                states = encode_captions(tok, te, label_text)
            loss = loss + torch.nn.functional.cross_entropy(label_head(readout(states)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} {step / (time.time() - start):.2f} step/s", flush=True)
        if step % args.eval_every == 0:
            evaluate(step)


if __name__ == "__main__":
    main()
