"""Stop strings and end-of-sequence ids."""

from __future__ import annotations

import pytest

from shared_core.stopping import StopStrings, eos_token_ids


def test_stop_find_earliest_of_several():
    stops = StopStrings(["END", "\n\n"])
    assert stops.find("abc\n\nxyz END") == 3
    assert stops.find("no stop here") is None


def test_stop_truncate_cuts_before_match():
    assert StopStrings(["User:"]).truncate("Hi.\nUser: more") == ("Hi.\n", True)
    assert StopStrings(["User:"]).truncate("Hi.") == ("Hi.", False)


def test_stop_holdback_of_partial_match():
    stops = StopStrings(["\nUser:"])
    assert stops.holdback_length("Sure.\nUse") == 4
    assert stops.holdback_length("Sure.\n") == 1
    assert stops.holdback_length("Sure.") == 0


def test_stop_holdback_takes_longest_over_strings():
    stops = StopStrings(["ab", "xabc"])
    assert stops.holdback_length("zzxab") == 3


def test_stop_empty_is_falsy():
    assert not StopStrings()
    assert StopStrings().find("anything") is None
    assert StopStrings().holdback_length("anything") == 0


def test_stop_rejects_empty_string():
    with pytest.raises(ValueError, match="non-empty"):
        StopStrings(["ok", ""])


class _Config:
    def __init__(self, eos):
        self.eos_token_id = eos


class _Model:
    def __init__(self, generation_eos, config_eos):
        self.generation_config = _Config(generation_eos)
        self.config = _Config(config_eos)


def test_eos_ids_union_of_sources():
    model = _Model([2, 7], 3)
    assert eos_token_ids(model, _Config(2)) == {2, 3, 7}


def test_eos_ids_missing_everywhere():
    with pytest.raises(ValueError, match="eos_token_id"):
        eos_token_ids(_Model(None, None), _Config(None))


def test_eos_ids_of_tiny_model(tiny_lm):
    model, tokenizer = tiny_lm
    assert eos_token_ids(model, tokenizer) == {tokenizer.eos_token_id, tokenizer.pad_token_id}
