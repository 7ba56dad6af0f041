import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ris.letterbox import letterbox_matrix
from ris.metrics import METRIC_KEYS, RISMetrics, logits_to_masks


def numpy_reference(preds, gts):
    ious, cum_i, cum_u = [], 0, 0
    for p, g in zip(preds, gts):
        i = np.logical_and(p, g).sum()
        u = np.logical_or(p, g).sum()
        cum_i += i
        cum_u += u
        ious.append(i / u if u > 0 else 0.0)
    ious = np.array(ious)
    out = {"oIoU": cum_i / cum_u if cum_u else 0.0, "mIoU": ious.mean()}
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        out[f"Prec@{t}"] = float((ious >= t - 1e-12).mean())
    return out


def test_hand_computed_cases_with_different_sizes():
    m = RISMetrics()
    gt_a = torch.zeros(4, 5, dtype=torch.bool)
    gt_a[:2, :] = True  # 10 px
    pred_a = torch.zeros(4, 5, dtype=torch.bool)
    pred_a[:1, :] = True  # 5 px inside: IoU 0.5
    gt_b = torch.zeros(3, 3, dtype=torch.bool)
    gt_b[1, 1] = True  # 1 px
    pred_b = torch.ones(3, 3, dtype=torch.bool)  # full image: IoU 1/9
    gt_c = torch.zeros(2, 7, dtype=torch.bool)
    gt_c[0, :3] = True
    pred_c = torch.zeros(2, 7, dtype=torch.bool)  # empty prediction: IoU 0
    gt_d = torch.zeros(2, 2, dtype=torch.bool)
    pred_d = torch.zeros(2, 2, dtype=torch.bool)  # empty union: IoU := 0
    m.update([pred_a, pred_b, pred_c, pred_d], [gt_a, gt_b, gt_c, gt_d])
    out = m.compute()
    assert set(out) == set(METRIC_KEYS)
    assert out["mIoU"].item() == pytest.approx((0.5 + 1 / 9 + 0 + 0) / 4)
    assert out["oIoU"].item() == pytest.approx((5 + 1 + 0 + 0) / (10 + 9 + 3 + 0))
    assert out["Prec@0.5"].item() == pytest.approx(0.25)  # IoU exactly 0.5 counts (>=)
    assert out["Prec@0.6"].item() == 0.0


def test_perfect_and_full_image_predictions():
    m = RISMetrics()
    gt = torch.rand(6, 8) > 0.5
    m.update([gt.clone(), torch.ones(6, 8, dtype=torch.bool)], [gt, torch.ones(6, 8, dtype=torch.bool)])
    out = m.compute()
    assert out["mIoU"].item() == pytest.approx(1.0)
    assert all(out[f"Prec@{t}"].item() == 1.0 for t in (0.5, 0.6, 0.7, 0.8, 0.9))


def test_random_masks_match_numpy_reference():
    g = torch.Generator().manual_seed(0)
    preds, gts = [], []
    for _ in range(40):
        h, w = torch.randint(3, 20, (2,), generator=g).tolist()
        preds.append(torch.rand(h, w, generator=g) > torch.rand(1, generator=g))
        gts.append(torch.rand(h, w, generator=g) > torch.rand(1, generator=g))
    m = RISMetrics()
    m.update(preds[:17], gts[:17])
    m.update(preds[17:], gts[17:])
    out = m.compute()
    ref = numpy_reference([p.numpy() for p in preds], [g_.numpy() for g_ in gts])
    for k, v in ref.items():
        assert out[k].item() == pytest.approx(v, abs=1e-6), k


def test_mismatched_shapes_raise_value_error_naming_shapes():
    m = RISMetrics()
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        m.update([torch.zeros(4, 5, dtype=torch.bool)], [torch.zeros(5, 4, dtype=torch.bool)])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        m.update([torch.zeros(2, 2)] * 2, [torch.zeros(2, 2)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, preds, gts, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    m = RISMetrics()
    # Unrepeated split: rank r takes samples r, r + world, ... (counts differ when not divisible).
    m.update(preds[rank::world], gts[rank::world])
    out = m.compute()
    with m.sync_context():
        count = m.count.item()
    if rank == 0:
        queue.put({k: v.item() for k, v in out.items()} | {"count": count})
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_two_processes_equal_single_process():
    g = torch.Generator().manual_seed(1)
    preds = [torch.rand(9, 11, generator=g) > 0.4 for _ in range(7)]  # 7 samples: not divisible by 2
    gts = [torch.rand(9, 11, generator=g) > 0.6 for _ in range(7)]
    single = RISMetrics()
    single.update(preds, gts)
    expected = {k: v.item() for k, v in single.compute().items()}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), preds, gts, queue), nprocs=2, start_method="spawn")
    got = queue.get(timeout=60)
    assert got.pop("count") == 7  # every sample exactly once
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k


def test_logits_to_masks_maps_back_to_original_resolution():
    # A 40x80 image letterboxed into 32x32; the "object" is the left half of the original image.
    h, w, size = 40, 80, 32
    matrix = letterbox_matrix(h, w, size)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    top, bottom = matrix[1, 2], matrix[1, 2] + h * matrix[1, 1]
    inside = (xs < size / 2) & (ys >= top) & (ys < bottom)
    logits = torch.where(inside, 8.0, -8.0).float()[None, None]
    logits = torch.nn.functional.avg_pool2d(logits, 4)  # the model's stride-4 output
    (mask,) = logits_to_masks(logits, matrix[None], torch.tensor([[h, w]]), input_size=size)
    assert mask.shape == (h, w)
    gt = torch.zeros(h, w, dtype=torch.bool)
    gt[:, : w // 2] = True
    inter, union = (mask & gt).sum().item(), (mask | gt).sum().item()
    assert inter / union > 0.9
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        logits_to_masks(torch.zeros(2, 8, 8), matrix[None], [(h, w)])
