"""The synthetic referring world: procedural scenes, ground-truth expressions, web-like captions, and a writer that
emits the real RefCOCO (``refer``) and PhraseCut formats (specification: ``synthetic_world.md``)."""

from ris.synthetic.expressions import Expression, referring_expressions, web_captions
from ris.synthetic.scene import Scene, SceneObject, make_scene
from ris.synthetic.vocabulary import world_tokenizer
from ris.synthetic.world import WorldPaths, WorldSettings, iter_scenes, read_attributes, read_settings, write_world

__all__ = [
    "Expression",
    "Scene",
    "SceneObject",
    "WorldPaths",
    "WorldSettings",
    "iter_scenes",
    "make_scene",
    "read_attributes",
    "read_settings",
    "referring_expressions",
    "web_captions",
    "world_tokenizer",
    "write_world",
]
