"""Replay detection: a probe that is a recent probe of the same subject (or its enrolment photo) again."""
