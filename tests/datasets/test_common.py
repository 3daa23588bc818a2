import torch

from minigpt4.datasets.datasets.common import META_KEY, collate, derive_seed, seeded_torch


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed("a", 1, 2) == derive_seed("a", 1, 2)
    assert derive_seed("a", 1, 2) != derive_seed("a", 2, 1)
    assert 0 <= derive_seed("x") < 2**63


def test_seeded_torch_is_repeatable_and_restores_the_global_rng():
    before = torch.get_rng_state()
    with seeded_torch(5):
        a = torch.rand(3)
    with seeded_torch(5):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(before, torch.get_rng_state())
    with seeded_torch(None):
        torch.rand(1)
    assert not torch.equal(before, torch.get_rng_state())


def test_collate():
    samples = [
        {"image": torch.zeros(3, 2, 2), "answer": "a", "image_id": 4, META_KEY: (0, 1, {})},
        {"image": torch.ones(3, 2, 2), "answer": "b", "image_id": 5, META_KEY: (0, 2, {"no_image": 1})},
    ]
    batch = collate(samples)
    assert batch["image"].shape == (2, 3, 2, 2)
    assert batch["answer"] == ["a", "b"]
    assert torch.equal(batch["image_id"], torch.tensor([4, 5]))
    assert batch[META_KEY] == (0, 2, {"no_image": 1})
