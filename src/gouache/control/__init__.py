"""ControlNet: condition generation on edges, depth and other maps of an image.

* :mod:`~gouache.control.preprocessors` — image → control map (Canny, soft edges, scribble, tile,
  depth), an explicit name → function table;
* :mod:`~gouache.control.models` — find and load ControlNets (diffusers folders, single files, the
  built-in edge ControlNet of gouache-tiny);
* :mod:`~gouache.control.spec` — :class:`ControlSpec`, what a request asks for, and its infotext;
* :mod:`~gouache.control.guidance` — the residuals each active ControlNet adds to the UNet at each
  step, as a hook of the guided model call (never a copy of the denoising loop).
"""
