"""The data-format layer: readers and rasterisers of the dataset files, below every user of them.

Both the training/evaluation datamodules (:mod:`ris.datamodules`) and the generator (:mod:`ris.pseudo`: its image
lists and ground-truth masks) read the datasets through these modules, so a file is parsed and a mask rasterised
one way only (docs/data.md §1, §2):

- :mod:`ris.formats.refer`: the ``refer`` format of RefCOCO/+/g (``refs(<split_by>).p`` + ``instances.json``), the
  refer API's split rule;
- :mod:`ris.formats.coco`: COCO ``instances.json`` and ``segmentation`` values (polygons, RLE) and their rasteriser;
- :mod:`ris.formats.phrasecut`: PhraseCut ``refer_{split}.json`` tasks and the official polygon rasteriser;
- :mod:`ris.formats.items`: the records the readers produce (:class:`~ris.formats.items.ReferringItem`,
  :class:`~ris.formats.items.AnnotatedImage`);
- :mod:`ris.formats.files`: JSON annotation files and image files;
- :mod:`ris.formats.errors`: :class:`~ris.formats.errors.BadSampleError`, one unreadable sample.
"""
