from collections import Counter

import pytest

from ris.datamodules import JointDataModule, PseudoRISDataModule, RefCOCODataModule
from ris.datamodules.joint import JointSampler
from ris.datamodules.labeled import select_labeled_images
from ris.synthetic.vocabulary import world_tokenizer
from tests.workflow_world import SIZE, write_pseudo_shards


def blocks(sampler: JointSampler) -> list[list[int]]:
    flat = list(sampler)
    return [flat[i : i + sampler.batch_size] for i in range(0, len(flat), sampler.batch_size)]


def test_every_batch_has_the_configured_number_of_labelled_samples():
    sampler = JointSampler(num_pseudo=50, num_labeled=7, batch_size=8, labeled_per_batch=3, seed=1)
    batches = blocks(sampler)
    assert len(batches) == 10 == len(sampler) // 8  # one pass over the 50 pseudo samples at 5 per batch
    for batch in batches:
        assert sum(i >= 50 for i in batch) == 3 and sum(i < 50 for i in batch) == 5
    pseudo = Counter(i for b in batches for i in b if i < 50)
    assert sorted(pseudo) == list(range(50)) and set(pseudo.values()) == {1}, "every pseudo sample once per epoch"
    labelled = Counter(i - 50 for b in batches for i in b if i >= 50)
    assert sorted(labelled) == list(range(7)), "the smaller labelled set cycles"
    assert max(labelled.values()) - min(labelled.values()) <= 1


def test_the_order_is_reproducible_by_seed_and_changes_per_epoch():
    def plan(seed, epoch):
        sampler = JointSampler(20, 10, 4, 2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert plan(0, 0) == plan(0, 0)
    assert plan(0, 0) != plan(0, 1)
    assert plan(0, 0) != plan(1, 0)


def test_ranks_split_one_epoch_plan_and_keep_the_ratio():
    kwargs = {"num_pseudo": 30, "num_labeled": 30, "batch_size": 6, "labeled_per_batch": 2, "batches_per_epoch": 7,
              "seed": 3}
    ranks = [JointSampler(**kwargs, num_replicas=2, rank=r) for r in (0, 1)]
    plan = ranks[0].plan()
    assert len(plan) == 6, "7 batches over 2 ranks: the 7th is dropped so both ranks step equally"
    assert blocks(ranks[0]) == plan[0::2] and blocks(ranks[1]) == plan[1::2]
    assert all(sum(i >= 30 for i in b) == 2 for r in ranks for b in blocks(r))


def test_sampler_rejects_ratios_without_both_sources():
    with pytest.raises(ValueError, match=r"labelled samples per batch must be in \[1, batch_size - 1\] = \[1, 3\]"):
        JointSampler(10, 10, 4, 4)
    with pytest.raises(ValueError, match="both sources need samples"):
        JointSampler(10, 0, 4, 1)


@pytest.fixture(scope="module")
def world_and_shards(tmp_path_factory, tiny_world):
    return tiny_world, write_pseudo_shards(tiny_world, tmp_path_factory.mktemp("joint") / "shards")


def joint(world, shards, **kwargs):
    common = {"input_size": SIZE, "word_length": 8}
    return JointDataModule(
        pseudo=PseudoRISDataModule(shards=str(shards), **common),
        labeled=RefCOCODataModule(data_root=str(world.refer_root), **common),
        tokenizer=world_tokenizer(),
        **common,
        **kwargs,
    )


def test_joint_batches_mix_both_sources_in_the_configured_ratio(world_and_shards):
    world, shards = world_and_shards
    data = joint(world, shards, batch_size=4, labeled_ratio=0.25, labeled_fraction=0.5, labeled_seed=2, seed=5)
    data.setup("fit")
    loader = data.train_dataloader()
    counts, labelled_images = [], set()
    for batch in loader:
        counts.append(Counter(batch.dataset))
        labelled_images |= {int(i) for d, i in zip(batch.dataset, batch.image_id) if d == "refcoco"}
    assert counts and all(c == Counter({"refcoco": 1, "pseudo": 3}) for c in counts)
    assert len(counts) == max(-(-data.num_pseudo // 3), data.num_labeled)
    all_train = {item.image_id for item in data.labeled.train_set.read()[0]}
    expected = set(select_labeled_images(all_train, 0.5, 2))
    assert labelled_images == expected == set(data.labeled_image_ids)
    assert [s.set_name for s in data.eval_sets("validate")] == ["refcoco/val"]
    assert data.eval_set_names("test") == ["refcoco/val", "refcoco/testA", "refcoco/testB"]


def test_joint_datamodule_checks_its_settings(world_and_shards):
    world, shards = world_and_shards
    with pytest.raises(ValueError, match=r"labeled_ratio must be in \(0, 1\), got 1.0"):
        joint(world, shards, labeled_ratio=1.0)
    with pytest.raises(ValueError, match="pseudo.input_size = 96 differs from the joint datamodule's input_size = 64"):
        JointDataModule(pseudo=PseudoRISDataModule(shards=str(shards), input_size=96, word_length=8),
                        labeled=RefCOCODataModule(data_root=str(world.refer_root), input_size=SIZE, word_length=8),
                        input_size=SIZE, word_length=8)
    with pytest.raises(ValueError, match="set labeled_fraction on the joint datamodule"):
        JointDataModule(pseudo=PseudoRISDataModule(shards=str(shards), input_size=SIZE, word_length=8),
                        labeled=RefCOCODataModule(data_root=str(world.refer_root), input_size=SIZE, word_length=8,
                                                  labeled_fraction=0.5),
                        input_size=SIZE, word_length=8, labeled_fraction=0.1)
