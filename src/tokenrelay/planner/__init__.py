"""The travel planner: plan models, validation, JSON repair and prompts (docs/planner.md)."""
