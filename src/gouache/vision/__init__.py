"""Seeing images: captions, CLIP similarity and AUTOMATIC1111's "Interrogate CLIP".

- :mod:`gouache.vision.captioners` — image-to-text models of the families users have (BLIP, BLIP-2,
  LLaVA 1.5 / NeXT, anything transformers loads as image-text-to-text), offline, from
  ``$GOUACHE_HOME/captioners/``, a path, or the built-in ``gouache-tiny-captioner``:
  ``load_captioner(name_or_path=None) -> Captioner``; ``Captioner.caption(images, prompt=None) -> list[str]``.
- :mod:`gouache.vision.clip` — a CLIP model (transformers ``CLIPModel``; the built-in
  ``gouache-tiny-clip``): ``load_clip(name_or_path=None) -> Clip``; image and text embeddings,
  similarities, ``clip_score(images, prompts, clip)``.
- :mod:`gouache.vision.interrogate` — a caption, then the CLIP-ranked best matches from flavour
  lists, joined into a prompt.

Nothing loads at import; every model is loaded on demand and released after use.
"""
