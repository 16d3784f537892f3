"""Demo data: a small, believable back office (`flask seed --demo`), made through the
other capabilities' services so every rule that holds for real data holds for it."""
