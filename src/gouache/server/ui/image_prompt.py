"""The generation tabs' "Image prompt (IP-Adapter)": an adapter picked from the server's listing
(the API's ``/sdapi/v1/ip-adapters``), the image prompt, its scale and InstantStyle's "style only".

With an image dropped, Generate adds one IP-Adapter unit to the request, as the API turns one of
sd-webui-controlnet's IP-Adapter units into one (:func:`gouache.server.catalog.find_ip_adapter_file`:
a listed name, never a path); the request then takes the tab's usual way (its checks, the server's
limits, the job queue) and the infotext records the unit (``IP-Adapter 0: "Model: NAME [hash],
Weight: 0.8"``). Without an image the tab generates as without the accordion.
"""

from __future__ import annotations

import gradio as gr

from gouache.errors import GouacheError

Controls = dict  # control name -> gradio component


def _names() -> list[str]:
    from gouache.server.catalog import ip_adapter_names

    return ip_adapter_names()


def _folder():
    from gouache.adapters.ip_adapter import KIND
    from gouache.models.home import models_dir

    return models_dir(KIND)


def controls(tab: str) -> Controls:
    """The accordion's controls (ids ``<tab>-ip-adapter``, ``-ip-image``, ``-ip-scale``, ``-ip-style``),
    the first listed adapter chosen (none when the server has none)."""
    from gouache.adapters.ip_spec import MAX_SCALE

    names = _names()
    with gr.Accordion("Image prompt (IP-Adapter)", open=False, elem_id=f"{tab}-ip"):
        with gr.Row():
            adapter = gr.Dropdown(names, value=names[0] if names else None, label="IP-Adapter", scale=4,
                                  elem_id=f"{tab}-ip-adapter")
            refresh = gr.Button("↻", elem_classes="gouache-tool-button", scale=0)
        c: Controls = {"ip_adapter": adapter,
                       "ip_image": gr.Image(label="Image prompt", type="pil", image_mode=None,
                                            sources=["upload", "clipboard"], height=192, elem_id=f"{tab}-ip-image")}
        with gr.Row():
            c["ip_scale"] = gr.Slider(0, MAX_SCALE, value=1, step=0.05, label="Scale (0: off)", elem_id=f"{tab}-ip-scale")
            c["ip_style"] = gr.Checkbox(False, label="Style only (InstantStyle)", elem_id=f"{tab}-ip-style")

    def relist(chosen):
        names = _names()
        return gr.Dropdown(choices=names, value=chosen if chosen in names else names[0] if names else None)

    refresh.click(relist, adapter, adapter, queue=False)
    return c


def units(values: dict) -> list:
    """The request's ``ip_adapters``: one unit when an image prompt is dropped, else none. An image
    without a listed adapter is an error that says what to pick or install."""
    from gouache.adapters.ip_spec import IPAdapterSpec
    from gouache.server.catalog import find_ip_adapter_file

    image = values.get("ip_image")
    if image is None:
        return []
    name = values.get("ip_adapter") or None
    if name is None:
        listed = _names()
        raise gr.Error(f"Pick the IP-Adapter for the image prompt: {', '.join(listed)} (or remove the image)."
                       if listed else "This server has no IP-Adapter for the image prompt: remove the image, or "
                       f"install one in {_folder()} (docs/ip-adapter.md).")
    try:
        path = find_ip_adapter_file(name, "IP-Adapter")
    except GouacheError as err:
        raise gr.Error(str(err)) from None
    return [IPAdapterSpec(path, [image], float(values["ip_scale"]), bool(values["ip_style"]))]
