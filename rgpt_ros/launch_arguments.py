"""What launch/rgpt.launch.py passes to the node, as plain functions (no `launch` import).

A launch argument left empty means "not given": the params file's value stands. Passing every
argument with a default after the params file would silently override the file (a file saying
``device: cpu`` and ``autostart: false`` would get ``auto`` and ``true``). The launch file only
declares the arguments and calls :func:`node_arguments` from an OpaqueFunction, so the logic is
testable here without `launch`/`launch_ros`.

One node for N cameras: ``streams:=front:/front/image_raw:/front/labels,rear`` sets the node's
``streams`` parameter to ``["front", "rear"]`` and remaps each stream's inputs to the given
topics (see :func:`parse_streams`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .parameters import SPECS
from .streams import stream_names_problem, stream_topic

# Node parameters that are also launch arguments (empty default = take the params file's value).
PARAMETER_ARGUMENTS: tuple[str, ...] = ("model_path", "device", "dtype", "autostart")
# Topic remappings that are launch arguments: launch argument -> node topic.
REMAP_ARGUMENTS: dict[str, str] = {"image": "image", "masks": "masks"}
# Every launch argument besides params_file: name -> (default, description).
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "namespace": ("", "Node namespace."),
    **{name: ("", f"Node parameter {name} ({SPECS[name].description}); empty = the value in "
               "params_file.") for name in PARAMETER_ARGUMENTS},
    **{name: (topic, f"Topic the node reads as '{topic}' (its compressed variant follows).")
       for name, topic in REMAP_ARGUMENTS.items()},
    "streams": ("", "One node for N cameras: comma-separated streams, each NAME or "
                "NAME:IMAGE_TOPIC:REGIONS_TOPIC (e.g. front:/front/image_raw:/front/labels,rear). "
                "Sets the node's streams parameter and remaps NAME/image (and "
                "NAME/image/compressed) to IMAGE_TOPIC, NAME/masks and NAME/prompts to "
                "REGIONS_TOPIC; topics left out stay NAME/image, NAME/masks. Empty = the "
                "params file's streams."),
}

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_argument(name: str, text: str) -> Any:
    """A launch argument's text as the value type of node parameter ``name``."""
    kind = type(SPECS[name].default)
    if kind is bool:
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"launch argument {name}:={text!r} is not a boolean: use true or false")
    return kind(text)


def parameter_overrides(arguments: Mapping[str, str]) -> dict[str, Any]:
    """The node parameters among ``arguments`` that were given (non-empty), typed."""
    return {name: parse_argument(name, arguments[name]) for name in PARAMETER_ARGUMENTS
            if arguments.get(name, "") != ""}


def parse_streams(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The ``streams`` launch argument -> (stream names, remappings of their input topics)."""
    names: list[str] = []
    remappings: list[tuple[str, str]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) > 3:
            raise ValueError(f"launch argument streams: {entry!r} has more than "
                             "NAME:IMAGE_TOPIC:REGIONS_TOPIC")
        name, image, regions = (parts + ["", ""])[:3]
        names.append(name)
        if image:
            remappings += [(stream_topic(name, "image"), image),
                           (stream_topic(name, "image/compressed"), f"{image}/compressed")]
        if regions:
            remappings += [(stream_topic(name, "masks"), regions),
                           (stream_topic(name, "prompts"), regions)]
    problem = stream_names_problem(names) if names else "no stream named"
    if problem:
        raise ValueError(f"launch argument streams:={text!r}: {problem}")
    return names, remappings


def node_arguments(arguments: Mapping[str, str], params_file: str) -> dict[str, Any]:
    """Keyword arguments for launch_ros's ``Node`` besides package/executable: the params file,
    then only the given overrides; the namespace; the input remappings."""
    overrides = parameter_overrides(arguments)
    remappings = [(topic, arguments.get(name) or topic) for name, topic in REMAP_ARGUMENTS.items()]
    image = arguments.get("image") or REMAP_ARGUMENTS["image"]
    remappings.append(("image/compressed", f"{image}/compressed"))
    if arguments.get("streams", "").strip():
        overrides["streams"], stream_remaps = parse_streams(arguments["streams"])
        remappings += stream_remaps
    return {
        "namespace": arguments.get("namespace", ""),
        "parameters": [params_file, overrides] if overrides else [params_file],
        "remappings": remappings,
    }
