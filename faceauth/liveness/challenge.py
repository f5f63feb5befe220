"""The challenge and its judgement from the frames' measurements: pure functions, no I/O.

A step is a movement relative to the frame where the previous step was seen (the first frame for the first step):
the person turns left, then right (back through the centre and beyond), and so on. Head pose comes from the ML
service (yaw, pitch from the detector's landmarks); "move closer" from the face's width as a share of the frame.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Step = Literal["turn_left", "turn_right", "look_up", "move_closer"]
STEPS: tuple[Step, ...] = ("turn_left", "turn_right", "look_up", "move_closer")
PROMPTS: dict[Step, str] = {
    "turn_left": "Turn your head to your left",
    "turn_right": "Turn your head to your right",
    "look_up": "Look up",
    "move_closer": "Move closer to the camera",
}

# Near-identical frames: the same embedding, the same pose and the same face box (a still, re-encoded).
NEAR_SAME_SIMILARITY = 0.99
NEAR_SAME_DEGREES = 2.0
NEAR_SAME_WIDTH = 0.03


def random_challenge() -> list[Step]:
    """2 or 3 distinct steps in random order, from the OS's CSPRNG (a client must not predict the next one)."""
    pool = list(STEPS)
    count = 2 + secrets.randbelow(2)
    chosen: list[Step] = []
    for _ in range(count):
        chosen.append(pool.pop(secrets.randbelow(len(pool))))
    return chosen


@dataclass(frozen=True)
class FrameFacts:
    """What the ML service measured in one frame (no image is kept)."""

    digest: str  # SHA-256 of the frame's bytes
    timestamp_ms: float
    face: bool
    yaw: float = 0.0
    pitch: float = 0.0
    width: float = 0.0  # face size / frame size (square root of the box's area share)
    p_spoof: float = 0.0
    quality: float = 0.0
    embedding: tuple[float, ...] = ()
    model_id: str = ""
    landmarks: tuple[float, ...] = ()  # the 5 points, flattened (for replay fingerprints)

    @property
    def vector(self) -> np.ndarray:
        return np.asarray(self.embedding, dtype=np.float32)


@dataclass(frozen=True)
class Thresholds:
    yaw_degrees: float
    pitch_degrees: float
    closer_ratio: float


def moved(step: Step, start: FrameFacts, frame: FrameFacts, t: Thresholds) -> bool:
    """Does `frame` show `step` done, compared with `start`?

    Yaw is positive when the face turns towards the image's right, which is the person's left in a camera image
    that is not mirrored (the reference client sends the camera's frames as they are). Pitch is positive downwards.
    """
    if step == "turn_left":
        return frame.yaw - start.yaw >= t.yaw_degrees
    if step == "turn_right":
        return start.yaw - frame.yaw >= t.yaw_degrees
    if step == "look_up":
        return start.pitch - frame.pitch >= t.pitch_degrees
    return start.width > 0 and frame.width / start.width >= t.closer_ratio


@dataclass(frozen=True)
class StepSeen:
    step: Step
    observed: bool
    frame: int | None  # index of the frame where it was seen


def follow(challenge: Sequence[Step], frames: Sequence[FrameFacts], t: Thresholds) -> list[StepSeen]:
    """Walk the frames once, in order: each step must be seen after the previous one, relative to where that one
    was seen. A step not seen stops the walk (the later ones are then not observed either)."""
    faces = [i for i, f in enumerate(frames) if f.face]
    seen: list[StepSeen] = []
    if not faces:
        return [StepSeen(s, False, None) for s in challenge]
    anchor, cursor = faces[0], 0
    for step in challenge:
        found = next((i for i in faces[cursor:] if i > anchor and moved(step, frames[anchor], frames[i], t)), None)
        if found is None:
            seen.extend(StepSeen(s, False, None) for s in challenge[len(seen) :])
            return seen
        seen.append(StepSeen(step, True, found))
        anchor, cursor = found, faces.index(found) + 1
    return seen


def seen_anywhere(step: Step, frames: Sequence[FrameFacts], t: Thresholds) -> bool:
    """The step's movement between any earlier and later frame (to tell a wrong order from a missing step)."""
    faces = [f for f in frames if f.face]
    return any(moved(step, a, b, t) for i, a in enumerate(faces) for b in faces[i + 1 :])


def near_identical(a: FrameFacts, b: FrameFacts) -> bool:
    if a.digest == b.digest:
        return True
    if not (a.face and b.face):
        return False
    return (
        float(np.dot(a.vector, b.vector)) >= NEAR_SAME_SIMILARITY
        and abs(a.yaw - b.yaw) < NEAR_SAME_DEGREES
        and abs(a.pitch - b.pitch) < NEAR_SAME_DEGREES
        and abs(a.width - b.width) <= NEAR_SAME_WIDTH * max(a.width, b.width)
    )


def static(frames: Sequence[FrameFacts]) -> bool:
    """A still: two frames byte-identical, or every frame near-identical to the first (a re-encoded photo)."""
    digests = [f.digest for f in frames]
    if len(set(digests)) < len(digests):
        return True
    return len(frames) > 1 and all(near_identical(frames[0], f) for f in frames[1:])


def identity_kept(frames: Sequence[FrameFacts], threshold: float) -> tuple[bool, int | None, float]:
    """(every face frame is the best frame's person, the best frame's index, the lowest similarity to it)."""
    faces = [(i, f) for i, f in enumerate(frames) if f.face]
    if not faces:
        return False, None, 0.0
    best_index, best = max(faces, key=lambda item: item[1].quality)
    lowest = min(float(np.dot(best.vector, f.vector)) for _, f in faces)
    return lowest >= threshold, best_index, lowest


def timestamps_plausible(frames: Sequence[FrameFacts], session_age_ms: float, slack_ms: float = 2000.0) -> bool:
    """Capture times strictly increasing, and spanning no more time than the session has existed (frames
    captured before the challenge was issued cannot answer it). The client's clock may differ from ours, so only
    differences between its timestamps are compared."""
    times = [f.timestamp_ms for f in frames]
    if any(b <= a for a, b in itertools.pairwise(times)):
        return False
    return times[-1] - times[0] <= session_age_ms + slack_ms
