"""Exact polygon outlines of pixel masks, in the two annotation conventions the world is written in.

A pixel mask is traced along pixel edges into closed rectilinear loops. Annotation polygons cannot carry holes (COCO
and PhraseCut both take the *union* of an object's polygons), so a component with a hole is cut in two through the
middle row of that hole, recursively, until no part has a hole. The result rasterises back to the very same pixels:

- :func:`coco_polygons`: corner coordinates (pixel ``(x, y)`` spans ``[x, x+1) × [y, y+1)``), flat
  ``[x0, y0, x1, y1, ...]`` lists as in COCO ``segmentation``; decoded by pycocotools ``frPyObjects`` + ``merge``.
- :func:`phrasecut_polygons`: the same loops inset by half a pixel, i.e. through the centres of the boundary pixels,
  as ``[[x, y], ...]`` integer point lists; rasterised by PIL ``polygon(outline=1, fill=1)`` like PhraseCut's evaluator.
"""

from __future__ import annotations

import numpy as np

Point = tuple[int, int]


def _boundary_edges(mask: np.ndarray) -> dict[Point, list[Point]]:
    """Directed pixel-edge boundary of ``mask`` ``(H, W)`` bool, foreground on the right (y pointing down).

    Returns ``start corner -> [end corners]``; a corner has two outgoing edges where two pixels touch diagonally.
    """
    padded = np.pad(mask, 1)
    edges: dict[Point, list[Point]] = {}
    ys, xs = np.nonzero(mask)
    for y, x in zip(ys.tolist(), xs.tolist()):
        py, px = y + 1, x + 1
        if not padded[py - 1, px]:
            edges.setdefault((x, y), []).append((x + 1, y))
        if not padded[py, px + 1]:
            edges.setdefault((x + 1, y), []).append((x + 1, y + 1))
        if not padded[py + 1, px]:
            edges.setdefault((x + 1, y + 1), []).append((x, y + 1))
        if not padded[py, px - 1]:
            edges.setdefault((x, y + 1), []).append((x, y))
    return edges


def _trace_loops(mask: np.ndarray) -> list[list[Point]]:
    """Closed corner loops of ``mask``; at diagonal pinches the loop turns right (tight around the foreground)."""
    edges = _boundary_edges(mask)
    loops: list[list[Point]] = []
    while edges:
        start = min(edges)
        loop = [start]
        prev, current = start, edges[start][0]
        _pop_edge(edges, start, current)
        while current != start:
            loop.append(current)
            outgoing = edges[current]
            if len(outgoing) == 1:
                nxt = outgoing[0]
            else:
                dx, dy = current[0] - prev[0], current[1] - prev[1]
                right = (current[0] - dy, current[1] + dx)
                nxt = right if right in outgoing else outgoing[0]
            _pop_edge(edges, current, nxt)
            prev, current = current, nxt
        loops.append(_drop_collinear(loop))
    return loops


def _pop_edge(edges: dict[Point, list[Point]], start: Point, end: Point) -> None:
    edges[start].remove(end)
    if not edges[start]:
        del edges[start]


def _drop_collinear(loop: list[Point]) -> list[Point]:
    """Keep only the corners where the loop turns."""
    n = len(loop)
    keep = []
    for i, (x, y) in enumerate(loop):
        px, py = loop[i - 1]
        nx, ny = loop[(i + 1) % n]
        if (x - px) * (ny - y) - (y - py) * (nx - x) != 0:
            keep.append((x, y))
    return keep


def _signed_area(loop: list[Point]) -> float:
    """Shoelace area; positive for outer loops (clockwise on screen), negative for holes."""
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(loop, loop[1:] + loop[:1]))


def _hole_free_parts(mask: np.ndarray) -> list[np.ndarray]:
    """Split ``mask`` into 4-connected parts without holes (cutting through the middle row of each hole)."""
    from scipy import ndimage  # imported here: scipy.ndimage alone doubles the start-up time of `ris synth --help`

    labels, count = ndimage.label(mask)
    parts: list[np.ndarray] = []
    for index in range(1, count + 1):
        part = labels == index
        loops = _trace_loops(part)
        holes = [loop for loop in loops if _signed_area(loop) < 0]
        if not holes:
            parts.append(part)
            continue
        hole_ys = [y for _, y in holes[0]]
        cut = (min(hole_ys) + max(hole_ys)) // 2
        top, bottom = part.copy(), part.copy()
        top[cut:] = False
        bottom[:cut] = False
        parts.extend(_hole_free_parts(top))
        parts.extend(_hole_free_parts(bottom))
    return parts


def _outer_loops(mask: np.ndarray) -> list[list[Point]]:
    """Outer loops of the hole-free parts of ``mask``, in full-image corner coordinates."""
    if not mask.any():
        return []
    ys, xs = np.nonzero(mask)
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : ys.max() + 1, x0 : xs.max() + 1]
    loops: list[list[Point]] = []
    for part in _hole_free_parts(crop):
        loops.extend(
            [(x + x0, y + y0) for x, y in loop] for loop in _trace_loops(part) if _signed_area(loop) > 0
        )
    return loops


def coco_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO ``segmentation`` polygons (flat corner-coordinate lists) whose union is exactly ``mask`` ``(H, W)``."""
    return [[float(v) for point in loop for v in point] for loop in _outer_loops(mask.astype(bool))]


def phrasecut_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """PhraseCut polygons (``[[x, y], ...]`` through boundary-pixel centres) whose PIL union is exactly ``mask``."""
    polygons = []
    for loop in _outer_loops(mask.astype(bool)):
        points = []
        for i, (x, y) in enumerate(loop):
            px, py = loop[i - 1]
            nx, ny = loop[(i + 1) % len(loop)]
            # Inward (right-hand) normals of the incoming and outgoing edges; each is a unit axis vector.
            n_in = (-np.sign(y - py), np.sign(x - px))
            n_out = (-np.sign(ny - y), np.sign(nx - x))
            cx = x + 0.5 * (n_in[0] + n_out[0]) - 0.5
            cy = y + 0.5 * (n_in[1] + n_out[1]) - 0.5
            points.append([round(cx), round(cy)])
        polygons.append(points)
    return polygons
