"""The leaderboard tools: what is compared with, or sent to, the public leaderboards.

Modules: ``compare`` (our scores beside the published LENS scores), ``harness`` (the exactness check:
dense MiniLM offline against its published MTEB scores), ``airbench`` (AIR-Bench runs and their upload
zip), ``submit`` (the MTEB / AIR-Bench submission kit and its registry entry). They sit above the
evaluation they report on and import nothing from each other's callers."""
