"""Hires fix vs its own first pass, judged by gouache-tiny's judge: how often (colour, shape, background) survive.

Run: OMP_NUM_THREADS=2 .venv/bin/python scripts/quality/hires_judge.py 32   (20 steps, 2x Lanczos, strength 0.5)
Measured: kept 32/32 (2026-12-04, the retrained weights; 29/32 before)
"""
import sys
from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.tiny.judge import evaluation_prompts, read_image

n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
m = load_model()
kept = 0
for i, p in enumerate(evaluation_prompts(held_out=False, n=n)):
    base = txt2img(m, GenerationRequest(p, steps=20, seed=i))[0]
    hr = txt2img(m, GenerationRequest(p, steps=20, seed=i, enable_hr=True, hr_upscaler="Lanczos", denoising_strength=0.5))[0]
    a, b = read_image(base.image).as_tuple(), read_image(hr.image).as_tuple()
    kept += a == b
    print(p, a, b, a == b)
print(f"kept {kept}/{n}")
