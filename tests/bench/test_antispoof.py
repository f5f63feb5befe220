"""bench.antispoof: the made-up screen replay is a different, decodable photo that still shows the face."""

from __future__ import annotations

import io

from PIL import Image

from bench.antispoof import rates, screen_replay


def test_a_screen_replay_is_a_new_jpeg_of_the_photo(photos, people):
    original = photos(people[0].enrol_photo)
    replay = screen_replay(original, seed=1)
    assert replay != original and replay[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(replay)).size != Image.open(io.BytesIO(original)).size
    assert screen_replay(original, seed=1) == replay  # seeded: the figures can be reproduced


def test_rates_count_refused_genuine_and_accepted_attacks():
    got = rates({"a": 0.1, "b": 0.7, "c": None}, {"x": 0.2, "y": 0.9}, 0.5)
    assert (got["bpcer_count"], got["apcer_count"]) == ("1/2", "1/2")
