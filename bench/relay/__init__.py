"""Side-by-side relay benchmark: tokenrelay against hand-written SSE baselines and a floor."""
