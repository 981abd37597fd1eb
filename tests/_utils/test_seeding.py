#!/usr/bin/env python3
import pytest
import torch

from captum_cams._utils.seeding import check_seed, seeded_generator


def test_seed_is_checked_by_name() -> None:
    check_seed(None)
    check_seed(3)
    with pytest.raises(TypeError, match="seed must be an int or None"):
        check_seed(True)
    with pytest.raises(TypeError, match="seed must be an int or None; got float"):
        check_seed(1.5)


def test_a_seed_repeats_its_draws_and_leaves_the_global_state_alone() -> None:
    state = torch.get_rng_state()
    cpu = torch.device("cpu")
    first = torch.randn(5, generator=seeded_generator(cpu, 7))
    again = torch.randn(5, generator=seeded_generator(cpu, 7))
    assert torch.equal(first, again)
    assert torch.equal(first, torch.randn(5, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(first, torch.randn(5, generator=seeded_generator(cpu, 8)))
    assert torch.equal(torch.get_rng_state(), state)
