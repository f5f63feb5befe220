"""What the two services and their clients agree on: id rules and limits, and the ML service's answers.

Imported by the ML service (which produces these answers), the ML client and the Face API (which read them). One
copy of each: a new field of the ML answer is added here and nowhere else.
"""
